"""A listener node that records what a running graph does: used by ``make demo``, tests and benchmarks.

``GraphMonitor`` subscribes (reliable QoS) to /diagnostics, /joint_states, the executor's
~/preview and ~/status, the fake robot's ~/success and ~/limit_violations, optional command
topics and camera image topics, and keeps:

- ``diagnostics[name]``: the latest values dict of each DiagnosticStatus (level/message in
  ``levels``, the array's header stamp in ``diag_stamps``);
- ``measured`` / ``commanded``: (stamp s, {joint: position}) samples of /joint_states and preview;
- ``frames[camera]``: (stamp s, (H, W, 3) uint8 RGB) images, at most one per ``frame_every`` s;
- ``statuses``: executor ~/status transitions (wall s, {"mode", "reason", "actuation"});
- ``command_times[topic]``: wall receive times of each command message.

It spins its own executor on a background thread in a private rclpy context.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, String, UInt32
from std_srvs.srv import Trigger

from tinyvla_ros.ros.conversions import image_to_rgb, stamp_to_sec
from tinyvla_ros.ros.qos import latched_qos, reliable_qos

FAKE = "/tinyvla_fake_robot"
EXECUTOR = "/tinyvla_executor"


def _parse(value: str) -> Any:
    """A diagnostics value string -> int | float | bool | str."""
    if value in ("True", "False"):
        return value == "True"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


class GraphMonitor:
    """Records a graph's topics (see the module docstring); ``close()`` when done."""

    def __init__(
        self,
        camera_topics: dict[str, str] | None = None,
        command_topics: list[tuple[str, type]] | None = None,
        frame_every: float = 0.0,
        name: str = "tinyvla_graph_monitor",
    ) -> None:
        self._lock = threading.Lock()
        self.diagnostics: dict[str, dict[str, Any]] = {}
        self.levels: dict[str, tuple[int, str]] = {}
        self.diag_stamps: dict[str, float] = {}
        self.measured: list[tuple[float, dict[str, float]]] = []
        self.commanded: list[tuple[float, dict[str, float]]] = []
        self.frames: dict[str, list[tuple[float, Any]]] = defaultdict(list)
        self.frame_counts: dict[str, int] = defaultdict(int)
        self.statuses: list[tuple[float, dict]] = []
        self.command_times: dict[str, list[float]] = defaultdict(list)
        self.success: list[bool] = []
        self.limit_violations = 0
        self.instruction = ""
        self._frame_every = frame_every
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node(name, context=self.context)
        self._subscribe(camera_topics or {}, command_topics or [])
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except Exception:  # noqa: BLE001 - the context goes away at close()
            pass

    def _subscribe(self, cameras: dict[str, str], commands: list[tuple[str, type]]) -> None:
        n, qos = self.node, reliable_qos(50)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, qos)
        n.create_subscription(JointState, "/joint_states", self._joint_cb(self.measured), qos)
        n.create_subscription(JointState, f"{EXECUTOR}/preview", self._joint_cb(self.commanded), qos)
        n.create_subscription(String, f"{EXECUTOR}/status", self._on_status, latched_qos())
        n.create_subscription(
            Bool, f"{FAKE}/success", lambda m: self._append(self.success, bool(m.data)), latched_qos()
        )
        n.create_subscription(UInt32, f"{FAKE}/limit_violations", self._on_violations, latched_qos())
        n.create_subscription(String, "instruction", self._on_instruction, latched_qos())
        for camera, topic in cameras.items():
            n.create_subscription(Image, topic, self._image_cb(camera), reliable_qos(10))
        for topic, msg_type in commands:
            n.create_subscription(msg_type, topic, self._command_cb(topic), qos)

    # --- callbacks ------------------------------------------------------------------------

    def _append(self, target: list, item: Any) -> None:
        with self._lock:
            target.append(item)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self._lock:
            for status in msg.status:
                self.diagnostics[status.name] = {kv.key: _parse(kv.value) for kv in status.values}
                self.diag_stamps[status.name] = stamp_to_sec(msg.header.stamp)
                level = status.level[0] if isinstance(status.level, bytes) else int(status.level)
                self.levels[status.name] = (level, status.message)

    def _joint_cb(self, target: list):
        def callback(msg: JointState) -> None:
            sample = (stamp_to_sec(msg.header.stamp), dict(zip(msg.name, msg.position, strict=False)))
            self._append(target, sample)

        return callback

    def _on_status(self, msg: String) -> None:
        self._append(self.statuses, (time.monotonic(), json.loads(msg.data)))

    def _on_violations(self, msg: UInt32) -> None:
        with self._lock:
            self.limit_violations = int(msg.data)

    def _on_instruction(self, msg: String) -> None:
        with self._lock:
            self.instruction = msg.data

    def _image_cb(self, camera: str):
        def callback(msg: Image) -> None:
            stamp = stamp_to_sec(msg.header.stamp)
            with self._lock:
                self.frame_counts[camera] += 1
                frames = self.frames[camera]
                keep = self._frame_every > 0 and (not frames or stamp - frames[-1][0] >= self._frame_every)
            if keep:
                self._append(frames, (stamp, image_to_rgb(msg)))

        return callback

    def _command_cb(self, topic: str):
        def callback(_msg) -> None:
            self._append(self.command_times[topic], time.monotonic())

        return callback

    def clear(self) -> None:
        """Forget the recorded samples (e.g. once the graph is up); the latest status/success stay."""
        with self._lock:
            self.measured.clear()
            self.commanded.clear()
            self.frames.clear()
            self.command_times.clear()
            del self.statuses[:-1]
            del self.success[:-1]

    # --- queries --------------------------------------------------------------------------

    def diag(self, prefix: str) -> dict[str, Any]:
        """Latest diagnostics values of the status whose name starts with ``prefix`` ({} if none)."""
        return self.diag_with_stamp(prefix)[1]

    def diag_with_stamp(self, prefix: str) -> tuple[float, dict[str, Any]]:
        """(header stamp s on the publisher's clock, values) of the latest matching status."""
        with self._lock:
            for name, values in self.diagnostics.items():
                if name.startswith(prefix):
                    return self.diag_stamps[name], dict(values)
        return float("nan"), {}

    def wait_for(self, predicate, timeout: float, what: str, poll: float = 0.05) -> None:
        """Poll ``predicate()`` until true; TimeoutError naming ``what`` otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(poll)
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")

    def mode(self) -> str:
        """The executor's latest ~/status mode ('' before the first)."""
        with self._lock:
            return self.statuses[-1][1].get("mode", "") if self.statuses else ""

    # --- talking to the fake robot --------------------------------------------------------

    def set_fake_parameters(self, timeout: float = 10.0, **values: Any) -> None:
        """Set parameters of the fake robot (e.g. cameras_paused=["zed_left"]); RuntimeError if refused."""
        client = self.node.create_client(SetParameters, f"{FAKE}/set_parameters")
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise RuntimeError(f"{FAKE}/set_parameters is not available")
            request = SetParameters.Request(
                parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
            )
            result = self._call(client, request, timeout)
            refused = [r.reason for r in result.results if not r.successful]
            if refused:
                raise RuntimeError(f"fake robot refused {values}: {refused}")
        finally:
            self.node.destroy_client(client)

    def reset_fake(self, timeout: float = 15.0) -> str:
        """Call the fake robot's ~/reset; returns its message, RuntimeError when it fails."""
        client = self.node.create_client(Trigger, f"{FAKE}/reset")
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise RuntimeError(f"{FAKE}/reset is not available")
            result = self._call(client, Trigger.Request(), timeout)
            if not result.success:
                raise RuntimeError(f"{FAKE}/reset failed: {result.message}")
            return result.message
        finally:
            self.node.destroy_client(client)

    def _call(self, client, request, timeout: float):
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout):
            raise RuntimeError(f"service {client.srv_name} did not answer within {timeout} s")
        return future.result()

    def close(self) -> None:
        """Stop spinning and free the context."""
        self._executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)
