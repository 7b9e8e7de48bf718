"""RealSense frame sources on pyrealsense2 (imported lazily, with a clear error when missing).

PipelineSource   rs.pipeline + rs.config: a connected camera chosen by serial number, or a
                 recording (.db3 / .bag) through ``rs.config.enable_device_from_file``. Used by the
                 node for real cameras and recordings.
SensorSource     opens the sensors of a given ``rs.device`` directly into a frame queue: used for
                 in-process devices such as pyrealsense2's software device (a software device
                 cannot be found through a context/pipeline in pyrealsense2 2.59).

Both deliver colour as rgb8 and, when enabled, depth as 16UC1 (millimetres for a D435i's
default depth units) either aligned to colour (rs.align, the colour camera's CameraInfo) or raw
(the depth camera's CameraInfo).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinyvla_ros.core.camera_calib import (
    CameraInfoFields,
    ms_to_ns,
    realsense_camera_info,
    realsense_optical_frame,
)
from tinyvla_ros.ros.cameras.frames import CameraUnavailable, CapturedFrame, PlaybackFinished, SourceInfo

SYNC_MODES = {0: "default", 1: "master", 2: "slave", 3: "full slave"}


def import_pyrealsense2() -> Any:
    """The pyrealsense2 module, or ImportError saying how to install it."""
    try:
        import pyrealsense2 as rs
    except ImportError as exc:
        raise ImportError(
            "the direct RealSense driver needs pyrealsense2: pip install pyrealsense2==2.59.1.11053 "
            "(and the Debian package libusb-1.0-0: apt-get install libusb-1.0-0)"
        ) from exc
    return rs


@dataclass
class RealSenseStreamConfig:
    """Streams of one RealSense camera.

    width/height/fps: colour stream (rgb8); enable_depth: also publish depth (z16 at
    depth_width x depth_height, same fps); align_depth: depth aligned to colour (else raw);
    inter_cam_sync_mode: 0 default, 1 master, 2 slave, 3 full slave (set on the depth sensor,
    D4xx hardware sync); global_time_enabled: librealsense maps device time to host time;
    queue_size: frames buffered per stream before the oldest is dropped (and counted);
    camera_name: prefix of the optical frame ids.
    """

    camera_name: str = "camera"
    width: int = 640
    height: int = 480
    fps: int = 30
    enable_depth: bool = False
    align_depth: bool = True
    depth_width: int = 640
    depth_height: int = 480
    inter_cam_sync_mode: int = 0
    global_time_enabled: bool = True
    queue_size: int = 2

    def __post_init__(self) -> None:
        for key in ("width", "height", "fps", "depth_width", "depth_height", "queue_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{key} must be a positive int, got {value!r}")
        if self.inter_cam_sync_mode not in SYNC_MODES:
            raise ValueError(
                f"inter_cam_sync_mode must be one of {sorted(SYNC_MODES)}, got {self.inter_cam_sync_mode!r}"
            )
        if not self.camera_name:
            raise ValueError(f"camera_name must be non-empty, got {self.camera_name!r}")

    @property
    def depth_stream(self) -> str:
        """Name of the published depth stream."""
        return "aligned_depth_to_color" if self.align_depth else "depth"


# --- shared helpers -------------------------------------------------------------------------------


def _domain(frame: Any) -> str:
    """rs.timestamp_domain.global_time -> 'global_time'."""
    return str(frame.get_frame_timestamp_domain()).rsplit(".", 1)[-1]


def _capture(
    frame: Any, stream: str, encoding: str, arrival_ns: int, source_frame: Any = None
) -> CapturedFrame:
    """Copy an rs.frame out of librealsense's pool. ``source_frame`` gives number/time (aligned depth)."""
    ref = source_frame if source_frame is not None else frame
    image = np.array(np.asanyarray(frame.get_data()), copy=True)
    return CapturedFrame(
        stream=stream,
        image=image,
        encoding=encoding,
        frame_number=int(ref.get_frame_number()),
        timestamp_ns=ms_to_ns(ref.get_timestamp()),
        domain=_domain(ref),
        arrival_ns=arrival_ns,
    )


