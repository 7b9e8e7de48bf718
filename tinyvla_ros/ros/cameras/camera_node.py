"""What the RealSense and ZED nodes share: parameters -> dataclass, capture workers, publishers,
/diagnostics, main().

A camera node owns one CaptureWorker per camera (its own thread: open, read, stamp, publish,
reconnect) and one diagnostics timer on the executor. ``__init__`` only declares parameters,
publishers and the timer; ``start()`` starts the capture threads (main() calls it), and
``shutdown()`` stops them.
"""

from __future__ import annotations

import threading
import time
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from tinyvla_ros.ros.cameras.clock import FrameClockConfig
from tinyvla_ros.ros.cameras.frames import CapturedFrame, FrameSource, SourceInfo
from tinyvla_ros.ros.cameras.messages import (
    camera_info_msg,
    diagnostic_status,
    image_msg,
    image_qos,
    info_qos,
    stamp_msg,
)
from tinyvla_ros.ros.cameras.worker import CaptureWorker, WorkerConfig
from tinyvla_ros.ros.entry import run_node

# --- parameters ------------------------------------------------------------------------------------

_SCALARS = {bool: "bool", int: "int", float: "float", str: "str"}


def _kind(tp: Any) -> str:
    if tp in _SCALARS:
        return _SCALARS[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list and args and args[0] in _SCALARS:
        return f"list[{_SCALARS[args[0]]}]"
    raise TypeError(f"cannot declare a ROS parameter of type {tp!r}")


def _coerce(name: str, kind: str, value: Any) -> Any:
    """A parameter value as the field's kind. Serial numbers given as integers become strings."""
    if kind.startswith("list["):
        if not isinstance(value, list | tuple):
            raise ValueError(f"parameter {name!r} must be a list, got {value!r}")
        return [_coerce(name, kind[5:-1], v) for v in value]
    if kind == "float" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind == "str" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # serial_no: 123456789012 in YAML
    expected = {"bool": bool, "int": int, "str": str, "float": float}[kind]
    if not isinstance(value, expected) or (kind == "int" and isinstance(value, bool)):
        raise ValueError(f"parameter {name!r} must be of type {kind}, got {value!r}")
    return value


def check_common_parameters(cfg: Any) -> None:
    """Validate the fields every camera node config shares; ValueError names the parameter and value."""
    from tinyvla_ros.ros.cameras.clock import TIMESTAMP_MODES
    from tinyvla_ros.ros.cameras.messages import RELIABILITIES

    if cfg.timestamp_mode not in TIMESTAMP_MODES:
        raise ValueError(
            f"parameter 'timestamp_mode' must be one of {list(TIMESTAMP_MODES)}, got {cfg.timestamp_mode!r}"
        )
    if cfg.qos_reliability not in RELIABILITIES:
        raise ValueError(
            f"parameter 'qos_reliability' must be one of {list(RELIABILITIES)}, got {cfg.qos_reliability!r}"
        )
    for key in ("qos_depth", "diagnostics_period_s"):
        if not getattr(cfg, key) > 0:
            raise ValueError(f"parameter {key!r} must be > 0, got {getattr(cfg, key)!r}")


def declare_config(node: Node, cls: type) -> Any:
    """Declare every field of dataclass ``cls`` as a typed parameter of ``node``, read it, build ``cls``.

    The field default is the parameter default; metadata "doc" its description. A wrong type or a
    failed check raises ValueError naming the parameter and the value.
    """
    hints = typing.get_type_hints(cls)
    values = {}
    for f in fields(cls):
        default = f.default if f.default is not MISSING else f.default_factory()
        descriptor = ParameterDescriptor(description=f.metadata.get("doc", ""), dynamic_typing=True)
        if not node.has_parameter(f.name):
            node.declare_parameter(f.name, default, descriptor)
        values[f.name] = _coerce(f.name, _kind(hints[f.name]), node.get_parameter(f.name).value)
    return cls(**values)


# --- the node base -------------------------------------------------------------------------------------


@dataclass
class CameraOutput:
    """Where one camera's streams go: stream -> (image topic, camera_info topic)."""

    key: str
    topics: dict[str, tuple[str, str]]


class CameraNodeBase(Node):
    """Publishes frames from capture workers on wrapper-compatible topics; /diagnostics per camera."""

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.workers: dict[str, CaptureWorker] = {}
        self._pubs: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._calib: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._use_sim_time = bool(self.get_parameter("use_sim_time").value)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", info_qos())

    def _setup(self, diagnostics_period_s: float, reliability: str, depth: int) -> None:
        self._image_qos = image_qos(reliability, depth)
        self._diag_timer = self.create_timer(diagnostics_period_s, self.publish_diagnostics)

    def add_camera(
        self,
        output: CameraOutput,
        source: FrameSource,
        worker_config: WorkerConfig,
        clock_config: FrameClockConfig,
    ) -> CaptureWorker:
        """Create the publishers and the (not yet started) capture worker of one camera."""
        for stream, (image_topic, info_topic) in output.topics.items():
            self._pubs[(output.key, stream)] = (
                self.create_publisher(Image, image_topic, self._image_qos),
                self.create_publisher(CameraInfo, info_topic, info_qos()),
            )
        worker = CaptureWorker(
            worker_config,
            source,
            on_open=lambda info, key=output.key: self._on_open(key, info),
            on_frame=lambda frame, stamp, key=output.key: self._on_frame(key, frame, stamp),
            logger=self.get_logger(),
            clock_config=clock_config,
        )
        self.workers[output.key] = worker
        return worker

    def start(self) -> None:
        """Start every camera's capture thread."""
        for worker in self.workers.values():
            worker.start()

    def shutdown(self) -> None:
        """Stop the capture threads and close the cameras."""
        for worker in self.workers.values():
            worker.stop()

    # --- capture-thread callbacks ------------------------------------------------------------------

    def _on_open(self, key: str, info: SourceInfo) -> None:
        with self._lock:
            self._calib[key] = dict(info.calibration)

    def ros_offset_ns(self) -> int:
        """ROS time minus system time: 0 on wall time, the sim-clock offset with use_sim_time."""
        if not self._use_sim_time:
            return 0
        return self.get_clock().now().nanoseconds - time.time_ns()

    def _on_frame(self, key: str, frame: CapturedFrame, stamp_ns: int) -> int | None:
        """Publish the image and its CameraInfo; returns the system time (ns) the image was published."""
        pubs = self._pubs.get((key, frame.stream))
        if pubs is None:
            return None  # a stream this node does not publish
        with self._lock:
            calib = self._calib.get(key, {}).get(frame.stream)
        if calib is None:
            raise RuntimeError(f"no calibration for stream {frame.stream}")
        stamp = stamp_ns + self.ros_offset_ns()
        image_pub, info_pub = pubs
        image_pub.publish(image_msg(frame.image, frame.encoding, stamp, calib.frame_id))
        published_ns = time.time_ns()
        info_pub.publish(camera_info_msg(calib, stamp))
        return published_ns

    # --- diagnostics ------------------------------------------------------------------------------------

    def publish_diagnostics(self) -> None:
        """One DiagnosticStatus per camera on /diagnostics."""
        msg = DiagnosticArray()
        msg.header.stamp = stamp_msg(max(0, self.get_clock().now().nanoseconds))
        for key, worker in self.workers.items():
            report = worker.health.report()
            hardware_id = worker.health.hardware_id or key
            msg.status.append(diagnostic_status(f"{self.get_name()}: {key}", hardware_id, report))
        self._diag_pub.publish(msg)


def run_camera_node(factory: Callable[[], CameraNodeBase], argv: list[str] | None = None) -> int:
    """A camera node's main(): start capture, spin until shutdown, stop capture; 2 on a configuration error."""
    return run_node(
        factory,
        argv,
        errors=(ValueError, ImportError),  # a bad parameter, a missing camera SDK
        error_format="error: {exc}",
        before_spin=lambda node: node.start(),
        on_shutdown=lambda node: node.shutdown(),
    )
