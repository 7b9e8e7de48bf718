"""Helpers of the data tests: synthetic bags, polling, an rclpy harness, replay into the policy node."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tinyvla_ros.data.bag import LATCHED, BagReader, BagWriter, BagWriterConfig
from tinyvla_ros.data.demos import setup_layout
from tinyvla_ros.data.messages import (
    IMAGE,
    JOINT_STATE,
    STRING,
    image_msg,
    image_rgb,
    joint_state_fields,
    joint_state_msg,
    sec_to_ns,
    select_joints,
    stamp_ns,
    string_msg,
)


def write_synthetic_bag(
    path: Path,
    steps: int = 20,
    dt: float = 0.1,
    gap: tuple[int, int] | None = None,
    encoding: str = "rgb8",
    size: tuple[int, int] = (12, 16),
    storage: str = "mcap",
    t0: float = 2.0,
) -> dict[str, Any]:
    """A small bag with two cameras, joint states, an action topic and an instruction.

    Camera frame k is filled with value k (camera "a") and 100 + k (camera "b"); joint j at step k
    is k + j / 10; the action at step k is [10 k, -k]. Frames of steps gap[0] <= k < gap[1] are
    missing from camera "a". Returns what was written (for assertions).
    """
    h, w = size
    written: dict[str, Any] = {"stamps": [], "joints": ["j0", "j1", "j2"]}
    with BagWriter(path, BagWriterConfig(storage=storage)) as bag:
        bag.add_topic("/cam_a", IMAGE)
        bag.add_topic("/cam_b", IMAGE)
        bag.add_topic("/joint_states", JOINT_STATE)
        bag.add_topic("/action", JOINT_STATE)
        bag.add_topic("/instruction", STRING, LATCHED)
        bag.write("/instruction", sec_to_ns(t0), string_msg("stack the blocks"))
        for k in range(steps):
            t = t0 + k * dt
            written["stamps"].append(t)
            bag.write(
                "/joint_states", sec_to_ns(t), joint_state_msg(written["joints"], k + np.arange(3) / 10, t)
            )
            bag.write("/action", sec_to_ns(t), joint_state_msg(["a0", "a1"], [10.0 * k, -float(k)], t))
            if gap is None or not gap[0] <= k < gap[1]:
                frame = np.full((h, w, 3), k % 256, np.uint8)
                bag.write("/cam_a", sec_to_ns(t + 0.002), image_msg(frame, encoding, t, "a"))
            frame = np.full((h, w, 3), (100 + k) % 256, np.uint8)
            bag.write("/cam_b", sec_to_ns(t + 0.003), image_msg(frame, encoding, t, "b"))
        bag.set_metadata({"success": True, "task": "stack"})
    return written


def wait_until(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``cond`` until true; fail the test naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class RosHarness:
    """An rclpy context of its own with a single-threaded executor spinning on a thread."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.listener = Node("data_test_listener", context=self.context)
        self.executor.add_node(self.listener)
        self.nodes: list[Any] = []
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - spinning ends when the context shuts down
            pass

    def add(self, node: Any) -> Any:
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def collect(
        self, msg_type: type, topic: str, raw: bool = False, qos: Any = None
    ) -> list[tuple[Any, float]]:
        """A list filling with (message or raw bytes, monotonic receive time) from ``topic``."""
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

        out: list[tuple[Any, float]] = []
        profile = qos or QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=200, reliability=ReliabilityPolicy.RELIABLE
        )
        self.listener.create_subscription(
            msg_type, topic, lambda m: out.append((m, time.monotonic())), profile, raw=raw
        )
        return out

    def close(self) -> None:
        """Stop lifecycle nodes' workers, stop spinning, then destroy the nodes and the context."""
        from rclpy.lifecycle import LifecycleNode

        for node in self.nodes:
            if isinstance(node, LifecycleNode):
                node.trigger_shutdown()
        self.executor.shutdown(timeout_sec=5.0)
        self._thread.join(timeout=5.0)
        for node in self.nodes:
            node.destroy_node()
        self.listener.destroy_node()
        self.rclpy.shutdown(context=self.context)


