"""Demonstration recorder: bag contents and metadata, set-up layouts, action mapping for both robots."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinyvla_ros.data.bag import BagReader
from tinyvla_ros.data.convert import BagLayout
from tinyvla_ros.data.demos import ACTION_TOPIC, DemoConfig, _action_vector, parse_seeds, setup_layout
from tinyvla_ros.data.evaluate import split_action
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
