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
