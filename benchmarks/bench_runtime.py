"""Runtime benchmark: the Franka graph (policy + executor processes) on synthetic ZED streams.

Measures, while inference runs continuously:
- end-to-end latency: camera stamp of an observation -> the first forward-position command
  computed from its chunk (seen by this process, so it includes both DDS hops; the executor's own
  figure, stamp -> command publication, is reported beside it);
- command period at ``--control-rate`` (100 Hz): p50/p99 of the executor timer's period and of
  the commands' inter-arrival times here (jitter = p99 - p50);
- inference latency p50/p99 (policy node diagnostics), chunk and command rates;
- where the camera -> command time goes, per stage: the frame's age when its inference starts
  (policy diagnostics), inference, stamp -> chunk arrival here, chunk arrival -> first command;
- CPU per node process (psutil; 1.0 = one core) and of this process (sensors + recorder).

The nodes run as separate processes from tinyvla_ros.ros.graph (the tinyvla-graph code path), with
actuation on and this process acting as a perfectly tracking arm. Writes
benchmarks/results/runtime.json. Runs in its own random ROS_DOMAIN_ID, localhost only.

    python benchmarks/bench_runtime.py [--quick] [--duration 30] [--width 640 --height 480]
    python benchmarks/bench_runtime.py --compare [--duration 120]   # the policy settings before / after,
                                                                  # one after the other in one run
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

# Never the user's domain (a real robot may listen there): TINYVLA_BENCH_DOMAIN_ID or a random one.
os.environ["ROS_DOMAIN_ID"] = os.environ.get("TINYVLA_BENCH_DOMAIN_ID") or str(random.randint(1, 101))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_LOCALHOST_ONLY"] = "1"

HERE = Path(__file__).resolve().parent
FR3_HOME = [0.0, -0.7853981633974483, 0.0, -2.356194490192345, 0.0, 1.5707963267948966, 0.7853981633974483]
STATE = [f"fr3_joint{i}" for i in range(1, 8)] + ["fr3_finger_joint1"]
ACTIONS = [f"fr3_joint{i}" for i in range(1, 8)] + ["gripper"]
COMMANDS = "/forward_position_controller/commands"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10 s at 320x240")
    p.add_argument("--duration", type=float, default=30.0, help="measurement window (s)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--camera-rate", type=float, default=15.0, help="Hz per ZED stream (bgra8)")
    p.add_argument("--control-rate", type=float, default=100.0)
    p.add_argument("--inference-rate", type=float, default=10.0, help="upper bound (Hz)")
    p.add_argument("--execution-mode", default="temporal_ensemble")
    p.add_argument("--checkpoint", default="", help="default: a random-init nano checkpoint written here")
    p.add_argument("--engine", default="torch", help="policy inference engine (torch, onnx, ...)")
    p.add_argument("--max-start-age", type=float, default=0.0, help="policy max_start_age (s; 0 = off)")
    p.add_argument(
        "--compare",
        action="store_true",
        help="run the graph twice in one run: the policy settings of --before, then the ones given",
    )
    p.add_argument(
        "--before",
        default="engine=torch,inference_rate=10,max_start_age=0",
        help="--compare: the first run's policy settings (key=value,...)",
    )
    p.add_argument("--out", default=str(HERE / "results" / "runtime.json"))
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.width, args.height = min(args.duration, 10.0), 320, 240
    return args


def make_checkpoint(directory: Path) -> Path:
    from tinyvla_ros.vla.testing import make_tiny_checkpoint

    home = np.array(FR3_HOME)
    low, high = np.r_[home - 0.2, 0.0], np.r_[home + 0.2, 1.0]
    return make_tiny_checkpoint(
        directory, ["zed_left", "zed_right"], 8, 8, 0, "nano", low, high, action_names=ACTIONS
    )


class Probe:
    """Rig node: synthetic sensors, a tracking arm, and time-stamped recordings."""

    def __init__(self, args) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from std_msgs.msg import Float64MultiArray
        from trajectory_msgs.msg import JointTrajectory

        from tinyvla_ros.ros.conversions import stamp_to_sec
        from tinyvla_ros.ros.qos import reliable_qos
        from tinyvla_ros.ros.synthetic_sensors import (
            SyntheticCamera,
            SyntheticSensors,
            SyntheticSensorsConfig,
        )

        self._stamp_to_sec = stamp_to_sec
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("tinyvla_bench_probe", context=self.context)
        cams = [
            SyntheticCamera(
                n, f"/{n}/zed_node/rgb/color/rect/image", "bgra8", args.width, args.height, args.camera_rate
            )
            for n in ("zed_left", "zed_right")
        ]
        self.sensors = SyntheticSensors(
            self.node, SyntheticSensorsConfig(cams, STATE, [*FR3_HOME, 0.04], 100.0)
        )
        self.lock = threading.Lock()
        self.chunks: list[tuple[float, float]] = []  # (arrival wall time, observation stamp)
        self.commands: list[tuple[float, float]] = []  # (arrival wall time, arrival monotonic)
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.node.create_subscription(
            JointTrajectory, "/tinyvla_policy/chunk", self._on_chunk, reliable_qos(50)
        )
        self.node.create_subscription(Float64MultiArray, COMMANDS, self._on_command, reliable_qos(50))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, reliable_qos(50))
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - ends when the context shuts down
            pass

    def _on_chunk(self, msg) -> None:
        with self.lock:
            self.chunks.append((time.time(), self._stamp_to_sec(msg.header.stamp)))

    def _on_command(self, msg) -> None:
        with self.lock:
            self.commands.append((time.time(), time.monotonic()))
        q = self.sensors.joint_positions()
        q[:7] = msg.data
        if np.all(np.isfinite(q)):
            self.sensors.set_joint_positions(q)

    def _on_diag(self, msg) -> None:
        with self.lock:
            for status in msg.status:
                self.diagnostics[status.name.split(":")[0]] = {kv.key: kv.value for kv in status.values}

    def close(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=2.0)
        self.sensors.destroy()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def end_to_end(
    chunks: list[tuple[float, float]], commands: list[tuple[float, float]]
) -> tuple[np.ndarray, np.ndarray]:
    """Per chunk (s): (first command arriving after the chunk - the chunk's camera stamp,
    the chunk's arrival here - its camera stamp)."""
    arrivals = np.array([c[0] for c in commands])
    e2e, to_chunk = [], []
    for arrival, stamp in chunks:
        i = int(np.searchsorted(arrivals, arrival, side="right"))
        if i < len(arrivals):
            e2e.append(arrivals[i] - stamp)
            to_chunk.append(arrival - stamp)
    return np.array(e2e), np.array(to_chunk)


def pct(values: np.ndarray, q: float, scale: float = 1e3) -> float:
    return round(float(np.percentile(values, q)) * scale, 2) if len(values) else float("nan")


def run(args) -> dict:
    import psutil

    from tinyvla_ros.ros.graph import GraphArgs, GraphRunner, build_graph

    tmp = tempfile.TemporaryDirectory(prefix="tinyvla_bench_")
    checkpoint = args.checkpoint or str(make_checkpoint(Path(tmp.name) / "ckpt"))
    probe = Probe(args)
    specs = build_graph(
        GraphArgs(
            "franka",
            checkpoint=checkpoint,
            instruction="pick up the red cube",
            enable_actuation=True,
            execution_mode=args.execution_mode,
            extra_parameters={
                "tinyvla_policy": {
                    "inference_rate": args.inference_rate,
                    "num_threads": 1,
                    "engine": args.engine,
                    "max_start_age": args.max_start_age,
                },
                "tinyvla_executor": {"control_rate": args.control_rate},
            },
        )
    )
    runner = GraphRunner(specs, log_dir=Path(tmp.name) / "logs")
    runner.start()
    try:
        runner.activate_lifecycle_nodes(300.0)
        deadline = time.monotonic() + 120.0
        while len(probe.commands) < 50 and time.monotonic() < deadline:
            time.sleep(0.1)
        if len(probe.commands) < 50:
            raise RuntimeError("no commands from the executor within 120 s")
        procs = {p.spec.name: psutil.Process(p.proc.pid) for p in runner.processes}
        procs["bench process (sensors, recorder)"] = psutil.Process()
        for proc in procs.values():
            proc.cpu_percent(None)
        with probe.lock:
            ticks_before = dict(probe.diagnostics.get("tinyvla_executor", {}))
        start_wall, start_mono = time.time(), time.monotonic()
        time.sleep(args.duration)
        cpu = {name: round(proc.cpu_percent(None) / 100.0, 3) for name, proc in procs.items()}
        window = time.monotonic() - start_mono
        time.sleep(1.5)  # the diagnostics of the window arrive
        with probe.lock:
            end_wall = start_wall + window  # what arrived while waiting for the diagnostics is not counted
            chunks = [c for c in probe.chunks if start_wall <= c[0] < end_wall]
            commands = [c for c in probe.commands if start_wall <= c[0] < end_wall]
            diags = dict(probe.diagnostics)
    finally:
        runner.stop()
        probe.close()
        tmp.cleanup()
    periods = np.diff([c[1] for c in commands])
    e2e, to_chunk = end_to_end(chunks, commands)
    pol, exe = diags.get("tinyvla_policy", {}), diags.get("tinyvla_executor", {})
    return {
        "window_s": round(window, 1),
        "chunks_per_s": round(len(chunks) / window, 2),
        "commands_per_s": round(len(commands) / window, 2),
        "e2e_ms": (pct(e2e, 50), pct(e2e, 99), len(e2e)),
        "executor_e2e_ms": (
            exe.get("obs_to_command_latency_p50_ms"),
            exe.get("obs_to_command_latency_p99_ms"),
        ),
        "inference_ms": (pol.get("inference_latency_p50_ms"), pol.get("inference_latency_p99_ms")),
        "start_age_ms": (
            pol.get("observation_age_at_start_p50_ms"),
            pol.get("observation_age_at_start_p99_ms"),
        ),
        "stamp_to_chunk_ms": (pct(to_chunk, 50), pct(to_chunk, 99)),
        "chunk_to_command_ms": (pct(e2e - to_chunk, 50), pct(e2e - to_chunk, 99)),
        "late_starts_skipped": pol.get("late_start.replaced", "0"),
        "late_starts_kept": pol.get("late_start.kept", "0"),
        "ticks": {  # during the window (the diagnostics' counters at its end minus at its start)
            k: int(exe.get(k, 0)) - int(ticks_before.get(k, 0))
            for k in ("ticks_run", "ticks_hold", "ticks_idle", "bad_chunks", "chunks_used")
        },
        "policy": {
            "engine": args.engine,
            "inference_rate": args.inference_rate,
            "max_start_age": args.max_start_age,
        },
        "arrival_period_ms": (pct(periods, 50), pct(periods, 99), float(np.max(periods) * 1e3)),
        "timer_period_ms": (
            exe.get("control_period_p50_ms"),
            exe.get("control_period_p99_ms"),
            exe.get("control_period_max_ms"),
        ),
        "tick_lateness_ms": (
            exe.get("tick_lateness_p50_ms"),
            exe.get("tick_lateness_p99_ms"),
            exe.get("tick_lateness_max_ms"),
        ),
        "ticks_skipped": exe.get("ticks_skipped"),
        "commands_rate_ratio": round(len(commands) / window / args.control_rate, 4),
        "cpu_cores": cpu,
        "clamps": exe.get("safety_clamps_total"),
        "load_average": round(os.getloadavg()[0], 1),
    }


def held_share(ticks: dict[str, int]) -> float:
    total = ticks["ticks_run"] + ticks["ticks_hold"] + ticks["ticks_idle"]
    return round(100.0 * ticks["ticks_hold"] / total, 1) if total else float("nan")


def to_result(args, r: dict) -> dict:
    rows = [
        [
            "end-to-end: camera stamp -> first command of its chunk (here)",
            *r["e2e_ms"][:2],
            f"{r['e2e_ms'][2]} chunks",
        ],
        ["end-to-end as the executor sees it (stamp -> publish)", *r["executor_e2e_ms"], ""],
        [
            "stage: frame age when its inference starts (policy)",
            *r["start_age_ms"],
            f"{r['late_starts_skipped']} late observations replaced by newer, {r['late_starts_kept']} kept",
        ],
        ["stage: policy inference (predict_chunk)", *r["inference_ms"], f"{r['chunks_per_s']} chunks/s"],
        ["stage: camera stamp -> chunk arrival here", *r["stamp_to_chunk_ms"], ""],
        ["stage: chunk arrival -> first command after it (here)", *r["chunk_to_command_ms"], ""],
        ["executor ticks held (% of the window's ticks)", held_share(r["ticks"]), "", f"{r['ticks']}"],
        [
            f"control period at {args.control_rate:g} Hz: executor tick starts",
            *r["timer_period_ms"][:2],
            f"max {r['timer_period_ms'][2]}",
        ],
        [
            "tick lateness: deadline -> tick start (executor)",
            *r["tick_lateness_ms"][:2],
            f"max {r['tick_lateness_ms'][2]}; {r['ticks_skipped']} deadlines skipped",
        ],
        [
            f"command period at {args.control_rate:g} Hz: arrival here",
            *r["arrival_period_ms"][:2],
            f"max {r['arrival_period_ms'][2]:.1f}; {r['commands_per_s']} cmd/s = "
            f"{r['commands_rate_ratio']:.4f} x the rate",
        ],
    ]
    cpu_rows = [[name, value] for name, value in r["cpu_cores"].items()]
    return {
        "title": "ROS runtime: Franka graph on synthetic ZED streams (bench_runtime.py)",
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "tables": [
            {
                "caption": "Latency and command timing (ms)",
                "columns": ["figure", "p50", "p99", "note"],
                "rows": rows,
            },
            {
                "caption": f"CPU over {r['window_s']} s (1.0 = one core)",
                "columns": ["process", "cores"],
                "rows": cpu_rows,
            },
        ],
        "notes": [
            f"{'nano preset (random init)' if not args.checkpoint else args.checkpoint}, engine {args.engine}, "
            f"max_start_age {args.max_start_age:g} s, 2 ZED-like bgra8 streams {args.width}x{args.height} at {args.camera_rate:g} Hz, "
            f"joint states at 100 Hz, inference_rate <= {args.inference_rate:g} Hz, {args.execution_mode}, "
            "forward_position output with actuation on, this process tracking the commands.",
            "Jitter = p99 - p50 of the command period. Shared 2-core machine: other jobs run at the same time "
            f"(load average {r['load_average']} during the run).",
            f"safety clamps applied during the run: {r['clamps']}",
        ],
        "raw": r,
    }


def compare(args) -> dict:
    """--compare: the graph with the --before policy settings, then with the given ones (one run)."""
    import copy

    before = copy.copy(args)
    for item in filter(None, args.before.split(",")):
        key, value = item.split("=", 1)
        setattr(before, key, value if key == "engine" else float(value))
    runs = [(before, run(before)), (args, run(args))]
    results = [to_result(a, r) for a, r in runs]
    labels = [
        f"engine {a.engine}, inference_rate {a.inference_rate:g} Hz, max_start_age {a.max_start_age:g} s"
        for a, _ in runs
    ]
    rows = []
    for i, row in enumerate(results[0]["tables"][0]["rows"]):
        after = results[1]["tables"][0]["rows"][i]
        rows.append([row[0], row[1], row[2], after[1], after[2], after[3]])
    out = results[1]
    out["tables"].insert(
        0,
        {
            "caption": f"Before ({labels[0]}) / after ({labels[1]}), one run, {args.duration:g} s each (ms)",
            "columns": ["figure", "before p50", "before p99", "after p50", "after p99", "note (after)"],
            "rows": rows,
        },
    )
    out["raw"] = {"before": runs[0][1], "after": runs[1][1]}
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    result = compare(args) if args.compare else to_result(args, run(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for table in result["tables"]:
        print(table["caption"])
        for row in table["rows"]:
            print("  " + " | ".join(str(v) for v in row))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
