"""``tinyvla-bag-record``: record topics of the running graph to a rosbag2 bag (MCAP or sqlite3).

Subscriptions are generic (any installed message type) and raw: the CDR bytes DDS delivers are
written unchanged, stamped with the node clock's receive time (sim time with use_sim_time:=true),
as ``ros2 bag record`` does. Each topic's QoS follows its publishers (reliable unless one of them
is best effort; transient local when all are, so latched topics such as the instruction are
caught even when published before the recorder started) and is stored in the bag.

Topics are discovered every ``discovery_period`` seconds: a listed topic that appears later is
picked up then. With ``all_topics`` every topic is recorded except ``exclude`` (/rosout and
/parameter_events by default). Bag metadata (``custom_data``) comes from ``metadata``
(e.g. instruction, success, robot).

The default topic set of a robot set-up (``--setup franka``) is what the graph's params file
(config/<setup>.yaml) names: cameras, joint states, instruction, the policy's chunks, the
executor's controller commands, /diagnostics.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

from tinyvla_ros.core.robots import SETUPS
from tinyvla_ros.data.bag import BagWriter, BagWriterConfig, TopicQos, ensure_type, typestore
from tinyvla_ros.ros.bag_play import message_class
from tinyvla_ros.ros.entry import run_node
from tinyvla_ros.ros.qos import bag_qos

NODE_NAME = "tinyvla_bag_recorder"
DEFAULT_EXCLUDE = ("/rosout", "/parameter_events")


@dataclass
class RecorderConfig:
    """Recording options (see the module docstring).

    output: bag directory to create (must not exist). topics: absolute topic names to record.
    all_topics: record every discovered topic but ``exclude``. duration: stop after this many
    seconds of wall time (0: until stopped). storage/compression/version: see BagWriterConfig.
    """

    output: str
    topics: list[str] = field(default_factory=list)
    all_topics: bool = False
    exclude: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    storage: str = "mcap"
    compression: str = "none"
    version: int = 9
    discovery_period: float = 0.2
    duration: float = 0.0
    depth: int = 100
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.topics and not self.all_topics:
            raise ValueError("RecorderConfig: give topics to record or all_topics=True")
        bad = [t for t in self.topics if not t.startswith("/")]
        if bad:
            raise ValueError(f"RecorderConfig.topics must be absolute topic names, got {bad}")
        if not (math.isfinite(self.discovery_period) and self.discovery_period > 0):
            raise ValueError(f"RecorderConfig.discovery_period must be > 0 s, got {self.discovery_period!r}")
        if not (math.isfinite(self.duration) and self.duration >= 0):
            raise ValueError(
                f"RecorderConfig.duration must be >= 0 s (0 = until stopped), got {self.duration!r}"
            )
        if self.depth < 1:
            raise ValueError(f"RecorderConfig.depth must be >= 1, got {self.depth!r}")
        BagWriterConfig(self.storage, self.version, self.compression)  # validates those three


def offered_qos(infos: Sequence[Any], depth: int) -> TopicQos:
    """Publishers' QoS (rclpy TopicEndpointInfo list) -> the QoS to subscribe and store with."""
    profiles = [i.qos_profile for i in infos]
    best_effort = any(p.reliability == ReliabilityPolicy.BEST_EFFORT for p in profiles)
    latched = bool(profiles) and all(p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in profiles)
    return TopicQos(
        reliability="best_effort" if best_effort else "reliable",
        durability="transient_local" if latched else "volatile",
        depth=depth,
    )


