"""Frame timestamps -> host system time (the clock ROS time follows unless use_sim_time is set).

RealSense frames carry a time in one of three domains (rs.timestamp_domain):
  global_time     the device clock already mapped onto the host's system clock by librealsense
                  (the D400 default, ``global_time_enabled``): used as is;
  system_time     host system time when the frame reached librealsense (no metadata): used as is;
  hardware_clock  the device's own clock (arbitrary origin, may reset): mapped with an offset
                  estimated from arrival times (below).
ZED frames carry the image capture time on the host clock (system_time).

Offset estimation: every frame gives ``arrival - device_time`` = true offset + transport delay;
the smallest value over a sliding window (default 2 s) is the best estimate (least delay), so the
stamp is ``device_time + min offset``. A stamp is never later than its frame's arrival, and a
device clock that jumps backwards (reset, reconnection) restarts the estimate. Recordings are
stamped the same way in ``auto`` mode (their recorded times would be stale), keeping the recorded
frame spacing.

Stamps handed out by one FrameClock strictly increase (a non-increasing stamp is moved 1 us past
the previous one and counted in ``adjustments``), so downstream buffers keyed by stamp stay sane.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from tinyvla_ros.ros.cameras.frames import TIMESTAMP_DOMAINS

TIMESTAMP_MODES = ("auto", "arrival")


@dataclass
class FrameClockConfig:
    """How frame times become stamps.

    mode: ``auto`` (domain-aware, see the module docstring) or ``arrival`` (host arrival time);
    offset_window_s: sliding window of the hardware-clock offset estimate;
    max_future_ns: a global/system stamp later than arrival by more than this is clamped to arrival.
    """

    mode: str = "auto"
    offset_window_s: float = 2.0
    max_future_ns: int = 0

    def __post_init__(self) -> None:
        if self.mode not in TIMESTAMP_MODES:
            raise ValueError(f"timestamp_mode must be one of {list(TIMESTAMP_MODES)}, got {self.mode!r}")
        if not self.offset_window_s > 0:
            raise ValueError(f"offset_window_s must be > 0, got {self.offset_window_s!r}")
        if self.max_future_ns < 0:
            raise ValueError(f"max_future_ns must be >= 0, got {self.max_future_ns!r}")


class FrameClock:
    """Maps (device time, domain, arrival time) of successive frames of ONE stream to stamps (ns)."""

    _MIN_STEP_NS = 1_000

    def __init__(self, config: FrameClockConfig | None = None) -> None:
        self.config = config or FrameClockConfig()
        self._offsets: deque[tuple[int, int]] = deque()  # (arrival_ns, arrival - device) samples
        self._last_device_ns: int | None = None
        self._last_stamp_ns: int | None = None
        self.adjustments = 0  # stamps moved to keep them strictly increasing
        self.clamped = 0  # stamps that lay in the future and were clamped to arrival
        self.resets = 0  # hardware-clock estimates restarted (clock went backwards)

    def reset(self) -> None:
        """Forget the offset estimate (after a reconnection); monotonicity is kept across resets."""
        self._offsets.clear()
        self._last_device_ns = None

    def stamp_ns(self, device_ns: int, domain: str, arrival_ns: int, is_playback: bool = False) -> int:
        """The system-clock stamp (ns since the epoch) for a frame."""
        if domain not in TIMESTAMP_DOMAINS:
            raise ValueError(f"timestamp domain must be one of {list(TIMESTAMP_DOMAINS)}, got {domain!r}")
        if self.config.mode == "arrival":
            stamp = arrival_ns
        elif domain == "hardware_clock" or is_playback:
            stamp = self._estimated(device_ns, arrival_ns)
        else:
            stamp = device_ns
            if stamp > arrival_ns + self.config.max_future_ns:
                self.clamped += 1
                stamp = arrival_ns
        return self._monotonic(stamp)

    def _estimated(self, device_ns: int, arrival_ns: int) -> int:
        if self._last_device_ns is not None and device_ns < self._last_device_ns:
            self.resets += 1
            self._offsets.clear()
        self._last_device_ns = device_ns
        offset = arrival_ns - device_ns
        window_ns = int(self.config.offset_window_s * 1e9)
        while self._offsets and self._offsets[0][0] < arrival_ns - window_ns:
            self._offsets.popleft()
        # keep the deque increasing in offset: a new smaller sample makes older larger ones useless
        while self._offsets and self._offsets[-1][1] >= offset:
            self._offsets.pop()
        self._offsets.append((arrival_ns, offset))
        return device_ns + self._offsets[0][1]

    def _monotonic(self, stamp: int) -> int:
        if self._last_stamp_ns is not None and stamp <= self._last_stamp_ns:
            self.adjustments += 1
            stamp = self._last_stamp_ns + self._MIN_STEP_NS
        self._last_stamp_ns = stamp
        return stamp
