"""Benchmark the closed loop against the MuJoCo fake robot over real DDS.

Runs, each as separate node processes started with the project's GraphRunner:

1. fake + executor in lockstep (no policy): how fast sim time runs when it only waits for the
   executor's tick every control period (the "sim speed ratio in lockstep"), the control rate
   the executor achieves per sim second, commands per sim second at the fake, render rate;
2. the whole graph (nano random-init policy) in lockstep: the ratio when the sim also waits for
   each chunk (inference bounds it);
3. the whole graph in realtime: the achieved real-time factor, clock slips, commands per wall
   second and inference latency, i.e. what `make demo` sees.

Writes benchmarks/results/closed_loop.json ({"title", "tables": [{"caption", "columns", "rows"}],
"notes"}). Usage::

    .venv/bin/python benchmarks/bench_closed_loop.py [--quick] [--seconds 20] [--width 128 --height 96]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULT = ROOT / "benchmarks" / "results" / "closed_loop.json"
FAKE, EXECUTOR, POLICY = "tinyvla_fake_robot", "tinyvla_executor", "tinyvla_policy"


def isolate_dds() -> None:
    """Own DDS domain on localhost (set before rclpy starts)."""
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 101)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="8 s windows, Franka only")
    p.add_argument("--seconds", type=float, default=20.0, help="measurement window (wall s) per run")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--camera-rate", type=float, default=15.0)
    args = p.parse_args(argv)
    if args.quick:
        args.seconds = min(args.seconds, 8.0)
    return args


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def checkpoint_for(robot: str, directory: Path) -> str:
    from tinyvla_ros.demo import random_checkpoint

    return str(random_checkpoint(robot, directory / f"ckpt_{robot}"))


def run_graph(robot: str, mode: str, with_policy: bool, args, workdir: Path) -> dict:
    """Start one graph, measure over ``args.seconds`` of wall time, stop it; returns the figures."""
    from tinyvla_ros.ros.fake_robot.monitor import GraphMonitor
    from tinyvla_ros.ros.graph import GraphArgs, GraphRunner, build_graph

    checkpoint = checkpoint_for(robot, workdir) if with_policy else ""
    fake = {
        "time_mode": mode,
        "image_width": args.width,
        "image_height": args.height,
        "camera_rate": args.camera_rate,
    }
    extra = {FAKE: fake, POLICY: {"warmup_runs": 1, "num_threads": 1}, EXECUTOR: {}}
    specs = build_graph(
        GraphArgs(
            robot,
            use_sim=True,
            checkpoint=checkpoint,
            enable_actuation=True,
            use_sim_time=mode != "realtime",
            extra_parameters=extra,
        )
    )
    if not with_policy:
        specs = [s for s in specs if s.name != POLICY]
    label = f"{robot}/{mode}/{'policy' if with_policy else 'no-policy'}"
    runner = GraphRunner(specs, log_dir=workdir / f"logs_{robot}_{mode}_{int(with_policy)}")
    monitor = GraphMonitor(name="bench_closed_loop")
    try:
        runner.start()
        runner.activate_lifecycle_nodes(300.0)
        ready = (lambda: monitor.mode() == "run") if with_policy else (lambda: monitor.mode() == "hold")
        monitor.wait_for(
            lambda: ready() and monitor.diag(FAKE) and monitor.diag(EXECUTOR), 300.0, f"{label} running"
        )
        time.sleep(2.0)  # let the first diagnostics window settle
        first, cpu0 = snapshot(monitor), cpu_seconds(runner)
        time.sleep(args.seconds)
        last, cpu1 = snapshot(monitor), cpu_seconds(runner)
        dead = runner.dead()
        if dead:
            raise RuntimeError(f"{label}: nodes died: {[p.spec.fqn for p in dead]}")
    finally:
        monitor.close()
        runner.stop()
    result = figures(robot, mode, with_policy, first, last)
    sim = result["sim_s"]
    for node in (FAKE, EXECUTOR, POLICY):
        used = cpu1.get(node, float("nan")) - cpu0.get(node, float("nan"))
        result[f"cpu_per_sim_s.{node}"] = used / sim if sim > 0 else float("nan")
    return result


def cpu_seconds(runner) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each node process."""
    import psutil

    out = {}
    for proc in runner.processes:
        try:
            times = psutil.Process(proc.proc.pid).cpu_times()
        except psutil.Error:
            continue
        out[proc.spec.name] = times.user + times.system
    return out


def snapshot(monitor) -> dict:
    fake_stamp, fake = monitor.diag_with_stamp(FAKE)
    exec_stamp, executor = monitor.diag_with_stamp(EXECUTOR)
    return {
        "wall": time.monotonic(),
        "fake_stamp": fake_stamp,
        "fake": fake,
        "exec_stamp": exec_stamp,
        "executor": executor,
        "policy": monitor.diag(POLICY),
    }


def _delta(a: dict, b: dict, key: str) -> float:
    return float(b.get(key, 0)) - float(a.get(key, 0))