def calibration_from_profile(profile: Any, camera_name: str, stream: str) -> CameraInfoFields:
    """CameraInfo fields from an rs.video_stream_profile's intrinsics."""
    intr = profile.as_video_stream_profile().get_intrinsics()
    return realsense_camera_info(
        intr.width,
        intr.height,
        intr.fx,
        intr.fy,
        intr.ppx,
        intr.ppy,
        intr.model,
        list(intr.coeffs),
        frame_id=realsense_optical_frame(camera_name, stream),
    )


def _calibration(
    color_profile: Any, depth_profile: Any, cfg: RealSenseStreamConfig
) -> dict[str, CameraInfoFields]:
    calib = {"color": calibration_from_profile(color_profile, cfg.camera_name, "color")}
    if depth_profile is not None:
        if cfg.align_depth:  # aligned depth lives in the colour camera's geometry and frame
            calib["aligned_depth_to_color"] = calib["color"]
        else:
            calib["depth"] = calibration_from_profile(depth_profile, cfg.camera_name, "depth")
    return calib


def _device_text(rs: Any, device: Any, key: str) -> str:
    info = getattr(rs.camera_info, key)
    return str(device.get_info(info)) if device.supports(info) else ""


def _apply_options(rs: Any, device: Any, cfg: RealSenseStreamConfig) -> list[str]:
    """Set global time and inter-camera sync; returns warnings for what the device cannot do."""
    warnings = []
    for sensor in device.query_sensors():
        if sensor.supports(rs.option.global_time_enabled):
            sensor.set_option(rs.option.global_time_enabled, 1.0 if cfg.global_time_enabled else 0.0)
    depth_sensors = [s for s in device.query_sensors() if s.is_depth_sensor()]
    if depth_sensors and depth_sensors[0].supports(rs.option.inter_cam_sync_mode):
        depth_sensors[0].set_option(rs.option.inter_cam_sync_mode, float(cfg.inter_cam_sync_mode))
    elif cfg.inter_cam_sync_mode != 0:
        mode = SYNC_MODES[cfg.inter_cam_sync_mode]
        warnings.append(
            f"inter_cam_sync_mode={cfg.inter_cam_sync_mode} ({mode}) not supported by this device: not synced"
        )
    return warnings


# --- pipeline (connected cameras, recordings) ----------------------------------------------------


