"""Input faults on the bimanual UR5 graph (three RealSense cameras, two arms), then the policy killed.

Same harness as the Franka suite (fault_harness.py): policy + executor + MuJoCo fake as
processes, the injector between the fake and the graph, lockstep sim time, a random-init nano
checkpoint moving both arms a little. Commands of both arms are checked against the UR5 limits.
"""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
from fault_harness import (
    EXECUTOR,
    POLICY,
    RESULTS,
    UR5_CAMERAS,
    ArmLimits,
    FaultRig,
    graph_params,
    run_fault,
    tiny_checkpoint,
    write_table,
)

pytest.importorskip("mujoco")
from tinyvla_ros.sim.robots import UR5_HOME as SIM_HOME  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]

RATE = 100.0
DT = 1.0 / RATE
SILENT_DEADLINE = 0.2
OUT = Path(__file__).resolve().parents[2] / "out" / "faults"


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults_ur5")
    home = np.concatenate([SIM_HOME["left"], SIM_HOME["right"]])  # the fake's home of each arm
    checkpoint = tiny_checkpoint(tmp / "ckpt", list(UR5_CAMERAS), home, grippers=[6, 13])
    extra = graph_params(UR5_CAMERAS, RATE)
    rig = FaultRig("ur5_bimanual", checkpoint, tmp / "logs", UR5_CAMERAS, extra)
    try:
        rig.start()
        yield rig
    finally:
        codes = rig.stop()
        print(
            "\n" + write_table([r for r in RESULTS if r.robot == "ur5_bimanual"], OUT / "ur5_bimanual.json")
        )
        print(f"exit codes: {codes}")


def limits() -> list[ArmLimits]:
    return [ArmLimits.from_robot("ur5"), ArmLimits.from_robot("ur5")]


def fault(rig, kind: str, target: str, expect: str, deadline: float, value: float = 0.0):
    result = run_fault(
        rig,
        "ur5_bimanual",
        f"{kind} ({target or 'all'})",
        lambda: rig.injector.inject(kind, target, value),
        rig.injector.clear,
        expect,
        deadline,
        limits(),
        DT,
    )
    assert result.unsafe_commands == 0, result.violations
    assert result.time_to_hold is not None, result.note
    assert result.time_to_hold <= deadline, f"{result.fault}: {result.time_to_hold:.3f} s"
    assert not result.diagnostics.startswith("(none"), result.diagnostics
    assert result.recovered, f"{result.fault} did not recover"


def test_camera_silent(rig):
    fault(rig, "camera_silent", "top", "top", SILENT_DEADLINE)


def test_camera_frozen(rig):
    fault(rig, "camera_frozen", "wrist_left", "wrist_left", SILENT_DEADLINE)


def test_cameras_drifting_apart(rig):
    fault(rig, "camera_drift", "wrist_right", "wrist_right", SILENT_DEADLINE + 0.05, value=1.0)


def test_camera_switches_resolution(rig):
    fault(rig, "camera_resolution", "top", "32x24", SILENT_DEADLINE)


def test_camera_switches_encoding(rig):
    fault(rig, "camera_encoding", "wrist_left", "32FC1", SILENT_DEADLINE)


def test_joint_state_nan(rig):
    fault(rig, "joints_nan", "right_elbow_joint", "NaN", SILENT_DEADLINE)


def test_joint_state_missing_joint(rig):
    fault(rig, "joints_missing", "left_wrist_2_joint", "left_wrist_2_joint", SILENT_DEADLINE)


def test_joint_states_stop(rig):
    fault(rig, "joints_silent", "", "joint state", SILENT_DEADLINE)


def test_policy_killed_executor_holds(rig):
    """SIGKILL the policy: the executor holds within max_observation_age and says the policy is gone."""
    inj = rig.injector
    rig.wait(lambda: inj.mode() == "run", 60.0, "the executor running before the kill")
    rig.wait_graph_time(0.3)
    t_kill = inj.graph_time()
    rig.process(POLICY).signal(signal.SIGKILL)
    rig.wait_graph_time(1.0, allow_dead=(POLICY,))
    holds = [s for s in inj.statuses_since(t_kill) if s["mode"] == "hold"]
    seen = lambda: [d for d in inj.diagnostics_since(t_kill) if "not in the graph" in d[3]]  # noqa: E731
    # DDS notices a killed process only when its lease expires (Fast DDS default: 10 s)
    rig.wait(
        lambda: bool(seen()), 30.0, "a /diagnostics entry saying the policy is gone", allow_dead=(POLICY,)
    )
    from fault_harness import FaultResult, check_commands

    violations = []
    for (topic, cmds), arm in zip(inj.all_commands().items(), limits(), strict=True):
        violations += [f"{topic}: {v}" for v in check_commands([c for _, c in cmds], arm, DT)]
    diag = seen()[0]
    result = FaultResult(
        "ur5_bimanual",
        "policy process killed (SIGKILL)",
        t_kill,
        len(violations),
        holds[0]["stamp"] - t_kill if holds else None,
        SILENT_DEADLINE,
        f"{diag[1]}: {diag[3]}",
        None,
        violations,
        note=f"diagnostics named the missing policy {diag[0] - t_kill:.1f} s (graph time) after the kill",
    )
    RESULTS.append(result)
    print(result.row(), result.note)
    assert not violations, violations
    assert holds and holds[0]["stamp"] - t_kill <= SILENT_DEADLINE
    assert rig.process(EXECUTOR).alive()
