"""One entry point for every node process: ``run_node``.

What each node's ``main()`` needs, in order:

1. ``rclpy.init`` with the process arguments (``--ros-args ...``);
2. the node built by ``make_node()``, then ``before_spin(node)`` (a renice, a realtime set-up,
   capture threads started). A start-up failure of one of the ``errors`` types (a bad parameter,
   a missing SDK) is printed on one line to stderr and the process exits 2;
3. a SingleThreadedExecutor spinning the node until the context shuts down (SIGINT/SIGTERM,
   ``spin_until_shutdown``). One thread on purpose: rclpy's multi-threaded executor spins its
   wait loop while a callback group is busy, holding the GIL against the nodes' own threads (a
   core burnt, inference slowed 5x). A tool that works in the foreground instead (a recorder's
   loop, a player's playback) passes ``work(node, executor)``: its ``errors`` are reported the
   same way; exceptions raised by callbacks while spinning are not (they are bugs: traceback);
4. shutdown that a second SIGINT cannot cut short: the executor shut down, ``on_shutdown(node)``
   (stop the node's own threads; a returned int is the exit code), the node destroyed, rclpy
   shut down.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from tinyvla_ros.ros.shutdown import ignore_further_interrupts, spin_until_shutdown

N = TypeVar("N", bound=Node)


def run_node(
    make_node: Callable[[], N],
    argv: Sequence[str] | None = None,
    *,
    errors: tuple[type[Exception], ...] = (ValueError,),
    error_format: str = "error: {exc}",
    before_spin: Callable[[N], None] | None = None,
    work: Callable[[N, SingleThreadedExecutor], None] | None = None,
    on_shutdown: Callable[[N], int | None] | None = None,
) -> int:
    """Run one node process (see the module docstring); returns the exit code.

    argv: the arguments given to rclpy.init (None: ``sys.argv``); errors: exception types that
    mean the node cannot start (exit 2), reported as ``error_format.format(exc=exc,
    type=type(exc).__name__)``; before_spin: run once the node exists; work: run instead of
    spinning until shutdown; on_shutdown: run before the node is destroyed (also after a failed
    ``before_spin`` or ``work``), a returned int replaces the exit code.
    """
    rclpy.init(args=sys.argv if argv is None else list(argv))
    node: N | None = None
    executor: SingleThreadedExecutor | None = None
    code = 0
    try:
        try:
            node = make_node()
            if before_spin is not None:
                before_spin(node)
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            if work is not None:
                work(node, executor)
        except errors as exc:
            print(error_format.format(exc=exc, type=type(exc).__name__), file=sys.stderr)
            code = 2
        else:
            if work is None:
                spin_until_shutdown(executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        ignore_further_interrupts()
        if executor is not None:
            executor.shutdown()
        if node is not None:
            if on_shutdown is not None:
                override = on_shutdown(node)
                code = code if override is None else override
            node.destroy_node()
        rclpy.try_shutdown()
    return code
