"""RealSense node throughput and latency at 640x480 rgb8, driven by a pyrealsense2 software device.

The node (with its software D435i) runs in this process; a subscriber runs in a child process
(inter-process DDS, as the policy node on a robot). Two scenarios:
  30 Hz    frames pushed at the D435i's rate: delivered fraction, latency frame time -> publish
           (inside the node) and frame time -> receipt in the other process, process CPU;
  max      frames pushed as fast as pyrealsense2 accepts them, node queue of 2 (the default):
           frames/s the node publishes and the subscriber receives, frames dropped.
Frame times are global-time stamps taken when the frame is pushed, so "frame time -> publish"
is the driver's whole added latency (librealsense queue, copy, message build, publish).

    python benchmarks/bench_cameras.py [--quick]   -> benchmarks/results/cameras.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from tinyvla_ros.ros.cameras.realsense_node import RealSenseNode, RealSenseNodeConfig
from tinyvla_ros.ros.cameras.realsense_software import SoftwareCamera, SoftwareCameraConfig
from tinyvla_ros.ros.cameras.realsense_source import SensorSource

RESULTS = Path(__file__).resolve().parent / "results" / "cameras.json"
TOPIC = "/camera/camera/color/image_raw"
W, H = 640, 480

SUBSCRIBER = r"""
import json, sys, time, rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy
from sensor_msgs.msg import Image
out, limit = sys.argv[1], float(sys.argv[2])
rclpy.init()
node = rclpy.create_node("bench_camera_listener")
rows = []
def on_image(msg):
    rows.append((time.time_ns(), msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec))
qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
node.create_subscription(Image, "TOPIC", on_image, qos)
start = time.monotonic()
while time.monotonic() - start < limit:  # until 2 s without images once they started
    rclpy.spin_once(node, timeout_sec=0.05)
    if rows and time.time_ns() - rows[-1][0] > 2_000_000_000:
        break
json.dump(rows, open(out, "w"))
node.destroy_node()
rclpy.shutdown()
""".replace("TOPIC", TOPIC)


def percentile(values, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def run_scenario(rate_hz: float, seconds: float, queue_size: int) -> dict:
    """Push frames for ``seconds`` at ``rate_hz`` (0 = as fast as possible); measure the node and a listener."""
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    cam = SoftwareCamera(SoftwareCameraConfig(width=W, height=H))
    values = dict(width=W, height=H, queue_size=queue_size, reconnect_timeout_s=30.0, frame_timeout_s=5.0)
    cfg = RealSenseNodeConfig(**values)
    node = RealSenseNode(
        sources={"camera/camera": SensorSource(cam.device, cfg.stream_config("camera"))},
        context=ctx,
        parameter_overrides=[Parameter(k, value=v) for k, v in values.items()],
    )
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    out = Path(tempfile.mkdtemp()) / "received.json"
    listener = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, str(out), str(seconds + 60.0)])
    try:
        deadline = time.monotonic() + 30.0
        while node.count_subscribers(TOPIC) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        node.start()
        worker = node.workers["camera/camera"]
        while not worker.health.hardware_id:
            time.sleep(0.01)
        pushed, cpu, elapsed = push(cam, rate_hz, seconds)
        time.sleep(0.5)  # let the last frames through
        health = worker.health
        node_latency = health.latency_samples_ms()
        published, dropped = health.frames, health.drops
    finally:
        node.shutdown()
        listener.wait(timeout=seconds + 60.0)
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
    rows = json.loads(out.read_text())
    recv_latency = [(r - s) / 1e6 for r, s in rows]
    return {
        "pushed": pushed,
        "push_fps": pushed / elapsed,
        "published": published,
        "published_fps": published / elapsed,
        "received": len(rows),
        "received_fps": len(rows) / elapsed,
        "dropped": dropped,
        "node_latency_ms": node_latency,
        "receive_latency_ms": recv_latency,
        "process_cpu_percent": cpu,
    }


def push(cam: SoftwareCamera, rate_hz: float, seconds: float) -> tuple[int, float, float]:
    """Push distinct 640x480 frames; returns (frames pushed, process CPU %, seconds)."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(8)]
    proc = psutil.Process(os.getpid())
    proc.cpu_percent(None)
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        cam.push_color(frames[n % 8], time.time() * 1000.0, n)
        n += 1
        if rate_hz > 0:
            next_t = start + n / rate_hz
            time.sleep(max(0.0, next_t - time.monotonic()))
    elapsed = time.monotonic() - start
    return n, proc.cpu_percent(None), elapsed


def summarize(name: str, r: dict) -> list:
    nl, rl = r["node_latency_ms"], r["receive_latency_ms"]
    return [
        name,
        f"{r['push_fps']:.1f}",
        f"{r['published_fps']:.1f}",
        f"{r['received_fps']:.1f}",
        f"{r['received']}/{r['pushed']}",
        r["dropped"],
        f"{percentile(nl, 50):.2f} / {percentile(nl, 99):.2f}",
        f"{percentile(rl, 50):.2f} / {percentile(rl, 99):.2f}",
        f"{r['process_cpu_percent']:.0f}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s per scenario instead of 10 s")
    args = parser.parse_args(argv)
    seconds = 3.0 if args.quick else 10.0
    results = {
        "30 Hz (D435i rate), queue 2": run_scenario(30.0, seconds, 2),
        "max rate, queue 2": run_scenario(0.0, seconds, 2),
    }
    columns = [
        "scenario",
        "pushed fps",
        "published fps",
        "received fps",
        "received/pushed",
        "dropped (counter gaps)",
        "frame time -> publish ms p50 / p99",
        "frame time -> other process ms p50 / p99",
        "process CPU %",
    ]
    data = {
        "title": "Camera driver (RealSense node, 640x480 rgb8, software D435i)",
        "tables": [
            {
                "caption": f"RealSense node, {seconds:.0f} s per scenario, subscriber in another process",
                "columns": columns,
                "rows": [summarize(k, v) for k, v in results.items()],
            }
        ],
        "notes": [
            "Frame time = global-time stamp given to the software device when the frame is pushed, so "
            "'frame time -> publish' is all the latency the driver adds (librealsense queue, copy, "
            "message, publish); a real D435i adds its exposure/readout/USB time before that.",
            "Process CPU % covers the node and the frame pusher (pyrealsense2 copies every pushed frame); "
            f"{os.cpu_count()} logical cores, shared with other jobs: compare figures of one run only.",
            "'max rate': pyrealsense2 accepts frames faster than the node publishes them; the node's "
            "queue of 2 drops the oldest (counted as frame-counter gaps) instead of lagging behind.",
        ],
        "raw": {k: {kk: vv for kk, vv in v.items() if not kk.endswith("_ms")} for k, v in results.items()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2))
    for row in data["tables"][0]["rows"]:
        print(dict(zip(columns, row, strict=True)))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