def figures(robot: str, mode: str, with_policy: bool, a: dict, b: dict) -> dict:
    """Rates over the window between snapshots ``a`` and ``b``."""
    wall = b["wall"] - a["wall"]
    sim = b["fake"]["sim_time_s"] - a["fake"]["sim_time_s"]
    fake_sim = b["fake_stamp"] - a["fake_stamp"]
    exec_sim = b["exec_stamp"] - a["exec_stamp"]
    ticks = sum(_delta(a["executor"], b["executor"], k) for k in ("ticks_run", "ticks_hold", "ticks_idle"))
    arms = [k.split(".")[1] for k in b["fake"] if k.startswith("active_controller.")]
    commands = sum(
        _delta(a["fake"], b["fake"], f"commands.{arm}.{kind}.accepted")
        for arm in arms
        for kind in ("forward", "trajectory")
    )
    frames = sum(_delta(a["fake"], b["fake"], k) for k in b["fake"] if k.startswith("frames."))
    policy = b["policy"]
    return {
        "robot": robot,
        "mode": mode,
        "policy": with_policy,
        "wall_s": wall,
        "sim_s": sim,
        "sim_speed_ratio": sim / wall if wall > 0 else float("nan"),
        "control_ticks_per_sim_s": ticks / exec_sim if exec_sim > 0 else float("nan"),
        "control_rate_configured_hz": b["executor"].get("control_rate_hz"),
        "commands_per_sim_s_per_arm": commands / fake_sim / max(len(arms), 1)
        if fake_sim > 0
        else float("nan"),
        "commands_per_wall_s_per_arm": commands / wall / max(len(arms), 1),
        "render_frames_per_wall_s": frames / wall,
        "render_ms_p50": b["fake"].get("render_ms_p50"),
        "physics_step_ms_p50": b["fake"].get("physics_step_ms_p50"),
        "inference_p50_ms": policy.get("inference_latency_p50_ms", float("nan")),
        "inference_p99_ms": policy.get("inference_latency_p99_ms", float("nan")),
        "lockstep_timeouts": _delta(a["fake"], b["fake"], "lockstep_timeouts"),
        "realtime_slips": _delta(a["fake"], b["fake"], "realtime_slips"),
        "limit_violations": b["fake"].get("limit_violations"),
    }


COLUMNS = [
    ("set-up", "robot"),
    ("time mode", "mode"),
    ("policy", "policy"),
    ("wall s", "wall_s"),
    ("sim s", "sim_s"),
    ("sim/real", "sim_speed_ratio"),
    ("control ticks / sim s", "control_ticks_per_sim_s"),
    ("configured Hz", "control_rate_configured_hz"),
    ("commands / sim s / arm", "commands_per_sim_s_per_arm"),
    ("commands / wall s / arm", "commands_per_wall_s_per_arm"),
    ("frames rendered / wall s", "render_frames_per_wall_s"),
    ("render ms p50", "render_ms_p50"),
    ("physics step ms p50", "physics_step_ms_p50"),
    ("inference p50 / p99 ms", None),
    ("CPU s / sim s: fake, executor, policy", "cpu"),
    ("lockstep timeouts", "lockstep_timeouts"),
    ("realtime slips", "realtime_slips"),
]


def _fmt(value) -> object:
    if isinstance(value, float):
        return "-" if value != value else round(value, 2)
    return value


def to_result(runs: list[dict], args, load_before: str, load_after: str) -> dict:
    rows = []
    for r in runs:
        row = []
        for _, key in COLUMNS:
            if key is None:
                row.append(f"{_fmt(r['inference_p50_ms'])} / {_fmt(r['inference_p99_ms'])}")
            elif key == "cpu":
                row.append(", ".join(str(_fmt(r[f"cpu_per_sim_s.{n}"])) for n in (FAKE, EXECUTOR, POLICY)))
            else:
                row.append(_fmt(r[key]))
        rows.append(row)
    return {
        "title": "Closed loop against the MuJoCo fake robot (real DDS, separate processes)",
        "tables": [
            {
                "caption": f"{args.seconds:g} s wall windows, cameras {args.width}x{args.height} at {args.camera_rate:g} Hz "
                "(sim time), nano random-init policy, one torch thread",
                "columns": [c for c, _ in COLUMNS],
                "rows": rows,
            }
        ],
        "notes": [
            "sim/real = sim seconds per wall second over the window. lockstep/no policy: the sim waits only "
            "for the executor's tick every control period (the lockstep speed of the sim + control loop); "
            "lockstep/policy: it also waits for each chunk (at most 0.25 s of sim time per inference), so "
            "inference latency bounds it; realtime: paced to the wall clock (slips = times it fell > 0.1 s "
            "behind and the clock jumped).",
            "control ticks / sim s should equal the configured rate in lockstep (one tick per control period).",
            "Without a policy the executor holds (no chunk yet): the forward controller output (Franka) repeats the hold command every tick, the joint trajectory output (UR5) sends one stop trajectory and then nothing, hence 0 commands per second there.",
            "CPU s / sim s: CPU time each node process used per simulated second; it does not depend on "
            "the machine's load, so it estimates what an idle machine could do: the lockstep loop can run "
            "at most about 1 / (fake + executor CPU s per sim s) times real time on one core (more on two, "
            "as the fake renders while the executor ticks).",
            f"Load average (1/5/15 min) before: {load_before}, after: {load_after}; the machine is shared, so "
            "compare figures of one run with each other only.",
        ],
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    isolate_dds()
    load_before = load_average()
    plan = [("franka", "lockstep", False), ("franka", "lockstep", True), ("franka", "realtime", True)]
    if not args.quick:
        plan.append(("ur5_bimanual", "lockstep", False))
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench_closed_loop_") as tmp:
        for robot, mode, with_policy in plan:
            print(f"bench_closed_loop: {robot} {mode} policy={with_policy} ...", flush=True)
            result = run_graph(robot, mode, with_policy, args, Path(tmp))
            print(
                f"  sim/real {result['sim_speed_ratio']:.2f}, ticks/sim s {result['control_ticks_per_sim_s']:.1f}",
                flush=True,
            )
            runs.append(result)
    out = to_result(runs, args, load_before, load_average())
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(out, indent=2), encoding="utf-8")
    print(f"wrote {RESULT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
