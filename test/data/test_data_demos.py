"""Demonstration recorder: bag contents and metadata, set-up layouts, action mapping for both robots."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinyvla_ros.data.bag import BagReader
from tinyvla_ros.data.convert import BagLayout
from tinyvla_ros.data.demos import (
    ACTION_TOPIC,
    DemoConfig,
    _action_vector,
    parse_seeds,
    setup_layout,
    split_action,
)
from tinyvla_ros.data.messages import stamp_ns

pytestmark = pytest.mark.sim


def test_layouts_come_from_the_params_files():
    franka, enc = setup_layout("franka")
    assert franka.cameras == {
        "zed_left": "/zed_left/zed_node/rgb/color/rect/image",
        "zed_right": "/zed_right/zed_node/rgb/color/rect/image",
    }
    assert enc == {"zed_left": "bgra8", "zed_right": "bgra8"} and franka.fps == pytest.approx(20.0)
    ur5, enc = setup_layout("ur5_bimanual")
    assert list(ur5.cameras) == ["wrist_left", "wrist_right", "top"] and set(enc.values()) == {"rgb8"}
    assert len(ur5.action_names) == 14 and "left_gripper" in ur5.action_names
    assert BagLayout.from_dict(json.loads(json.dumps(ur5.to_dict()))) == ur5


@pytest.mark.parametrize("setup", ["franka", "ur5_bimanual"])
def test_expert_commands_map_to_action_names_and_back(setup):
    pytest.importorskip("mujoco")
    from tinyvla_ros.sim.env import make_env

    layout, _ = setup_layout(setup)
    env = make_env(setup, render_cameras=False)
    try:
        n = sum(len(j) for j in env.arm_joint_names.values())
        q = np.linspace(-1.0, 1.0, n)
        grip = {arm: 0.25 + 0.5 * i for i, arm in enumerate(env.arms)}
        action = _action_vector(env, q, grip, layout.action_names)
        assert action.shape == (len(layout.action_names),)
        q_back, grip_back = split_action(action, layout.action_names, env)
        np.testing.assert_array_equal(q_back, q)
        assert grip_back == grip
        with pytest.raises(ValueError, match="not produced"):
            _action_vector(env, q, grip, [*layout.action_names, "elbow_extra"])
    finally:
        env.close()


def test_demo_bags_carry_the_episode(demo_bags):
    layout, _ = setup_layout("franka")
    with BagReader(demo_bags[0]) as bag:
        meta = bag.metadata
        topics = bag.topics
        assert meta["instruction"] == "pick up the red cube" and meta["success"] == "true"
        assert meta["task"] == "pick_red_cube" and meta["seed"] == "0" and meta["robot"] == "franka"
        assert BagLayout.from_dict(json.loads(meta["tinyvla_layout"])) == layout
        assert topics[layout.instruction_topic].qos.durability == "transient_local"
        n = topics[ACTION_TOPIC].count
        assert all(topics[t].count == n for t in [*layout.cameras.values(), layout.joint_states_topic])
        left = [m for m in bag.messages([layout.cameras["zed_left"]])]
        first = left[0].decode()
        assert first.encoding == "bgra8" and (first.height, first.width) == (48, 64)
        # frames are stamped at render time and received 5 ms later, joint states at their stamp
        assert all(m.t_ns - stamp_ns(m.decode().header.stamp) == 5_000_000 for m in left[:5])
        stamps = [stamp_ns(m.decode().header.stamp) for m in bag.messages([ACTION_TOPIC])]
        assert stamps[0] == 1_000_000_000 and set(np.diff(stamps)) <= {50_000_000, 49_999_999, 50_000_001}
        joints = next(bag.messages([layout.joint_states_topic])).decode()
        assert set(layout.state_names) <= set(joints.name)


def test_demo_options_are_checked():
    assert parse_seeds("0-2,7,9-10") == [0, 1, 2, 7, 9, 10]
    with pytest.raises(ValueError, match="seeds"):
        parse_seeds("a-b")
    with pytest.raises(ValueError, match="setup"):
        DemoConfig(setup="kuka")
    with pytest.raises(ValueError, match="camera_latency"):
        DemoConfig(camera_latency=-0.1)


def test_execution_noise_is_seeded_correlated_and_of_the_given_std():
    from tinyvla_ros.data.demos import ExecutionNoise

    draws = np.array([ExecutionNoise(0.02, 0.9, 7, seed=3).next() for _ in range(2)])
    np.testing.assert_array_equal(draws[0], draws[1])  # the episode seed fixes the noise
    noise = ExecutionNoise(0.02, 0.9, 7, seed=3)
    x = np.array([noise.next() for _ in range(20_000)])  # (steps, joints)
    assert abs(x.std() - 0.02) < 0.002
    lag1 = np.mean([np.corrcoef(x[:-1, j], x[1:, j])[0, 1] for j in range(7)])
    assert abs(lag1 - 0.9) < 0.02
    assert not ExecutionNoise(0.0, 0.9, 7, seed=3).next().any()
    with pytest.raises(ValueError, match="action_noise"):
        DemoConfig(action_noise=-0.01)
    with pytest.raises(ValueError, match="noise_correlation"):
        DemoConfig(noise_correlation=1.0)


def test_noisy_demonstrations_record_the_clean_command_and_the_perturbed_state(tmp_path):
    from tinyvla_ros.data.demos import record_demos

    layout, _ = setup_layout("franka")

    def record(noise, name):
        cfg = DemoConfig(setup="franka", tasks=["pick_red_cube"], seeds=[5], image_width=32, image_height=24,
                         action_noise=noise)  # fmt: skip
        (result,) = record_demos(cfg, tmp_path / name)
        with BagReader(result.path) as bag:
            actions = [m.decode().position for m in bag.messages([ACTION_TOPIC])]
            states = [m.decode() for m in bag.messages([layout.joint_states_topic])]
            meta = bag.metadata
        cols = [list(states[0].name).index(n) for n in layout.state_names[:7]]
        return result, np.array(actions)[:, :7], np.array([s.position for s in states])[:, cols], meta

    clean, a0, s0, _ = record(0.0, "clean")
    noisy, a1, s1, meta = record(0.02, "noisy")
    assert clean.success and noisy.success and meta["action_noise"] == "0.02"
    # the expert's commands (the labels) do not see the noise before the first phase change ...
    np.testing.assert_allclose(a1[:15], a0[:15], atol=1e-9)
    # ... while the arm executing them is pushed off the nominal path
    off = np.abs(s1[5:15] - s0[5:15]).max()
    assert 0.005 < off < 0.15, off


def _takeover_checkpoint(path, gripper):
    from tinyvla_ros.data.demos import graph_parameters
    from tinyvla_ros.vla.testing import make_tiny_checkpoint

    params = graph_parameters("franka")
    home = [0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785]  # the fr3's home, +-0.2 rad of wandering
    return make_tiny_checkpoint(path, params["camera_names"], 8, 8, seed=2,
                                action_names=params["action_names"],
                                action_low=[h - 0.2 for h in home] + [gripper[0]],
                                action_high=[h + 0.2 for h in home] + [gripper[1]])  # fmt: skip


def test_takeover_records_the_expert_from_the_state_the_policy_left(tmp_path):
    from tinyvla_ros.data.demos import record_demos

    layout, _ = setup_layout("franka")
    base = dict(setup="franka", tasks=["pick_red_cube"], seeds=[5], image_width=32, image_height=24)

    def first_state(result):
        with BagReader(result.path) as bag:
            msgs = list(bag.messages([layout.joint_states_topic]))
            return stamp_ns(msgs[0].decode().header.stamp), np.array(msgs[0].decode().position), bag.metadata

    ckpt = _takeover_checkpoint(tmp_path / "open", (0.7, 1.0))
    (clean,) = record_demos(DemoConfig(**base), tmp_path / "clean")
    cfg = DemoConfig(**base, policy=str(ckpt), takeover=(10, 20), num_threads=1)
    (took,) = record_demos(cfg, tmp_path / "takeover")
    t0, s0, _ = first_state(clean)
    t1, s1, meta = first_state(took)
    driven = int(meta["takeover_step"])
    assert meta["takeover_reason"] == "steps" and 10 <= driven <= 20 and meta["policy"] == str(ckpt)
    # the bag starts where the policy handed over, at the arm state it left ...
    assert t1 - t0 == round(driven * 0.05 * 1e9)
    assert np.abs(s1[:7] - s0[:7]).max() > 0.02
    # ... and the expert brings it back: the episode is still solved
    assert took.success and clean.success
    # the same seed draws the same takeover step
    (again,) = record_demos(cfg, tmp_path / "again")
    assert int(first_state(again)[2]["takeover_step"]) == driven


def test_takeover_comes_at_the_policys_first_close(tmp_path):
    from tinyvla_ros.data.demos import record_demos

    ckpt = _takeover_checkpoint(tmp_path / "closed", (0.0, 0.3))
    cfg = DemoConfig(setup="franka", tasks=["pick_red_cube"], seeds=[6], image_width=32, image_height=24,
                     policy=str(ckpt), takeover=(30, 40), num_threads=1)  # fmt: skip
    (result,) = record_demos(cfg, tmp_path / "bags")
    with BagReader(result.path) as bag:
        meta = bag.metadata
    assert meta["takeover_reason"] == "grasp" and int(meta["takeover_step"]) == 0


def test_takeover_options_are_checked(tmp_path):
    from tinyvla_ros.data.demos import main

    with pytest.raises(ValueError, match="takeover"):
        DemoConfig(takeover=(5, 2))
    with pytest.raises(ValueError, match="not a checkpoint directory"):
        DemoConfig(policy=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="policy_steps"):
        DemoConfig(policy_steps=0)
    assert main(["--out", str(tmp_path / "x"), "--policy", str(tmp_path), "--takeover", "a-b"]) == 2
