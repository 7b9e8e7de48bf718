"""The deadline tick thread and the real-time settings (tinyvla_ros.core.realtime), without ROS.

The thread is driven by a ``SteppedClock`` whose time the test sets, so every assertion is about
which deadlines produced a tick, not about how fast this machine is. Settings that change the
process (scheduling, memory locking, niceness, the collector) are tried in a child process.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from tinyvla_ros.core.realtime import (
    DeadlineSchedule,
    RealtimeConfig,
    SlackGc,
    SteppedClock,
    TickThread,
    apply_realtime,
)


class ManualTime:
    """A settable time and a tick recorder: the test moves time, the thread ticks."""

    def __init__(self, t: float = 100.0) -> None:
        self.t = t
        self.clock = SteppedClock(lambda: self.t, poll=0.01)
        self.ticks: list[float] = []
        self.ticked = threading.Condition()

    def tick(self) -> None:
        with self.ticked:
            self.ticks.append(self.t)
            self.ticked.notify_all()

    def set(self, t: float, expect_ticks: int | None = None) -> None:
        """Move time to ``t``; wait until the thread has ``expect_ticks`` ticks (or settled)."""
        self.t = t
        self.clock.notify()
        if expect_ticks is None:
            time.sleep(0.05)
            return
        with self.ticked:
            assert self.ticked.wait_for(lambda: len(self.ticks) >= expect_ticks, 5.0), (
                f"{len(self.ticks)} ticks, expected {expect_ticks}"
            )
        time.sleep(0.03)  # a burst would show as more ticks here


@pytest.fixture
def manual():
    m = ManualTime()
    thread = TickThread(m.tick, 0.01, m.clock, jump=0.5)
    thread.start()
    yield m, thread
    thread.stop()
    assert not thread.running


def test_schedule_skips_missed_deadlines_instead_of_bursting():
    s = DeadlineSchedule(0.01, start=5.0)
    assert s.deadline == 5.0
    assert s.advance(5.0001) == 0 and s.deadline == pytest.approx(5.01)
    # the tick ran 3.5 periods late: deadlines 5.02, 5.03, 5.04 passed, the next is 5.05
    assert s.advance(5.045) == 3 and s.deadline == pytest.approx(5.05)
    assert s.advance(5.0501) == 0 and s.deadline == pytest.approx(5.06)
    s.restart(7.0)
    assert s.deadline == 7.0 and s.advance(7.0) == 0 and s.deadline == pytest.approx(7.01)
    with pytest.raises(ValueError, match="period"):
        DeadlineSchedule(0.0, 0.0)


def test_thread_ticks_once_per_deadline_of_the_clock(manual):
    m, thread = manual
    m.set(100.0, expect_ticks=1)  # the first deadline is the start time
    for k in range(1, 6):
        m.set(100.0 + 0.01 * k + 1e-4, expect_ticks=1 + k)
    assert len(m.ticks) == 6
    m.set(100.0555)  # between deadlines: no tick
    assert len(m.ticks) == 6
    assert thread.stats.skipped == 0 and thread.stats.jumps == 0
    assert thread.stats.lateness.max <= 1e-4 + 1e-9


def test_late_clock_gives_one_tick_not_a_burst(manual):
    m, thread = manual
    m.set(100.0, expect_ticks=1)
    m.set(100.0451, expect_ticks=2)  # 4.5 periods passed at once: one tick, 3 deadlines skipped
    assert len(m.ticks) == 2
    assert thread.stats.skipped == 3
    m.set(100.0501, expect_ticks=3)  # back on the grid
    assert len(m.ticks) == 3 and m.ticks[-1] == pytest.approx(100.0501)


def test_clock_jumps_restart_the_grid(manual):
    m, thread = manual
    m.set(100.0, expect_ticks=1)
    m.set(50.0, expect_ticks=2)  # backwards (a replay looping): tick now, new grid at 50.0
    m.set(50.0101, expect_ticks=3)
    assert thread.stats.jumps == 1
    m.set(60.0, expect_ticks=4)  # forwards by more than `jump`: a jump, not 999 skipped deadlines
    assert thread.stats.jumps == 2 and thread.stats.skipped == 0
    m.set(60.0101, expect_ticks=5)
    assert len(m.ticks) == 5


def test_stop_wakes_a_sleeping_thread():
    m = ManualTime()
    thread = TickThread(m.tick, 0.01, m.clock)
    thread.start()
    m.set(100.0, expect_ticks=1)
    started = time.monotonic()
    thread.stop(timeout=2.0)
    assert not thread.running and time.monotonic() - started < 1.0
    assert thread.error is None


def test_tick_exception_ends_the_thread_and_is_kept():
    m = ManualTime()

    def tick():
        raise RuntimeError("boom")

    thread = TickThread(tick, 0.01, m.clock)
    thread.start()
    thread._thread.join(2.0)
    assert not thread.running and isinstance(thread.error, RuntimeError)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"priority": 100}, "realtime.priority"),
        ({"priority": -1}, "realtime.priority"),
        ({"cpus": [-1]}, "realtime.cpus"),
        ({"gc_full_every": float("nan")}, "realtime.gc_full_every"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RealtimeConfig(**kwargs)


def test_defaults_apply_nothing():
    assert apply_realtime(RealtimeConfig()) == []


_CHILD = r"""
import json, os, sys, threading
from tinyvla_ros.core.realtime import RealtimeConfig, apply_realtime, renice_process
drop = sys.argv[1] == "drop"
if drop:
    import resource
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, 0))
    os.setgid(65534)
    os.setuid(65534)
