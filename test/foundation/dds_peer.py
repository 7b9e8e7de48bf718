"""A stand-alone ROS 2 process for the foundation DDS tests: publishes or receives sensor_msgs/Image.

Usage (run as its own OS process; the test harness starts two of them):
    python dds_peer.py pub --frames N --rate HZ [--wait-for-subscriber S]
    python dds_peer.py sub --frames N --timeout S --out result.json

Frame i is 640x480 rgb8 filled from a NumPy generator seeded with i, so any process can recompute
its checksum; header.frame_id carries i so the receiver can check order.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

TOPIC = "/dds_test/image"
HEIGHT, WIDTH = 480, 640


def frame_pixels(index: int) -> np.ndarray:
    """Deterministic (480, 640, 3) uint8 content of frame ``index``."""
    return np.random.default_rng(index).integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)


def frame_digest(index: int) -> str:
    return hashlib.sha256(frame_pixels(index).tobytes()).hexdigest()


def qos() -> QoSProfile:
    return QoSProfile(depth=30, reliability=ReliabilityPolicy.RELIABLE)


def publish(args: argparse.Namespace) -> int:
    node = rclpy.create_node("dds_test_pub")
    pub = node.create_publisher(Image, TOPIC, qos())
    deadline = time.monotonic() + args.wait_for_subscriber
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    period = 1.0 / args.rate
    start = time.monotonic()
    for i in range(args.frames):
        msg = Image()
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.header.frame_id = str(i)
        msg.height, msg.width, msg.encoding, msg.step = HEIGHT, WIDTH, "rgb8", WIDTH * 3
        msg.data = frame_pixels(i).tobytes()
        pub.publish(msg)
        time.sleep(max(0.0, start + (i + 1) * period - time.monotonic()))
    time.sleep(args.linger)  # let reliable retransmissions finish before the writer goes away
    node.destroy_node()
    return 0


def receive(args: argparse.Namespace) -> int:
    node = rclpy.create_node("dds_test_sub")
    received: list[dict] = []

    def on_image(msg: Image) -> None:
        data = np.frombuffer(msg.data, dtype=np.uint8)
        received.append(
            {
                "index": int(msg.header.frame_id),
                "sha256": hashlib.sha256(data.tobytes()).hexdigest(),
                "shape": [msg.height, msg.width, msg.step],
                "encoding": msg.encoding,
                "latency_s": time.time() - (msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9),
            }
        )

    node.create_subscription(Image, TOPIC, on_image, qos())
    deadline = time.monotonic() + args.timeout
    while len(received) < args.frames and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    with open(args.out, "w") as fh:
        json.dump({"received": received}, fh)
    node.destroy_node()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["pub", "sub"])
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--wait-for-subscriber", type=float, default=10.0)
    parser.add_argument("--linger", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--out", default="dds_result.json")
    args = parser.parse_args(argv)
    rclpy.init()
    try:
        return publish(args) if args.role == "pub" else receive(args)
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
