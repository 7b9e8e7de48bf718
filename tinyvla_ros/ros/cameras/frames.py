"""What a camera frame source hands to the capture worker (no rclpy, no vendor SDK here).

A source (RealSense pipeline, RealSense sensor/software device, ZED SDK camera) implements
``FrameSource``: ``open()`` -> ``SourceInfo``, ``read(timeout_s)`` -> list of ``CapturedFrame``
(empty when nothing arrived in time), ``close()``. A lost device raises ``CameraUnavailable``; the
end of a recording raises ``PlaybackFinished``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from tinyvla_ros.core.camera_calib import CameraInfoFields

TIMESTAMP_DOMAINS = ("hardware_clock", "system_time", "global_time")
STREAMS = ("color", "depth", "aligned_depth_to_color")
ENCODINGS = {"rgb8": (np.uint8, 3), "bgra8": (np.uint8, 4), "16UC1": (np.uint16, 1)}


class CameraUnavailable(RuntimeError):
    """The camera cannot be opened or stopped delivering (unplugged, busy, wrong serial...)."""


class PlaybackFinished(RuntimeError):
    """A recording played to its end (no reconnection is attempted)."""


@dataclass
class CapturedFrame:
    """One image from a camera, already copied out of the SDK's buffers.

    image: (H, W, 3) uint8 rgb8, (H, W, 4) uint8 bgra8, or (H, W) uint16 16UC1 (depth, mm);
    timestamp_ns: the device's frame time in ``domain``; arrival_ns: host system time
    (time.time_ns()) when the driver received it.
    """

    stream: str
    image: np.ndarray
    encoding: str
    frame_number: int
    timestamp_ns: int
    domain: str
    arrival_ns: int

    def __post_init__(self) -> None:
        if self.stream not in STREAMS:
            raise ValueError(f"CapturedFrame.stream must be one of {list(STREAMS)}, got {self.stream!r}")
        if self.domain not in TIMESTAMP_DOMAINS:
            raise ValueError(
                f"CapturedFrame.domain must be one of {list(TIMESTAMP_DOMAINS)}, got {self.domain!r}"
            )
        if self.encoding not in ENCODINGS:
            raise ValueError(
                f"CapturedFrame.encoding must be one of {list(ENCODINGS)}, got {self.encoding!r}"
            )
        dtype, channels = ENCODINGS[self.encoding]
        shape_ok = self.image.ndim == (2 if channels == 1 else 3) and (
            channels == 1 or self.image.shape[2] == channels
        )
        if self.image.dtype != dtype or not shape_ok:
            raise ValueError(
                f"CapturedFrame.image for {self.encoding} must be {np.dtype(dtype).name} with {channels} "
                f"channel(s), got {self.image.dtype} {self.image.shape}"
            )


@dataclass
class SourceInfo:
    """What an opened source is: hardware id, model, one CameraInfo per stream it delivers.

    warnings: conditions that do not stop streaming but must be visible on /diagnostics
    (e.g. a requested hardware sync mode the device does not support).
    """

    hardware_id: str
    model: str
    calibration: dict[str, CameraInfoFields]
    is_playback: bool = False
    warnings: list[str] = field(default_factory=list)


class FrameSource(Protocol):
    """A camera the capture worker can open, read and close (see the module docstring)."""

    def open(self) -> SourceInfo: ...

    def read(self, timeout_s: float) -> list[CapturedFrame]: ...

    def close(self) -> None: ...
