"""Node entry points: spinning until the context shuts down, a second SIGINT ignored, ``run_node``."""

from __future__ import annotations

import signal
import threading

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402

from tinyvla_ros.ros.entry import run_node  # noqa: E402
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


class _TakeFailsAtShutdown(SingleThreadedExecutor):
    """A real executor whose spin ends the way a signal during ``take_message`` ends it: the
    context shuts down and the bindings raise a RuntimeError (``shut_down=False``: the same
    error with the context still valid, a real failure)."""

    def __init__(self, context, shut_down: bool) -> None:
        super().__init__(context=context)
        self.shut_down = shut_down

    def spin(self) -> None:
        self.spin_once(timeout_sec=0.01)
        if self.shut_down:
            self.context.try_shutdown()
        raise RuntimeError("Unable to convert call argument '0' to Python object")


@pytest.mark.parametrize("shut_down", [True, False])
def test_a_take_error_is_a_normal_shutdown_only_once_the_context_is_down(shut_down):
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = _TakeFailsAtShutdown(context, shut_down)
    try:
        if shut_down:
            spin_until_shutdown(executor)  # returns: the node exits 0
        else:
            with pytest.raises(RuntimeError, match="convert call argument"):
                spin_until_shutdown(executor)
    finally:
        executor.shutdown()
        context.try_shutdown()


def test_second_sigint_is_ignored_once_shutdown_began():
    before = signal.getsignal(signal.SIGINT)
    try:
        ignore_further_interrupts()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.fixture
def sigint_restored():
    """run_node ignores SIGINT once shutdown begins: give the test process its handler back."""
    before = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, before)
    rclpy.try_shutdown()


class _Node(Node):
    def __init__(self, calls: list[str]) -> None:
        super().__init__("run_node_test")
        self.calls = calls

    def destroy_node(self) -> None:
        self.calls.append("destroy")
        super().destroy_node()


def test_run_node_reports_a_start_up_error_and_exits_2(sigint_restored, capsys):
    def broken():
        raise ValueError("parameter 'rate' must be > 0, got -1")

    code = run_node(broken, ["test"], error_format="[test_node] configuration error: {exc}")
    assert code == 2
    assert (
        capsys.readouterr().err == "[test_node] configuration error: parameter 'rate' must be > 0, got -1\n"
    )
    assert not rclpy.ok()  # shut down
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    with pytest.raises(KeyError):  # not one of ``errors``: a traceback, not a one-line message
        run_node(lambda: {}["missing"], ["test"])
    assert not rclpy.ok()


def test_run_node_spins_until_shutdown_then_stops_the_node_in_order(sigint_restored):
    calls: list[str] = []

    def make():
        node = _Node(calls)
        node.create_timer(0.01, lambda: calls.append("tick") if "tick" not in calls else None)
        return node

    def before_spin(node):
        calls.append("before_spin")
        threading.Timer(0.3, rclpy.try_shutdown).start()  # what SIGINT does through rclpy's handler

    def on_shutdown(node):
        calls.append("on_shutdown")

    assert run_node(make, ["test"], before_spin=before_spin, on_shutdown=on_shutdown) == 0
    # (rclpy's context shutdown may destroy the node first; run_node destroys it after on_shutdown)
    assert calls[:2] == ["before_spin", "tick"] and calls[-2:] == ["on_shutdown", "destroy"]
    assert not rclpy.ok()


def test_run_node_exit_code_from_on_shutdown_and_work_errors_reported(sigint_restored, capsys):
    calls: list[str] = []

    def fails(node, executor):
        executor.spin_once(timeout_sec=0.01)
        raise OSError("disk full")

    code = run_node(
        lambda: _Node(calls),
        ["test"],
        errors=(OSError,),
        error_format="tool: {type}: {exc}",
        work=fails,
        on_shutdown=lambda node: calls.append("on_shutdown"),
    )
    assert code == 2 and capsys.readouterr().err == "tool: OSError: disk full\n"
    assert calls == ["on_shutdown", "destroy"]
    calls.clear()
    code = run_node(
        lambda: _Node(calls), ["test"], work=lambda node, executor: None, on_shutdown=lambda node: 1
    )
    assert code == 1 and calls == ["destroy"]  # e.g. the fake robot's failed sim thread


def test_run_node_lets_a_callback_error_through_as_a_traceback(sigint_restored, capsys):
    calls: list[str] = []

    def make():
        node = _Node(calls)

        def bad_callback():
            raise ValueError("a bug in a callback")

        node.create_timer(0.01, bad_callback)
        return node

    with pytest.raises(ValueError, match="a bug in a callback"):  # not a "configuration error", exit 2
        run_node(make, ["test"], error_format="configuration error: {exc}")
    assert capsys.readouterr().err == "" and calls == ["destroy"] and not rclpy.ok()
