"""Drive a lifecycle node's transitions through its lifecycle_msgs services (no ``ros2 lifecycle`` needed).

``LifecycleClient(node, "/ns/tinyvla_policy")`` calls ``<fqn>/change_state`` and ``<fqn>/get_state``.
With ``spin=True`` the node must not be spun elsewhere (the client spins it while waiting, in the
node's own context); with ``spin=False`` another thread spins it and the client only waits.
"""

from __future__ import annotations

import time

from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.executors import SingleThreadedExecutor

TRANSITIONS = {
    "configure": Transition.TRANSITION_CONFIGURE,
    "activate": Transition.TRANSITION_ACTIVATE,
    "deactivate": Transition.TRANSITION_DEACTIVATE,
    "cleanup": Transition.TRANSITION_CLEANUP,
    "shutdown": Transition.TRANSITION_ACTIVE_SHUTDOWN,
}


class LifecycleError(RuntimeError):
    """A transition was refused or failed, or the node's services did not answer in time."""


class LifecycleClient:
    """Client of one lifecycle node's change_state/get_state services."""

    def __init__(self, node, target_fqn: str, spin: bool = True) -> None:
        self._node = node
        self._spin = spin
        self.target = target_fqn.rstrip("/")
        self._change = node.create_client(ChangeState, f"{self.target}/change_state")
        self._get = node.create_client(GetState, f"{self.target}/get_state")

    def wait_for_services(self, timeout: float, alive=None) -> None:
        """Block until both services exist; LifecycleError after ``timeout`` s, or at once when
        ``alive()`` (the node's process, if given) says the node has exited."""
        deadline = time.monotonic() + timeout
        for client in (self._change, self._get):
            while not client.wait_for_service(timeout_sec=0.2):
                if alive is not None and not alive():
                    raise LifecycleError(
                        f"{self.target}: the node exited before its lifecycle services came up"
                    )
                if time.monotonic() > deadline:
                    raise LifecycleError(
                        f"{self.target}: lifecycle services not available after {timeout:.0f} s"
                    )

    def _call(self, client, request, timeout: float):
        future = client.call_async(request)
        if self._spin:
            executor = SingleThreadedExecutor(context=self._node.context)
            executor.add_node(self._node)
            try:
                executor.spin_until_future_complete(future, timeout_sec=timeout)
            finally:
                executor.remove_node(self._node)
                executor.shutdown()
        else:
            deadline = time.monotonic() + timeout
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.01)
        if not future.done():
            raise LifecycleError(f"{self.target}: {client.srv_name} did not answer within {timeout:.0f} s")
        return future.result()

    def state(self, timeout: float = 30.0, attempt: float = 2.0) -> str:
        """The node's current state label (unconfigured, inactive, active, finalized).

        GetState is idempotent, so an unanswered request is re-sent every ``attempt`` seconds: a
        request goes only to the servers matched when it is sent, and the node we want may be
        matched after another, silent server of the same name (a node left over in the same
        domain, or one still starting up) made ``wait_for_services`` return.
        """
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                return self._call(
                    self._get, GetState.Request(), max(0.1, min(attempt, left))
                ).current_state.label
            except LifecycleError:
                if time.monotonic() >= deadline:
                    raise LifecycleError(
                        f"{self.target}: {self._get.srv_name} did not answer within {timeout:.0f} s"
                    ) from None

    def transition(self, name: str, timeout: float = 60.0) -> None:
        """Trigger transition ``name`` (configure, activate, ...); LifecycleError if it fails."""
        if name not in TRANSITIONS:
            raise ValueError(f"transition must be one of {list(TRANSITIONS)}, got {name!r}")
        request = ChangeState.Request()
        request.transition.id = TRANSITIONS[name]
        if not self._call(self._change, request, timeout).success:
            raise LifecycleError(f"{self.target}: transition {name!r} failed (see the node's log)")

    def destroy(self) -> None:
        """Free the clients."""
        self._node.destroy_client(self._change)
        self._node.destroy_client(self._get)
