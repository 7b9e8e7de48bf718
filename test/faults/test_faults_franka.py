"""Fault injection on the Franka graph: policy + executor + MuJoCo FR3 fake as processes, real DDS.

One graph for the whole module (start-up dominates the cost); faults one at a time, each from a
running executor, with recovery in between; the irreversible ones (executor killed) last. The
policy is a random-init nano checkpoint whose joint actions lie in home + [0.05, 0.15] rad (it
moves the arm a little), run through the test-only fault engine (``engine: fault:mode=file``)
so chunk faults are switched on and off with a trigger file.

Every fault asserts: no command outside the hardware limits reached the fake (position,
velocity, acceleration, workspace), the hold came within the deadline (graph clock), a
/diagnostics entry names the fault, and the graph runs again once the fault clears.
"""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
from fault_harness import (
    EXECUTOR,
    FR3_HOME,
    FRANKA_CAMERAS,
    POLICY,
    RESULTS,
    ArmLimits,
    FaultResult,
    FaultRig,
    check_commands,
    env_with_fault_hooks,
    first_bad_chunk_time,
    graph_params,
    run_fault,
    start_intruder,
    stop_intruder,
    tiny_checkpoint,
    write_table,
)

pytest.importorskip("mujoco")
pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]

RATE = 100.0  # executor control rate (Hz)
DT = 1.0 / RATE
SILENT_DEADLINE = 0.2  # s: a silent input -> hold (the target)
COMMAND_DEADLINE = DT + 0.01  # s: one control period (+ one 10 ms /clock step of quantisation)
OUT = Path(__file__).resolve().parents[2] / "out" / "faults"


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults_franka")
    checkpoint = tiny_checkpoint(tmp / "ckpt", list(FRANKA_CAMERAS), FR3_HOME, grippers=[7])
    trigger = tmp / "engine_fault"
    extra = graph_params(FRANKA_CAMERAS, RATE, {"engine": f"fault:mode=file,trigger={trigger},stall_s=2.0"})
    rig = FaultRig("franka", checkpoint, tmp / "logs", FRANKA_CAMERAS, extra, env=env_with_fault_hooks())
    rig.trigger = trigger
    try:
        rig.start()
        yield rig
    finally:
        codes = rig.stop()
        table = write_table([r for r in RESULTS if r.robot == "franka"], OUT / "franka.json")
        print("\n" + table)
        print(f"exit codes: {codes}")


def limits() -> list[ArmLimits]:
    return [ArmLimits.from_robot("fr3")]


def check(result, deadline_required: bool = True, recovery: bool = True) -> None:
    assert result.unsafe_commands == 0, result.violations
    if deadline_required:
        assert result.time_to_hold is not None, result.note
        assert result.time_to_hold <= result.deadline, f"{result.fault}: {result.time_to_hold:.3f} s"
    assert not result.diagnostics.startswith("(none"), result.diagnostics
    if recovery:
        assert result.recovered, f"{result.fault} did not recover"


def camera_fault(rig, kind: str, camera: str, expect: str, deadline: float, value: float = 0.0):
    return run_fault(
        rig,
        "franka",
        f"{kind} ({camera})",
        lambda: rig.injector.inject(kind, camera, value),
        rig.injector.clear,
        expect,
        deadline,
        limits(),
        DT,
    )


def test_camera_silent(rig):
    check(camera_fault(rig, "camera_silent", "zed_right", "zed_right", SILENT_DEADLINE))


def test_camera_frozen_same_stamp_same_pixels(rig):
    check(camera_fault(rig, "camera_frozen", "zed_left", "zed_left", SILENT_DEADLINE))


def test_cameras_drifting_apart_beyond_max_skew(rig):
    # 1 s/s: the stamps are max_skew (50 ms) apart 50 ms after the injection
    # the drifting camera's frames fall behind: the policy sees them as stale (or apart)
    check(camera_fault(rig, "camera_drift", "zed_right", "zed_right", SILENT_DEADLINE + 0.05, value=1.0))


def test_camera_switches_resolution(rig):
    check(camera_fault(rig, "camera_resolution", "zed_left", "32x24", SILENT_DEADLINE))


def test_camera_switches_encoding(rig):
    check(camera_fault(rig, "camera_encoding", "zed_right", "32FC1", SILENT_DEADLINE))


