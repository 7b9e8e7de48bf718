"""Per-camera health for /diagnostics: frame rate, drops, latency, errors, reconnection state.

Plain Python, thread-safe (the capture thread writes, the diagnostics timer reads). Drops are
gaps in the device's frame counter (frames the camera produced that never reached us, including
frames the driver's small queue discarded because publishing fell behind).

States and the diagnostic level they map to:
  connecting    not opened yet (WARN; ERROR once ``frame_timeout_s`` has passed)
  streaming     frames arrive (OK; WARN when frames were dropped in the last period)
  no_frames     opened but silent for more than ``frame_timeout_s`` (ERROR)
  disconnected  open or read failed; reconnection is being retried (ERROR)
  finished      a recording played to its end (WARN)
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

STATES = ("connecting", "streaming", "no_frames", "disconnected", "finished")
LEVELS = ("ok", "warn", "error")


@dataclass
class HealthReport:
    """A snapshot for one diagnostics message: level in LEVELS, a message, key/value pairs."""

    level: str
    message: str
    values: dict[str, str]


class CameraHealth:
    """Counters and state of one camera; see the module docstring."""

    def __init__(self, frame_timeout_s: float, rate_window_s: float = 2.0, clock=time.monotonic) -> None:
        if not frame_timeout_s > 0:
            raise ValueError(f"frame_timeout_s must be > 0, got {frame_timeout_s!r}")
        self._lock = threading.Lock()
        self._clock = clock
        self.frame_timeout_s = frame_timeout_s
        self.rate_window_s = rate_window_s
        self.state = "connecting"
        self.started = clock()
        self.last_frame: float | None = None
        self.frames = 0
        self.drops = 0
        self.errors = 0
        self.reconnects = 0
        self.last_error = ""
        self.hardware_id = ""
        self.model = ""
        self.domain = ""
        self.warnings: list[str] = []
        self._times: deque[float] = deque()
        self._latencies_ms: deque[float] = deque(maxlen=300)
        self._last_number: dict[str, int] = {}
        self._drops_reported = 0

    # --- writers (capture thread) ---------------------------------------------------------------

    def opened(self, hardware_id: str, model: str, warnings: list[str]) -> None:
        """A source (re)opened. Frame counters restart; the outage, if any, lasts until a frame comes."""
        with self._lock:
            self.hardware_id, self.model, self.warnings = hardware_id, model, list(warnings)
            if self.state == "connecting":
                self.started = self._clock()  # the first frame is due frame_timeout_s after opening
            elif self.state == "disconnected":
                self.state = "no_frames"
            self._last_number.clear()

    def is_new(self, stream: str, frame_number: int) -> bool:
        """True for a frame not seen before on ``stream``; counts gaps in the frame counter as drops."""
        with self._lock:
            last = self._last_number.get(stream)
            if last is not None and frame_number == last:
                return False
            if last is not None and frame_number > last + 1:
                self.drops += frame_number - last - 1
            self._last_number[stream] = frame_number
            return True

    def frame(self, domain: str, latency_ms: float) -> None:
        """A colour frame was published, ``latency_ms`` after its stamp."""
        now = self._clock()
        with self._lock:
            self.frames += 1
            self.last_frame = now
            self.domain = domain
            self.state = "streaming"
            self._times.append(now)
            self._latencies_ms.append(latency_ms)
            while self._times and self._times[0] < now - self.rate_window_s:
                self._times.popleft()

    def error(self, message: str, state: str | None = "disconnected") -> None:
        """Open/read failed (state -> disconnected) or a frame was lost (state=None: unchanged)."""
        if state is not None and state not in STATES:
            raise ValueError(f"state must be one of {list(STATES)}, got {state!r}")
        with self._lock:
            self.errors += 1
            self.last_error = message
            if state is not None:
                self.state = state

    def reconnecting(self) -> None:
        """The source is being closed and reopened."""
        with self._lock:
            self.reconnects += 1

    def finished(self) -> None:
        """A recording reached its end."""
        with self._lock:
            self.state = "finished"

    # --- readers ----------------------------------------------------------------------------------

    def silence_s(self) -> float:
        """Seconds since the last frame (or since opening when none came yet)."""
        with self._lock:
            ref = self.last_frame if self.last_frame is not None else self.started
            return self._clock() - ref

    def fps(self) -> float:
        """Published colour frames per second over the last ``rate_window_s``."""
        now = self._clock()
        with self._lock:
            recent = [t for t in self._times if t >= now - self.rate_window_s]
            if len(recent) < 2:
                return 0.0
            span = max(now - recent[0], recent[-1] - recent[0])
            return (len(recent) - 1) / span if span > 0 else 0.0

    def latency_samples_ms(self) -> list[float]:
        """The last (up to 300) stamp -> publish latencies, oldest first (benchmarks)."""
        with self._lock:
            return list(self._latencies_ms)

    def report(self) -> HealthReport:
        """Level, message and values for /diagnostics (also refreshes the no_frames state)."""
        silence = self.silence_s()
        fps = self.fps()
        with self._lock:
            if self.state == "streaming" and silence > self.frame_timeout_s:
                self.state = "no_frames"
            new_drops = self.drops - self._drops_reported
            self._drops_reported = self.drops
            level, message = self._level_message(silence, new_drops)
            lat = sorted(self._latencies_ms)
            values = {
                "state": self.state,
                "frame_rate_hz": f"{fps:.2f}",
                "frames_published": str(self.frames),
                "frames_dropped": str(self.drops),
                "seconds_since_last_frame": f"{silence:.3f}",
                "latency_stamp_to_publish_ms_p50": f"{lat[len(lat) // 2]:.2f}" if lat else "nan",
                "latency_stamp_to_publish_ms_max": f"{lat[-1]:.2f}" if lat else "nan",
                "reconnects": str(self.reconnects),
                "errors": str(self.errors),
                "last_error": self.last_error,
                "timestamp_domain": self.domain,
                "model": self.model,
                "warnings": "; ".join(self.warnings),
            }
        return HealthReport(level, message, values)

    def _level_message(self, silence: float, new_drops: int) -> tuple[str, str]:
        if self.state == "disconnected":
            return "error", f"camera unavailable, reconnecting: {self.last_error}"
        if self.state == "finished":
            return "warn", "recording finished"
        if self.state == "no_frames":
            return "error", f"no frames for {silence:.1f} s (unplugged or stalled?), reconnecting"
        if self.state == "connecting":
            late = silence > self.frame_timeout_s
            return ("error" if late else "warn"), f"waiting for the first frame ({silence:.1f} s)"
        if self.warnings:
            return "warn", "; ".join(self.warnings)
        if new_drops > 0:
            return "warn", f"{new_drops} frame(s) dropped since the last report"
        return "ok", "streaming"
