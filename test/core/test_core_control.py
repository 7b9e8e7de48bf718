"""ControlLoop (the control loop of the executor and of tinyvla-eval, no ROS): idle / hold / run decisions and safe commands."""

from __future__ import annotations

import numpy as np
import pytest

from tinyvla_ros.core.control import ControlConfig, ControlLoop, FaultChecks
from tinyvla_ros.core.robots import load_robot_spec

FR3 = [f"fr3_joint{i}" for i in range(1, 8)]
RATE = 50.0
FR3_HOME = list(load_robot_spec("fr3").home)
UR5_HOME = list(load_robot_spec("ur5").home)


def franka_loop(checks: FaultChecks | None = None, **kw) -> ControlLoop:
    cfg = ControlConfig(
        arm_prefixes=[""],
        control_rate=RATE,
        action_dt=0.1,
        hold_after=0.5,
        **kw,
    )
    return ControlLoop(cfg, load_robot_spec("fr3"), checks)


def chunk_towards(target: np.ndarray, gripper: float, steps: int = 16) -> np.ndarray:
    """(steps, 8): constant target joints + gripper."""
    return np.tile(np.r_[target, gripper], (steps, 1))


def run(loop: ControlLoop, t0: float, seconds: float, actuating: bool = True, state=None):
    """Tick for ``seconds``; the arm tracks perfectly (state = command). Returns the results."""
    out, t = [], t0
    q = np.array(FR3_HOME) if state is None else state
    for _ in range(int(seconds * RATE)):
        loop.set_joint_state(FR3, q, t)
        res = loop.tick(t, actuating)
        if res.mode != "idle" and res.arms[0].positions is not None:
            q = res.arms[0].positions
        out.append(res)
        t += 1.0 / RATE
    return out, t


def test_no_joint_state_means_idle_and_nan_state_too():
    loop = franka_loop()
    assert loop.tick(0.0, True).mode == "idle"
    bad = np.array(FR3_HOME)
    bad[3] = np.nan
    loop.set_joint_state(FR3, bad, 0.0)
    res = loop.tick(0.01, True)
    assert res.mode == "idle" and "NaN" in res.reason and res.arms == []


def test_hold_without_chunk_then_run_inside_limits():
    loop = franka_loop()
    results, t = run(loop, 0.0, 0.2)
    assert {r.mode for r in results} == {"hold"}
    spec = load_robot_spec("fr3")
    far = spec.position_upper + 1.0  # beyond every limit
    assert loop.add_chunk(chunk_towards(far, 0.0), t, 0.1, t) is None
    results, t = run(loop, t, 0.45)  # fresh enough: hold_after is 0.5 s
    q = np.array([r.arms[0].positions for r in results])
    assert {r.mode for r in results} == {"run"}
    assert np.all(q <= spec.position_upper - spec.safety.position_margin + 1e-9)
    assert np.all(np.abs(np.diff(q, axis=0)) <= spec.safety.max_step + 1e-9)
    assert results[-1].gripper_closed == [True]
    assert loop.clamps["position"] > 0


def test_stale_chunk_holds_and_brakes_to_a_stop():
    loop = franka_loop()
    _, t = run(loop, 0.0, 0.1)
    target = np.array(FR3_HOME)
    target[0] += 1.0  # a base turn inside the workspace, too far to finish before the watchdog fires
    loop.add_chunk(chunk_towards(target, 1.0, 16), t, 0.1, t)
    results, t = run(loop, t, 2.0)  # the chunk covers 1.5 s, but hold_after is 0.5 s
    modes = [r.mode for r in results]
    first_hold = modes.index("hold")
    assert set(modes[:first_hold]) == {"run"} and set(modes[first_hold:]) == {"hold"}
    assert first_hold <= int((0.5 + 0.05) * RATE)
    q = np.array([r.arms[0].positions for r in results])
    speed = np.abs(np.diff(q[:, 0])) * RATE  # joint 1, rad/s
    assert speed[first_hold - 1] > 0.3, "the arm was still moving when the watchdog fired"
    at_rest = first_hold + next(i for i, r in enumerate(results[first_hold:]) if not r.arms[0].moving)
    assert at_rest - first_hold <= 0.5 * RATE, "hold must brake to a stop quickly"
    assert np.allclose(q[at_rest:], q[at_rest]), "the hold position must stay put"
    assert q[-1, 0] < target[0] - 0.2, "hold must not keep following the stale chunk"
    assert np.all(np.diff(speed[first_hold - 1 : at_rest]) <= 1e-9), "speed must only decrease while holding"


def test_nonfinite_and_mismatched_chunks_are_dropped():
    loop = franka_loop()
    bad = chunk_towards(np.array(FR3_HOME), 1.0)
    bad[3, 2] = np.inf
    assert "NaN" in loop.add_chunk(bad, 0.0, 0.1, 0.0) or "inf" in loop.add_chunk(bad, 0.0, 0.1, 0.0)
    assert "dt" in loop.add_chunk(chunk_towards(np.array(FR3_HOME), 1.0), 0.0, 0.05, 0.0)
    assert "shape" in loop.add_chunk(np.zeros((16, 5)), 0.0, 0.1, 0.0)
    assert loop.counters["chunks_used"] == 0