def joint_fault(rig, kind: str, joint: str, expect: str, deadline: float):
    return run_fault(
        rig,
        "franka",
        f"{kind} ({joint or 'all'})",
        lambda: rig.injector.inject(kind, joint),
        rig.injector.clear,
        expect,
        deadline,
        limits(),
        DT,
    )


def test_joint_state_nan(rig):
    check(joint_fault(rig, "joints_nan", "fr3_joint4", "NaN", SILENT_DEADLINE))


def test_joint_state_inf(rig):
    check(joint_fault(rig, "joints_inf", "fr3_joint2", "inf", SILENT_DEADLINE))


def test_joint_state_missing_joint(rig):
    check(joint_fault(rig, "joints_missing", "fr3_joint6", "fr3_joint6", SILENT_DEADLINE))


def test_joint_states_stop(rig):
    check(joint_fault(rig, "joints_silent", "", "joint state", SILENT_DEADLINE))


def engine_fault(rig, mode: str, expect: str, deadline: float, bad_command: bool, duration: float = 1.0):
    def inject() -> float:
        t = rig.injector.graph_time()
        rig.trigger.write_text(mode, encoding="utf-8")
        return t

    reference = (lambda t: first_bad_chunk_time(rig.injector, t, limits()[0])) if bad_command else None
    return run_fault(
        rig,
        "franka",
        f"policy {mode} chunks" if mode != "stall" else "inference stall (2 s)",
        inject,
        lambda: rig.trigger.unlink(),
        expect,
        deadline,
        limits(),
        DT,
        duration=duration,
        reference=reference,
    )


def test_policy_emits_nan_chunks(rig):
    # the policy drops a non-finite chunk itself: the executor sees a silent chunk stream
    check(engine_fault(rig, "nan", "non-finite", SILENT_DEADLINE, bad_command=False))


def test_policy_emits_huge_chunks(rig):
    check(engine_fault(rig, "huge", "bad chunk", COMMAND_DEADLINE, bad_command=True))


def test_policy_emits_discontinuous_chunks(rig):
    check(engine_fault(rig, "jump", "bad chunk", COMMAND_DEADLINE, bad_command=True))


def test_inference_stalls_for_seconds(rig):
    check(engine_fault(rig, "stall", "observation is", SILENT_DEADLINE, bad_command=False, duration=1.0))


def clock_fault(rig, jump: float):
    return run_fault(
        rig,
        "franka",
        f"sim time jumps {'back' if jump < 0 else 'forward'} {abs(jump):g} s",
        lambda: rig.injector.inject("clock_jump", "", jump),
        rig.injector.clear,
        "clock jumped backwards" if jump < 0 else "clock jumped forwards",
        SILENT_DEADLINE,
        limits(),
        DT,
    )


def test_sim_time_jumps_backwards(rig):
    check(clock_fault(rig, -1.0))


def test_sim_time_jumps_forwards(rig):
    check(clock_fault(rig, 1.0))


JOINTS = [f"fr3_joint{i}" for i in range(1, 8)]


