"""One capture thread per camera: open the source, read frames, stamp them, publish, reconnect.

The thread never dies on a driver error: a failed open or read is reported (CameraHealth ->
/diagnostics), the source is closed and reopened every ``reconnect_period_s``; a source that
stays silent for ``reconnect_timeout_s`` (a stalled or unplugged camera that raised nothing) is
closed and reopened too. A recording that reaches its end is not reopened.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tinyvla_ros.ros.cameras.clock import FrameClock, FrameClockConfig
from tinyvla_ros.ros.cameras.frames import CapturedFrame, FrameSource, PlaybackFinished, SourceInfo
from tinyvla_ros.ros.cameras.health import CameraHealth


@dataclass
class WorkerConfig:
    """Timing of one capture thread (seconds)."""

    name: str
    frame_timeout_s: float = 1.0
    reconnect_timeout_s: float = 2.0
    reconnect_period_s: float = 1.0
    poll_timeout_s: float = 0.1

    def __post_init__(self) -> None:
        for key in ("frame_timeout_s", "reconnect_timeout_s", "reconnect_period_s", "poll_timeout_s"):
            value = getattr(self, key)
            if not (isinstance(value, int | float) and value > 0):
                raise ValueError(f"{key} must be a number > 0, got {value!r}")
        if self.reconnect_timeout_s < self.frame_timeout_s:
            raise ValueError(
                f"reconnect_timeout_s ({self.reconnect_timeout_s}) must be >= frame_timeout_s ({self.frame_timeout_s})"
            )


class CaptureWorker:
    """Runs ``source`` on a daemon thread; ``on_open(info)`` and ``on_frame(frame, stamp_ns)`` publish.

    stamp_ns is host system time (see clock.py); on_frame runs on the capture thread and may return
    the system time (ns) at which the image was published (for the latency statistics).
    """

    def __init__(
        self,
        config: WorkerConfig,
        source: FrameSource,
        on_open: Callable[[SourceInfo], None],
        on_frame: Callable[[CapturedFrame, int], int | None],
        logger,
        clock_config: FrameClockConfig | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.health = CameraHealth(config.frame_timeout_s)
        self._on_open = on_open
        self._on_frame = on_frame
        self._log = logger
        self._clock_config = clock_config or FrameClockConfig()
        self.clocks: dict[str, FrameClock] = {}
        self._info: SourceInfo | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._is_open = False
        self._finished = False
        self._next_open = 0.0
        self._quiet_since = time.monotonic()
        self._last_logged_error = ""
        self._close_lock = threading.Lock()
        self._outage = False  # frames stopped or the camera failed; cleared by the next frame
        self._quiet_reopen = False  # reopening a silent camera: do not log every attempt

    def start(self) -> None:
        """Start the capture thread."""
        if self._thread is not None:
            raise RuntimeError(f"camera {self.config.name}: worker already started")
        self._thread = threading.Thread(target=self._run, name=f"capture-{self.config.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and close the source."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- the loop -------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._finished:
                self._stop.wait(0.2)
            elif not self._is_open:
                self._try_open()
            else:
                self._poll_once()
        self._close()

    def _try_open(self) -> None:
        wait = self._next_open - time.monotonic()
        if wait > 0:
            self._stop.wait(min(wait, 0.1))
            return
        try:
            info = self.source.open()
        except Exception as exc:  # noqa: BLE001 - any driver failure means "retry later", never a dead thread
            self._failed(f"open failed: {exc}")
            return
        self._is_open = True
        self._info = info
        self._quiet_since = time.monotonic()
        for clock in self.clocks.values():
            clock.reset()
        self.health.opened(info.hardware_id, info.model, info.warnings)
        if not self._quiet_reopen:
            self._log.info(f"camera {self.config.name}: opened {info.model} [{info.hardware_id}]")
        for warning in info.warnings:
            self._log.warning(f"camera {self.config.name}: {warning}")
        self._on_open(info)

    def _poll_once(self) -> None:
        try:
            frames = self.source.read(self.config.poll_timeout_s)
        except PlaybackFinished:
            self._log.info(f"camera {self.config.name}: recording finished")
            self.health.finished()
            self._finished = True
            self._close()
            return
        except Exception as exc:  # noqa: BLE001 - see _try_open
            self._failed(f"read failed: {exc}")
            self._close()
            return
        for frame in frames:
            self._handle(frame)
        if frames:
            self._quiet_since = time.monotonic()
            if self._outage:
                self._log.info(f"camera {self.config.name}: frames are back")
            self._outage = self._quiet_reopen = False
        elif time.monotonic() - self._quiet_since > self.config.reconnect_timeout_s:
            if not self._outage:  # log once per outage, not at every attempt
                self._log.warning(
                    f"camera {self.config.name}: no frames for {self.config.reconnect_timeout_s:.1f} s, reopening"
                )
            self._outage = self._quiet_reopen = True
            self.health.reconnecting()
            self._close()
            self._next_open = time.monotonic()

    def _handle(self, frame: CapturedFrame) -> None:
        if not self.health.is_new(frame.stream, frame.frame_number):
            return
        clock = self.clocks.setdefault(frame.stream, FrameClock(self._clock_config))
        is_playback = self._info is not None and self._info.is_playback
        stamp = clock.stamp_ns(frame.timestamp_ns, frame.domain, frame.arrival_ns, is_playback)
        try:
            published_ns = self._on_frame(frame, stamp)
        except Exception as exc:  # noqa: BLE001 - a publishing failure is reported, capture goes on
            self.health.error(f"publish failed: {exc}", state=None)
            self._log.error(f"camera {self.config.name}: publish failed: {exc}")
            return
        if frame.stream == "color":
            self.health.frame(frame.domain, ((published_ns or time.time_ns()) - stamp) / 1e6)

    def _failed(self, message: str) -> None:
        self.health.error(message)
        self._outage = True
        if message != self._last_logged_error:
            self._log.error(f"camera {self.config.name}: {message}")
            self._last_logged_error = message
        self._next_open = time.monotonic() + self.config.reconnect_period_s

    def _close(self) -> None:
        with self._close_lock:
            if not self._is_open:
                return
            self._is_open = False
            try:
                self.source.close()
            except Exception as exc:  # noqa: BLE001 - closing a vanished device may raise anything
                self._log.warning(f"camera {self.config.name}: close failed: {exc}")
