"""Node entry-point shutdown helpers: spinning until the context shuts down, a second SIGINT ignored."""

from __future__ import annotations

import signal
import threading

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from tinyvla_ros.ros.shutdown import ignore_further_interrupts, spin_until_shutdown  # noqa: E402

pytestmark = pytest.mark.ros


@pytest.mark.parametrize("rounds", [5])
def test_spin_returns_without_error_when_the_context_shuts_down_mid_spin(rounds):
    for i in range(rounds):  # shutdown lands at different points of the spin loop
        context = rclpy.Context()
        rclpy.init(context=context)
        node = rclpy.create_node(f"spin_shutdown_test_{i}", context=context)
        node.create_timer(0.001, lambda: None)  # keep the executor rebuilding its wait set
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        threading.Timer(0.05 + 0.01 * i, context.try_shutdown).start()
        spin_until_shutdown(executor)  # must return, not raise
        assert not context.ok()
        executor.shutdown()
        node.destroy_node()


def test_second_sigint_is_ignored_once_shutdown_began():
    before = signal.getsignal(signal.SIGINT)
    try:
        ignore_further_interrupts()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