def test_open_loop_takes_a_new_chunk_only_after_n_steps():
    loop = franka_loop(execution_mode="open_loop", open_loop_steps=4)
    _, t = run(loop, 0.0, 0.1)
    home = np.array(FR3_HOME)
    assert loop.add_chunk(chunk_towards(home, 1.0), t, 0.1, t) is None
    assert loop.add_chunk(chunk_towards(home + 0.1, 1.0), t + 0.05, 0.1, t + 0.05) is None
    assert loop.counters["chunks_skipped_open_loop"] == 1
    _, t = run(loop, t, 0.45)
    assert loop.add_chunk(chunk_towards(home + 0.1, 1.0), t, 0.1, t) is None
    assert loop.counters["chunks_used"] == 2


@pytest.mark.parametrize("policy_alive", [True, False])
def test_open_loop_plan_runs_on_while_skipped_chunks_show_fresh_inputs(policy_alive):
    """max_observation_age in open loop: the chunks skipped mid-plan still prove the cameras and the
    policy alive; without them the loop holds once the plan's observation is too old."""
    loop = franka_loop(FaultChecks(max_observation_age=0.18), execution_mode="open_loop", open_loop_steps=8)
    _, t = run(loop, 0.0, 0.1)
    home = np.array(FR3_HOME)
    assert loop.add_chunk(chunk_towards(home, 1.0), t, 0.1, t) is None
    modes = []
    for _ in range(3):  # 3 x 0.1 s of the 0.8 s plan, a new observation every 0.1 s
        results, t = run(loop, t, 0.1)
        modes += [r.mode for r in results]
        if policy_alive:
            assert loop.add_chunk(chunk_towards(home, 1.0), t, 0.1, t) is None
    if policy_alive:
        assert set(modes) == {"run"} and loop.counters["chunks_skipped_open_loop"] == 3
    else:
        assert modes[-1] == "hold" and modes.index("hold") == int(0.18 * RATE) + 1


def test_preview_mode_does_not_need_the_arm_to_follow():
    loop = franka_loop()
    _, t = run(loop, 0.0, 0.1)
    loop.add_chunk(chunk_towards(np.array(FR3_HOME) + 0.4, 1.0), t, 0.1, t)
    frozen = np.array(FR3_HOME)
    results = []
    for _ in range(20):  # the arm does not move (actuation off), no tracking-error hold
        loop.set_joint_state(FR3, frozen, t)
        results.append(loop.tick(t, actuating=False))
        t += 1.0 / RATE
    assert all(r.mode == "run" for r in results)
    assert loop.counters["safety_holds"] == 0
    assert np.linalg.norm(results[-1].arms[0].positions - frozen) > 0.1


def test_bimanual_layout_splits_two_prefixed_arms():
    cfg = ControlConfig(
        action_layout="ur5_bimanual_joint",
        arm_prefixes=["left_", "right_"],
        control_rate=RATE,
        action_dt=0.1,
    )
    loop = ControlLoop(cfg, load_robot_spec("ur5"))
    assert (
        loop.joint_names[0][0] == "left_shoulder_pan_joint"
        and loop.joint_names[1][5] == "right_wrist_3_joint"
    )
    names = [n for arm in loop.joint_names for n in arm]
    home = np.r_[UR5_HOME, UR5_HOME]
    loop.set_joint_state(names, home, 0.0)
    action = np.r_[np.array(UR5_HOME) + 0.3, 0.0, np.array(UR5_HOME) - 0.3, 1.0]
    loop.add_chunk(np.tile(action, (16, 1)), 0.0, 0.1, 0.0)
    res = None
    for i in range(20):
        loop.set_joint_state(names, home, i / RATE)
        res = loop.tick(i / RATE, actuating=False)
    assert res.mode == "run" and len(res.arms) == 2
    assert np.all(res.arms[0].positions > np.array(UR5_HOME))  # left moves up, right down
    assert np.all(res.arms[1].positions < np.array(UR5_HOME))
    assert res.gripper_closed == [True, False]


def test_layout_and_names_must_agree():
    with pytest.raises(ValueError, match="differ from the layout"):
        franka_loop(action_names=[*FR3, "fr3_gripper"])


def test_end_effector_layout_gives_poses_inside_the_workspace():
    from tinyvla_ros.core.rotations import matrix_to_rot6d

    loop = franka_loop(action_layout="franka_ee")
    spec = load_robot_spec("fr3")
    home_pose = spec.kinematics.fk(np.array(FR3_HOME))
    outside = np.array([2.0, 0.0, -1.0])  # beyond the workspace box in x and z
    action = np.r_[outside, matrix_to_rot6d(home_pose[:3, :3]), 1.0]
    loop.set_joint_state(FR3, np.array(FR3_HOME), 0.0)
    loop.add_chunk(np.tile(action, (16, 1)), 0.0, 0.1, 0.0)
    xyz = []
    for i in range(20):
        loop.set_joint_state(FR3, np.array(FR3_HOME), i / RATE)
        res = loop.tick(i / RATE, actuating=False)
        assert res.mode == "run"
        xyz.append(res.arms[0].xyz)
        np.testing.assert_allclose(res.arms[0].rotation @ res.arms[0].rotation.T, np.eye(3), atol=1e-9)
    xyz = np.array(xyz)
    assert np.all(xyz >= spec.safety.workspace_min - 1e-9) and np.all(xyz <= spec.safety.workspace_max + 1e-9)
    np.testing.assert_allclose(xyz[0], home_pose[:3, 3], atol=spec.safety.max_step_linear)
    assert np.all(np.linalg.norm(np.diff(xyz, axis=0), axis=1) <= spec.safety.max_step_linear + 1e-9)
    assert xyz[-1, 0] > xyz[0, 0] and xyz[-1, 2] < xyz[0, 2]  # moving towards the (clipped) target
