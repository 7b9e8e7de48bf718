"""ZED 2 node on the ZED SDK Python API, publishing what zed_wrapper publishes for the rgb image.

Topics (``topic_generation``; <name> = camera_name, else the node's namespace as
zed_camera.launch.py sets it; the node is called zed_node like the wrapper's):
  current /<name>/zed_node/rgb/color/rect/image  + .../rgb/color/rect/camera_info   (wrapper >= 5.1)
  legacy  /<name>/zed_node/rgb/image_rect_color  + .../rgb/camera_info
  /diagnostics  rate, SDK-dropped frames, latency, reconnection state
Image: the rectified left image, bgra8 as the wrapper publishes (or rgb8 with ``encoding``),
stamped with the SDK's image capture time; CameraInfo from the rectified calibration, frame id
<camera_name>_left_camera_frame_optical (current) or <camera_name>_left_camera_optical_frame (legacy).

Needs the Stereolabs ZED SDK (pyzed.sl); without it the node exits with a message naming the
installer (the camera_driver:=wrapper set-up needs nothing from us).

    python -m tinyvla_ros.ros.cameras.zed_node --ros-args -p camera_name:=zed_left \
        -p serial_number:=12345678
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tinyvla_ros.core.camera_calib import zed_rgb_topics
from tinyvla_ros.ros.cameras.camera_node import (
    CameraNodeBase,
    CameraOutput,
    check_common_parameters,
    declare_config,
    run_camera_node,
)
from tinyvla_ros.ros.cameras.clock import FrameClockConfig
from tinyvla_ros.ros.cameras.frames import FrameSource
from tinyvla_ros.ros.cameras.worker import WorkerConfig
from tinyvla_ros.ros.cameras.zed_source import ZedSource, ZedSourceConfig, import_zed_sdk

NODE_NAME = "zed_node"


def _doc(text: str, **kw: Any) -> Any:
    return field(metadata={"doc": text}, **kw)


@dataclass
class ZedNodeConfig:
    """Parameters of the ZED node (names follow zed_wrapper's where it has one)."""

    camera_name: str = _doc(
        "camera name: topics /<camera_name>/<node name>/..., frame ids ('' = the node's namespace, or 'zed')",
        default="",
    )
    camera_model: str = _doc(
        "zed | zedm | zed2 | zed2i | zedx | zedxm (checked against the camera)", default="zed2"
    )
    serial_number: int = _doc("open the camera with this serial (0 = use camera_id)", default=0)
    camera_id: int = _doc("open the camera with this id (-1 = first found)", default=-1)
    svo_file: str = _doc("play this SVO recording instead of a camera", default="")
    grab_resolution: str = _doc("HD2K | HD1080 | HD1200 | HD720 | SVGA | VGA | AUTO", default="HD720")
    grab_frame_rate: int = _doc("grab rate (fps)", default=30)
    encoding: str = _doc("bgra8 (zed_wrapper) | rgb8", default="bgra8")
    topic_generation: str = _doc(
        "zed_wrapper topic names: current (>= 5.1) | legacy (older)", default="current"
    )
    timestamp_mode: str = _doc("auto (SDK capture time) | arrival (host arrival time)", default="auto")
    frame_timeout_s: float = _doc("no frame for this long -> diagnostics ERROR", default=1.0)
    reconnect_timeout_s: float = _doc("no frame for this long -> reopen the camera", default=3.0)
    reconnect_period_s: float = _doc("seconds between attempts to open a missing camera", default=2.0)
    qos_reliability: str = _doc("image QoS: reliable (zed_wrapper default) | best_effort", default="reliable")
    qos_depth: int = _doc("image QoS history depth", default=5)
    diagnostics_period_s: float = _doc("seconds between /diagnostics messages", default=1.0)

    def __post_init__(self) -> None:
        check_common_parameters(self)
        self.source_config("zed")
        self.worker_config("zed")

    def resolved_name(self, node_namespace: str) -> str:
        """camera_name, else the node's namespace (zed_camera.launch.py: namespace = camera_name), else 'zed'."""
        return self.camera_name or node_namespace.strip("/").split("/")[-1] or "zed"

    def source_config(self, camera_name: str) -> ZedSourceConfig:
        """What the ZED source opens."""
        return ZedSourceConfig(
            camera_name=camera_name,
            camera_model=self.camera_model,
            serial_number=self.serial_number,
            camera_id=self.camera_id,
            svo_file=self.svo_file,
            resolution=self.grab_resolution,
            fps=self.grab_frame_rate,
            encoding=self.encoding,
            topic_generation=self.topic_generation,
        )

    def worker_config(self, camera_name: str) -> WorkerConfig:
        """Capture-thread timing."""
        return WorkerConfig(
            name=camera_name,
            frame_timeout_s=self.frame_timeout_s,
            reconnect_timeout_s=self.reconnect_timeout_s,
            reconnect_period_s=self.reconnect_period_s,
        )


class ZedNode(CameraNodeBase):
    """The ZED node (see the module docstring). ``source`` replaces the SDK camera (tests)."""

    def __init__(self, source: FrameSource | None = None, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.cfg: ZedNodeConfig = declare_config(self, ZedNodeConfig)
        self._setup(self.cfg.diagnostics_period_s, self.cfg.qos_reliability, self.cfg.qos_depth)
        name = self.cfg.resolved_name(self.get_namespace())
        if source is None:
            import_zed_sdk()  # fail at start-up, with the installer's name, not in the capture thread
            source = ZedSource(self.cfg.source_config(name))
        topics = {"color": zed_rgb_topics(name, self.cfg.topic_generation, self.get_name())}
        clock = FrameClockConfig(mode=self.cfg.timestamp_mode)
        self.add_camera(CameraOutput(name, topics), source, self.cfg.worker_config(name), clock)


def main(argv: list[str] | None = None) -> int:
    """``python -m tinyvla_ros.ros.cameras.zed_node --ros-args -p ...``"""
    return run_camera_node(ZedNode, argv)


if __name__ == "__main__":
    raise SystemExit(main())
