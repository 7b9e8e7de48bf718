"""``tinyvla-bag-play``: publish a rosbag2 bag's messages with their recorded timing.

Messages are published as the raw CDR bytes stored in the bag (``publisher.publish(bytes)``):
nothing is deserialised or re-serialised, so subscribers get exactly what was recorded. Each
topic is offered with the QoS stored in the bag (latched topics such as the instruction stay
latched).

Timing: message i is published at wall time start + (t_i - t_first) / rate. With ``clock_hz > 0``
the bag time is published on /clock (rosgraph_msgs/Clock) before every message and at
``clock_hz`` while waiting, so nodes started with ``use_sim_time:=true`` run on the bag's clock.
``start_offset`` skips the first seconds of the bag (latched topics still get their last message
from before the offset) and ``duration`` plays only that many seconds; ``loop`` starts over at
the end (the clock jumps back); ``remap`` renames topics (``/from:=/to``); ``topics`` plays a
subset.

Playback runs on the caller's thread (never in an executor callback); the node is spun on a
background thread so its services and parameters answer.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rosgraph_msgs.msg import Clock

from tinyvla_ros.data.bag import BagError, BagReader
from tinyvla_ros.ros.entry import run_node
from tinyvla_ros.ros.qos import bag_qos
from tinyvla_ros.ros.shutdown import ignore_further_interrupts, spin_until_shutdown

NODE_NAME = "tinyvla_bag_player"


def message_class(msgtype: str) -> type:
    """``pkg/msg/Name`` -> the rclpy message class; ImportError naming the missing package."""
    parts = msgtype.split("/")
    if len(parts) != 3 or parts[1] != "msg":
        raise ValueError(f"message type must look like 'pkg/msg/Name', got {msgtype!r}")
    try:
        module = importlib.import_module(f"{parts[0]}.msg")
        return getattr(module, parts[2])
    except (ImportError, AttributeError) as exc:
        raise ImportError(f"message type {msgtype!r} is not installed (ROS package {parts[0]!r})") from exc


def parse_remaps(items: Sequence[str]) -> dict[str, str]:
    """["/a:=/b", ...] -> {"/a": "/b"}; ValueError naming a malformed entry."""
    out: dict[str, str] = {}
    for item in items:
        src, sep, dst = item.partition(":=")
        if not sep or not src.startswith("/") or not dst.startswith("/"):
            raise ValueError(f"remap must look like '/from:=/to' (absolute topics), got {item!r}")
        out[src] = dst
    return out


@dataclass
class PlayerConfig:
    """Playback options (see the module docstring).

    rate: playback speed factor (> 0; 2 = twice real time). clock_hz: /clock rate while waiting,
    0 = no /clock. start_offset: seconds of the bag skipped at the start; duration: seconds of the
    bag played from there (0 = to the end). loop: play forever (or
    ``max_loops`` times when > 0). delay: seconds to wait before the first message (discovery).
    wait_for_subscribers: seconds to wait, at most, until every topic in ``wait_topics`` (all
    played topics when empty) has a subscriber.
    """

    bag: str
    rate: float = 1.0
    clock_hz: float = 0.0
    start_offset: float = 0.0
    duration: float = 0.0
    loop: bool = False
    max_loops: int = 0
    remap: dict[str, str] = field(default_factory=dict)
    topics: list[str] = field(default_factory=list)
    delay: float = 0.0
    wait_for_subscribers: float = 0.0
    wait_topics: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(f"PlayerConfig.rate must be a finite number > 0, got {self.rate!r}")
        if not (math.isfinite(self.clock_hz) and self.clock_hz >= 0):
            raise ValueError(f"PlayerConfig.clock_hz must be >= 0 (0 = no /clock), got {self.clock_hz!r}")
        for name in ("start_offset", "duration", "delay", "wait_for_subscribers"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"PlayerConfig.{name} must be a finite number >= 0 s, got {value!r}")
        if self.max_loops < 0:
            raise ValueError(f"PlayerConfig.max_loops must be >= 0, got {self.max_loops!r}")


@dataclass
class PlaybackStats:
    """What one ``play()`` did: messages per topic, bag seconds played, wall seconds taken."""

    published: dict[str, int] = field(default_factory=dict)
    bag_seconds: float = 0.0
    wall_seconds: float = 0.0
    loops: int = 0

    @property
    def realtime_factor(self) -> float:
        """Bag time played per wall second (x real time)."""
        return self.bag_seconds / self.wall_seconds if self.wall_seconds > 0 else float("inf")


class BagPlayer(Node):
    """Publishes a bag (see the module docstring). ``play()`` blocks until done or ``stop()``."""

    def __init__(self, cfg: PlayerConfig, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.cfg = cfg
        self._stop = threading.Event()
        self._reader = BagReader(cfg.bag)
        topics = self._reader.topics
        chosen = cfg.topics or sorted(topics)
        unknown = sorted(set(chosen) - set(topics))
        if unknown:
            raise ValueError(f"topics {unknown} are not in bag {cfg.bag!r}; it has {sorted(topics)}")
        bad_remaps = sorted(set(cfg.remap) - set(topics))
        if bad_remaps:
            raise ValueError(f"remapped topics {bad_remaps} are not in bag {cfg.bag!r}")
        self._topics = chosen
        self._pubs = {
            t: self.create_publisher(
                message_class(topics[t].msgtype), cfg.remap.get(t, t), bag_qos(topics[t].qos)
            )
            for t in chosen
        }
        self._clock_pub = self.create_publisher(Clock, "/clock", 10) if cfg.clock_hz > 0 else None
        self.get_logger().info(
            f"playing {cfg.bag}: {len(chosen)} topics, rate {cfg.rate}, clock {cfg.clock_hz} Hz, "
            f"offset {cfg.start_offset} s, loop {cfg.loop}"
        )

    def stop(self) -> None:
        """Ask a running ``play()`` to return (thread-safe)."""
        self._stop.set()

    def destroy_node(self) -> None:
        self._reader.close()
        super().destroy_node()

    # ------------------------------------------------------------------ clock
    def _publish_clock(self, t_ns: int) -> None:
        if self._clock_pub is not None:
            msg = Clock()
            msg.clock.sec, msg.clock.nanosec = divmod(int(t_ns), 1_000_000_000)
            self._clock_pub.publish(msg)

    def _wait_until(self, wall_target: float, bag_at: Callable[[float], int]) -> bool:
        """Sleep until ``wall_target`` (monotonic s), publishing /clock at clock_hz; False if stopped."""
        period = 1.0 / self.cfg.clock_hz if self.cfg.clock_hz > 0 else math.inf
        while True:
            now = time.monotonic()
            remaining = wall_target - now
            if remaining <= 0:
                return not self._stop.is_set()
            if self._stop.wait(min(remaining, period)):
                return False
            if self._clock_pub is not None and time.monotonic() < wall_target:
                self._publish_clock(bag_at(time.monotonic()))

    def _wait_for_subscribers(self) -> None:
        topics = self.cfg.wait_topics or self._topics
        deadline = time.monotonic() + self.cfg.wait_for_subscribers
        while time.monotonic() < deadline and not self._stop.is_set():
            if all(self._pubs[t].get_subscription_count() > 0 for t in topics if t in self._pubs):
                return
            self._stop.wait(0.02)
        missing = [t for t in topics if t in self._pubs and self._pubs[t].get_subscription_count() == 0]
        if missing:
            self.get_logger().warning(f"starting without subscribers on {missing}")

    # ------------------------------------------------------------------ playback
    def play(self) -> PlaybackStats:
        """Publish the bag (looping as configured); returns what was published."""
        stats = PlaybackStats(published=dict.fromkeys(self._topics, 0))
        if self.cfg.wait_for_subscribers > 0:
            self._wait_for_subscribers()
        if self.cfg.delay > 0 and self._stop.wait(self.cfg.delay):
            return stats
        begin = time.monotonic()
        while not self._stop.is_set():
            bag_s = self._play_once(stats)
            stats.bag_seconds += bag_s
            stats.loops += 1
            if not self.cfg.loop or (self.cfg.max_loops and stats.loops >= self.cfg.max_loops):
                break
        stats.wall_seconds = time.monotonic() - begin
        return stats

    def _play_once(self, stats: PlaybackStats) -> float:
        """One pass over the bag; returns the bag seconds covered."""
        start_ns = self._reader.start_ns + int(round(self.cfg.start_offset * 1e9))
        end_ns = self._reader.end_ns
        if start_ns > end_ns:
            raise ValueError(
                f"start_offset {self.cfg.start_offset} s is past the end of the bag "
                f"({(end_ns - self._reader.start_ns) * 1e-9:.3f} s long)"
            )
        wall0 = time.monotonic()
        rate = self.cfg.rate

        def bag_at(wall: float) -> int:
            return start_ns + int((wall - wall0) * rate * 1e9)

        self._publish_clock(start_ns)
        self._publish_latched_before(start_ns, stats)
        last_ns = start_ns
        stop_ns = start_ns + int(round(self.cfg.duration * 1e9)) if self.cfg.duration > 0 else None
        for m in self._reader.messages(topics=self._topics, start_ns=start_ns, stop_ns=stop_ns):
            target = wall0 + (m.t_ns - start_ns) * 1e-9 / rate
            if not self._wait_until(target, bag_at):
                break
            self._publish_clock(m.t_ns)
            self._pubs[m.topic].publish(m.data)
            stats.published[m.topic] += 1
            last_ns = m.t_ns
        return (last_ns - start_ns) * 1e-9

    def _publish_latched_before(self, start_ns: int, stats: PlaybackStats) -> None:
        """Latched topics (transient local, e.g. the instruction): publish their last message from
        before ``start_ns`` so that a start offset does not lose them."""
        if start_ns <= self._reader.start_ns:
            return
        topics = self._reader.topics
        latched = [t for t in self._topics if topics[t].qos.durability == "transient_local"]
        last: dict[str, bytes] = {}
        if latched:
            for m in self._reader.messages(topics=latched, stop_ns=start_ns):
                last[m.topic] = m.data
        for topic, data in last.items():
            self._pubs[topic].publish(data)
            stats.published[topic] += 1


def _play(node: BagPlayer, executor: SingleThreadedExecutor) -> None:
    """Play the bag in this thread while another spins the node (its /clock timer, graph queries)."""
    spinner = threading.Thread(target=spin_until_shutdown, args=(executor,), daemon=True)
    spinner.start()
    try:
        stats = node.play()
        counts = ", ".join(f"{t}: {n}" for t, n in stats.published.items())
        print(
            f"played {sum(stats.published.values())} messages ({counts}) in {stats.wall_seconds:.2f} s "
            f"= {stats.realtime_factor:.2f}x real time"
        )
    finally:
        ignore_further_interrupts()
        executor.shutdown(timeout_sec=2.0)
        # the spinning thread must leave the wait set before the node and context go: a daemon
        # thread still inside rcl at interpreter exit aborted the process (exit 134, 7 of 8 runs)
        spinner.join(5.0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinyvla-bag-play", description=__doc__.split("\n\n")[0])
    parser.add_argument("bag", help="rosbag2 bag directory (or .mcap / .db3 file)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    parser.add_argument(
        "--clock",
        type=float,
        default=0.0,
        metavar="HZ",
        help="publish /clock at HZ while waiting (0: no /clock)",
    )
    parser.add_argument("--start-offset", type=float, default=0.0, help="seconds of the bag to skip")
    parser.add_argument(
        "--duration", type=float, default=0.0, help="seconds of the bag to play (0: to the end)"
    )
    parser.add_argument("--loop", action="store_true", help="play the bag again and again")
    parser.add_argument(
        "--max-loops", type=int, default=0, help="with --loop: stop after N passes (0: forever)"
    )
    parser.add_argument("--remap", action="append", default=[], metavar="/FROM:=/TO", help="rename a topic")
    parser.add_argument("--topics", nargs="+", default=[], help="play only these topics")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before the first message")
    parser.add_argument(
        "--wait-for-subscribers", type=float, default=0.0, metavar="S", help="wait up to S s for subscribers"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console entry point: ``tinyvla-bag-play BAG [--rate R] [--clock HZ] ... [--ros-args ...]``."""
    args_in = sys.argv[1:] if argv is None else argv
    ros_args = args_in[args_in.index("--ros-args") :] if "--ros-args" in args_in else []
    own = args_in[: len(args_in) - len(ros_args)]
    args = build_parser().parse_args(own)
    try:
        cfg = PlayerConfig(
            bag=args.bag,
            rate=args.rate,
            clock_hz=args.clock,
            start_offset=args.start_offset,
            duration=args.duration,
            loop=args.loop,
            max_loops=args.max_loops,
            remap=parse_remaps(args.remap),
            topics=list(args.topics),
            delay=args.delay,
            wait_for_subscribers=args.wait_for_subscribers,
        )
    except ValueError as exc:
        print(f"tinyvla-bag-play: {exc}", file=sys.stderr)
        return 2
    return run_node(
        lambda: BagPlayer(cfg),
        ["tinyvla-bag-play", *ros_args],
        errors=(ValueError, ImportError, OSError, BagError),
        error_format="tinyvla-bag-play: {type}: {exc}",
        work=_play,
    )


if __name__ == "__main__":
    sys.exit(main())
