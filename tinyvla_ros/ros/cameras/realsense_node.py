"""RealSense D4xx node on pyrealsense2, publishing what realsense2_camera publishes.

Per camera (topics as realsense2_camera; <ns>/<name> = camera_namespace / camera_name, by default
the node's namespace and name, as rs_launch.py starts it; a bare start gives /camera/camera/...):
  /<ns>/<name>/color/image_raw                   sensor_msgs/Image rgb8
  /<ns>/<name>/color/camera_info                 sensor_msgs/CameraInfo from the device intrinsics
  /<ns>/<name>/aligned_depth_to_color/image_raw  16UC1 (enable_depth, align_depth) + camera_info
  /<ns>/<name>/depth/image_rect_raw              16UC1 (enable_depth, align_depth false) + camera_info
  /diagnostics                                   one status per camera: rate, drops, latency, state

One camera per node (``serial_no``, like realsense2_camera) or several (``camera_names`` with
``serial_nos``, and ``camera_namespaces`` with one entry per camera or one for all). A recording
(rosbag2 .db3 from rs.recorder / realsense-viewer) plays through ``rosbag_filename``.
Stamps: see clock.py (global/system time used as is, hardware clock offset-estimated).

    python -m tinyvla_ros.ros.cameras.realsense_node --ros-args -p serial_no:=_123456789012 \
        -p camera_namespace:=camera_top -p camera_name:=camera
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tinyvla_ros.ros.cameras.camera_node import (
    CameraNodeBase,
    CameraOutput,
    check_common_parameters,
    declare_config,
    run_camera_node,
)
from tinyvla_ros.ros.cameras.clock import FrameClockConfig
from tinyvla_ros.ros.cameras.frames import FrameSource
from tinyvla_ros.ros.cameras.messages import realsense_topics
from tinyvla_ros.ros.cameras.realsense_source import SYNC_MODES, PipelineSource, RealSenseStreamConfig
from tinyvla_ros.ros.cameras.worker import WorkerConfig

NODE_NAME = "camera"  # rs_launch.py names the node after camera_name (default camera)


def _doc(text: str, **kw: Any) -> Any:
    return field(metadata={"doc": text}, **kw)


@dataclass
class RealSenseCameraSpec:
    """One camera of the node: topic namespace and name, serial ('' = first found), sync mode."""

    namespace: str
    name: str
    serial: str
    sync_mode: int

    @property
    def key(self) -> str:
        """'<namespace>/<name>': identifies the camera in logs, diagnostics and injected sources."""
        return f"{self.namespace}/{self.name}".strip("/")


@dataclass
class RealSenseNodeConfig:
    """Parameters of the RealSense node (names follow realsense2_camera where it has one)."""

    camera_namespace: str = _doc(
        "topic namespace ('' = the node's namespace, or 'camera' at the root, as rs_launch.py)", default=""
    )
    camera_name: str = _doc(
        "camera name: topics /<ns>/<name>/..., frames <name>_color_optical_frame ('' = the node's name)",
        default="",
    )
    serial_no: str = _doc("serial number ('' = first camera found; '_123' accepted)", default="")
    camera_names: list[str] = _doc(
        "several cameras in this node: one name each (overrides camera_name)", default_factory=list
    )
    camera_namespaces: list[str] = _doc(
        "namespace per camera, or one for all ([] = camera_namespace)", default_factory=list
    )
    serial_nos: list[str] = _doc(
        "serial per camera in camera_names (required with several cameras)", default_factory=list
    )
    inter_cam_sync_modes: list[int] = _doc(
        "hardware sync mode per camera ([] = inter_cam_sync_mode)", default_factory=list
    )
    inter_cam_sync_mode: int = _doc("0 default, 1 master, 2 slave, 3 full slave (depth sensor)", default=0)
    rosbag_filename: str = _doc("play this recording (.db3/.bag) instead of a camera", default="")
    rosbag_loop: bool = _doc("replay the recording forever", default=False)
    rosbag_realtime: bool = _doc("play the recording at its recorded rate", default=True)
    width: int = _doc("colour width (px)", default=640)
    height: int = _doc("colour height (px)", default=480)
    fps: int = _doc("frame rate (colour and depth)", default=30)
    enable_depth: bool = _doc("publish depth (16UC1)", default=False)
    align_depth: bool = _doc("depth aligned to colour (else raw depth on depth/image_rect_raw)", default=True)
    depth_width: int = _doc("depth width (px)", default=640)
    depth_height: int = _doc("depth height (px)", default=480)
    global_time_enabled: bool = _doc("librealsense maps device time onto the host clock", default=True)
    timestamp_mode: str = _doc("auto (frame time, see README) | arrival (host arrival time)", default="auto")
    queue_size: int = _doc("frames buffered per stream before the oldest is dropped", default=2)
    frame_timeout_s: float = _doc("no frame for this long -> diagnostics ERROR", default=1.0)
    reconnect_timeout_s: float = _doc("no frame for this long -> reopen the camera", default=2.0)
    reconnect_period_s: float = _doc("seconds between attempts to open a missing camera", default=1.0)
    qos_reliability: str = _doc(
        "image QoS: reliable (realsense2_camera default) | best_effort", default="reliable"
    )
    qos_depth: int = _doc("image QoS history depth", default=5)
    diagnostics_period_s: float = _doc("seconds between /diagnostics messages", default=1.0)

    def __post_init__(self) -> None:
        check_common_parameters(self)
        modes = self.inter_cam_sync_modes or [self.inter_cam_sync_mode]
        bad = [m for m in modes if m not in SYNC_MODES]
        if bad:
            raise ValueError(f"parameter 'inter_cam_sync_mode(s)' must be in {sorted(SYNC_MODES)}, got {bad}")
        self.stream_config("camera")  # validates the stream fields
        self.worker_config("camera")  # validates the timing fields
        self.cameras("camera", "camera")  # validates the camera lists

    def cameras(self, node_namespace: str, node_name: str) -> list[RealSenseCameraSpec]:
        """The cameras of this node, lists broadcast and checked.

        Empty camera_namespace / camera_name fall back to the node's namespace ('camera' at the
        root) and name, as rs_launch.py starts realsense2_camera (node name = camera_name).
        """
        namespace = self.camera_namespace or node_namespace.strip("/") or "camera"
        if not self.camera_names:
            name = self.camera_name or node_name
            return [
                RealSenseCameraSpec(namespace, name, self.serial_no.lstrip("_"), self.inter_cam_sync_mode)
            ]
        n = len(self.camera_names)
        namespaces = self._per_camera("camera_namespaces", self.camera_namespaces or [namespace], n)
        serials = self._per_camera("serial_nos", self.serial_nos, n)
        modes = self._per_camera(
            "inter_cam_sync_modes", self.inter_cam_sync_modes or [self.inter_cam_sync_mode], n
        )
        if self.rosbag_filename:
            raise ValueError(
                f"parameter 'rosbag_filename' plays one recording: use one node per file, not camera_names={self.camera_names}"
            )
        if n > 1 and not all(serials):
            raise ValueError(
                f"parameter 'serial_nos' must name every camera when several run in one node, got {serials}"
            )
        specs = [
            RealSenseCameraSpec(ns, name, s.lstrip("_"), m)
            for ns, name, s, m in zip(namespaces, self.camera_names, serials, modes, strict=True)
        ]
        keys = [s.key for s in specs]
        if len(set(keys)) != len(keys) or not all(self.camera_names):
            raise ValueError(
                f"parameter 'camera_names' must give distinct non-empty namespace/name pairs, got {keys}"
            )
        if len({s.serial for s in specs}) != len(specs):
            raise ValueError(f"parameter 'serial_nos' must not repeat a serial, got {serials}")
        return specs

    @staticmethod
    def _per_camera(name: str, values: list, n: int) -> list:
        if len(values) == n:
            return list(values)
        if len(values) == 1:
            return list(values) * n
        if not values and name == "serial_nos" and n == 1:
            return [""]
        raise ValueError(f"parameter {name!r} needs 1 or {n} entries (one per camera_names), got {values}")

    def stream_config(self, camera_name: str, sync_mode: int | None = None) -> RealSenseStreamConfig:
        """The stream settings of one camera."""
        return RealSenseStreamConfig(
            camera_name=camera_name,
            width=self.width,
            height=self.height,
            fps=self.fps,
            enable_depth=self.enable_depth,
            align_depth=self.align_depth,
            depth_width=self.depth_width,
            depth_height=self.depth_height,
            inter_cam_sync_mode=self.inter_cam_sync_mode if sync_mode is None else sync_mode,
            global_time_enabled=self.global_time_enabled,
            queue_size=self.queue_size,
        )

    def worker_config(self, key: str) -> WorkerConfig:
        """The capture-thread timing of one camera."""
        return WorkerConfig(
            name=key,
            frame_timeout_s=self.frame_timeout_s,
            reconnect_timeout_s=self.reconnect_timeout_s,
            reconnect_period_s=self.reconnect_period_s,
        )


class RealSenseNode(CameraNodeBase):
    """The RealSense node (see the module docstring).

    ``sources`` replaces the pyrealsense2 pipeline of cameras by key '<namespace>/<name>'
    (e.g. a SensorSource on a software device); other cameras use a PipelineSource.
    """

    def __init__(
        self, sources: Mapping[str, FrameSource] | None = None, node_name: str = NODE_NAME, **kwargs: Any
    ) -> None:
        super().__init__(node_name, **kwargs)
        self.cfg: RealSenseNodeConfig = declare_config(self, RealSenseNodeConfig)
        self._setup(self.cfg.diagnostics_period_s, self.cfg.qos_reliability, self.cfg.qos_depth)
        sources = dict(sources or {})
        clock = FrameClockConfig(mode=self.cfg.timestamp_mode)
        for spec in self.cfg.cameras(self.get_namespace(), self.get_name()):
            stream_cfg = self.cfg.stream_config(spec.name, spec.sync_mode)
            source = sources.pop(spec.key, None) or self._pipeline(spec, stream_cfg)
            streams = ["color"] + ([stream_cfg.depth_stream] if self.cfg.enable_depth else [])
            topics = {s: realsense_topics(spec.namespace, spec.name, s) for s in streams}
            self.add_camera(CameraOutput(spec.key, topics), source, self.cfg.worker_config(spec.key), clock)
        if sources:
            raise ValueError(
                f"sources given for unknown cameras {sorted(sources)}; cameras are {list(self.workers)}"
            )

    def _pipeline(self, spec: RealSenseCameraSpec, stream_cfg: RealSenseStreamConfig) -> PipelineSource:
        return PipelineSource(
            stream_cfg,
            serial=spec.serial,
            rosbag_filename=self.cfg.rosbag_filename,
            rosbag_loop=self.cfg.rosbag_loop,
            realtime=self.cfg.rosbag_realtime,
        )


def main(argv: list[str] | None = None) -> int:
    """``python -m tinyvla_ros.ros.cameras.realsense_node --ros-args -p ...``"""
    return run_camera_node(RealSenseNode, argv)


if __name__ == "__main__":
    raise SystemExit(main())
