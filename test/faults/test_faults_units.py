"""Unit tests of the fault machinery without processes: command guard, fault checks of the control
loop, actuation gate, the engine fault hook, and why a dead executor stops the fake's arm."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tinyvla_ros.core.control import ActuationGate, ControlConfig, ControlLoop, FaultChecks
from tinyvla_ros.core.robots import load_robot_spec
from tinyvla_ros.ros.command_guard import (
    CommandGuard,
    CommandGuardConfig,
    Endpoint,
    gid_bytes,
    resolve_name,
)
from tinyvla_ros.ros.fake_robot.controllers import (
    ForwardPositionController,
    JointLimits,
    JointTrajectoryController,
    Reference,
)

HOME = np.array([0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4])
JOINTS = [f"fr3_joint{i}" for i in range(1, 8)]
RATE = 100.0


# --- command guard --------------------------------------------------------------------------


def test_guard_names_resolve_in_the_executors_namespace():
    assert resolve_name("tinyvla_policy", "/robot1") == "/robot1/tinyvla_policy"
    assert resolve_name("tinyvla_policy", "/") == "/tinyvla_policy"
    assert resolve_name("/other/policy", "/robot1") == "/other/policy"
    assert gid_bytes([1, 2, 255]) == b"\x01\x02\xff"
    assert gid_bytes({"implementation_identifier": "x", "data": b"\x01\x02"}) == b"\x01\x02"


def test_guard_refuses_while_an_intruder_is_on_the_chunk_topic_and_only_then():
    guard = CommandGuard(CommandGuardConfig(), "/tinyvla_executor", "/")
    policy, intruder = Endpoint("/tinyvla_policy", b"p"), Endpoint("/rogue", b"r")
    ok = guard.update([policy], {"/cmd": [Endpoint("/tinyvla_executor", b"e")]})
    assert ok.refuse == "" and ok.warnings == [] and ok.absent == []
    assert guard.accepts(b"p") and not guard.accepts(b"r")
    bad = guard.update(
        [policy, intruder], {"/cmd": [Endpoint("/tinyvla_executor", b"e"), Endpoint("/x", b"x")]}
    )
    assert "/rogue" in bad.refuse and bad.intruders == ["/rogue"]
    assert bad.warnings == ["/cmd is also published by ['/x']"]
    assert not guard.accepts({"data": b"r"})
    gone = guard.update([], {})
    assert gone.refuse == "" and gone.absent == ["/tinyvla_policy"]
    assert not guard.accepts(b"p")  # the policy's endpoint is gone too


def test_guard_config_is_validated():
    with pytest.raises(ValueError, match="allowed_chunk_publishers"):
        CommandGuardConfig(allowed_chunk_publishers=[])
    with pytest.raises(ValueError, match="guard.period"):
        CommandGuardConfig(period=0.0)
    disabled = CommandGuard(CommandGuardConfig(enabled=False), "/e", "/")
    assert disabled.update([Endpoint("/rogue", b"r")], {}).refuse == ""
    assert disabled.accepts(b"anything")


# --- control loop fault checks ----------------------------------------------------------------


def franka_loop(**checks) -> ControlLoop:
    cfg = ControlConfig(
        arm_prefixes=[""],
        control_rate=RATE,
        action_dt=0.05,
        hold_after=0.5,
    )
    return ControlLoop(cfg, load_robot_spec("fr3"), FaultChecks(**checks))


def smooth_chunk(start: np.ndarray) -> np.ndarray:
    steps = start + np.linspace(0.0, 0.05, 16)[:, None]
    return np.concatenate([steps, np.ones((16, 1))], axis=1)


def running(loop: ControlLoop, t: float = 0.0) -> float:
    loop.set_joint_state(JOINTS, HOME, t)
    assert loop.add_chunk(smooth_chunk(HOME), t, 0.05, t) is None
    assert loop.tick(t, True).mode == "run"
    return t


def test_fault_checks_are_validated():
    with pytest.raises(ValueError, match="faults.state_timeout"):
        FaultChecks(state_timeout=-1.0)
    with pytest.raises(ValueError, match="faults.max_chunk_speed_factor"):
        FaultChecks(max_chunk_speed_factor=math.nan)


@pytest.mark.parametrize("kind", ["huge", "jump", "nan", "far"])
def test_a_bad_chunk_is_refused_and_the_next_tick_holds(kind):
    loop = franka_loop(chunk_limit_tolerance=0.5, max_chunk_speed_factor=3.0, max_start_distance=0.5)
    t = running(loop)
    chunk = smooth_chunk(HOME)
    if kind == "huge":
        chunk[:, :7] = 1000.0
    elif kind == "jump":
        chunk[8:, 0] += 1.0
    elif kind == "nan":
        chunk[3, 2] = math.nan
    else:  # smooth but starting 1 rad from the command
        chunk[:, 1] += 1.0
    t += 1 / RATE
    reason = loop.add_chunk(chunk, t, 0.05, t)
    assert reason and reason.startswith("bad chunk")
    loop.set_joint_state(JOINTS, HOME, t)
    res = loop.tick(t, True)
    assert res.mode == "hold" and "bad chunk" in res.reason
    t += 1 / RATE
    assert loop.add_chunk(smooth_chunk(res.arms[0].positions), t, 0.05, t) is None
    loop.set_joint_state(JOINTS, res.arms[0].positions, t)
    assert loop.tick(t, True).mode == "run"


def test_a_joint_missing_from_the_messages_idles_after_state_timeout():
    loop = franka_loop(state_timeout=0.1)
    t = running(loop)
    partial = [n for n in JOINTS if n != "fr3_joint6"]
    modes = []
    for _ in range(15):
        t += 1 / RATE
        loop.set_joint_state(partial, np.delete(HOME, 5), t)
        modes.append(loop.tick(t, True))
    assert modes[8].mode != "idle" and modes[-1].mode == "idle"
    assert "fr3_joint6" in modes[-1].reason


def test_a_nan_joint_stays_bad_until_that_joint_is_finite_again():
    loop = franka_loop()
    t = running(loop)
    bad = HOME.copy()
    bad[3] = math.nan
    loop.set_joint_state(JOINTS, bad, t)
    loop.set_joint_state(JOINTS[:3], HOME[:3], t)  # a message without joint 4 does not clear it
    assert loop.tick(t, True).mode == "idle"
    loop.set_joint_state(JOINTS, HOME, t)
    assert loop.tick(t, True).mode != "idle"


def test_clock_jumps_drop_the_plan():
    loop = franka_loop()
    t = running(loop, 100.0)
    t -= 1.0
    loop.set_joint_state(JOINTS, HOME, t)
    res = loop.tick(t, True)
    assert res.mode == "hold" and "backwards" in res.reason
    assert any("backwards" in e for e in loop.pop_events()) and loop.pop_events() == []
    assert loop.add_chunk(smooth_chunk(HOME), t, 0.05, t) is None
    assert loop.tick(t, True).mode == "run"
    t += 2.0
    loop.set_joint_state(JOINTS, HOME, t)
    res = loop.tick(t, True)
    assert res.mode == "hold" and "forwards" in res.reason


def test_an_old_observation_holds_even_while_the_plan_covers_now():
    loop = franka_loop(max_observation_age=0.2)
    t = running(loop)
    t += 0.25  # the chunk (16 x 50 ms) still covers now, but its observation is 250 ms old
    loop.set_joint_state(JOINTS, HOME, t)
    res = loop.tick(t, True)
    assert res.mode == "hold" and "observation" in res.reason


# --- actuation gate ---------------------------------------------------------------------------


def test_after_stop_only_braking_then_nothing_until_enable():
    loop = franka_loop()
    gate = ActuationGate(True, repeat_hold=True)
    t, q = 0.0, HOME.copy()
    loop.set_joint_state(JOINTS, q, t)
    far = np.concatenate([np.tile(HOME + 0.4, (16, 1)), np.ones((16, 1))], axis=1)
    loop.add_chunk(far, t, 0.05, t)
    for _ in range(30):  # get moving
        t += 1 / RATE
        loop.set_joint_state(JOINTS, q, t)
        res = loop.tick(t, gate.actuating, gate.stopping)
        actions, _ = gate.actions(res)
        q = res.arms[0].positions
    assert res.mode == "run" and actions and np.any(res.arms[0].velocities)
    loop.reset_plan()
    gate.disable("stopped (~/stop)")
    kinds = []
    for _ in range(200):
        t += 1 / RATE
        loop.set_joint_state(JOINTS, q, t)
        loop.add_chunk(far, t, 0.05, t)  # chunks keep coming: they must not move the arm
        res = loop.tick(t, gate.actuating, gate.stopping)
        actions, grippers = gate.actions(res)
        assert res.mode == "hold" or not actions
        assert not grippers
        kinds.append(len(actions))
        if actions:
            q = res.arms[0].positions
    assert kinds[0] == 1 and kinds[-50:] == [0] * 50 and not gate.actuating
    assert loop.reset_to_measured(t)
    gate.enable()
    res = loop.tick(t + 1 / RATE, gate.actuating, gate.stopping)
    assert gate.actions(res)[0], "enable did not resume commanding"


def test_trajectory_controllers_do_not_repeat_a_sent_stop():
    gate = ActuationGate(True, repeat_hold=False)
    loop = franka_loop()
    loop.set_joint_state(JOINTS, HOME, 0.0)
    res = loop.tick(0.0, True)  # no chunk: hold at rest
    assert res.mode == "hold" and len(gate.actions(res)[0]) == 1
    assert gate.actions(loop.tick(0.01, True))[0] == []


# --- a dead executor: what the fake's controllers do ---------------------------------------------


def test_without_new_commands_both_controller_setups_stop_the_arm():
    limits = JointLimits(tuple(JOINTS), HOME - 2.0, HOME + 2.0)
    forward = ForwardPositionController(limits)
    assert not np.any(forward.accept(list(HOME + 0.1)))  # inside the limits
    for _ in range(3):  # no new command: the last one is held, at rest, forever
        ref = forward.reference()
        assert np.allclose(ref.positions, HOME + 0.1) and not np.any(ref.velocities)
    # the executor's joint_trajectory output: a point one horizon ahead moving, a stop point at 2x
    jtc = JointTrajectoryController(limits)
    moving = Reference(HOME.copy(), np.full(7, 0.5))
    jtc.accept(
        JOINTS,
        0.0,
        [0.04, 0.08],
        [list(HOME + 0.02), list(HOME + 0.03)],
        [[0.5] * 7, [0.0] * 7],
        [[], []],
        10.0,
        moving,
    )
    after = [jtc.reference(10.0 + dt) for dt in (0.08, 0.5, 5.0)]
    for ref in after:
        assert np.allclose(ref.positions, HOME + 0.03) and not np.any(ref.velocities)
