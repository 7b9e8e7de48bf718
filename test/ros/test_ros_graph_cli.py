"""The bimanual graph starts from the ``tinyvla-graph`` console script (the Franka one: test_ros_franka_graph)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from conftest import UR5_ACTIONS, UR5_JOINTS, UR5_STATE
from ros_harness import UR5_HOME, Rig, cameras, read_logs, start_graph, wait_for
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory

from tinyvla_ros.ros.graph import EXECUTOR, GraphArgs, GraphRunner, NodeSpec, build_graph
from tinyvla_ros.ros.synthetic_sensors import SyntheticSensorsConfig

# a stuck test fails instead of hanging the suite (pytest-timeout)
pytestmark = [pytest.mark.ros, pytest.mark.timeout(300)]

FAST = [
    "--set",
    "tinyvla_policy.inference_rate=4.0",
    "--set",
    "tinyvla_policy.num_threads=1",
    "--set",
    "tinyvla_policy.warmup_runs=1",
    "--set",
    "tinyvla_policy.max_age=0.5",
    "--set",
    "tinyvla_policy.max_skew=0.1",
    "--set",
    "tinyvla_policy.action_dt=0.1",
    "--set",
    "tinyvla_executor.action_dt=0.1",
    "--set",
    "tinyvla_executor.hold_after=1.0",
]


def _graph_cli(robot: str, checkpoint, log_dir, *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "tinyvla_ros.ros.graph", robot, "--checkpoint", str(checkpoint)]
    argv += ["--instruction", "lift the box", "--log-dir", str(log_dir), *FAST, *extra]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen, sig: int | None, timeout: float = 30.0) -> tuple[int, str]:
    if sig is not None:
        proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=10.0)
    return proc.returncode, out


def test_bimanual_graph_from_console_script_drives_both_arms(ur5_checkpoint, tmp_path):
    rig = Rig()
    rig.start_sensors(
        SyntheticSensorsConfig(
            cameras(
                [
                    ("wrist_left", "/camera/wrist_left/color/image_raw", "rgb8"),
                    ("wrist_right", "/camera/wrist_right/color/image_raw", "rgb8"),
                    ("top", "/camera/top/color/image_raw", "rgb8"),
                ]
            ),
            UR5_STATE,
            [*UR5_HOME, 0.0, *UR5_HOME, 0.0],
            joint_rate=50.0,
        )
    )
    chunks = rig.record(JointTrajectory, "/tinyvla_policy/chunk")
    left = rig.record(JointTrajectory, "/left_scaled_joint_trajectory_controller/joint_trajectory")
    right = rig.record(JointTrajectory, "/right_scaled_joint_trajectory_controller/joint_trajectory")
    preview = rig.record(JointState, "/tinyvla_executor/preview")
    proc = _graph_cli("ur5_bimanual", ur5_checkpoint, tmp_path, "--enable-actuation", "true")
    try:
        wait_for(lambda: left.count() > 5 and right.count() > 5, 120.0, "trajectories to both arms")
        code, out = _finish(proc, signal.SIGINT)
    finally:
        if proc.poll() is None:
            proc.kill()
        rig.close()
    assert code == 0, out + read_logs(tmp_path)
    assert list(chunks.last().joint_names) == UR5_ACTIONS
    for arm, rec in (("left", left), ("right", right)):
        msgs = rec.messages()
        assert all(list(m.joint_names) == [f"{arm}_{j}" for j in UR5_JOINTS] for m in msgs)
        moving = [m for m in msgs if len(m.points) == 2]  # a hold is one point at the hold position
        assert moving, f"no moving command to the {arm} arm"
        assert len(moving[-1].points[0].velocities) == 6
        assert list(moving[-1].points[1].velocities) == [0.0] * 6  # the stop point
    names = list(preview.last().name)
    assert names[:6] == UR5_ACTIONS[:6] and "left_gripper" in names and "right_gripper" in names


def test_bad_parameter_exits_with_message(tmp_path):
    spec = build_graph(
        GraphArgs("franka", extra_parameters={EXECUTOR: {"execution_mode": "replay_forever"}})
    )[1]
    runner = GraphRunner([spec], log_dir=tmp_path)
    runner.start()
    try:
        wait_for(lambda: bool(runner.dead()), 60.0, "the executor to exit")
    finally:
        runner.stop()
    assert runner.processes[0].proc.returncode == 2
    log = read_logs(tmp_path)
    assert "execution_mode" in log and "replay_forever" in log


def test_graph_runner_stops_a_running_node_cleanly(tmp_path):
    spec = NodeSpec(
        "tinyvla_ros.ros.synthetic_sensors", "tinyvla_synthetic_sensors", "ci", {"robot": "franka"}
    )
    rig = Rig()
    states = rig.record(JointState, "/joint_states")
    runner = start_graph([spec], tmp_path)
    try:
        wait_for(lambda: states.count() > 3, 60.0, "joint states from the node")  # up and spinning
        assert not runner.dead()
    finally:
        codes = runner.stop()
        rig.close()
    assert codes == {"/ci/tinyvla_synthetic_sensors": 0}, read_logs(tmp_path)
