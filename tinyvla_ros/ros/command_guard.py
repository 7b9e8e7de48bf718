"""Guarded command path: who may send chunks to the executor, who else commands its controllers.

The executor introspects the ROS graph (``get_publishers_info_by_topic``) every ``period`` s:

- chunk topic: every publisher must belong to a node in ``allowed_chunk_publishers`` (names
  relative to the executor's namespace, or absolute ``/ns/name``). While any other publisher is
  on the topic the executor refuses to actuate: it holds (brakes to a stop) and reports an
  ERROR on /diagnostics naming the intruder; when the intruder leaves it follows fresh chunks
  again. Each chunk is also checked on arrival: its publisher's gid (rclpy MessageInfo) must be
  one of the allowed publishers' endpoints, else it is dropped (a chunk from a publisher that
  appeared between two checks never reaches the plan).
- controller command topics (the ones the executor owns, grippers included): any publisher
  that is not the executor itself is reported as a WARN (the executor cannot stop another
  node from commanding the robot; DDS security can, see the README).

Pure functions and a small state class, no rclpy: the executor node feeds it the endpoint lists.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["CommandGuardConfig", "Endpoint", "GuardVerdict", "CommandGuard", "resolve_name", "gid_bytes"]


@dataclass
class CommandGuardConfig:
    """Executor parameters ``guard.<field>``.

    enabled: check the graph at all (false: no refusal, no warnings; for debugging only).
    allowed_chunk_publishers: node names allowed to publish chunks (relative names are resolved
        in the executor's namespace).
    period: s between two graph checks (steady clock).
    """

    enabled: bool = field(default=True, metadata={"doc": "guard the chunk and command topics"})
    allowed_chunk_publishers: list[str] = field(
        default_factory=lambda: ["tinyvla_policy"],
        metadata={"doc": "nodes allowed to publish chunks (relative to the executor's namespace)"},
    )
    period: float = field(default=0.1, metadata={"doc": "s between graph checks"})

    def __post_init__(self) -> None:
        names = list(self.allowed_chunk_publishers)
        if not names or not all(isinstance(n, str) and n.strip("/") for n in names):
            raise ValueError(
                f"parameter 'guard.allowed_chunk_publishers' must be a non-empty list of node names, got {names!r}"
            )
        if not isinstance(self.period, (int, float)) or not math.isfinite(self.period) or self.period <= 0:
            raise ValueError(f"parameter 'guard.period' must be a finite number > 0, got {self.period!r}")


@dataclass(frozen=True)
class Endpoint:
    """A publisher seen in the graph: its node's fully qualified name and its gid bytes."""

    node: str
    gid: bytes = b""


def resolve_name(name: str, namespace: str) -> str:
    """Fully qualified node name: "/ns/name" stays, "name" -> "<namespace>/name"."""
    if name.startswith("/"):
        return "/" + name.strip("/")
    ns = namespace.strip("/")
    return f"/{ns}/{name.strip('/')}" if ns else f"/{name.strip('/')}"


def node_fqn(node_namespace: str, node_name: str) -> str:
    """ "/ns" + "name" -> "/ns/name" ("/" + "name" -> "/name")."""
    return resolve_name(node_name, node_namespace)


def gid_bytes(gid: object) -> bytes:
    """A gid as bytes: TopicEndpointInfo.endpoint_gid (list of ints), MessageInfo gid ({"data": bytes})."""
    if gid is None:
        return b""
    if isinstance(gid, Mapping):
        gid = gid.get("data", b"")
    if isinstance(gid, (bytes, bytearray)):
        return bytes(gid)
    return bytes(int(x) & 0xFF for x in gid)  # type: ignore[union-attr]


@dataclass
class GuardVerdict:
    """Result of one graph check: refusal ("" = chunks accepted) and warnings (one per foreign commander)."""

    refuse: str = ""
    intruders: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)  # allowed chunk publishers not in the graph


def chunk_intruders(publishers: Iterable[Endpoint], allowed: set[str]) -> list[str]:
    """Sorted node names publishing chunks that are not allowed."""
    return sorted({p.node for p in publishers if p.node not in allowed})


def foreign_commanders(publishers: Mapping[str, Sequence[Endpoint]], own: str) -> dict[str, list[str]]:
    """{topic: sorted nodes other than ``own``} for command topics that have such publishers."""
    out = {}
    for topic, pubs in publishers.items():
        others = sorted({p.node for p in pubs if p.node != own})
        if others:
            out[topic] = others
    return out


class CommandGuard:
    """Graph checks of one executor (see the module docstring); not thread-safe (caller locks)."""

    def __init__(self, cfg: CommandGuardConfig, own_fqn: str, namespace: str) -> None:
        self.cfg = cfg
        self.own = own_fqn
        self.allowed = {resolve_name(n, namespace) for n in cfg.allowed_chunk_publishers}
        self._allowed_gids: set[bytes] = set()
        self.verdict = GuardVerdict()
        self.checks = 0

    def update(
        self, chunk_publishers: Sequence[Endpoint], command_publishers: Mapping[str, Sequence[Endpoint]]
    ) -> GuardVerdict:
        """Take one snapshot of the graph; returns (and keeps) the verdict."""
        self.checks += 1
        if not self.cfg.enabled:
            self.verdict = GuardVerdict()
            self._allowed_gids = {p.gid for p in chunk_publishers}
            return self.verdict
        self._allowed_gids = {p.gid for p in chunk_publishers if p.node in self.allowed and p.gid}
        intruders = chunk_intruders(chunk_publishers, self.allowed)
        refuse = ""
        if intruders:
            refuse = (
                f"refusing to actuate: chunk topic has publishers {intruders} besides the allowed "
                f"{sorted(self.allowed)}"
            )
        warnings = [
            f"{topic} is also published by {nodes}"
            for topic, nodes in sorted(foreign_commanders(command_publishers, self.own).items())
        ]
        present = {p.node for p in chunk_publishers}
        self.verdict = GuardVerdict(refuse, intruders, warnings, sorted(self.allowed - present))
        return self.verdict

    def accepts(self, gid: object) -> bool:
        """Whether a chunk from publisher ``gid`` (MessageInfo publisher_gid) may be used."""
        if not self.cfg.enabled:
            return True
        return gid_bytes(gid) in self._allowed_gids

    @property
    def refusing(self) -> str:
        return self.verdict.refuse
