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
    RCLError ("the given context is not valid") instead of ExternalShutdownException, and one that
    lands while a subscription takes its message as a plain RuntimeError from the bindings
    ("Unable to convert call argument '0' to Python object"): both are a normal shutdown, not a
    failure (they made nodes exit 1 at teardown under load). Either error while the context is
    still valid is re-raised.
    """
    from rclpy.executors import ExternalShutdownException

    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:  # rclpy's RCLError is a RuntimeError
        if executor.context.ok():
            raise
