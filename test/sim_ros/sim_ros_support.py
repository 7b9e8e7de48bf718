"""Helpers of the fake-robot tests: node processes with logs, ROS argument lists, polling."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class NodeProcess:
    """A node started as a child process; ``stop()`` sends SIGINT, then SIGKILL."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> int:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=15.0)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def ros_args(**params: object) -> list[str]:
    """``--ros-args -p k:=v ...`` with YAML-style values (lists as [a, b])."""
    argv = ["--ros-args"]
    for key, value in params.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list):
            text = "[" + ", ".join(str(v) for v in value) + "]"
        else:
            text = str(value)
        argv += ["-p", f"{key}:={text}"]
    return argv


def start_fake(tmp: Path, name: str, **params: object) -> NodeProcess:
    """The fake-robot node as a process with ``params``."""
    argv = [sys.executable, "-m", "tinyvla_ros.ros.fake_robot_node", *ros_args(**params)]
    return NodeProcess(argv, tmp / f"{name}.log")


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, proc: NodeProcess | None = None
) -> None:
    """Poll ``predicate`` every 20 ms; AssertionError naming ``what`` (and the process log) on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and not proc.alive():
            raise AssertionError(f"process died while waiting for {what}:\n{proc.log()}")
        time.sleep(0.02)
    log = f"\n--- process log ---\n{proc.log()}" if proc is not None else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}{log}")


class Graph:
    """A robot graph (policy, executor, fake robot) started with the project's GraphRunner."""

    def __init__(
        self, robot: str, checkpoint: Path, log_dir: Path, extra: dict[str, dict], output: str = ""
    ) -> None:
        from tinyvla_ros.ros.graph import GraphArgs, GraphRunner, build_graph

        specs = build_graph(
            GraphArgs(
                robot,
                use_sim=True,
                checkpoint=str(checkpoint),
                enable_actuation=True,
                use_sim_time=True,
                output=output,
                extra_parameters=extra,
            )
        )
        self.log_dir = log_dir
        self.runner = GraphRunner(specs, log_dir=log_dir)

    def start(self, timeout: float) -> None:
        self.runner.start()
        self.runner.activate_lifecycle_nodes(timeout)

    def check_alive(self) -> None:
        dead = self.runner.dead()
        if dead:
            raise AssertionError(f"nodes died: {[p.spec.fqn for p in dead]}\n{self.logs()}")

    def logs(self) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def stop(self) -> dict[str, int]:
        return self.runner.stop()


@contextmanager
def running_graph(
    robot: str, checkpoint: Path, log_dir: Path, extra: dict[str, dict], monitor_name: str, output: str = ""
) -> Iterator[tuple[Graph, Any]]:
    """(graph, GraphMonitor) of a started graph; stopped on exit, every node must exit 0."""
    from tinyvla_ros.ros.fake_robot.monitor import GraphMonitor

    graph = Graph(robot, checkpoint, log_dir, extra, output=output)
    monitor = GraphMonitor(name=monitor_name)
    try:
        graph.start(timeout=240.0)
        yield graph, monitor
    finally:
        monitor.close()
        codes = graph.stop()
    assert all(c == 0 for c in codes.values()), f"{codes}\n{graph.logs()}"


@contextmanager
def running_evaluator(checkpoint: str | Path, cfg: Any, log_dir: Path) -> Iterator[Any]:
    """A started ``GraphEvaluator`` (tinyvla-graph-eval's graph); on leaving, the graph is stopped and
    every node must have exited cleanly (0, or -2: the runner's SIGINT landing in rclpy's shutdown)."""
    from tinyvla_ros.ros.graph_eval import GraphEvaluator

    evaluator = GraphEvaluator(checkpoint, cfg, log_dir)
    try:
        evaluator.start()
        yield evaluator
    finally:
        codes = evaluator.stop()
    assert all(c in (0, -2) for c in codes.values()), codes


def poll(predicate: Callable[[], bool], timeout: float, what: str, graph: Graph) -> None:
    """wait_until for a graph: fails early (with the logs) when a node dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        graph.check_alive()
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{graph.logs()}")


def rate_between(monitor, prefix: str, key: str, seconds: float, graph: Graph) -> tuple[float, dict, dict]:
    """(per sim second rate of diagnostics counter ``key`` of ``prefix`` over ~``seconds`` of its
    stamps, first, last).

    The window starts at the second status received after this call: the latest one already
    received may predate the state the caller just waited for (a status is published every
    diagnostics period of wall time, and a lockstep sim can run several sim seconds per wall s).
    """
    poll(lambda: key in monitor.diag(prefix), 30.0, f"{prefix} diagnostics with {key}", graph)
    for _ in range(2):  # the first new one may have been in flight already
        before = monitor.diag_with_stamp(prefix)[0]
        poll(lambda b=before: monitor.diag_with_stamp(prefix)[0] > b, 30.0, f"a fresh {prefix} status", graph)
    t0, first = monitor.diag_with_stamp(prefix)
    poll(
        lambda: monitor.diag_with_stamp(prefix)[0] >= t0 + seconds,
        10.0 * seconds + 30.0,
        f"{seconds} s of {prefix}",
        graph,
    )
    t1, last = monitor.diag_with_stamp(prefix)
    return (last[key] - first[key]) / (t1 - t0), first, last


def tiny_checkpoint(directory: Path, cameras: list[str], low, high, state_mean, state_std) -> Path:
    """A random-init nano checkpoint whose actions lie in [low, high] (one torch thread)."""
    import torch

    from tinyvla_ros.vla.testing import make_tiny_checkpoint

    torch.set_num_threads(1)
    return make_tiny_checkpoint(
        directory,
        cameras,
        len(state_mean),
        len(low),
        seed=0,
        action_low=list(low),
        action_high=list(high),
        state_mean=list(state_mean),
        state_std=list(state_std),
    )
