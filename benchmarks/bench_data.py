"""Benchmark the data pipeline: demo recording, bag replay, conversion, sample loading, training.

Writes benchmarks/results/data.json (tables for benchmarks/RESULTS.md). Figures:
- recording: scripted Franka episodes written as MCAP bags (x real time = sim s / wall s), bag
  size per episode and per recorded second;
- replay: BagPlayer publishing as fast as it can (rate 1000) to a raw subscriber in the same
  process (x real time, MB/s), and the lateness of messages at rate 1 (how far behind schedule);
- datasets: bag -> episode conversion (steps/s), dataset size against bag size, training-sample
  loading with and without the official augmentations (samples/s);
- training: optimizer steps of the nano and micro presets on CPU (samples/s, fp32, batch 8,
  data loading included), one thread and all threads.

Usage::

    MUJOCO_GL=egl .venv/bin/python benchmarks/bench_data.py           # 6 episodes, 12 steps per preset
    MUJOCO_GL=egl .venv/bin/python benchmarks/bench_data.py --quick   # 2 episodes, 6 steps
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", "97")

from tinyvla_ros.data.convert import convert_bags  # noqa: E402
from tinyvla_ros.data.demos import DemoConfig, record_demos  # noqa: E402
from tinyvla_ros.data.episodes import dataset_size_bytes, load_info  # noqa: E402

MB = 1e6


def dir_bytes(path: Path) -> int:
    return int(sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()))


def bench_recording(out: Path, seeds: list[int]) -> tuple[list[Path], list[list]]:
    cfg = DemoConfig(
        setup="franka", tasks=["pick_red_cube", "close_drawer"], seeds=seeds, image_width=128, image_height=96
    )
    start = time.perf_counter()
    results = record_demos(cfg, out)
    wall = time.perf_counter() - start
    sim = sum(r.sim_seconds for r in results)
    size = sum(dir_bytes(r.path) for r in results)
    rows = [
        ["episodes (2 Franka tasks)", len(results)],
        ["successful", sum(r.success for r in results)],
        ["recorded sim time (s)", f"{sim:.1f}"],
        ["recording speed (x real time)", f"{sim / wall:.2f}"],
        ["bag size per episode (MB, 2 cameras 128x96 bgra8 at 20 Hz)", f"{size / len(results) / MB:.1f}"],
        ["bag size per recorded second (MB/s)", f"{size / sim / MB:.2f}"],
    ]
    return [r.path for r in results], rows


def bench_replay(bag: Path) -> list[list]:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from tinyvla_ros.data.bag import BagReader
    from tinyvla_ros.ros.bag_play import BagPlayer, PlayerConfig

    with BagReader(bag) as reader:
        topic = next(t for t, i in reader.topics.items() if i.msgtype == "sensor_msgs/msg/Image")
        frames = reader.topics[topic].count
        schedule = [m.t_ns for m in reader.messages([topic])]
    rows = []
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    sink = Node("bench_sink", context=context)
    received: list[tuple[float, int]] = []
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    sink.create_subscription(
        Image, topic, lambda m: received.append((time.monotonic(), len(m))), qos, raw=True
    )
    executor.add_node(sink)
    threading.Thread(target=executor.spin, daemon=True).start()
    try:
        for rate in (1000.0, 1.0):
            received.clear()
            player = BagPlayer(
                PlayerConfig(str(bag), rate=rate, wait_for_subscribers=10.0, wait_topics=[topic]),
                context=context,
            )
            executor.add_node(player)
            start = time.monotonic()
            stats = player.play()
            deadline = time.monotonic() + 10
            while len(received) < frames and time.monotonic() < deadline:
                time.sleep(0.01)
            executor.remove_node(player)
            player.destroy_node()
            if rate > 1:
                mbytes = sum(n for _, n in received) / MB
                rows.append(["max replay speed, all topics (x real time)", f"{stats.realtime_factor:.1f}"])
                rows.append(
                    [
                        f"camera frames delivered at max speed ({topic.split('/')[1]})",
                        f"{len(received)}/{frames}",
                    ]
                )
                rows.append(["camera bytes delivered (MB/s)", f"{mbytes / stats.wall_seconds:.1f}"])
            else:
                late = [
                    (t - start) - (s - schedule[0]) * 1e-9
                    for (t, _), s in zip(received, schedule, strict=False)
                ]
                rows.append(["rate 1.0: median / p95 delivery lateness (ms)",
                             f"{np.median(late) * 1e3:.1f} / {np.percentile(late, 95) * 1e3:.1f}"])  # fmt: skip
    finally:
        executor.shutdown(timeout_sec=2.0)
        sink.destroy_node()
        rclpy.shutdown(context=context)
    return rows


def bench_dataset(bags: list[Path], root: Path) -> tuple[Path, list[list]]:
    import torch

    from tinyvla_ros.data.augment import AugmentConfig
    from tinyvla_ros.data.samples import EpisodeDataset, SampleConfig

    start = time.perf_counter()
    info = convert_bags(bags, root)
    wall = time.perf_counter() - start
    bag_bytes = sum(dir_bytes(b) for b in bags)
    rows = [
        ["conversion speed (control steps/s)", f"{info.total_steps / wall:.0f}"],
        ["dataset size (MB) / bag size (MB)", f"{dataset_size_bytes(root) / MB:.1f} / {bag_bytes / MB:.1f}"],
        ["dataset bytes per step (kB)", f"{dataset_size_bytes(root) / info.total_steps / 1e3:.1f}"],
    ]
    torch.set_num_threads(1)
    for train, label in ((True, "with augmentation"), (False, "evaluation view")):
        ds = EpisodeDataset(
            root, SampleConfig(info.camera_names, 96, 16, train=train, augment=AugmentConfig())
        )
        n = min(len(ds), 200)
        start = time.perf_counter()
        for i in range(n):
            ds[i]
        rows.append([f"sample loading, 2 cameras -> 96 px, {label} (samples/s, 1 process)",
                     f"{n / (time.perf_counter() - start):.0f}"])  # fmt: skip
    return root, rows


def bench_training(dataset: Path, work: Path, steps: int) -> list[list]:
    import torch

    from tinyvla_ros.data.train import TrainConfig, Trainer

    rows = []
    for preset in ("nano", "micro"):
        for threads in sorted({1, os.cpu_count() or 1}):
            torch.set_num_threads(threads)
            cfg = TrainConfig(dataset=str(dataset), output=str(work / f"{preset}_{threads}"), preset=preset,
                              steps=steps, batch_size=8, warmup_steps=1, val_fraction=0.0, save_every=10**6,
                              log_every=1, progress=False, num_threads=threads)  # fmt: skip
            trainer = Trainer(cfg)
            trainer.run()
            rates = [m["samples_per_s"] for m in trainer.metrics if "samples_per_s" in m][
                1:
            ]  # first: warm-up
            params = trainer.policy.parameter_summary()["total"]
            rows.append([preset, f"{params / 1e6:.1f}M", threads, f"{np.median(rates):.1f}"])
            print(f"  train {preset} threads={threads}: {np.median(rates):.1f} samples/s", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seeds = [0] if args.quick else [0, 1, 2]
    steps = 6 if args.quick else 12
    tables, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print("recording demos", flush=True)
        bags, rec_rows = bench_recording(tmp / "bags", seeds)
        tables.append({"caption": "Demonstration recording (MuJoCo Franka fake, scripted experts, MCAP)",
                       "columns": ["figure", "value"], "rows": rec_rows})  # fmt: skip
        print("replaying", flush=True)
        try:
            tables.append({"caption": "Bag replay (tinyvla-bag-play, raw CDR, same-process subscriber)",
                           "columns": ["figure", "value"], "rows": bench_replay(bags[0])})  # fmt: skip
        except ImportError as exc:
            notes.append(f"replay skipped: {exc}")
        print("converting", flush=True)
        dataset, ds_rows = bench_dataset(bags, tmp / "dataset")
        tables.append({"caption": "Episode dataset (safetensors per episode, frames stored at 128x96)",
                       "columns": ["figure", "value"], "rows": ds_rows})  # fmt: skip
        print("training", flush=True)
        tables.append({"caption": f"Training throughput on CPU (fp32, batch 8, {steps} steps, data loading included)",
                       "columns": ["preset", "parameters", "threads", "samples/s"],
                       "rows": bench_training(dataset, tmp / "runs", steps)})  # fmt: skip
        info = load_info(dataset)
        notes.append(f"{len(info.episodes)} episodes, {info.total_steps} control steps at {info.fps:g} Hz.")
    notes.append("Shared 2-core machine: figures vary with the other load; compare within one run.")
    result = {"title": "Data: recording, replay, datasets, training", "tables": tables, "notes": notes}
    out = ROOT / "benchmarks" / "results" / "data.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
