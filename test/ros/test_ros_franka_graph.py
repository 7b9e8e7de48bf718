"""The Franka graph on real DDS: policy + executor processes, synthetic ZED streams and joint states.

One graph is started for the module from the ``tinyvla-graph`` console script (``python -m
tinyvla_ros.ros.graph franka ...``: the processes take seconds to load torch); the tests run in
file order and each leaves the graph running normally again, except the last, which kills a node
and checks that the graph command fails. The rig plays a perfectly tracking FR3 behind a forward
position controller.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
from ros_harness import (
    Rig,
    executor_mode,
    franka_sensors,
    read_logs,
    status_values,
    wait_for,
)
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

from tinyvla_ros.core.robots import load_robot_spec
from tinyvla_ros.ros.conversions import duration_to_sec, stamp_to_sec
from tinyvla_ros.ros.qos import latched_qos

# a stuck test fails instead of hanging the suite (pytest-timeout)
pytestmark = [pytest.mark.ros, pytest.mark.timeout(300)]

CONTROL_RATE = 50.0
INFERENCE_RATE = 4.0
HOLD_AFTER = 1.0
MAX_AGE = 0.5
ACTION_DT = 0.1
COMMANDS = "/forward_position_controller/commands"
GRIPPER = "/fr3_gripper/opening_command"
ACTION_NAMES = [f"fr3_joint{i}" for i in range(1, 8)] + ["gripper"]


@pytest.fixture(scope="module")
def franka(franka_checkpoint, tmp_path_factory):
    """Synthetic sensors + recorders in this process; the Franka graph as separate processes."""
    rig = Rig()
    sensors = rig.start_sensors(franka_sensors(joint_rate=50.0))
    rig.follow_forward_commands(COMMANDS)
    rec = {
        "chunk": rig.record(JointTrajectory, "/tinyvla_policy/chunk"),
        "commands": rig.record(Float64MultiArray, COMMANDS),
        "gripper": rig.record(Float64MultiArray, GRIPPER),
        "preview": rig.record(JointState, "/tinyvla_executor/preview"),
        "status": rig.record(String, "/tinyvla_executor/status", latched_qos()),
    }
    settings = {
        "tinyvla_policy.inference_rate": INFERENCE_RATE,
        "tinyvla_policy.action_dt": ACTION_DT,
        "tinyvla_policy.max_age": MAX_AGE,
        "tinyvla_policy.max_skew": 0.1,
        "tinyvla_policy.frozen_timeout": 1.0,
        "tinyvla_policy.num_threads": 1,
        "tinyvla_policy.warmup_runs": 1,
        "tinyvla_policy.seed": 0,
        # the ZED publishes bgra8; declaring rgb8 here makes the node convert (and say so)
        "tinyvla_policy.cameras.zed_right.encoding": "rgb8",
        "tinyvla_executor.control_rate": CONTROL_RATE,
        "tinyvla_executor.hold_after": HOLD_AFTER,
        # this module checks the hold_after watchdog with a 4 Hz policy: the shipped observation
        # deadline (0.18 s, test/faults) would hold between its chunks
        "tinyvla_executor.faults.max_observation_age": 0.0,
        "tinyvla_executor.action_dt": ACTION_DT,
    }
    log_dir = tmp_path_factory.mktemp("franka_logs")
    argv = [sys.executable, "-m", "tinyvla_ros.ros.graph", "franka", "--checkpoint", str(franka_checkpoint)]
    argv += ["--instruction", "pick up the red cube", "--log-dir", str(log_dir)]
    for key, value in settings.items():
        argv += ["--set", f"{key}={value}"]
    graph = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: rec["chunk"].count() >= 2, 120.0, "the first chunks")
        yield rig, sensors, rec, graph
    finally:
        if graph.poll() is None:
            graph.send_signal(signal.SIGINT)
        try:
            graph.wait(30.0)
        except subprocess.TimeoutExpired:
            graph.kill()
        rig.close()
        if graph.poll() is not None and not graph.stdout.closed:
            print(graph.stdout.read())
        print(read_logs(log_dir))


def _mode(rec) -> str:
    status = executor_mode(rec["status"])
    return "" if status is None else f"{status['mode']}/{status['actuation']}"


def test_chunks_carry_observation_stamp_names_and_offsets(franka):
    rig, sensors, rec, _ = franka
    msg = rec["chunk"].last()
    assert list(msg.joint_names) == ACTION_NAMES
    assert len(msg.points) == 16
    offsets = [duration_to_sec(p.time_from_start) for p in msg.points]
    assert offsets == pytest.approx([i * ACTION_DT for i in range(16)], abs=1e-6)
    stamp = stamp_to_sec(msg.header.stamp)
    published = [s for name in ("zed_left", "zed_right") for s in sensors.stamps[name]]
    assert min(abs(stamp - s) for s in published) < 1e-6, "chunk stamp is not a camera frame's stamp"
    assert all(math.isfinite(x) for p in msg.points for x in p.positions)


def test_preview_only_until_enabled_then_commands_at_configured_rate(franka):
    rig, sensors, rec, _ = franka
    wait_for(lambda: rec["preview"].count() > 20, 20.0, "preview messages")
    assert rec["commands"].count() == 0, "commands were sent while enable_actuation is false"
    assert rec["gripper"].count() == 0
    response = rig.call(SetBool, "/tinyvla_executor/enable", SetBool.Request(data=True))
    assert response.success, response.message
    wait_for(lambda: _mode(rec) == "run/True", 20.0, "mode run with actuation")
    start = time.monotonic()
    time.sleep(4.0)
    window = time.monotonic() - start
    commands = rec["commands"].messages(since=start)
    chunks = rec["chunk"].count(since=start)
    assert 0.5 * CONTROL_RATE * window <= len(commands) <= 1.2 * CONTROL_RATE * window + 2
    assert 0.2 * INFERENCE_RATE * window <= chunks <= 1.2 * INFERENCE_RATE * window + 1
    spec = load_robot_spec("fr3")
    q = np.array([m.data for m in commands])
    assert q.shape[1] == 7 and np.all(np.isfinite(q))
    assert np.all(q >= spec.position_lower) and np.all(q <= spec.position_upper)
    # per-command step limit, on consecutive control ticks (preview stamps one period apart: a
    # loaded machine may drop a sample between processes, which would look like a double step)
    previews = rec["preview"].messages(since=start)
    stamps = np.array([stamp_to_sec(m.header.stamp) for m in previews])
    pq = np.array([m.position[:7] for m in previews])
    consecutive = np.abs(np.diff(stamps) - 1.0 / CONTROL_RATE) < 0.2 / CONTROL_RATE
    assert consecutive.sum() > 20
    steps = np.abs(np.diff(pq, axis=0))[consecutive]
    assert np.all(steps <= spec.safety.max_step + 1e-9)
    assert rec["gripper"].count() >= 1 and rec["gripper"].last().data[0] in (0.0, 1.0)


def test_converted_encoding_is_reported(franka):
    rig, _, _, _ = franka
    status = rig.latest_status("tinyvla_policy")
    values = status_values(status)
    assert "zed_right: bgra8->rgb (expected rgb8)" in values["converted_streams"]
    assert int(values["frames_converted.zed_right"]) > 0
    assert float(values["inference_latency_p50_ms"]) > 0.0


def test_stopped_camera_makes_executor_hold_within_hold_after(franka):
    rig, sensors, rec, _ = franka
    sensors.stop_camera("zed_left")
    stopped = time.monotonic()
    try:
        held = wait_for(lambda: _mode(rec) == "hold/True", 10.0, "hold after the camera stopped")
        last_chunk = rec["chunk"].items()[-1][0]
        assert held - last_chunk <= HOLD_AFTER + 0.5, (
            "watchdog fired later than hold_after after the last chunk"
        )
        assert held - stopped <= MAX_AGE + HOLD_AFTER + 1.0 / INFERENCE_RATE + 1.0
        time.sleep(1.0)  # braking is over: the hold position is repeated, not the chunk replayed
        tail = np.array([m.data for m in rec["commands"].messages(since=time.monotonic() - 0.5)])
        assert len(tail) >= 5 and np.allclose(tail, tail[0], atol=1e-9)
        wait_for(
            lambda: rig.latest_status("tinyvla_policy", since=held) is not None, 10.0, "policy diagnostics"
        )
        values = status_values(rig.latest_status("tinyvla_policy", since=held))
        assert int(values.get("observations_rejected.stale", 0)) > 0
    finally:
        sensors.start_camera("zed_left")
    wait_for(lambda: _mode(rec) == "run/True", 20.0, "run again after the camera came back")


def test_nan_joint_state_gives_no_command(franka):
    rig, sensors, rec, _ = franka
    rig.follow_forward_commands("", enabled=False)
    good = sensors.joint_positions()
    bad = good.copy()
    bad[2] = float("nan")
    sensors.set_joint_positions(bad)
    try:
        wait_for(lambda: _mode(rec) == "idle/True", 10.0, "idle on NaN joint state")
        start = time.monotonic()
        time.sleep(1.5)
        assert rec["commands"].count(since=start) == 0
        assert rec["preview"].count(since=start) == 0
        status = rig.latest_status("tinyvla_executor", since=start)
        assert status.level == b"\x02" and "NaN" in status.message
    finally:
        sensors.set_joint_positions(good)
        rig.follow_forward_commands("", enabled=True)
    wait_for(lambda: rec["commands"].count(since=time.monotonic() - 0.3) > 3, 20.0, "commands again")


def test_unknown_encoding_is_a_diagnostics_error_not_a_crash(franka):
    rig, sensors, rec, graph = franka
    sensors.set_encoding("zed_left", "bayer_rggb8")
    start = time.monotonic()
    try:

        def reported() -> bool:
            status = rig.latest_status("tinyvla_policy", since=start)
            return status is not None and status.level == b"\x02" and "bayer_rggb8" in status.message

        wait_for(reported, 10.0, "a diagnostics ERROR naming the encoding")
        assert "zed_left" in rig.latest_status("tinyvla_policy", since=start).message
        wait_for(lambda: _mode(rec) == "hold/True", 10.0, "hold without decodable frames")
        assert graph.poll() is None, "a node died on an unknown encoding"
        assert all(c.is_running() for c in psutil.Process(graph.pid).children())
    finally:
        sensors.set_encoding("zed_left", "bgra8")
    wait_for(lambda: _mode(rec) == "run/True", 20.0, "run again with a decodable stream")


def test_instruction_from_latched_topic(franka):
    rig, _, _, _ = franka
    pub = rig.publish_latched("/instruction", "put the green cube in the bowl")
    start = time.monotonic()

    def updated() -> bool:
        status = rig.latest_status("tinyvla_policy", since=start)
        return status is not None and status_values(status)["instruction"] == "put the green cube in the bowl"

    wait_for(updated, 10.0, "the new instruction in diagnostics")
    rig.node.destroy_publisher(pub)


def test_enable_false_and_stop_end_commands(franka):
    rig, _, rec, _ = franka
    response = rig.call(SetBool, "/tinyvla_executor/enable", SetBool.Request(data=False))
    assert response.success
    wait_for(lambda: _mode(rec).endswith("/False"), 10.0, "actuation off")
    time.sleep(0.3)  # commands sent before the status may still be in flight on a loaded machine
    start = time.monotonic()
    time.sleep(1.0)
    assert rec["commands"].count(since=start) == 0  # at 100 Hz a gate left open would send ~100
    assert rec["preview"].count(since=start) > 10, "the preview stops with actuation"
    assert rig.call(SetBool, "/tinyvla_executor/enable", SetBool.Request(data=True)).success
    wait_for(
        lambda: rec["commands"].count(since=time.monotonic() - 0.3) > 3, 20.0, "commands after re-enable"
    )
    assert rig.call(Trigger, "/tinyvla_executor/stop", Trigger.Request()).success
    wait_for(lambda: _mode(rec).endswith("/False"), 10.0, "actuation off after ~/stop")
    start = time.monotonic()
    time.sleep(1.0)
    assert rec["commands"].count(since=start) == 0


def test_graph_command_fails_when_a_node_dies(franka):
    _, _, _, graph = franka
    assert graph.poll() is None
    children = psutil.Process(graph.pid).children()
    executor = [c for c in children if "tinyvla_ros.ros.executor_node" in " ".join(c.cmdline())]
    assert len(executor) == 1 and len(children) == 2
    os.kill(executor[0].pid, signal.SIGKILL)
    out, _ = graph.communicate(timeout=30.0)
    assert graph.returncode == 1, out
    psutil.wait_procs(children, timeout=10.0)
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    assert "node died: /tinyvla_executor" in out