class PipelineSource:
    """A connected camera (``serial``; '' = the first one found) or a recording (``rosbag_filename``)."""

    def __init__(
        self,
        cfg: RealSenseStreamConfig,
        serial: str = "",
        rosbag_filename: str = "",
        rosbag_loop: bool = False,
        realtime: bool = True,
    ) -> None:
        self._rs = import_pyrealsense2()
        self.cfg = cfg
        self.serial = serial.lstrip("_")  # realsense2_camera accepts "_<serial>" to force a string
        self.rosbag_filename = rosbag_filename
        self.rosbag_loop = rosbag_loop
        self.realtime = realtime
        self._pipe = None
        self._align = None
        self._playback = None
        self._last = {"color": -1, "depth": -1}

    def open(self) -> SourceInfo:
        rs, cfg = self._rs, self.cfg
        ctx = rs.context()  # a fresh context re-enumerates devices after a replug
        config = rs.config()
        choice_warnings: list[str] = []
        if self.rosbag_filename:
            config.enable_device_from_file(self.rosbag_filename, repeat_playback=self.rosbag_loop)
            config.enable_stream(rs.stream.color, 0, 0, rs.format.rgb8, 0)
            if cfg.enable_depth:
                config.enable_stream(rs.stream.depth, 0, 0, rs.format.z16, 0)
        else:
            choice_warnings = self._require_device(ctx)
            if self.serial:
                config.enable_device(self.serial)
            config.enable_stream(rs.stream.color, cfg.width, cfg.height, rs.format.rgb8, cfg.fps)
            if cfg.enable_depth:
                config.enable_stream(
                    rs.stream.depth, cfg.depth_width, cfg.depth_height, rs.format.z16, cfg.fps
                )
        pipe = rs.pipeline(ctx)
        try:
            resolved = config.resolve(rs.pipeline_wrapper(pipe))
            device = resolved.get_device()
            warnings = [] if self.rosbag_filename else choice_warnings + _apply_options(rs, device, cfg)
            profile = pipe.start(config)
        except RuntimeError as exc:
            raise CameraUnavailable(f"{self._what()}: {exc}") from exc
        self._pipe = pipe
        self._last = {"color": -1, "depth": -1}
        return self._started(profile, warnings)

    def _started(self, profile: Any, warnings: list[str]) -> SourceInfo:
        rs, cfg = self._rs, self.cfg
        device = profile.get_device()
        self._playback = None
        if self.rosbag_filename:
            self._playback = device.as_playback()
            self._playback.set_real_time(self.realtime)
        color = profile.get_stream(rs.stream.color)
        depth = profile.get_stream(rs.stream.depth) if cfg.enable_depth else None
        self._align = rs.align(rs.stream.color) if (cfg.enable_depth and cfg.align_depth) else None
        serial = _device_text(rs, device, "serial_number")
        return SourceInfo(
            hardware_id=serial or self.rosbag_filename,
            model=_device_text(rs, device, "name") or "RealSense",
            calibration=_calibration(color, depth, cfg),
            is_playback=bool(self.rosbag_filename),
            warnings=warnings,
        )

    def _require_device(self, ctx: Any) -> list[str]:
        """Check the wanted camera is connected; warnings (an ambiguous choice) for SourceInfo."""
        rs = self._rs
        serials = [d.get_info(rs.camera_info.serial_number) for d in ctx.query_devices()]
        if not serials:
            raise CameraUnavailable("no RealSense camera connected")
        if self.serial and self.serial not in serials:
            raise CameraUnavailable(f"no RealSense camera with serial {self.serial} (connected: {serials})")
        if not self.serial and len(serials) > 1:
            return [
                f"serial_no not set and {len(serials)} cameras connected {serials}: set serial_no per camera"
            ]
        return []

    def _what(self) -> str:
        if self.rosbag_filename:
            return f"recording {self.rosbag_filename}"
        return f"RealSense {self.serial or '(first found)'}"

    def read(self, timeout_s: float) -> list[CapturedFrame]:
        if self._pipe is None:
            raise CameraUnavailable("pipeline not started")
        ok, frames = self._pipe.try_wait_for_frames(max(1, int(timeout_s * 1000)))
        if not ok:
            if (
                self._playback is not None
                and self._playback.current_status() == self._rs.playback_status.stopped
            ):
                raise PlaybackFinished(self.rosbag_filename)
            return []
        arrival = time.time_ns()
        out = []
        color = frames.get_color_frame()
        if color and color.get_frame_number() != self._last["color"]:
            self._last["color"] = color.get_frame_number()
            out.append(_capture(color, "color", "rgb8", arrival))
        if self.cfg.enable_depth:
            depth = frames.get_depth_frame()
            if depth and depth.get_frame_number() != self._last["depth"]:
                self._last["depth"] = depth.get_frame_number()
                out.append(self._depth(frames, depth, arrival))
        return out

    def _depth(self, frames: Any, depth: Any, arrival: int) -> CapturedFrame:
        if self._align is None:
            return _capture(depth, "depth", "16UC1", arrival)
        aligned = self._align.process(frames).get_depth_frame()
        return _capture(aligned, "aligned_depth_to_color", "16UC1", arrival, source_frame=depth)

    def close(self) -> None:
        pipe, self._pipe, self._playback = self._pipe, None, None
        if pipe is not None:
            pipe.stop()


# --- sensors of a given device (software devices) -----------------------------------------------


def _find_profile(sensor: Any, stream: Any, fmt: Any, width: int, height: int, fps: int) -> Any:
    for profile in sensor.get_stream_profiles():
        if profile.stream_type() != stream or profile.format() != fmt or profile.fps() != fps:
            continue
        video = profile.as_video_stream_profile()
        if video.width() == width and video.height() == height:
            return profile
    return None