started = threading.Event()
t = threading.Thread(target=started.wait, daemon=True)
t.start()
lines = apply_realtime(RealtimeConfig(priority=10, lock_memory=True, cpus=[0]), t.native_id)
policy = os.sched_getscheduler(t.native_id)
locked = [l for l in open("/proc/self/status") if l.startswith("VmLck")][0].split()[1]
affinity = sorted(os.sched_getaffinity(t.native_id))
value = renice_process(3)
nices = [os.getpriority(os.PRIO_PROCESS, int(x)) for x in os.listdir("/proc/self/task")]
print(json.dumps({"lines": lines, "fifo": policy == os.SCHED_FIFO, "locked_kb": int(locked),
                  "affinity": affinity, "nice": value, "nices": nices}))
started.set()
"""


def _child(mode: str) -> dict:
    import json

    out = subprocess.run(
        [sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(out.stdout)


def test_settings_applied_when_permitted_and_reported_when_not():
    """As root the settings take (FIFO, locked pages, affinity); unprivileged, each is reported."""
    privileged = os.geteuid() == 0
    result = _child("keep")
    applied = dict((text.split(" ")[0], ok) for ok, text in result["lines"])
    assert result["affinity"] == [0]
    assert result["nice"] >= 3 and all(n >= 3 for n in result["nices"])  # every thread reniced
    if privileged:
        assert result["fifo"] and result["locked_kb"] > 0, result
        assert all(applied.values()), result["lines"]
        dropped = _child("drop")  # the same process without privileges
        assert not dropped["fifo"] and dropped["locked_kb"] == 0
        reasons = {text for ok, text in dropped["lines"] if not ok}
        assert any("SCHED_FIFO priority 10 not permitted" in r and "CAP_SYS_NICE" in r for r in reasons)
        assert any("memory not locked" in r and "RLIMIT_MEMLOCK" in r for r in reasons)
    else:
        assert not result["fifo"]
        assert any("not permitted" in text for ok, text in result["lines"] if not ok)


def test_slack_gc_collects_only_when_asked():
    policy = SlackGc(full_every=0.0, young_threshold=10)
    policy.start()
    try:
        assert not gc.isenabled() and gc.get_freeze_count() > 0
        garbage = [[i] for i in range(100)]  # allocations push the young generation's count
        del garbage
        policy.collect(slack=0.0)  # no slack before the next deadline: nothing
        assert len(policy.durations) == 0
        policy.collect(slack=0.005)
        assert len(policy.durations) == 1 and gc.get_count()[0] < 10
    finally:
        policy.stop()
        gc.unfreeze()
    assert gc.isenabled()


def test_stepped_clock_never_holds_a_lock_its_time_source_needs():
    """The time source notifies while holding the lock that reading the time takes (rclpy's clock
    does): the sleeper must not wait for that lock while the notifier waits for one of ours."""
    source_lock = threading.Lock()
    t = [0.0]

    def read() -> float:
        with source_lock:
            return t[0]

    clock = SteppedClock(read, poll=0.001)
    ticks: list[float] = []
    thread = TickThread(lambda: ticks.append(t[0]), 0.01, clock)
    done = threading.Event()

    def source() -> None:  # set the time and notify under the source's lock, as rcl does
        for k in range(1, 400):
            with source_lock:
                t[0] = 0.0025 * k
                time.sleep(0.0005)  # the source's own work under its lock (rcl: the jump callbacks)
                clock.notify()
            time.sleep(0.0005)
        done.set()

    thread.start()
    feeder = threading.Thread(target=source, daemon=True)
    feeder.start()
    try:
        assert done.wait(10.0), "the time source is stuck notifying: deadlock with the sleeper"
        deadline = time.monotonic() + 5.0
        while len(ticks) < 90 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(ticks) >= 90, f"{len(ticks)} ticks for 99 deadlines: the sleeper was stuck"
    finally:  # stop from a daemon thread: with a deadlock, stop() itself would block the test
        threading.Thread(target=thread.stop, daemon=True).start()


def test_a_sim_clock_value_a_few_ulps_before_the_deadline_ticks():
    """Epoch-sized float seconds: the sim's clock for the instant of a deadline may read a few
    0.24 us steps below start + k * period; that must tick (a lockstep sim waits for it)."""
    m = ManualTime(1796597600.1474694)
    thread = TickThread(m.tick, 0.01, m.clock)
    thread.start()
    try:
        m.set(m.t, expect_ticks=1)
        start = m.ticks[0]
        for k in range(1, 30):
            exact = start + k * 0.01
            m.set(np.nextafter(np.nextafter(exact, 0.0), 0.0), expect_ticks=1 + k)  # 2 ULPs early
        assert thread.stats.skipped == 0 and thread.stats.jumps == 0
    finally:
        thread.stop()


def test_no_tick_before_a_sim_clock_starts():
    """ROS time reads 0 until the first /clock message: the first tick waits for real time, and the
    start is not a clock jump."""
    m = ManualTime(0.0)
    thread = TickThread(m.tick, 0.01, m.clock)
    thread.start()
    try:
        m.set(0.0)
        assert m.ticks == []
        m.set(1796597600.0, expect_ticks=1)
        m.set(1796597600.0101, expect_ticks=2)
        assert thread.stats.jumps == 0 and thread.stats.skipped == 0
    finally:
        thread.stop()
