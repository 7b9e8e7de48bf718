"""A control tick on absolute deadlines, in its own thread, with the real-time settings Linux allows.

A forward position controller takes every message as the next setpoint, so a tick that is late
is a stall followed by a jump. The tick therefore does not ride an executor's timer (whose
callbacks queue behind every subscription and, in rclpy's multi-threaded executor, behind a
wait loop that spins while a callback group is busy): it runs in a ``TickThread`` that sleeps
until the k-th deadline ``start + k * period`` and calls the tick.

- **Absolute deadlines, no bursts.** After a tick the next deadline is the first one still in
  the future: deadlines that passed while the tick (or the machine) was late are skipped and
  counted, never made up by ticks in a row.
- **The clock is pluggable** (``DeadlineClock``): ``MonotonicClock`` for wall time (deadlines on
  ``time.monotonic``, immune to NTP steps); a simulated clock (the ROS node's sim time) wakes the
  thread from its own time updates.
- **Real-time settings** (``RealtimeConfig``, ``apply_realtime``): SCHED_FIFO priority for the
  tick thread, ``mlockall`` for the process, CPU affinity; each one applied when the process is
  permitted, otherwise reported in a line that says why and what to change.
- **Garbage collection off the schedule** (``SlackGc``): objects alive after start-up are frozen
  out of the collector, automatic collection is off, and the tick thread collects the young
  generation right after a tick (when there is slack before the next deadline) and everything
  else every ``full_every`` seconds, so no collector pause lands at a random point of a tick.

Everything here is plain Python (threads, ``os``, ``gc``, ``ctypes``); the ROS node supplies the
tick function and, under sim time, the clock.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import math
import os
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tinyvla_ros.core.stats import LatencyStats

_MCL_CURRENT, _MCL_FUTURE = 1, 2
# A deadline counts as reached this close before it: float seconds near 1.8e9 (epoch times) step
# in 0.24 us, so start + k * period and a simulator's clock value for the same instant may differ
# by a few ULPs. Without it a lockstep sim (waiting for the tick) and the tick (waiting for the
# sim's clock to pass its deadline) wait for each other forever.
DEADLINE_SLACK = 1e-6


@dataclass
class RealtimeConfig:
    """Scheduling of the control thread (declared as ``realtime.<field>`` parameters).

    priority: SCHED_FIFO priority of the tick thread (1-99); 0 = normal scheduling.
    lock_memory: ``mlockall`` the process so a page fault never stalls a tick.
    cpus: CPUs the whole process may run on (empty = all); pin the executor away from the policy.
    gc_full_every: s between full garbage collections in the tick thread's slack; 0 = never
        (young generations are still collected after ticks).
    """

    priority: int = field(
        default=0, metadata={"doc": "SCHED_FIFO priority of the tick thread (1-99); 0 = off"}
    )
    lock_memory: bool = field(default=False, metadata={"doc": "mlockall the process (needs CAP_IPC_LOCK)"})
    cpus: list[int] = field(
        default_factory=list, metadata={"doc": "CPU affinity of the process; empty = all"}
    )
    gc_full_every: float = field(
        default=10.0, metadata={"doc": "s between full collections in the tick's slack; 0 = never"}
    )

    def __post_init__(self) -> None:
        if not isinstance(self.priority, int) or not 0 <= self.priority <= 99:
            raise ValueError(f"parameter 'realtime.priority' must be an integer 0-99, got {self.priority!r}")
        if any(not isinstance(c, int) or c < 0 for c in self.cpus):
            raise ValueError(f"parameter 'realtime.cpus' must list CPU numbers >= 0, got {self.cpus!r}")
        if not (math.isfinite(self.gc_full_every) and self.gc_full_every >= 0):
            raise ValueError(
                f"parameter 'realtime.gc_full_every' must be a finite number >= 0, got {self.gc_full_every!r}"
            )


def apply_realtime(cfg: RealtimeConfig, thread_id: int | None = None) -> list[tuple[bool, str]]:
    """Apply ``cfg`` (priority to ``thread_id``, default the calling thread); [(applied, line)].

    Nothing raises: a setting the process may not use is reported (``applied`` False) and the
    tick runs with normal scheduling.
    """
    lines: list[tuple[bool, str]] = []
    if cfg.cpus:
        try:
            # every thread of the process (a mask is per thread; new threads inherit their creator's)
            for task in Path("/proc/self/task").iterdir():
                os.sched_setaffinity(int(task.name), set(cfg.cpus))
            lines.append((True, f"CPU affinity {sorted(cfg.cpus)}"))
        except (OSError, ValueError) as exc:
            lines.append((False, f"CPU affinity {sorted(cfg.cpus)} not applied: {exc}"))
    if cfg.lock_memory:
        lines.append(_lock_memory())
    if cfg.priority > 0:
        tid = threading.get_native_id() if thread_id is None else thread_id
        try:
            os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(cfg.priority))
            lines.append((True, f"tick thread SCHED_FIFO priority {cfg.priority}"))
        except (OSError, AttributeError) as exc:
            lines.append(
                (
                    False,
                    f"tick thread SCHED_FIFO priority {cfg.priority} not permitted ({exc}): running with "
                    "normal scheduling; grant it with CAP_SYS_NICE or an rtprio limit (limits.conf, "
                    "docker --cap-add SYS_NICE --ulimit rtprio=99)",
                )
            )
    return lines


def renice_process(increment: int) -> int:
    """Add ``increment`` to the niceness of every thread of this process (Linux keeps one per
    thread; threads started later inherit their creator's). Returns the main thread's new value."""
    for task in Path("/proc/self/task").iterdir():
        tid = int(task.name)
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
        except ProcessLookupError:  # the thread ended meanwhile
            continue
    return os.getpriority(os.PRIO_PROCESS, 0)


def _lock_memory() -> tuple[bool, str]:
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False, "memory not locked: libc not found"
    libc = ctypes.CDLL(libc_name, use_errno=True)
    if libc.mlockall(_MCL_CURRENT | _MCL_FUTURE) != 0:
        err = ctypes.get_errno()
        limit = "unlimited" if soft == resource.RLIM_INFINITY else f"{soft // 1024} KiB"
        return (
            False,
            f"memory not locked: mlockall failed ({os.strerror(err)}; RLIMIT_MEMLOCK {limit}); grant "
            "CAP_IPC_LOCK or raise memlock (limits.conf, docker --ulimit memlock=-1)",
        )
    return True, "memory locked (mlockall current and future)"


class DeadlineClock(Protocol):
    """What the tick thread sleeps on: seconds on some clock, and a sleep until one of them."""

    def now(self) -> float: ...

    def sleep_until(self, deadline: float, stop: threading.Event) -> None:
        """Return at ``deadline`` or soon after ``stop`` is set (whichever first)."""


class MonotonicClock:
    """Wall-clock deadlines on ``time.monotonic`` (a step of the system clock moves nothing)."""

    def now(self) -> float:
        return time.monotonic()

    def sleep_until(self, deadline: float, stop: threading.Event) -> None:
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= DEADLINE_SLACK:
                return
            stop.wait(left)


class SteppedClock:
    """A clock set from outside (a simulator's time): ``notify()`` wakes a sleeper to re-check.

    ``now()`` reads the time from ``read`` (e.g. the ROS node's sim clock); call ``notify()`` on
    every time update. A sleeper also re-checks every ``poll`` wall seconds, so a missed
    notification costs at most that. ``read`` is never called with a lock of this class held,
    and ``notify`` takes none that ``read`` may wait for: the time source usually calls
    ``notify`` while holding its own clock's lock, which ``read`` needs too.
    """

    def __init__(self, read: Callable[[], float], poll: float = 0.05) -> None:
        self._read = read
        self._poll = poll
        self._updated = threading.Event()

    def now(self) -> float:
        return self._read()

    def notify(self) -> None:
        self._updated.set()

    def sleep_until(self, deadline: float, stop: threading.Event) -> None:
        """Also returns when the time goes backwards (a replay looping): the caller re-plans."""
        entered = self._read()
        while not stop.is_set():
            self._updated.clear()
            now = self._read()  # an update after clear() sets the event again: no wake-up lost
            if now >= deadline - DEADLINE_SLACK or now < entered:
                return
            entered = now
            self._updated.wait(self._poll)


class DeadlineSchedule:
    """Deadlines ``start + k * period``; after a tick, the first one still in the future."""

    def __init__(self, period: float, start: float) -> None:
        if not (math.isfinite(period) and period > 0):
            raise ValueError(f"tick period must be a finite number > 0, got {period!r}")
        self.period = period
        self.start = start
        self.k = 0

    @property
    def deadline(self) -> float:
        return self.start + self.k * self.period

    def advance(self, now: float) -> int:
        """Move to the next deadline after ``now``; returns how many deadlines were skipped."""
        due = math.floor((now - self.start) / self.period) + 1
        skipped = max(0, due - self.k - 1)
        self.k = max(self.k + 1, due)
        return skipped

    def restart(self, now: float) -> None:
        """Start a fresh grid at ``now`` (the clock jumped backwards, or a sim clock restarted)."""
        self.start, self.k = now, 0


class SlackGc:
    """Collect garbage in the tick thread's slack instead of at random allocation points."""

    def __init__(self, full_every: float, young_threshold: int = 700) -> None:
        self.full_every = full_every
        self.young_threshold = young_threshold
        self._last_full = time.monotonic()
        self.durations = LatencyStats(window=2000)
        self.enabled = False

    def start(self) -> None:
        """Freeze what exists now (it is never scanned again) and stop automatic collection."""
        gc.collect()
        gc.freeze()
        gc.disable()
        self.enabled = True

    def stop(self) -> None:
        if self.enabled:
            gc.enable()
            self.enabled = False

    def collect(self, slack: float) -> None:
        """Called right after a tick with ``slack`` seconds left before the next deadline."""
        if not self.enabled or slack <= 0:
            return
        now = time.monotonic()
        if self.full_every > 0 and now - self._last_full >= self.full_every:
            gc.collect()
            self._last_full = now
        elif gc.get_count()[0] >= self.young_threshold:
            gc.collect(1 if gc.get_count()[1] >= 10 else 0)  # generation 1 every 10th time
        else:
            return
        self.durations.add(time.monotonic() - now)


@dataclass
class TickStats:
    """Lateness (tick start - its deadline), period between tick starts, skipped deadlines."""

    lateness: LatencyStats = field(default_factory=lambda: LatencyStats(window=5000))
    period: LatencyStats = field(default_factory=lambda: LatencyStats(window=5000))
    ticks: int = 0
    skipped: int = 0
    jumps: int = 0
    max_period: float = 0.0

    def summary_ms(self) -> dict[str, float]:
        late, per = self.lateness.summary(1e3), self.period.summary(1e3)
        return {
            "tick_lateness_p50_ms": late["p50"],
            "tick_lateness_p99_ms": late["p99"],
            "tick_lateness_max_ms": late["max"],
            "control_period_p50_ms": per["p50"],
            "control_period_p99_ms": per["p99"],
            "control_period_max_ms": 1e3 * self.max_period,
        }


class TickThread:
    """Calls ``tick()`` at every deadline of ``period`` on ``clock`` until ``stop()``.

    ``tick`` must not raise (the caller catches and reports); an exception that escapes ends
    the thread, and ``error`` holds it. A clock that goes backwards, or forwards by more than
    ``jump`` s past a deadline (a sim clock starting, a paused process), restarts the deadline
    grid at the new time and counts a jump instead of skipped deadlines. ``gc`` (a ``SlackGc``)
    may be attached at any time.
    """

    def __init__(
        self,
        tick: Callable[[], None],
        period: float,
        clock: DeadlineClock | None = None,
        gc_policy: SlackGc | None = None,
        jump: float = 1.0,
        name: str = "control-tick",
    ) -> None:
        self._tick = tick
        self.clock = clock or MonotonicClock()
        self.period = period
        self.gc = gc_policy
        self.jump = max(jump, 2 * period)
        self.stats = TickStats()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if isinstance(self.clock, SteppedClock):
            self.clock.notify()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def native_id(self) -> int | None:
        """The OS thread id (for scheduling settings); None before start."""
        return self._thread.native_id

    def _run(self) -> None:
        try:
            # a sim clock reads 0 until its first update (ROS time "not set"): no tick before that
            while not self._stop.is_set() and self.clock.now() <= 0.0:
                self.clock.sleep_until(2 * DEADLINE_SLACK, self._stop)
            schedule = DeadlineSchedule(self.period, self.clock.now())
            last_start = None
            while not self._stop.is_set():
                self.clock.sleep_until(schedule.deadline, self._stop)
                if self._stop.is_set():
                    break
                start = self.clock.now()
                late = start - schedule.deadline
                if late < -self.period or late > self.jump:  # the clock jumped: a fresh grid
                    self.stats.jumps += 1
                    schedule.restart(start)
                    last_start = None
                    late = 0.0
                self.stats.lateness.add(max(late, 0.0))
                if last_start is not None:
                    period = start - last_start
                    self.stats.period.add(period)
                    self.stats.max_period = max(self.stats.max_period, period)
                last_start = start
                self._tick()
                self.stats.ticks += 1
                self.stats.skipped += schedule.advance(self.clock.now())
                if self.gc is not None:
                    self.gc.collect(schedule.deadline - self.clock.now())
        except BaseException as exc:  # noqa: BLE001 - reported through .error by the owner
            self.error = exc