class SensorSource:
    """Streams of an ``rs.device`` opened sensor by sensor (e.g. an rs.software_device)."""

    def __init__(self, device: Any, cfg: RealSenseStreamConfig) -> None:
        self._rs = import_pyrealsense2()
        self.device = device
        self.cfg = cfg
        self._sensors: list[Any] = []
        self._queue = None
        self._composer = None
        self._composed = None
        self._align = None
        self._last_color = None

    def open(self) -> SourceInfo:
        rs, cfg = self._rs, self.cfg
        color_sensor, color = self._locate(rs.stream.color, rs.format.rgb8, cfg.width, cfg.height)
        depth_sensor, depth = (None, None)
        if cfg.enable_depth:
            depth_sensor, depth = self._locate(
                rs.stream.depth, rs.format.z16, cfg.depth_width, cfg.depth_height
            )
        warnings = _apply_options(rs, self.device, cfg)
        self._queue = rs.frame_queue(cfg.queue_size * (2 if depth is not None else 1), keep_frames=True)
        try:
            for sensor, profile in ((color_sensor, color), (depth_sensor, depth)):
                if sensor is not None:
                    sensor.open(profile)
                    self._sensors.append(sensor)
                    sensor.start(self._queue)
        except RuntimeError as exc:
            self.close()
            raise CameraUnavailable(f"RealSense device {self._serial()}: {exc}") from exc
        if depth is not None and cfg.align_depth:
            self._setup_align()
        return SourceInfo(
            hardware_id=self._serial(),
            model=_device_text(rs, self.device, "name") or "RealSense",
            calibration=_calibration(color, depth, cfg),
            warnings=warnings,
        )

    def _serial(self) -> str:
        return _device_text(self._rs, self.device, "serial_number")

    def _locate(self, stream: Any, fmt: Any, width: int, height: int) -> tuple[Any, Any]:
        for sensor in self.device.query_sensors():
            profile = _find_profile(sensor, stream, fmt, width, height, self.cfg.fps)
            if profile is not None:
                return sensor, profile
        raise CameraUnavailable(
            f"RealSense device {self._serial()} has no {stream} stream {width}x{height} {fmt} @ {self.cfg.fps} fps"
        )

    def _setup_align(self) -> None:
        """rs.align needs a frameset: a processing block pairs each depth frame with the last colour."""
        rs = self._rs
        self._composed = rs.frame_queue(1, keep_frames=True)

        def compose(frame: Any, source: Any) -> None:
            source.frame_ready(source.allocate_composite_frame([self._last_color, frame]))

        self._composer = rs.processing_block(compose)
        self._composer.start(self._composed)
        self._align = rs.align(rs.stream.color)

    def read(self, timeout_s: float) -> list[CapturedFrame]:
        if self._queue is None:
            raise CameraUnavailable("sensors not started")
        ok, frame = self._queue.try_wait_for_frame(max(1, int(timeout_s * 1000)))
        out: list[CapturedFrame] = []
        while ok:
            captured = self._frame(frame, time.time_ns())
            if captured is not None:
                out.append(captured)
            frame = self._queue.poll_for_frame()
            ok = bool(frame)
        return out

    def _frame(self, frame: Any, arrival: int) -> CapturedFrame | None:
        rs = self._rs
        stream = frame.get_profile().stream_type()
        if stream == rs.stream.color:
            self._last_color = frame
            return _capture(frame, "color", "rgb8", arrival)
        if stream != rs.stream.depth:
            return None
        if self._align is None:
            return _capture(frame, "depth", "16UC1", arrival)
        if self._last_color is None:
            return None  # nothing to align to yet
        self._composer.invoke(frame)
        ok, composite = self._composed.try_wait_for_frame(1000)
        if not ok:
            return None
        aligned = self._align.process(composite.as_frameset()).get_depth_frame()
        return _capture(aligned, "aligned_depth_to_color", "16UC1", arrival, source_frame=frame)

    def close(self) -> None:
        sensors, self._sensors = self._sensors, []
        for sensor in sensors:
            for step in (sensor.stop, sensor.close):
                try:
                    step()
                except RuntimeError:
                    pass  # already stopped / closed
        self._queue = None
        self._last_color = None
