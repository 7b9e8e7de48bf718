"""Process shutdown helpers shared by the node entry points."""

from __future__ import annotations

import signal
import threading


def ignore_further_interrupts() -> None:
    """Shutdown has begun: a second SIGINT must not cut it short.

    A node that got SIGINT finishes its own shutdown (the policy waits for the running inference,
    the executor and fake free their timers, the recorder closes its bag). A second SIGINT, from a
    double Ctrl-C or a supervisor that signals each process and its group, would raise
    KeyboardInterrupt in the middle of that and leave a half-written bag or an abort. SIGTERM and
    SIGKILL still end the process. Only the main thread may change signal handlers; elsewhere
    this does nothing.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def spin_until_shutdown(executor) -> None:
    """``executor.spin()`` until its context shuts down (SIGINT/SIGTERM through rclpy's handlers).

    A signal that shuts the context down while the executor is building its wait set surfaces as
    RCLError ("the given context is not valid") instead of ExternalShutdownException: that is a
    normal shutdown too, not a failure (it made a node exit 1 at teardown under load). An RCLError
    while the context is still valid is re-raised.
    """
    from rclpy._rclpy_pybind11 import RCLError
    from rclpy.executors import ExternalShutdownException

    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        if executor.context.ok():
            raise