def copy_bag(src: Path, dst: Path, transform: Callable[[Any], list[tuple[str, int, bytes]] | None]) -> None:
    """Copy a bag message by message; ``transform(msg)`` returns [(topic, t_ns, data)] to write
    (a topic of the source bag) or None to keep the message unchanged. Metadata is copied."""
    with BagReader(src) as reader, BagWriter(dst) as writer:
        for name, info in reader.topics.items():
            writer.add_topic(name, info.msgtype, info.qos)
        for m in reader.messages():
            out = transform(m)
            for topic, t_ns, data in [(m.topic, m.t_ns, m.data)] if out is None else out:
                writer.write_raw(topic, t_ns, data)
        writer.set_metadata(reader.metadata)


def node_parameters(setup: str, node: str, **overrides: Any) -> list[Any]:
    """rclpy Parameters of ``node`` ("tinyvla_policy" | "tinyvla_executor") from config/<setup>.yaml,
    nested maps flattened to dotted names, then ``overrides`` (dots written as "__")."""
    import yaml
    from rclpy.parameter import Parameter

    from tinyvla_ros.paths import config_dir

    params = yaml.safe_load((config_dir() / f"{setup}.yaml").read_text())[f"/**/{node}"]["ros__parameters"]
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}{k}.", v)
        else:
            flat[prefix[:-1]] = value

    walk("", params)
    flat.update({k.replace("__", "."): v for k, v in overrides.items()})
    return [Parameter(name, value=value) for name, value in flat.items()]


# --- replay into the Franka policy node ------------------------------------------------------

SEED = 5
FRANKA, _ = setup_layout("franka")
LEFT, RIGHT = FRANKA.cameras["zed_left"], FRANKA.cameras["zed_right"]


def start_policy(ros, checkpoint, **overrides):
    """An in-process Franka policy node on sim time (seed SEED, the torch engine on one thread, as the
    offline engine the tests compare with; the params file's engine is onnx), configured and active."""
    from rclpy.lifecycle import TransitionCallbackReturn

    from tinyvla_ros.ros.policy_node import PolicyNode

    settings = dict(checkpoint=str(checkpoint), engine="torch", seed=SEED, num_threads=1, warmup_runs=1,
                    inference_rate=20.0)  # fmt: skip
    params = node_parameters("franka", "tinyvla_policy", use_sim_time=True, **{**settings, **overrides})
    node = ros.add(PolicyNode(context=ros.context, parameter_overrides=params))
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    return node


def play(ros, bag, duration: float = 0.0, rate: float = 1.0):
    """Replay ``bag`` (Franka topics) with /clock, after the subscribers are matched."""
    from tinyvla_ros.ros.bag_play import BagPlayer, PlayerConfig

    cfg = PlayerConfig(str(bag), rate=rate, clock_hz=200.0, duration=duration, wait_for_subscribers=15.0,
                       wait_topics=[LEFT, RIGHT, FRANKA.joint_states_topic])  # fmt: skip
    return ros.add(BagPlayer(cfg, context=ros.context)).play()


def observation_at(bag, stamp: int):
    """(images [left, right], state) of the demo bag at header stamp ``stamp`` (ns)."""
    with BagReader(bag) as reader:
        frames = {
            m.topic: image_rgb(m.decode())
            for m in reader.messages([LEFT, RIGHT])
            if stamp_ns(m.decode().header.stamp) == stamp
        }
        for m in reader.messages([FRANKA.joint_states_topic]):
            t, names, pos = joint_state_fields(m.decode())
            if stamp_ns(m.decode().header.stamp) == stamp:
                return [frames[LEFT], frames[RIGHT]], select_joints(names, pos, FRANKA.state_names, "state")
    raise AssertionError(f"no joint state stamped {stamp} in {bag}")
