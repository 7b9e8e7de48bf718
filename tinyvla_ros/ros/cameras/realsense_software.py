"""A D435i-shaped pyrealsense2 software device: drives the RealSense node without a camera.

librealsense's software device is a real ``rs.device`` whose frames the application pushes: the
node's SensorSource opens it exactly like hardware, and ``record()`` writes a rosbag2 .db3 that
``rs.config.enable_device_from_file`` plays back through the node's PipelineSource. Used by the
tests, the benchmark and anyone checking a graph on a machine without cameras.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tinyvla_ros.ros.cameras.frames import TIMESTAMP_DOMAINS
from tinyvla_ros.ros.cameras.realsense_source import import_pyrealsense2


@dataclass
class SoftwareCameraConfig:
    """Streams and intrinsics of the software camera (pixels; coeffs: librealsense's five)."""

    serial: str = "000000000001"
    name: str = "Intel RealSense D435I (software)"
    width: int = 640
    height: int = 480
    fps: int = 30
    fx: float = 615.0
    fy: float = 615.0
    cx: float = -1.0  # -1: width / 2
    cy: float = -1.0  # -1: height / 2
    model: str = "inverse_brown_conrady"
    coeffs: Sequence[float] = field(default_factory=lambda: [0.0] * 5)
    enable_depth: bool = False
    depth_units: float = 0.001
    d400_options: bool = True  # global_time_enabled on each sensor, inter_cam_sync_mode on the depth sensor

    def __post_init__(self) -> None:
        for key in ("width", "height", "fps"):
            if getattr(self, key) <= 0:
                raise ValueError(f"SoftwareCameraConfig.{key} must be > 0, got {getattr(self, key)!r}")
        for key in ("fx", "fy", "depth_units"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"SoftwareCameraConfig.{key} must be finite and > 0, got {value!r}")
        if len(self.coeffs) != 5:
            raise ValueError(f"SoftwareCameraConfig.coeffs must have 5 values, got {list(self.coeffs)}")
        if self.cx < 0:
            self.cx = self.width / 2.0
        if self.cy < 0:
            self.cy = self.height / 2.0


class SoftwareCamera:
    """An rs.software_device with an RGB sensor (rgb8) and optionally a depth sensor (z16).

    push_color / push_depth inject frames with the given frame number, timestamp (ms) and
    timestamp domain; whoever opened the device's sensors receives them.
    """

    def __init__(self, config: SoftwareCameraConfig | None = None) -> None:
        self._rs = rs = import_pyrealsense2()
        self.config = cfg = config or SoftwareCameraConfig()
        self.device = rs.software_device()
        self.device.register_info(rs.camera_info.name, cfg.name)
        self.device.register_info(rs.camera_info.serial_number, cfg.serial)
        self.device.register_info(rs.camera_info.product_line, "D400")
        self.color_sensor = self.device.add_sensor("RGB Camera")
        self.color_profile = self.color_sensor.add_video_stream(
            self._stream(rs.stream.color, rs.format.rgb8, 3, uid=1)
        ).as_video_stream_profile()
        self.depth_sensor = self.depth_profile = None
        if cfg.enable_depth:
            self.depth_sensor = self.device.add_sensor("Stereo Module")
            self.depth_profile = self.depth_sensor.add_video_stream(
                self._stream(rs.stream.depth, rs.format.z16, 2, uid=2)
            ).as_video_stream_profile()
            self.depth_sensor.add_read_only_option(rs.option.depth_units, cfg.depth_units)
            identity = rs.extrinsics()
            identity.rotation = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
            identity.translation = [0.0, 0.0, 0.0]
            self.depth_profile.register_extrinsics_to(self.color_profile, identity)
        if cfg.d400_options:
            self._add_d400_options()

    def _add_d400_options(self) -> None:
        """The options the node sets on a D4xx: global time (0/1) and, with depth, inter-camera sync."""
        rs = self._rs
        for sensor in (self.color_sensor, self.depth_sensor):
            if sensor is not None:
                sensor.add_option(rs.option.global_time_enabled, rs.option_range(0, 1, 1, 1), True)
        if self.depth_sensor is not None:
            self.depth_sensor.add_option(rs.option.inter_cam_sync_mode, rs.option_range(0, 260, 1, 0), True)

    def _stream(self, kind: Any, fmt: Any, bpp: int, uid: int) -> Any:
        rs, cfg = self._rs, self.config
        intr = rs.intrinsics()
        intr.width, intr.height = cfg.width, cfg.height
        intr.fx, intr.fy, intr.ppx, intr.ppy = cfg.fx, cfg.fy, cfg.cx, cfg.cy
        intr.model = getattr(rs.distortion, cfg.model)
        intr.coeffs = [float(c) for c in cfg.coeffs]
        stream = rs.video_stream()
        stream.type, stream.index, stream.uid = kind, 0, uid
        stream.width, stream.height, stream.fps = cfg.width, cfg.height, cfg.fps
        stream.bpp, stream.fmt, stream.intrinsics = bpp, fmt, intr
        return stream

    def push_color(
        self, rgb: np.ndarray, timestamp_ms: float, frame_number: int, domain: str = "global_time"
    ) -> None:
        """Inject one (H, W, 3) uint8 RGB frame."""
        cfg = self.config
        if rgb.shape != (cfg.height, cfg.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(
                f"colour frame must be ({cfg.height}, {cfg.width}, 3) uint8, got {rgb.shape} {rgb.dtype}"
            )
        self._push(self.color_sensor, self.color_profile, rgb, 3, timestamp_ms, frame_number, domain)

    def push_depth(
        self, depth: np.ndarray, timestamp_ms: float, frame_number: int, domain: str = "global_time"
    ) -> None:
        """Inject one (H, W) uint16 depth frame (units: ``depth_units`` metres)."""
        cfg = self.config
        if self.depth_sensor is None:
            raise RuntimeError("SoftwareCamera was built without depth (enable_depth=False)")
        if depth.shape != (cfg.height, cfg.width) or depth.dtype != np.uint16:
            raise ValueError(
                f"depth frame must be ({cfg.height}, {cfg.width}) uint16, got {depth.shape} {depth.dtype}"
            )
        self._push(self.depth_sensor, self.depth_profile, depth, 2, timestamp_ms, frame_number, domain)

    def _push(
        self, sensor: Any, profile: Any, pixels: np.ndarray, bpp: int, ts_ms: float, number: int, domain: str
    ) -> None:
        if domain not in TIMESTAMP_DOMAINS:
            raise ValueError(f"domain must be one of {list(TIMESTAMP_DOMAINS)}, got {domain!r}")
        frame = self._rs.software_video_frame()
        frame.pixels = np.ascontiguousarray(pixels)
        frame.bpp = bpp
        frame.stride = self.config.width * bpp
        frame.timestamp = float(ts_ms)
        frame.domain = getattr(self._rs.timestamp_domain, domain)
        frame.frame_number = int(number)
        frame.profile = profile
        if bpp == 2:
            frame.depth_units = self.config.depth_units
        sensor.on_video_frame(frame)

    @contextlib.contextmanager
    def record(self, path: str) -> Iterator[None]:
        """Record every frame pushed inside the ``with`` block to a rosbag2 .db3 file at ``path``."""
        rs = self._rs
        recorder = rs.recorder(path, self.device)
        sink = rs.frame_queue(1000, keep_frames=False)
        sensors = list(recorder.query_sensors())
        profiles = [self.color_profile, self.depth_profile]
        opened = []
        try:
            for sensor, profile in zip(sensors, profiles, strict=False):
                if profile is None:
                    continue
                sensor.open(profile)
                opened.append(sensor)
                sensor.start(sink)
            yield
        finally:
            for sensor in opened:
                sensor.stop()
                sensor.close()
            opened.clear()
            sensors.clear()
            del recorder  # the file is complete once the recorder and its sensors are released
