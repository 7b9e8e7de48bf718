"""``make demo``: run a robot graph against the MuJoCo fake robot and summarise what happened.

Steps: pick the checkpoint (``--checkpoint``, else the embedded default ``models/<robot>/``, else
a random-init nano checkpoint written to ``<out>/checkpoint_<robot>/``, which the summary says
loudly), start the graph with the console launcher (``python -m tinyvla_ros.ros.graph <robot>
--use-sim true --enable-actuation true ...``) for ``--duration`` seconds (at most 180) once the
nodes are up, record it with a GraphMonitor, then print a summary (task, success, control rate,
inference latency p50/p99, safety clamps, holds, limit violations, sim speed) and write to
``<out>/``: summary.json, camera_strip.png (camera views over time), cameras.gif (an animation of
every camera side by side, 5 frames per second of the run), joints.png (commanded vs measured
joints), logs/<node>.log.

    python -m tinyvla_ros.demo --robot franka --duration 60
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tinyvla_ros.core.robots import SETUPS

MAX_DURATION = 180.0
STARTUP_TIMEOUT = 240.0  # s for the nodes to come up (torch import, checkpoint load, warm-up)
RANDOM_MARKER = "tinyvla_demo_random_init.json"
ANIMATION_FPS = 5.0  # camera frames kept per second of the run (the GIF plays them in real time)
ROBOT_SPECS = {"franka": ("fr3", [""]), "ur5_bimanual": ("ur5", ["left_", "right_"])}


@dataclass
class DemoConfig:
    """What to run: robot set-up, seconds after start-up, checkpoint ('' = default), task, output."""

    robot: str = "franka"
    duration: float = 60.0
    checkpoint: str = ""
    task: str = ""
    seed: int = 0
    time_mode: str = "realtime"
    out: str = "demo_out"
    image_width: int = 0  # 0: the params file's fake cameras
    image_height: int = 0
    # s: the executor's faults.max_observation_age for this run (0: the params file's 0.18 s, which
    # a robot's computer meets; on a 2-core CPU, camera -> chunk alone is ~0.1 s and the arm stutters)
    observation_deadline: float = 0.35

    def __post_init__(self) -> None:
        if self.robot not in SETUPS:
            raise ValueError(f"robot must be one of {list(SETUPS)}, got {self.robot!r}")
        if not 0 < self.duration <= MAX_DURATION:
            raise ValueError(f"duration must be in (0, {MAX_DURATION:g}] s, got {self.duration!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed!r}")
        if self.time_mode not in ("realtime", "lockstep", "fast"):
            raise ValueError(f"time_mode must be realtime | lockstep | fast, got {self.time_mode!r}")
        if not 0.0 <= self.observation_deadline <= 5.0:
            raise ValueError(f"observation_deadline must be in [0, 5] s, got {self.observation_deadline!r}")


# --- checkpoint -----------------------------------------------------------------------------


def _params(robot: str) -> dict:
    from tinyvla_ros.ros.graph import default_params_file

    with open(default_params_file(robot), encoding="utf-8") as f:
        return yaml.safe_load(f)


def _section(robot: str, node: str) -> dict:
    from tinyvla_ros.ros.graph import node_section

    return node_section(_params(robot), node)


def find_checkpoint(robot: str, given: str = "") -> tuple[str, str]:
    """(checkpoint dir, kind) with kind 'given' | 'embedded default' | '' (none found).

    Raises FileNotFoundError when ``given`` is not a checkpoint directory.
    """
    if given:
        path = Path(given).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"--checkpoint {given!r} is not a checkpoint directory (no config.json)")
        return str(path), "given"
    from tinyvla_ros.ros.graph import shipped_checkpoint

    default = shipped_checkpoint(robot)
    return (default, "embedded default") if default else ("", "")


def _loads(directory: Path) -> bool:
    """True when a checkpoint left by an earlier run still loads with this version of the model."""
    from tinyvla_ros.vla.policy import TinyVLAPolicy

    try:
        TinyVLAPolicy.from_pretrained(directory)
    except (ValueError, OSError, KeyError, RuntimeError):
        return False
    return True


def random_checkpoint(robot: str, directory: Path, seed: int = 0, spread: float = 0.2) -> Path:
    """Write (or reuse) a random-init nano checkpoint for ``robot``: actions home +- ``spread`` rad.

    Joint actions span home +- spread per joint, gripper actions [0, 1]; the state is normalised
    around home. The policy moves the arm(s) but has learnt nothing.
    """
    from tinyvla_ros.core.robots import load_robot_spec

    marker = directory / RANDOM_MARKER
    if marker.is_file() and (directory / "config.json").is_file() and _loads(directory):
        return directory
    policy = _section(robot, "tinyvla_policy")
    spec_name, prefixes = ROBOT_SPECS[robot]
    spec = load_robot_spec(spec_name)
    low, high, mean, std = [], [], [], []
    for _ in prefixes:
        home = np.asarray(spec.home, dtype=np.float64)
        low += list(np.maximum(home - spread, spec.position_lower)) + [0.0]
        high += list(np.minimum(home + spread, spec.position_upper)) + [1.0]
        mean += list(home) + [0.04 if robot == "franka" else 0.4]
        std += [0.5] * len(home) + [0.02 if robot == "franka" else 0.3]
    from tinyvla_ros.vla.testing import make_tiny_checkpoint

    make_tiny_checkpoint(
        directory,
        policy["camera_names"],
        len(policy["state_joint_names"]),
        len(policy["action_names"]),
        seed=seed,
        action_low=low,
        action_high=high,
        state_mean=mean,
        state_std=std,
        action_names=policy["action_names"],
    )
    marker.write_text(json.dumps({"robot": robot, "seed": seed, "spread": spread}), encoding="utf-8")
    return directory


# --- running --------------------------------------------------------------------------------


def graph_command(cfg: DemoConfig, checkpoint: str, instruction: str, task: str, log_dir: Path) -> list[str]:
    """argv of the console launcher for the demo run."""
    sim_time = "false" if cfg.time_mode == "realtime" else "true"
    fake = {
        "task": task,
        "seed": cfg.seed,
        "time_mode": cfg.time_mode,
        **({"image_width": cfg.image_width, "image_height": cfg.image_height} if cfg.image_width else {}),
    }
    if cfg.time_mode == "lockstep":
        fake["real_time_factor"] = 1.0
    argv = [sys.executable, "-m", "tinyvla_ros.ros.graph", cfg.robot, "--use-sim", "true"]
    argv += ["--use-sim-time", sim_time, "--checkpoint", checkpoint, "--instruction", instruction]
    argv += ["--enable-actuation", "true", "--duration", f"{cfg.duration:g}", "--log-dir", str(log_dir)]
    argv += ["--startup-timeout", f"{STARTUP_TIMEOUT:g}"]
    for key, value in fake.items():
        argv += ["--set", f"tinyvla_fake_robot.{key}={value}"]
    if cfg.observation_deadline > 0:
        argv += ["--set", f"tinyvla_executor.faults.max_observation_age={cfg.observation_deadline:g}"]
    return argv


def _task(robot: str, task: str) -> tuple[str, str]:
    """(task name, instruction) of ``task`` ('' = the set-up's first task)."""
    from tinyvla_ros.sim.tasks import get_task, task_names

    chosen = get_task(robot, task or task_names(robot)[0])
    return chosen.name, chosen.instruction


def run_graph(argv: list[str], timeout: float, log_path: Path) -> int:
    """Run the launcher, its output to ``log_path``; SIGINT on Ctrl-C or timeout. Returns its exit code."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            return proc.wait(timeout=timeout)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            proc.send_signal(signal.SIGINT)
            try:
                return proc.wait(timeout=30.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                return proc.wait()


def _record_once_active(monitor, baseline: dict, timeout: float = STARTUP_TIMEOUT) -> None:
    """Drop what was recorded while the nodes started: pictures and figures cover the run only.

    ``baseline`` receives the nodes' diagnostics at that moment (counters are reported as deltas).
    """
    try:
        monitor.wait_for(
            lambda: monitor.diag("tinyvla_policy").get("state") == "active", timeout, "the policy"
        )
    except TimeoutError:
        return
    monitor.clear()
    for node in ("tinyvla_policy", "tinyvla_executor", "tinyvla_fake_robot"):
        baseline[node] = monitor.diag(node)
    print("graph is up: recording", flush=True)


# --- summary ----------------------------------------------------------------------------------


def _rate(times: list[float]) -> float:
    """Messages per second over the span of ``times`` (s)."""
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])


def summarize(
    monitor,
    cfg: DemoConfig,
    task: str,
    checkpoint: str,
    kind: str,
    command_topic: str,
    baseline: dict[str, dict] | None = None,
) -> dict[str, Any]:
    """The demo's summary numbers from what ``monitor`` recorded (counters since ``baseline``)."""
    policy, executor = monitor.diag("tinyvla_policy"), monitor.diag("tinyvla_executor")
    fake = monitor.diag("tinyvla_fake_robot")
    base = baseline or {}

    def delta(node: str, values: dict, key: str) -> int:
        return int(values.get(key, 0)) - int(base.get(node, {}).get(key, 0))

    holds = sum(
        1
        for (_, a), (_, b) in zip(monitor.statuses, monitor.statuses[1:], strict=False)
        if b["mode"] == "hold" != a["mode"]
    )
    period = executor.get("control_period_p50_ms", float("nan"))
    if isinstance(period, (int, float)) and math.isfinite(period) and period > 0:
        tick_rate = 1e3 / period
    else:  # no period figure (none measured yet, or a value that does not parse): count the ticks
        ticks = sum(delta("tinyvla_executor", executor, f"ticks_{m}") for m in ("run", "hold", "idle"))
        tick_rate = ticks / cfg.duration if ticks > 0 and cfg.duration > 0 else float("nan")
    return {
        "robot": cfg.robot,
        "task": task,
        "instruction": monitor.instruction or fake.get("instruction", ""),
        "checkpoint": checkpoint,
        "checkpoint_kind": kind,
        "duration_s": cfg.duration,
        "time_mode": cfg.time_mode,
        "success_final": bool(monitor.success[-1]) if monitor.success else False,
        "success_ever": any(monitor.success),
        "success_time_s": fake.get("success_time_s", float("nan")),
        "control_rate_configured_hz": executor.get("control_rate_hz", float("nan")),
        "control_rate_ticks_hz": tick_rate,
        "commands_per_s": _rate(monitor.command_times.get(command_topic, [])),
        "command_topic": command_topic,
        "inference_latency_p50_ms": policy.get("inference_latency_p50_ms", float("nan")),
        "inference_latency_p99_ms": policy.get("inference_latency_p99_ms", float("nan")),
        "chunks_published": delta("tinyvla_policy", policy, "chunks_published"),
        "safety_clamps": delta("tinyvla_executor", executor, "safety_clamps_total"),
        "holds": holds,
        "observation_deadline": (
            f"{cfg.observation_deadline:g} s (demo on this CPU; the params file's 0.18 s is for a robot's computer)"
            if cfg.observation_deadline > 0
            else "the params file's faults.max_observation_age"
        ),
        "ticks_hold": delta("tinyvla_executor", executor, "ticks_hold"),
        "ticks_run": delta("tinyvla_executor", executor, "ticks_run"),
        "limit_violations": monitor.limit_violations,
        "sim_real_time_factor": fake.get("real_time_factor", float("nan")),
        "render_rate_hz": fake.get("render_rate_hz", float("nan")),
        "realtime_slips": fake.get("realtime_slips", 0),
    }


def format_summary(s: dict[str, Any]) -> str:
    """Human-readable summary lines."""
    lines = [
        f"tinyvla demo: {s['robot']} against the MuJoCo fake robot ({s['time_mode']}, {s['duration_s']:g} s)"
    ]
    if s["checkpoint_kind"].startswith("RANDOM"):
        lines.append(
            "  NOTE: no trained default checkpoint in models/ yet: this run uses a RANDOM-INIT nano checkpoint "
            "(the arm moves, the task is not expected to succeed)"
        )
    rows = [
        ("task", f'{s["task"]} - "{s["instruction"]}"'),
        ("checkpoint", f"{s['checkpoint']} ({s['checkpoint_kind']})"),
        (
            "success",
            (
                f"yes, at {float(s['success_time_s']):.1f} s (the task's check; at the end of the run: "
                f"{'still' if s['success_final'] else 'no longer, the policy acts on after its episode'})"
            )
            if s["success_ever"]
            else "no",
        ),
        (
            "control rate",
            f"{s['control_rate_ticks_hz']:.1f} Hz ticks (configured {s['control_rate_configured_hz']:g} Hz), "
            f"{s['commands_per_s']:.1f} commands/s on {s['command_topic']}",
        ),
        (
            "inference latency",
            f"p50 {s['inference_latency_p50_ms']:.1f} ms, p99 {s['inference_latency_p99_ms']:.1f} ms "
            f"({s['chunks_published']} chunks)",
        ),
        ("safety clamps", str(s["safety_clamps"])),
        ("holds", f"{s['holds']} (hold ticks {s['ticks_hold']}, run ticks {s['ticks_run']})"),
        ("observation deadline", s["observation_deadline"]),
        ("limit violations", f"{s['limit_violations']} commands outside the joint limits reached the robot"),
        (
            "sim",
            f"real-time factor {s['sim_real_time_factor']:.2f}, render {s['render_rate_hz']:.1f} frames/s, "
            f"{s['realtime_slips']} realtime slips",
        ),
    ]
    lines += [f"  {k:<18} {v}" for k, v in rows]
    return "\n".join(lines)


# --- pictures ---------------------------------------------------------------------------------


def save_camera_strip(
    frames: dict[str, list[tuple[float, np.ndarray]]], path: Path, columns: int = 6
) -> bool:
    """A grid of camera frames (rows: cameras, columns: time); False when there is nothing to draw."""
    cameras = [c for c in sorted(frames) if frames[c]]
    if not cameras:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = {
        c: [
            frames[c][i] for i in np.linspace(0, len(frames[c]) - 1, min(columns, len(frames[c]))).astype(int)
        ]
        for c in cameras
    }
    ncols = max(len(p) for p in picks.values())
    fig, axes = plt.subplots(len(cameras), ncols, figsize=(2.0 * ncols, 1.8 * len(cameras)), squeeze=False)
    t0 = min(p[0][0] for p in picks.values())
    for r, cam in enumerate(cameras):
        for c in range(ncols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(picks[cam]):
                stamp, rgb = picks[cam][c]
                ax.imshow(rgb)
                ax.set_title(f"{cam} t={stamp - t0:.1f}s", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def save_animation(
    frames: dict[str, list[tuple[float, np.ndarray]]], path: Path, fps: float = 5.0, max_frames: int = 400
) -> bool:
    """An animated GIF of the cameras side by side (each column the camera's frame nearest in time
    to the first camera's), ``fps`` frames per second of recording; False when nothing was recorded."""
    cameras = [c for c in sorted(frames) if frames[c]]
    if not cameras:
        return False
    from PIL import Image, ImageDraw

    lead = frames[cameras[0]][:max_frames]
    t0 = lead[0][0]
    stamps = {cam: np.array([t for t, _ in frames[cam]]) for cam in cameras}
    pictures = []
    for stamp, _ in lead:
        row = [frames[cam][int(np.abs(stamps[cam] - stamp).argmin())][1] for cam in cameras]
        height = max(img.shape[0] for img in row)
        row = [np.pad(img, ((0, height - img.shape[0]), (0, 2), (0, 0))) for img in row]
        picture = Image.fromarray(np.concatenate(row, axis=1)[:, :-2])
        ImageDraw.Draw(picture).text((3, 2), f"t={stamp - t0:4.1f}s", fill=(255, 255, 255))
        pictures.append(picture)
    pictures[0].save(
        path, save_all=True, append_images=pictures[1:], duration=int(1000 / fps), loop=0, optimize=True
    )
    return True


def save_joint_plot(measured: list, commanded: list, joints: list[str], path: Path) -> bool:
    """Commanded (executor ~/preview) vs measured (/joint_states) per joint over time."""
    if not measured:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = measured[0][0]
    ncols = 2 if len(joints) > 7 else 1
    nrows = int(np.ceil(len(joints) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(7 * ncols, 1.4 * nrows), squeeze=False, sharex=True)
    for k, joint in enumerate(joints):
        ax = axes[k % nrows][k // nrows]
        for samples, label, style in ((commanded, "commanded", "--"), (measured, "measured", "-")):
            pts = [(t - t0, q[joint]) for t, q in samples if joint in q]
            if pts:
                ts, qs = zip(*pts, strict=True)
                ax.plot(ts, qs, style, label=label, linewidth=1)
        ax.set_ylabel(joint, fontsize=7)
        ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7, loc="upper right")
    for ax in axes[-1]:
        ax.set_xlabel("time [s]", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# --- main -------------------------------------------------------------------------------------


def run_demo(cfg: DemoConfig) -> tuple[int, dict[str, Any]]:
    """Run the whole demo; returns (exit code, summary)."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # keep the demo's DDS on this host
    out = Path(cfg.out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    task, instruction = _task(cfg.robot, cfg.task)
    checkpoint, kind = find_checkpoint(cfg.robot, cfg.checkpoint)
    if not checkpoint:
        print(
            f"no trained default checkpoint in models/{cfg.robot}/: writing a random-init nano checkpoint",
            flush=True,
        )
        checkpoint = str(random_checkpoint(cfg.robot, out / f"checkpoint_{cfg.robot}"))
        kind = "RANDOM-INIT nano (no trained default checkpoint exists yet)"
    policy, executor = _section(cfg.robot, "tinyvla_policy"), _section(cfg.robot, "tinyvla_executor")
    cameras = {name: policy["cameras"][name]["topic"] for name in policy["camera_names"]}
    output = executor.get("output", "forward_position")
    topic_key = {
        "forward_position": "forward_command_topics",
        "joint_trajectory": "trajectory_command_topics",
    }[output]
    command_topic = executor[topic_key][0]
    from std_msgs.msg import Float64MultiArray
    from trajectory_msgs.msg import JointTrajectory

    from tinyvla_ros.ros.fake_robot.monitor import GraphMonitor

    msg_type = Float64MultiArray if output == "forward_position" else JointTrajectory
    monitor = GraphMonitor(cameras, [(command_topic, msg_type)], frame_every=1.0 / ANIMATION_FPS)
    try:
        argv = graph_command(cfg, checkpoint, instruction, task, out / "logs")
        print(f"running: {' '.join(argv)}", flush=True)
        baseline: dict[str, dict] = {}
        threading.Thread(target=_record_once_active, args=(monitor, baseline), daemon=True).start()
        code = run_graph(argv, cfg.duration + STARTUP_TIMEOUT, out / "logs" / "graph.log")
        time.sleep(0.5)
        summary = summarize(monitor, cfg, task, checkpoint, kind, command_topic, baseline)
        summary["graph_exit_code"] = code
        joints = [j for j in policy["state_joint_names"] if "finger" not in j and "knuckle" not in j]
        summary["camera_strip"] = (
            str(out / "camera_strip.png")
            if save_camera_strip(monitor.frames, out / "camera_strip.png")
            else ""
        )
        summary["animation"] = (
            str(out / "cameras.gif")
            if save_animation(monitor.frames, out / "cameras.gif", fps=ANIMATION_FPS)
            else ""
        )
        summary["joint_plot"] = (
            str(out / "joints.png")
            if save_joint_plot(monitor.measured, monitor.commanded, joints, out / "joints.png")
            else ""
        )
    finally:
        monitor.close()
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    return code, summary


def parse_args(argv: list[str] | None) -> DemoConfig:
    parser = argparse.ArgumentParser(prog="tinyvla-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--robot", default="franka", choices=SETUPS)
    parser.add_argument(
        "--duration", type=float, default=60.0, help=f"seconds once started (max {MAX_DURATION:g})"
    )
    parser.add_argument("--checkpoint", default="", help="checkpoint directory (default: models/<robot>/)")
    parser.add_argument("--task", default="", help="task name or instruction (default: the set-up's first)")
    parser.add_argument("--seed", type=int, default=0, help="object placement seed")
    parser.add_argument("--time-mode", default="realtime", choices=("realtime", "lockstep", "fast"))
    parser.add_argument("--out", default="demo_out", help="output directory")
    parser.add_argument(
        "--observation-deadline",
        type=float,
        default=DemoConfig.observation_deadline,
        help="executor faults.max_observation_age for the demo (s; 0: the params file's)",
    )
    args = parser.parse_args(argv)
    return DemoConfig(
        robot=args.robot,
        duration=args.duration,
        checkpoint=args.checkpoint or "",
        task=args.task,
        seed=args.seed,
        time_mode=args.time_mode,
        out=args.out,
        observation_deadline=args.observation_deadline,
    )


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_args(argv)
        code, summary = run_demo(cfg)
    except (ValueError, FileNotFoundError) as exc:
        print(f"tinyvla demo: {exc}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    for key in ("camera_strip", "animation", "joint_plot"):
        if summary.get(key):
            print(f"  wrote {summary[key]}")
    print(f"  summary: {Path(cfg.out) / 'summary.json'}, node logs: {Path(cfg.out) / 'logs'}")
    if code != 0:
        print(
            f"tinyvla demo: the graph exited with code {code}; see {Path(cfg.out) / 'logs'}", file=sys.stderr
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
