"""rosbag2 bags (MCAP or sqlite3) read and written with the ``rosbags`` library, without ROS.

Messages are CDR bytes, exactly what rclpy publishes and ``ros2 bag`` stores. Typed messages are
serialised and deserialised with a rosbags typestore of the ROS 2 Kilted definitions (identical
to Jazzy for every type we use); types the store lacks can be registered from ``.msg`` text.

Bag-level metadata (instruction, success flag, robot set-up...) lives in rosbag2's
``custom_data`` (metadata version >= 6), which ``ros2 bag info`` and rosbags both read.

Times are integer nanoseconds (``t_ns``) on the bag's clock: wall time for live recordings,
simulation time for recordings made in the simulator.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from rosbags.interfaces import (
    Connection,
    ConnectionExtRosbag2,
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import Reader, Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
COMPRESSIONS = ("none", "zstd")
RELIABILITIES = {"reliable": QosReliability.RELIABLE, "best_effort": QosReliability.BEST_EFFORT}
DURABILITIES = {"volatile": QosDurability.VOLATILE, "transient_local": QosDurability.TRANSIENT_LOCAL}


class BagError(RuntimeError):
    """A bag that cannot be opened, written or understood (path, topic or type named)."""


# --- typestore ------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def typestore() -> Any:
    """The shared rosbags typestore (ROS 2 Kilted message definitions)."""
    return get_typestore(Stores.ROS2_KILTED)


def register_msg_type(msgtype: str, msg_text: str) -> None:
    """Add a ``pkg/msg/Name`` type from its ``.msg`` text to the shared typestore.

    Nested types must be registered first (or already be known). Registering a type that is
    already present with the same definition is a no-op.
    """
    store = typestore()
    if msgtype in store.fielddefs:
        return
    store.register(get_types_from_msg(msg_text, msgtype))


def has_type(msgtype: str) -> bool:
    """True when the shared typestore can (de)serialise ``msgtype`` (``pkg/msg/Name``)."""
    return msgtype in typestore().fielddefs


_PRIMITIVES = {
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16",
    "int32", "uint32", "int64", "uint64", "string", "wstring", "time", "duration",
}  # fmt: skip


def _share_dirs() -> list[Path]:
    """Where installed ROS packages keep ``share/<pkg>/msg/*.msg`` (ament prefixes + this Python's)."""
    import os
    import sys

    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    prefixes.append(sys.prefix)
    return [Path(p) / "share" for p in prefixes]


def _msg_dependencies(pkg: str, text: str) -> list[str]:
    """Nested message types a .msg text refers to, as ``pkg/msg/Name``."""
    deps: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or "=" in line.split()[0]:
            continue
        typ = line.split()[0].split("[")[0].split("<=")[0]
        if typ in _PRIMITIVES or "=" in line.split(maxsplit=1)[-1].split()[0]:
            continue
        if typ == "Header":
            deps.append("std_msgs/msg/Header")
        elif "/" in typ:
            dep_pkg, name = typ.split("/")[0], typ.split("/")[-1]
            deps.append(f"{dep_pkg}/msg/{name}")
        else:
            deps.append(f"{pkg}/msg/{typ}")
    return deps


def ensure_type(msgtype: str) -> bool:
    """Make ``pkg/msg/Name`` known to the typestore, reading installed ``.msg`` files if needed.

    Returns False when neither the typestore nor an installed package defines it.
    """
    if has_type(msgtype):
        return True
    pkg, _, name = msgtype.split("/")
    for share in _share_dirs():
        path = share / pkg / "msg" / f"{name}.msg"
        if path.is_file():
            text = path.read_text()
            if not all(ensure_type(dep) for dep in _msg_dependencies(pkg, text)):
                return False
            register_msg_type(msgtype, text)
            return True
    return False


def serialize(msg: Any, msgtype: str | None = None) -> bytes:
    """Typestore message object -> CDR bytes (little endian, with the 4-byte encapsulation header)."""
    name = msgtype or msg.__msgtype__
    return bytes(typestore().serialize_cdr(msg, name))


def deserialize(data: bytes | memoryview, msgtype: str) -> Any:
    """CDR bytes -> typestore message object of type ``msgtype``."""
    try:
        return typestore().deserialize_cdr(data, msgtype)
    except KeyError as exc:
        raise BagError(f"message type {msgtype!r} is unknown to the typestore; register it first") from exc


def msg_class(msgtype: str) -> type:
    """The typestore's Python class for ``pkg/msg/Name`` (build messages with keyword arguments)."""
    store = typestore()
    if msgtype not in store.fielddefs:
        raise BagError(f"message type {msgtype!r} is unknown to the typestore; register it first")
    return store.types[msgtype]


# --- QoS ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicQos:
    """The QoS a topic was offered with, stored in the bag so a player can offer it again.

    reliability: "reliable" | "best_effort"; durability: "volatile" | "transient_local"
    (latched topics such as the instruction); depth: keep-last history depth >= 1.
    """

    reliability: str = "reliable"
    durability: str = "volatile"
    depth: int = 10

    def __post_init__(self) -> None:
        if self.reliability not in RELIABILITIES:
            raise ValueError(
                f"TopicQos.reliability must be one of {sorted(RELIABILITIES)}, got {self.reliability!r}"
            )
        if self.durability not in DURABILITIES:
            raise ValueError(
                f"TopicQos.durability must be one of {sorted(DURABILITIES)}, got {self.durability!r}"
            )
        if int(self.depth) < 1:
            raise ValueError(f"TopicQos.depth must be >= 1, got {self.depth!r}")

    def to_rosbags(self) -> Qos:
        """-> rosbags Qos (what rosbag2 writes into ``offered_qos_profiles``)."""
        zero = QosTime(0, 0)
        return Qos(
            history=QosHistory.KEEP_LAST,
            depth=int(self.depth),
            reliability=RELIABILITIES[self.reliability],
            durability=DURABILITIES[self.durability],
            deadline=zero,
            lifespan=zero,
            liveliness=QosLiveliness.AUTOMATIC,
            liveliness_lease_duration=zero,
            avoid_ros_namespace_conventions=False,
        )

    @staticmethod
    def from_rosbags(profiles: Sequence[Qos]) -> TopicQos:
        """First recorded profile -> TopicQos (reliable/volatile/10 when none or unknown)."""
        if not profiles:
            return TopicQos()
        qos = profiles[0]
        reliability = "best_effort" if qos.reliability == QosReliability.BEST_EFFORT else "reliable"
        durability = "transient_local" if qos.durability == QosDurability.TRANSIENT_LOCAL else "volatile"
        depth = int(qos.depth) if int(qos.depth) >= 1 else 10
        return TopicQos(reliability=reliability, durability=durability, depth=depth)


LATCHED = TopicQos(durability="transient_local", depth=1)


# --- writing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BagWriterConfig:
    """How a bag is written.

    storage: "mcap" (default; opens in ``ros2 bag`` >= Iron and Foxglove) or "sqlite3" (``.db3``).
    version: rosbag2 metadata version: 9 (Jazzy, Kilted; default) or 8 (readers that predate 9).
    compression: "none" or "zstd" (MCAP chunk compression; per-message zstd for sqlite3).
    """

    storage: str = "mcap"
    version: int = 9
    compression: str = "none"

    def __post_init__(self) -> None:
        if self.storage not in STORAGES:
            raise ValueError(
                f"BagWriterConfig.storage must be one of {sorted(STORAGES)}, got {self.storage!r}"
            )
        if self.version not in (8, 9):
            raise ValueError(f"BagWriterConfig.version must be 8 or 9, got {self.version!r}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(
                f"BagWriterConfig.compression must be one of {COMPRESSIONS}, got {self.compression!r}"
            )


class BagWriter:
    """Writes one rosbag2 bag directory; use as a context manager.

    >>> with BagWriter(path, BagWriterConfig()) as bag:
    ...     bag.add_topic("/instruction", "std_msgs/msg/String", LATCHED)
    ...     bag.write("/instruction", t_ns, msg)           # typestore object
    ...     bag.write_raw("/camera/image", t_ns, cdr_bytes)  # bytes as received from DDS
    ...     bag.set_metadata({"instruction": "pick up the cube"})
    """

    def __init__(self, path: str | Path, config: BagWriterConfig | None = None) -> None:
        self.path = Path(path)
        self.config = config or BagWriterConfig()
        if self.path.exists():
            raise BagError(f"bag path {str(self.path)!r} exists already; rosbag2 bags are never overwritten")
        self._writer = Writer(
            self.path, version=self.config.version, storage_plugin=STORAGES[self.config.storage]
        )
        if self.config.compression == "zstd":
            mode = CompressionMode.STORAGE if self.config.storage == "mcap" else CompressionMode.MESSAGE
            self._writer.set_compression(mode, CompressionFormat.ZSTD)
        self._connections: dict[str, Connection] = {}
        self.counts: dict[str, int] = {}
        self._open = False

    def open(self) -> BagWriter:
        self._writer.open()
        self._open = True
        return self

    def __enter__(self) -> BagWriter:
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @property
    def topics(self) -> dict[str, str]:
        """Topic name -> message type of the topics added so far."""
        return {topic: conn.msgtype for topic, conn in self._connections.items()}

    def add_topic(
        self,
        topic: str,
        msgtype: str,
        qos: TopicQos | None = None,
        msgdef: str | None = None,
        type_hash: str | None = None,
    ) -> None:
        """Declare a topic. The definition comes from the typestore unless ``msgdef`` and ``type_hash``
        (RIHS01) are given, e.g. for a message type the typestore does not know."""
        if not topic.startswith("/"):
            raise BagError(f"topic names in a bag must be absolute, got {topic!r}")
        if topic in self._connections:
            if self._connections[topic].msgtype != msgtype:
                raise BagError(
                    f"topic {topic!r} was added as {self._connections[topic].msgtype}, not {msgtype}"
                )
            return
        if msgdef is None and not has_type(msgtype):
            raise BagError(f"message type {msgtype!r} of topic {topic!r} is unknown to the typestore")
        qos = qos or TopicQos()
        self._connections[topic] = self._writer.add_connection(
            topic,
            msgtype,
            typestore=typestore(),
            msgdef=msgdef,
            rihs01=type_hash,
            offered_qos_profiles=[qos.to_rosbags()],
        )
        self.counts[topic] = 0

    def write_raw(self, topic: str, t_ns: int, data: bytes | memoryview) -> None:
        """Append CDR bytes received at ``t_ns`` (int ns) to a declared topic."""
        conn = self._connections.get(topic)
        if conn is None:
            raise BagError(f"topic {topic!r} was not added to bag {str(self.path)!r}; call add_topic first")
        if int(t_ns) < 0:
            raise BagError(f"bag timestamps must be >= 0 ns, got {t_ns} on {topic!r}")
        self._writer.write(conn, int(t_ns), data)
        self.counts[topic] += 1

    def write(self, topic: str, t_ns: int, msg: Any) -> None:
        """Serialise a typestore message and append it to a declared topic."""
        conn = self._connections.get(topic)
        if conn is None:
            raise BagError(f"topic {topic!r} was not added to bag {str(self.path)!r}; call add_topic first")
        self.write_raw(topic, t_ns, serialize(msg, conn.msgtype))

    def set_metadata(self, values: Mapping[str, object]) -> None:
        """Store key/value pairs in the bag's ``custom_data`` (values rendered as strings;
        bools as "true"/"false")."""
        for key, value in values.items():
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            self._writer.set_custom_data(str(key), text)

    def close(self) -> None:
        """Finish the storage file and write metadata.yaml."""
        if self._open:
            self._writer.close()
            self._open = False

    def abort(self) -> None:
        """Stop without writing metadata (the partial bag stays on disk for inspection)."""
        if self._open:
            self._writer.abort()
            self._open = False


# --- reading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicInfo:
    """One topic of a bag: type, message count, offered QoS, RIHS01 type hash and .msg definition."""

    name: str
    msgtype: str
    count: int
    qos: TopicQos
    type_hash: str = ""
    msgdef: str = ""


@dataclass(frozen=True)
class BagMessage:
    """One message of a bag: topic, type, receive time (int ns) and the raw CDR bytes."""

    topic: str
    msgtype: str
    t_ns: int
    data: bytes = field(repr=False)

    def decode(self) -> Any:
        """Deserialise with the typestore."""
        return deserialize(self.data, self.msgtype)


class BagReader:
    """Reads a rosbag2 bag directory (or a bare ``.mcap`` / ``.db3`` file); use as a context manager."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"bag {str(self.path)!r} does not exist")
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except Exception as exc:  # noqa: BLE001 - rosbags raises several types; we name the bag
            raise BagError(f"cannot open bag {str(self.path)!r}: {exc}") from exc
        self._register_unknown_types()

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def close(self) -> None:
        if self._reader.is_open:
            self._reader.close()

    def _register_unknown_types(self) -> None:
        """Types carried in the bag's own definitions but unknown to the typestore are added."""
        for conn in self._reader.connections:
            if has_type(conn.msgtype) or not conn.msgdef.data:
                continue
            try:
                typs = get_types_from_msg(conn.msgdef.data, conn.msgtype)
            except Exception:  # noqa: BLE001 - a definition we cannot parse stays raw-only
                continue
            typestore().register(typs)

    @property
    def topics(self) -> dict[str, TopicInfo]:
        """Topic name -> TopicInfo."""
        out: dict[str, TopicInfo] = {}
        for conn in self._reader.connections:
            ext = conn.ext
            profiles = ext.offered_qos_profiles if isinstance(ext, ConnectionExtRosbag2) else []
            prev = out.get(conn.topic)
            count = conn.msgcount + (prev.count if prev else 0)
            out[conn.topic] = TopicInfo(
                conn.topic,
                conn.msgtype,
                count,
                TopicQos.from_rosbags(profiles),
                conn.digest,
                conn.msgdef.data,
            )
        return out

    @property
    def start_ns(self) -> int:
        """Time of the first message (int ns)."""
        return int(self._reader.start_time)

    @property
    def end_ns(self) -> int:
        """Time of the last message (int ns)."""
        return int(self._reader.end_time) - 1

    @property
    def message_count(self) -> int:
        return int(self._reader.message_count)

    @property
    def metadata(self) -> dict[str, str]:
        """The bag's ``custom_data`` (empty for bare storage files or bags without it)."""
        custom = getattr(self._reader.storage.metadata, "custom", None)
        return {str(k): str(v) for k, v in (custom or {}).items()}

    def messages(
        self,
        topics: Sequence[str] | None = None,
        start_ns: int | None = None,
        stop_ns: int | None = None,
    ) -> Iterator[BagMessage]:
        """Messages in receive-time order, optionally only ``topics`` and ``start_ns <= t < stop_ns``."""
        conns = self._reader.connections
        if topics is not None:
            missing = sorted(set(topics) - {c.topic for c in conns})
            if missing:
                raise BagError(
                    f"bag {str(self.path)!r} has no topic(s) {missing}; it has {sorted(self.topics)}"
                )
            conns = [c for c in conns if c.topic in set(topics)]
        for conn, t_ns, data in self._reader.messages(conns, start=start_ns, stop=stop_ns):
            yield BagMessage(conn.topic, conn.msgtype, int(t_ns), bytes(data))


def read_metadata(path: str | Path) -> dict[str, str]:
    """A bag's ``custom_data`` without reading its messages."""
    with BagReader(path) as bag:
        return bag.metadata
