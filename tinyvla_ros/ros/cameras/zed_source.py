"""ZED (ZED 2 / 2i / X / Mini) frame source on the Stereolabs ZED SDK Python API ``pyzed.sl``.

``pyzed.sl`` ships only with the ZED SDK installer (it needs the SDK's libraries and CUDA); the
PyPI package called ``pyzed`` is unrelated. It is imported when a camera is opened, never at
module import, so this module loads (and its pure parts are tested) without the SDK.

Each read grabs one frame (``Camera.grab`` blocks until the next frame), retrieves the rectified
left image (``VIEW.LEFT``, BGRA), and stamps it with the image capture time
(``TIME_REFERENCE.IMAGE``, host clock). Frame numbers count grabbed plus SDK-dropped frames, so
the worker's drop counter sees what the SDK dropped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tinyvla_ros.core.camera_calib import (
    ZED_ENCODINGS,
    ZED_TOPIC_GENERATIONS,
    zed_camera_info,
    zed_frame_to_encoding,
    zed_model_key,
    zed_optical_frame,
    zed_parameters_from_sdk,
)
from tinyvla_ros.ros.cameras.frames import CameraUnavailable, CapturedFrame, PlaybackFinished, SourceInfo

RESOLUTIONS = ("HD2K", "HD1080", "HD1200", "HD720", "SVGA", "VGA", "AUTO")


def import_zed_sdk() -> Any:
    """The ``pyzed.sl`` module, or ImportError saying where it comes from."""
    try:
        import pyzed.sl as sl
    except ImportError as exc:
        raise ImportError(
            "the direct ZED driver needs the Stereolabs ZED SDK Python API (pyzed.sl): install the ZED SDK "
            "(https://www.stereolabs.com/developers/release) and run its get_python_api.py in this Python "
            "environment. The PyPI package named 'pyzed' is unrelated. Or use camera_driver:=wrapper."
        ) from exc
    return sl


@dataclass
class ZedSourceConfig:
    """Which ZED to open and how.

    serial_number > 0 selects a camera by serial; else camera_id >= 0 by id; else the first
    one. svo_file plays a recording instead. resolution: an sl.RESOLUTION name; fps: grab rate.
    """

    camera_name: str = "zed"
    camera_model: str = "zed2"
    serial_number: int = 0
    camera_id: int = -1
    svo_file: str = ""
    resolution: str = "HD720"
    fps: int = 30
    encoding: str = "bgra8"
    topic_generation: str = "current"

    def __post_init__(self) -> None:
        if not self.camera_name:
            raise ValueError(f"camera_name must be non-empty, got {self.camera_name!r}")
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"grab_resolution must be one of {list(RESOLUTIONS)}, got {self.resolution!r}")
        if self.fps <= 0:
            raise ValueError(f"grab_frame_rate must be > 0, got {self.fps!r}")
        if self.serial_number < 0:
            raise ValueError(f"serial_number must be >= 0 (0 = not used), got {self.serial_number!r}")
        if self.encoding not in ZED_ENCODINGS:
            raise ValueError(f"encoding must be one of {list(ZED_ENCODINGS)}, got {self.encoding!r}")
        if self.topic_generation not in ZED_TOPIC_GENERATIONS:
            raise ValueError(
                f"topic_generation must be one of {list(ZED_TOPIC_GENERATIONS)}, got {self.topic_generation!r}"
            )


def grab_outcome(sl: Any, err: Any) -> str:
    """Classify an ``sl.ERROR_CODE`` from grab(): 'frame', 'skip', 'end' or 'lost'.

    SUCCESS and warnings (codes below SUCCESS) carry a frame, except CORRUPTED_FRAME (skip);
    END_OF_SVOFILE_REACHED ends a recording; anything else means the camera is gone.
    """
    codes = sl.ERROR_CODE
    if err == codes.SUCCESS:
        return "frame"
    if err == getattr(codes, "CORRUPTED_FRAME", None):
        return "skip"
    if err == codes.END_OF_SVOFILE_REACHED:
        return "end"
    if int(err.value) < int(codes.SUCCESS.value):
        return "frame"
    return "lost"


class ZedSource:
    """A ZED camera or SVO recording as a FrameSource (see the module docstring)."""

    def __init__(self, cfg: ZedSourceConfig) -> None:
        self.cfg = cfg
        self._sl = None
        self._cam = None
        self._mat = None
        self._runtime = None
        self._grabbed = 0

    def open(self) -> SourceInfo:
        sl = self._sl = import_zed_sdk()
        cam = sl.Camera()
        err = cam.open(self._init_parameters(sl))
        if err != sl.ERROR_CODE.SUCCESS:
            cam.close()
            raise CameraUnavailable(f"ZED {self._what()}: open failed: {err}")
        self._cam, self._mat, self._runtime = cam, sl.Mat(), sl.RuntimeParameters()
        self._grabbed = 0
        info = cam.get_camera_information()
        model = info.camera_model
        left = zed_parameters_from_sdk(info.camera_configuration.calibration_parameters.left_cam)
        frame_id = zed_optical_frame(self.cfg.camera_name, self.cfg.topic_generation)
        warnings = []
        if zed_model_key(model) != zed_model_key(self.cfg.camera_model):
            warnings.append(f"camera_model parameter {self.cfg.camera_model!r} but the camera is {model}")
        return SourceInfo(
            hardware_id=str(info.serial_number),
            model=str(model),
            calibration={"color": zed_camera_info(left, model, frame_id)},
            is_playback=bool(self.cfg.svo_file),
            warnings=warnings,
        )

    def _init_parameters(self, sl: Any) -> Any:
        init = sl.InitParameters()
        init.camera_resolution = getattr(sl.RESOLUTION, self.cfg.resolution)
        init.camera_fps = self.cfg.fps
        init.depth_mode = sl.DEPTH_MODE.NONE  # images only: no depth computation on the GPU
        init.coordinate_units = sl.UNIT.METER
        if self.cfg.svo_file:
            init.set_from_svo_file(self.cfg.svo_file)
        elif self.cfg.serial_number > 0:
            init.set_from_serial_number(self.cfg.serial_number)
        elif self.cfg.camera_id >= 0:
            init.set_from_camera_id(self.cfg.camera_id)
        return init

    def _what(self) -> str:
        if self.cfg.svo_file:
            return f"recording {self.cfg.svo_file}"
        if self.cfg.serial_number > 0:
            return f"serial {self.cfg.serial_number}"
        return f"id {self.cfg.camera_id}" if self.cfg.camera_id >= 0 else "(first found)"

    def read(self, timeout_s: float) -> list[CapturedFrame]:
        """Grab one frame (blocks for up to one frame period; ``timeout_s`` is not used by the SDK)."""
        sl, cam = self._sl, self._cam
        if cam is None:
            raise CameraUnavailable("ZED not open")
        err = cam.grab(self._runtime)
        outcome = grab_outcome(sl, err)
        if outcome == "end":
            raise PlaybackFinished(self.cfg.svo_file)
        if outcome == "lost":
            raise CameraUnavailable(f"ZED {self._what()}: grab failed: {err}")
        if outcome == "skip":
            return []
        arrival = time.time_ns()
        cam.retrieve_image(self._mat, sl.VIEW.LEFT)
        image = zed_frame_to_encoding(self._mat.get_data(), self.cfg.encoding)
        stamp = int(cam.get_timestamp(sl.TIME_REFERENCE.IMAGE).get_nanoseconds())
        self._grabbed += 1
        number = self._grabbed + int(cam.get_frame_dropped_count())
        return [CapturedFrame("color", image, self.cfg.encoding, number, stamp, "system_time", arrival)]

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            cam.close()
