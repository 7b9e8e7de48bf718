"""DDS test harness for the ROS tests: a rig node in the test process, node processes around it.

``Rig`` owns its own rclpy context and a node spun by a SingleThreadedExecutor on a background
thread. It publishes synthetic camera streams and joint states (tinyvla_ros.ros.synthetic_sensors:
the real drivers' topic names and encodings), records any topic, reads /diagnostics, calls
services, and can act as a perfectly tracking position-controlled robot (joint states follow the
forward-position commands). Node processes are started with tinyvla_ros.ros.graph's GraphRunner
(the same code path as the ``tinyvla-graph`` console script), each with its own log file.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import Float64MultiArray, String

from tinyvla_ros.ros.graph import GraphRunner
from tinyvla_ros.ros.qos import latched_qos, reliable_qos
from tinyvla_ros.ros.synthetic_sensors import SyntheticCamera, SyntheticSensors, SyntheticSensorsConfig

FR3_HOME = [0.0, -0.7853981633974483, 0.0, -2.356194490192345, 0.0, 1.5707963267948966, 0.7853981633974483]
UR5_HOME = [0.0, -1.5707963267948966, 1.5707963267948966, -1.5707963267948966, -1.5707963267948966, 0.0]


class Recorder:
    """Keeps (monotonic receive time, message) of one topic."""

    def __init__(self, node, msg_type, topic: str, qos) -> None:
        self.topic = topic
        self._lock = threading.Lock()
        self._items: list[tuple[float, object]] = []
        self.sub = node.create_subscription(msg_type, topic, self._on_msg, qos)

    def _on_msg(self, msg) -> None:
        with self._lock:
            self._items.append((time.monotonic(), msg))

    def items(self, since: float = 0.0) -> list[tuple[float, object]]:
        with self._lock:
            return [(t, m) for t, m in self._items if t >= since]

    def messages(self, since: float = 0.0) -> list:
        return [m for _, m in self.items(since)]

    def count(self, since: float = 0.0) -> int:
        return len(self.items(since))

    def last(self):
        with self._lock:
            return self._items[-1][1] if self._items else None


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, period: float = 0.05) -> float:
    """Poll ``predicate`` until true; returns the monotonic time it became true; AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(period)
    raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")


class Rig:
    """The test process's side of a DDS test (see the module docstring)."""

    def __init__(self, name: str = "tinyvla_test_rig") -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        self.sensors: SyntheticSensors | None = None
        self.diagnostics = self.record(DiagnosticArray, "/diagnostics", reliable_qos(50))
        self._follow = False
        self._follow_lock = threading.Lock()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - the executor stops when the context shuts down
            pass

    def record(self, msg_type, topic: str, qos=None) -> Recorder:
        return Recorder(self.node, msg_type, topic, qos or reliable_qos(50))

    def start_sensors(self, cfg: SyntheticSensorsConfig) -> SyntheticSensors:
        self.sensors = SyntheticSensors(self.node, cfg)
        return self.sensors

    def follow_forward_commands(self, topic: str, enabled: bool = True) -> None:
        """Act as a perfectly tracking arm: joint states (first len(command) joints) = last command."""
        if not hasattr(self, "_follow_sub"):
            self._follow_sub = self.node.create_subscription(
                Float64MultiArray, topic, self._on_command, reliable_qos(10)
            )
        with self._follow_lock:
            self._follow = enabled

    def _on_command(self, msg: Float64MultiArray) -> None:
        with self._follow_lock:
            if not self._follow or self.sensors is None:
                return
        q = self.sensors.joint_positions()
        data = np.asarray(msg.data, dtype=np.float64)
        q[: len(data)] = data
        if np.all(np.isfinite(q)):
            self.sensors.set_joint_positions(q)

    def publish_latched(self, topic: str, text: str):
        pub = self.node.create_publisher(String, topic, latched_qos())
        pub.publish(String(data=text))
        return pub

    def call(self, srv_type, name: str, request, timeout: float = 10.0):
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise AssertionError(f"service {name} not available")
            future = client.call_async(request)
            wait_for(future.done, timeout, f"response of {name}")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def latest_status(self, name_prefix: str, since: float = 0.0):
        """Newest DiagnosticStatus whose name starts with ``name_prefix`` (or None)."""
        for msg in reversed(self.diagnostics.messages(since)):
            for status in msg.status:
                if status.name.startswith(name_prefix):
                    return status
        return None

    def close(self) -> None:
        # stop spinning first, so nothing is destroyed under a running callback
        self.executor.shutdown(timeout_sec=10.0)
        self._thread.join(timeout=10.0)
        if self.sensors is not None:
            self.sensors.destroy()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def status_values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def executor_mode(recorder: Recorder) -> dict | None:
    """Parse the newest ~/status message of the executor (JSON)."""
    msg = recorder.last()
    return None if msg is None else json.loads(msg.data)


def cameras(specs: list[tuple[str, str, str]], width: int = 64, height: int = 48, rate: float = 15.0):
    """[(name, topic, encoding)] -> SyntheticCamera list."""
    return [SyntheticCamera(n, t, e, width, height, rate) for n, t, e in specs]


def franka_sensors(joint_rate: float) -> SyntheticSensorsConfig:
    """Two ZED 2 streams (bgra8, 64x48 at 15 Hz) and the FR3's joint states at home, hand open."""
    return SyntheticSensorsConfig(
        cameras(
            [
                ("zed_left", "/zed_left/zed_node/rgb/color/rect/image", "bgra8"),
                ("zed_right", "/zed_right/zed_node/rgb/color/rect/image", "bgra8"),
            ]
        ),
        [f"fr3_joint{i}" for i in range(1, 8)] + ["fr3_finger_joint1"],
        [*FR3_HOME, 0.04],
        joint_rate=joint_rate,
    )


def start_graph(specs, log_dir: Path, startup_timeout: float = 150.0) -> GraphRunner:
    """Start node processes and bring lifecycle nodes to active; logs under ``log_dir``."""
    runner = GraphRunner(specs, log_dir=log_dir)
    runner.start()
    try:
        runner.activate_lifecycle_nodes(startup_timeout)
    except Exception:
        runner.stop()
        print(read_logs(log_dir))
        raise
    return runner


def read_logs(log_dir: Path, tail: int = 40) -> str:
    out = []
    for path in sorted(Path(log_dir).glob("*.log")):
        lines = path.read_text(errors="replace").splitlines()[-tail:]
        out.append(f"==== {path.name}\n" + "\n".join(lines))
    return "\n".join(out)
