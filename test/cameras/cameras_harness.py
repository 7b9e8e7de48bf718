"""DDS helpers of the camera tests: an rclpy context with a spinning executor and listeners."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)


class RosHarness:
    """One rclpy context, a single-threaded executor spinning on a thread, and message listeners."""

    def __init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.listener = Node("camera_test_listener", context=self.context)
        self.executor.add_node(self.listener)
        self.nodes: list[Node] = []
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def add(self, node: Node) -> Node:
        """Spin ``node`` too (and shut it down at the end)."""
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def collect(self, msg_type: type, topic: str) -> list[tuple[Any, int]]:
        """A list that fills with (message, receive time ns) from ``topic``."""
        out: list[tuple[Any, int]] = []
        self.listener.create_subscription(
            msg_type, topic, lambda m: out.append((m, time.time_ns())), RELIABLE
        )
        return out

    def wait_for_subscribers(self, node: Node, topic: str, timeout_s: float = 10.0) -> None:
        """Block until ``topic`` of ``node`` has a subscriber (DDS discovery done)."""
        wait_until(lambda: node.count_subscribers(topic) > 0, timeout_s, f"a subscriber on {topic}")

    def close(self) -> None:
        for node in self.nodes:
            shutdown = getattr(node, "shutdown", None)
            if shutdown is not None:
                shutdown()
        self.executor.shutdown(timeout_sec=2.0)
        for node in [*self.nodes, self.listener]:
            node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` every 20 ms; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def params(**values: Any) -> list[Parameter]:
    """rclpy parameter overrides from keyword arguments."""
    return [Parameter(k, value=v) for k, v in values.items()]
