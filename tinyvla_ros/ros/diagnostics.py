"""/diagnostics (diagnostic_msgs/DiagnosticArray) publishing shared by the tinyvla_ros nodes.

A node keeps a ``DiagnosticState`` (thread-safe counters and "current problem" entries that any
thread may update) and a ``DiagnosticsPublisher`` that, on its own timer, turns the node's report
into one DiagnosticStatus and publishes it. Errors that must be seen (an unknown image encoding,
a checkpoint that does not fit) are kept as named problems until cleared, so a 1 Hz message
always shows them, not only at the instant they happened.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

from diagnostic_msgs.msg import DiagnosticArray

from tinyvla_ros.ros.conversions import diagnostic_status
from tinyvla_ros.ros.qos import reliable_qos

_RANK = {"ok": 0, "warn": 1, "error": 2}


class DiagnosticState:
    """Counters and active problems of one node; safe to update from any thread.

    ``problems`` maps a key (e.g. "camera zed_left") to (level, message, last time seen);
    a problem not refreshed for ``expire_after`` seconds disappears from the report.
    """

    def __init__(self, expire_after: float = 5.0) -> None:
        self._lock = threading.Lock()
        self.counters: Counter[str] = Counter()
        self._problems: dict[str, tuple[str, str, float]] = {}
        self.expire_after = expire_after

    def count(self, key: str, n: int = 1) -> None:
        """Add ``n`` to counter ``key``."""
        with self._lock:
            self.counters[key] += n

    def problem(self, key: str, level: str, message: str) -> None:
        """Raise (or refresh) a problem: level "warn" | "error"."""
        if level not in _RANK:
            raise ValueError(f"diagnostic level must be one of {list(_RANK)}, got {level!r}")
        with self._lock:
            self._problems[key] = (level, message, time.monotonic())

    def clear(self, key: str) -> None:
        """Forget problem ``key`` (it was resolved)."""
        with self._lock:
            self._problems.pop(key, None)

    def snapshot(self) -> tuple[dict[str, int], list[tuple[str, str, str]]]:
        """(counters copy, [(key, level, message)] of live problems, worst first)."""
        now = time.monotonic()
        with self._lock:
            live = {k: v for k, v in self._problems.items() if now - v[2] <= self.expire_after}
            self._problems = live
            problems = sorted(((k, lv, msg) for k, (lv, msg, _) in live.items()), key=lambda p: -_RANK[p[1]])
            return dict(self.counters), problems


def summarize(problems: list[tuple[str, str, str]], ok_message: str) -> tuple[str, str]:
    """(level, message) of a status: the worst problem's level, every problem's text joined."""
    if not problems:
        return "ok", ok_message
    level = problems[0][1]
    return level, "; ".join(f"{key}: {msg}" for key, _, msg in problems)


class DiagnosticsPublisher:
    """Publishes ``report()`` as a one-status DiagnosticArray on /diagnostics every ``period`` s.

    report() -> (level, message, values dict). Runs in the callback group it is given, so a
    busy inference or control callback does not delay it.
    """

    def __init__(
        self,
        node,
        name: str,
        hardware_id: str,
        period: float,
        report: Callable[[], tuple[str, str, dict]],
        callback_group=None,
    ) -> None:
        self._node = node
        self._name = name
        self._hardware_id = hardware_id
        self._report = report
        self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", reliable_qos(10))
        self._timer = node.create_timer(period, self.publish_now, callback_group=callback_group)

    def publish_now(self) -> None:
        """Build the report and publish it."""
        level, message, values = self._report()
        msg = DiagnosticArray()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.status = [diagnostic_status(self._name, self._hardware_id, level, message, values)]
        self._pub.publish(msg)

    def destroy(self) -> None:
        """Stop the timer and the publisher."""
        self._node.destroy_timer(self._timer)
        self._node.destroy_publisher(self._pub)