class BagRecorder(Node):
    """Records topics to a bag until ``stop()`` (or ``duration``); see the module docstring."""

    def __init__(self, cfg: RecorderConfig, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.cfg = cfg
        self._lock = threading.Lock()
        self._writer = BagWriter(
            cfg.output, BagWriterConfig(cfg.storage, cfg.version, cfg.compression)
        ).open()
        self._writer.set_metadata(cfg.metadata)
        self._subs: dict[str, Any] = {}
        self._skipped: dict[str, str] = {}
        self.done = threading.Event()
        self._start_ns = self.get_clock().now().nanoseconds
        self._timer = self.create_timer(cfg.discovery_period, self._discover)
        self._discover()
        self.get_logger().info(f"recording to {cfg.output} ({cfg.storage})")

    @property
    def counts(self) -> dict[str, int]:
        """Messages written per topic so far."""
        with self._lock:
            return dict(self._writer.counts)

    def _wanted(self, topic: str) -> bool:
        if self.cfg.all_topics:
            return topic not in self.cfg.exclude
        return topic in self.cfg.topics

    def _discover(self) -> None:
        """Subscribe to wanted topics that have publishers now; stop after ``duration``."""
        if self.cfg.duration > 0:
            elapsed = (self.get_clock().now().nanoseconds - self._start_ns) * 1e-9
            if elapsed >= self.cfg.duration:
                self.done.set()
                return
        for topic, types in self.get_topic_names_and_types():
            if topic in self._subs or topic in self._skipped or not self._wanted(topic):
                continue
            infos = self.get_publishers_info_by_topic(topic)
            if infos:
                self._subscribe(topic, types[0], infos)

    def _subscribe(self, topic: str, msgtype: str, infos: Sequence[Any]) -> None:
        try:
            cls = message_class(msgtype)
        except (ImportError, ValueError) as exc:
            self._skip(topic, str(exc))
            return
        if not ensure_type(msgtype):
            self._skip(topic, f"no message definition found for {msgtype}")
            return
        qos = offered_qos(infos, self.cfg.depth)
        remote_hash = str(infos[0].topic_type_hash)
        with self._lock:
            if self._writer is None:
                return
            local_hash = typestore().hash_rihs01(msgtype)
            if remote_hash.startswith("RIHS01_") and remote_hash != local_hash:
                self.get_logger().warning(
                    f"{topic}: publisher type hash {remote_hash} differs from {local_hash}"
                )
            self._writer.add_topic(topic, msgtype, qos)
        self._subs[topic] = self.create_subscription(
            cls, topic, self._callback(topic), bag_qos(qos), raw=True
        )
        self.get_logger().info(f"recording {topic} [{msgtype}] {qos.reliability}/{qos.durability}")

    def _skip(self, topic: str, reason: str) -> None:
        self._skipped[topic] = reason
        self.get_logger().error(f"not recording {topic}: {reason}")

    def _callback(self, topic: str):
        def write(data: bytes) -> None:
            t_ns = self.get_clock().now().nanoseconds
            with self._lock:
                if self._writer is not None:
                    self._writer.write_raw(topic, t_ns, data)

        return write

    def stop(self) -> dict[str, int]:
        """Close the bag (metadata written); returns the message counts. Idempotent."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is None:
            return {}
        for sub in self._subs.values():
            self.destroy_subscription(sub)
        self._subs = {}
        writer.close()
        self.done.set()
        return dict(writer.counts)


def setup_topics(setup: str) -> list[str]:
    """The graph's topics of a set-up, read from config/<setup>.yaml (policy and executor parameters)."""
    import yaml

    from tinyvla_ros.paths import config_dir

    path = config_dir() / f"{setup}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown set-up {setup!r}: {path} does not exist")
    params = yaml.safe_load(path.read_text())
    policy = params.get("/**/tinyvla_policy", {}).get("ros__parameters", {})
    executor = params.get("/**/tinyvla_executor", {}).get("ros__parameters", {})
    topics = [spec["topic"] for spec in policy.get("cameras", {}).values()]
    topics += [
        policy.get("joint_states_topic", "/joint_states"),
        "/" + policy.get("instruction_topic", "instruction"),
    ]
    topics += ["/tinyvla_policy/chunk", "/diagnostics"]
    for key in (
        "forward_command_topics",
        "trajectory_command_topics",
        "pose_command_topics",
        "gripper_topics",
    ):
        topics += list(executor.get(key, []))
    return sorted({"/" + t.lstrip("/") for t in topics})


def parse_metadata(items: Sequence[str]) -> dict[str, str]:
    """["key=value", ...] -> dict; ValueError naming a malformed entry."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"metadata must look like key=value, got {item!r}")
        out[key] = value
    return out


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM -> KeyboardInterrupt, so the bag is closed properly."""
    raise KeyboardInterrupt


def _record_until_done(node: BagRecorder, executor: SingleThreadedExecutor) -> None:
    """Spin until ``duration`` has passed (the recorder sets ``done``) or the context shuts down."""
    while rclpy.ok() and not node.done.is_set():
        executor.spin_once(timeout_sec=0.1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinyvla-bag-record", description=__doc__.split("\n\n")[0])
    parser.add_argument("output", help="bag directory to create")
    parser.add_argument("topics", nargs="*", help="topics to record")
    parser.add_argument("--setup", choices=SETUPS, help="record the set-up's graph topics")
    parser.add_argument("--all", action="store_true", help="record every topic (but --exclude)")
    parser.add_argument(
        "--exclude", nargs="+", default=list(DEFAULT_EXCLUDE), help="topics not recorded with --all"
    )
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument("--compression", choices=("none", "zstd"), default="none")
    parser.add_argument("--bag-version", type=int, choices=(8, 9), default=9, help="rosbag2 metadata version")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after S seconds (0: until Ctrl-C)")
    parser.add_argument(
        "--metadata", action="append", default=[], metavar="KEY=VALUE", help="custom_data entry"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console entry point: ``tinyvla-bag-record OUT [TOPIC ...] [--setup S] [--all] ... [--ros-args ...]``."""
    args_in = sys.argv[1:] if argv is None else argv
    ros_args = args_in[args_in.index("--ros-args") :] if "--ros-args" in args_in else []
    args = build_parser().parse_args(args_in[: len(args_in) - len(ros_args)])
    try:
        topics = list(args.topics) + (setup_topics(args.setup) if args.setup else [])
        cfg = RecorderConfig(
            output=args.output,
            topics=sorted(set(topics)),
            all_topics=args.all,
            exclude=list(args.exclude),
            storage=args.storage,
            compression=args.compression,
            version=args.bag_version,
            duration=args.duration,
            metadata=parse_metadata(args.metadata),
        )
    except ValueError as exc:
        print(f"tinyvla-bag-record: {exc}", file=sys.stderr)
        return 2

    def make_recorder() -> BagRecorder:
        signal.signal(signal.SIGTERM, _interrupt)
        return BagRecorder(cfg)

    def finish(node: BagRecorder) -> None:
        counts = node.stop()
        print(f"recorded {sum(counts.values())} messages to {cfg.output}: {counts}")

    return run_node(
        make_recorder,
        ["tinyvla-bag-record", *ros_args],
        errors=(ValueError, OSError, RuntimeError),
        error_format="tinyvla-bag-record: {type}: {exc}",
        work=_record_until_done,
        on_shutdown=finish,
    )


if __name__ == "__main__":
    sys.exit(main())