def test_guard_refuses_while_an_intruder_publishes_chunks(rig, tmp_path):
    """Another node on the chunk topic: hold + ERROR naming it; its chunks never move the arm."""
    inj = rig.injector
    rig.wait(lambda: inj.mode() == "run", 60.0, "the executor running before the intruder")
    target = list(FR3_HOME + np.array([0.6, 0, 0, 0, 0, 0, 0])) + [1.0]  # in the limits, far away
    topic = "/forward_position_controller/commands"
    n0 = len(inj.all_commands()[topic])
    t0 = inj.graph_time()
    proc = start_intruder(
        "fault_intruder", "chunk", f"/{POLICY}/chunk", [*JOINTS, "gripper"], target, tmp_path / "i.log"
    )
    try:
        rig.wait(
            lambda: any(d[2] == 2 and "fault_intruder" in d[3] for d in inj.diagnostics_since(t0)),
            30.0,
            "a /diagnostics ERROR naming the intruder",
        )
        errors = [d for d in inj.diagnostics_since(t0) if d[2] == 2 and "fault_intruder" in d[3]]
        t_refused = errors[0][0]
        rig.wait_graph_time(1.0)
        window = [c for _, c in inj.all_commands()[topic][n0:]]
    finally:
        t_left = inj.graph_time()  # its endpoints leave the graph on SIGINT, before the process exits
        stop_intruder(proc)
    rig.wait(lambda: inj.mode() == "run", 30.0, "the executor to run again once the intruder left")
    runs = [s["stamp"] for s in inj.statuses_since(t_left) if s["mode"] == "run"]
    assert runs, f"no run status after the intruder left: {inj.statuses_since(t0)}"
    recovered_at = runs[0]
    ran_while_refused = [
        st for st in inj.statuses_since(t_refused) if st["mode"] == "run" and st["stamp"] < t_left
    ]
    violations = check_commands(window, limits()[0], DT)
    result = FaultResult(
        "franka",
        "intruder publishing chunks",
        t0,
        len(violations),
        None,
        None,
        f"{errors[0][1]}: {errors[0][3]}" if errors else "(no ERROR naming the intruder)",
        True,
        violations,
        note=f"refused at graph time +{t_refused - t0:.2f} s after the intruder started; "
        f"ran again {recovered_at - t_left:.2f} s after it left",
    )
    RESULTS.append(result)
    print(result.row(), result.note)
    assert not ran_while_refused, f"followed chunks while the intruder was there: {ran_while_refused}"
    assert not violations, violations
    # the intruder's target (joint 1 at home + 0.6 rad) was never followed
    assert max(c[0] for c in window) < FR3_HOME[0] + 0.3


def test_guard_warns_about_a_foreign_controller_publisher(rig, tmp_path):
    inj = rig.injector
    t0 = inj.graph_time()
    topic = "/forward_position_controller/commands"
    proc = start_intruder("fault_commander", "command", topic, [], [0.0], tmp_path / "c.log")
    try:
        rig.wait(
            lambda: any(d[2] == 1 and "fault_commander" in d[3] for d in inj.diagnostics_since(t0)),
            30.0,
            "a /diagnostics WARN naming the foreign commander",
        )
    finally:
        stop_intruder(proc)
    t1 = inj.graph_time()
    rig.wait_graph_time(1.0)
    later = [d for d in inj.diagnostics_since(t1 + 0.5) if "fault_commander" in d[3]]
    assert not later, "the warning stayed after the foreign publisher left"


def test_executor_killed_arm_stops(rig):
    """SIGKILL the executor while the arm moves: the forward controller keeps the last command."""
    inj = rig.injector
    rig.wait(lambda: inj.mode() == "run", 60.0, "the executor running before the kill")
    rig.wait_graph_time(0.3)
    commands = inj.all_commands()["/forward_position_controller/commands"]
    n_before = len(commands)
    t_kill = inj.graph_time()
    rig.process(EXECUTOR).signal(signal.SIGKILL)
    rig.wait_graph_time(1.5, allow_dead=(EXECUTOR,))
    after = inj.all_commands()["/forward_position_controller/commands"]
    last_command = after[-1][1]
    with inj._lock:
        states = [s for s in inj.joint_states if s[0] >= t_kill]
    names = [f"fr3_joint{i}" for i in range(1, 8)]
    speeds = [(t, max(abs(v[n]) for n in names)) for t, _, v in states]
    stopped = [t for t, s in speeds if s < 0.01 and t > t_kill]
    # stopped for good: every sample from the first slow one on stays slow
    first = next((t for t in stopped if all(s < 0.01 for tt, s in speeds if tt >= t)), None)
    final = np.array([states[-1][1][n] for n in names])
    result = FaultResult(
        "franka",
        "executor process killed (SIGKILL)",
        t_kill,
        len(after) - n_before - 2 if len(after) - n_before > 2 else 0,
        None if first is None else first - t_kill,
        0.5,
        "(no executor left to report; fake: forward controller holds the last command)",
        None,
        note=f"commands after the kill: {len(after) - n_before}; final |q - last command| "
        f"{float(np.max(np.abs(final - last_command))):.4f} rad",
    )
    RESULTS.append(result)
    print(result.row(), result.note)
    assert len(after) - n_before <= 2, "commands kept arriving after the executor was killed"
    assert first is not None and first - t_kill <= 0.5, speeds[-10:]
    assert float(np.max(np.abs(final - last_command))) < 0.01
    assert np.all(np.isfinite(final))
    assert rig.injector.limit_violations == 0
