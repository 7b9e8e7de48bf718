"""Chunk transitions per execution mode in the MuJoCo fake, with inference latency raised artificially.

Every execution mode (open_loop, temporal_ensemble, overlap_blend, inpaint) runs the same episodes
(tasks x scene seeds, the same diffusion seeds per chunk) with a checkpoint, in process: the chunk
executor alone, one tick per action step, without the control loop's safety filter (render the
cameras, read the joints, ask the engine for a chunk when the chunk executor wants one, send the
executor's action as the joint targets), so the figures are the execution modes'; a chunk
requested at t (observation stamp t) reaches the executor only at t + L, L = 1x, 2x, 4x the control
period, while the robot keeps executing the old plan; one request is in flight at a time. In
``inpaint`` mode the request carries the executor's committed steps (``committed_steps``, mapped
by ``inpaint_prefix``: weight 1 up to t + L + one margin step, a 4-step decay after), as the ROS
policy node does.

Figures per (latency, mode), over all episodes, from the commanded arm joint targets q_k (one per
control period dt; a hold repeats the last target):
    success            episodes whose task reported success
    jump mean / max    |v_k - v_(k-1)| (L2 over the arm joints, rad/s) at each tick k where a new
                       chunk took over, v_k = (q_k - q_(k-1)) / dt
    seam jump          the largest such change within WINDOW ticks from that tick on, mean over
                       boundaries: inpainting moves the seam from the takeover tick to where the
                       chunk's free part begins, so this is the fair comparison
    jerk RMS           RMS of the third difference of q_k / dt^3 (rad/s^3)
    standstill         seconds per episode with no planned action (waiting for a chunk), after
                       the first chunk arrived
Writes benchmarks/results/inpaint.json (rendered into RESULTS.md by run_all.py) and
benchmarks/results/inpaint_boundaries.png (one joint's commanded trajectory per mode at 2x
latency, chunk arrivals marked). Usage::

    .venv/bin/python benchmarks/bench_inpaint.py [--checkpoint models/franka] [--quick]

Without --checkpoint (and no trained policy in models/<setup>) a proxy policy is trained first
(~2 min: nano, smooth synthetic chunks that ramp from the state towards a noisy goal, see
``train_proxy_policy``): its transition figures are meaningful, its success rate is not.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyvla_ros.core.chunking import EXECUTION_MODES
from tinyvla_ros.core.robots import SETUPS

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
MODES = EXECUTION_MODES
WINDOW = 6  # ticks after a takeover searched for the seam (margin + soft decay + 1 at the defaults)


@dataclass
class Trace:
    """One episode: commanded arm targets (K, J) per tick, ticks where a chunk took over, etc."""

    commanded: list = field(default_factory=list)
    boundaries: list = field(default_factory=list)
    standstill_ticks: int = 0
    chunks: int = 0
    success: bool = False


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--checkpoint", default="", help="checkpoint dir (default models/franka, else random init)"
    )
    p.add_argument("--setup", default="franka", choices=SETUPS)
    p.add_argument("--tasks", nargs="+", default=None, help="tasks (default: all; --quick: the first)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="scene seeds")
    p.add_argument("--latencies", type=float, nargs="+", default=[1.0, 2.0, 4.0], help="x the base latency")
    p.add_argument(
        "--latency-base",
        choices=("measured", "control"),
        default="measured",
        help="measured: the engine's median predict_chunk time on this machine; control: one control period",
    )
    p.add_argument("--width", type=int, default=0, help="camera width (0: the params file's fake cameras)")
    p.add_argument("--height", type=int, default=0, help="camera height (0: the params file's)")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--max-seconds", type=float, default=0.0, help="episode limit (0: per-task default)")
    p.add_argument("--soft-decay-steps", type=int, default=4)
    p.add_argument("--margin-steps", type=int, default=1)
    p.add_argument("--engine", default="torch")
    p.add_argument("--num-threads", type=int, default=1)
    p.add_argument("--proxy-steps", type=int, default=600, help="training steps of the proxy policy")
    p.add_argument("--quick", action="store_true", help="first task, seed 0, 4 s episodes")
    p.add_argument("--out", default=str(RESULTS / "inpaint.json"))
    p.add_argument("--plot", default=str(RESULTS / "inpaint_boundaries.png"))
    args = p.parse_args(argv)
    if args.quick:
        args.seeds = args.seeds[:1]
        args.max_seconds = args.max_seconds or 4.0
    return args


def resolve_checkpoint(args: argparse.Namespace, params: dict, workdir: Path, env) -> tuple[Path, str]:
    """(checkpoint dir, description): the argument, models/<setup>, or a proxy trained here."""
    if args.checkpoint:
        return Path(args.checkpoint), args.checkpoint
    shipped = ROOT / "models" / ("franka" if args.setup == "franka" else "ur5_bimanual")
    if (shipped / "config.json").is_file():
        return shipped, str(shipped.relative_to(ROOT))
    path = train_proxy_policy(env, params, workdir / "proxy", args.proxy_steps)
    return path, (
        f"proxy: nano trained here for {args.proxy_steps} steps on synthetic chunks (ramps from the state "
        "towards a noisy goal near the start pose; no trained policy in models/): transition figures are "
        "meaningful, success rates are not"
    )


def train_proxy_policy(env, params: dict, directory: Path, steps: int) -> Path:
    """A nano policy whose chunks are smooth, state-dependent and stochastic like a real policy's:
    a_t = (1 - r_t) state + r_t (G + e), r_t = (t + 1) / T, G near the start pose, e ~ U(-0.1, 0.1)
    per demonstration (so consecutive chunks disagree); grippers open. Images carry no signal."""
    import torch

    from tinyvla_ros.vla.config import get_config
    from tinyvla_ros.vla.normalize import Normalizer
    from tinyvla_ros.vla.policy import TinyVLAPolicy

    env.reset(env.tasks[0], 0)
    joints = dict(zip(env.joint_names, env.joint_positions(), strict=True))
    names, states = list(params["action_names"]), list(params["state_joint_names"])
    arm = np.array([n in joints for n in names])  # action dims that are joints (else grippers)
    home = np.array([joints.get(n, 1.0) for n in names])  # (A,)
    state_home = np.array([joints[n] for n in states])  # (Ds,)
    state_cols = [states.index(n) for n in names if n in joints]
    rng = np.random.default_rng(0)
    goal_dir = rng.choice([-0.2, 0.2], size=len(names))
    ramp = (np.arange(16) + 1.0) / 16  # (T,)

    def demos(n: int) -> tuple[np.ndarray, np.ndarray]:
        state = state_home + rng.uniform(-0.15, 0.15, (n, len(states)))
        start = np.tile(home, (n, 1))
        start[:, arm] = state[:, state_cols]
        goal = np.where(arm, home + goal_dir + rng.uniform(-0.1, 0.1, (n, len(names))), 1.0)
        chunk = (1 - ramp)[None, :, None] * start[:, None] + ramp[None, :, None] * goal[:, None]
        return state.astype(np.float32), chunk.astype(np.float32)

    state, chunk = demos(4000)
    low = np.minimum(chunk.reshape(-1, len(names)).min(0), np.where(arm, home - 0.5, 0.0))
    high = np.maximum(chunk.reshape(-1, len(names)).max(0), np.where(arm, home + 0.5, 1.0))
    norm = Normalizer(
        action_low=low, action_high=high, state_mean=state.mean(0), state_std=state.std(0) + 1e-3
    )
    cams = tuple(params["camera_names"])
    config = get_config(
        "nano",
        camera_names=cams,
        state_dim=len(states),
        action_dim=len(names),
        image_size=32,
        action_names=tuple(names),
    )
    torch.manual_seed(0)
    policy = TinyVLAPolicy(config, normalizer=norm)
    opt = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min(1.0, (k + 1) / 20) * 0.5 * (1 + np.cos(np.pi * min(k, steps) / steps))
    )
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(100, 140, (32, len(cams), 3, 32, 32), dtype=torch.uint8, generator=gen)
    policy.train()
    for _ in range(steps):
        s, a = demos(32)
        batch = {"images": images, "instruction": ["do the task"] * 32, "state": torch.from_numpy(s)}
        loss = policy({**batch, "actions": torch.from_numpy(a)}, generator=gen)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        sched.step()
    return policy.eval().save_pretrained(directory)


class LatencyRunner:
    """The evaluation loop with a chunk in flight for ``latency`` seconds (see the module docstring)."""

    def __init__(self, engine, env, params: dict, executor_params: dict, args: argparse.Namespace) -> None:
        self.engine, self.env, self.params, self.exec_params, self.args = (
            engine,
            env,
            params,
            executor_params,
            args,
        )
        self.dt = float(params.get("action_dt", 0.05))

    def episode(self, mode: str, task: str, seed: int, latency: float, limit: float) -> Trace:
        from tinyvla_ros.core.chunking import ChunkExecutor, inpaint_prefix
        from tinyvla_ros.core.control import ControlConfig
        from tinyvla_ros.data.demos import split_action

        control = ControlConfig.from_params(self.exec_params, execution_mode=mode or None)
        action_names = list(self.params["action_names"])
        executor = ChunkExecutor(control.chunk_executor_config(len(action_names)))
        env, dt = self.env, self.dt
        state_cols = [list(env.joint_names).index(n) for n in self.params["state_joint_names"]]
        chunk_len = int(self.engine.config.chunk_len)
        env.reset(task, seed)
        instruction = env.instruction
        trace, pending, last_q, started = Trace(), None, None, False
        while env.time < limit - 1e-9:
            now = env.time
            if pending is not None and now >= pending[0] - 1e-9:
                if executor.add_chunk(pending[1], pending[2], now) > 0:
                    trace.boundaries.append(len(trace.commanded))
                    started = True
                pending = None
            if pending is None and executor.needs_chunk(now):
                images = [env.render(c) for c in self.params["camera_names"]]
                state = env.joint_positions()[state_cols]
                kwargs = {}
                if mode == "inpaint":
                    actions, times = executor.committed_steps(now)
                    hard_until = now + latency + self.args.margin_steps * dt
                    prefix = inpaint_prefix(
                        times, actions, now, dt, chunk_len, hard_until, self.args.soft_decay_steps
                    )
                    if prefix is not None:
                        kwargs = {"prefix": prefix[0], "prefix_weight": prefix[1]}
                chunk = self.engine.predict_chunk(images, instruction, state, seed=trace.chunks, **kwargs)
                pending = (now + latency, chunk, now)
                trace.chunks += 1
            action = executor.action_at(now)
            if action is not None:
                q, grip = split_action(action, action_names, env)
                env.set_joint_position_targets(q)
                for arm, value in grip.items():
                    env.set_gripper(arm, value)
                last_q = q
            elif started:
                trace.standstill_ticks += 1
            if last_q is not None:
                trace.commanded.append(np.array(last_q, dtype=np.float64))
            env.step()
            if not np.all(np.isfinite(env.joint_positions())):
                break
            if env.success():
                trace.success = True
                break
        return trace


def figures(traces: list[Trace], dt: float) -> dict:
    """Success rate, boundary velocity jumps, jerk RMS, standstill (see the module docstring)."""
    jumps, seams, jerks = [], [], []
    for tr in traces:
        q = np.asarray(tr.commanded)  # (K, J)
        if len(q) < 4:
            continue
        v = np.diff(q, axis=0) / dt  # v[k-1] = (q_k - q_(k-1)) / dt
        dv = np.linalg.norm(np.diff(v, axis=0), axis=1)  # dv[k-2] = |v_k - v_(k-1)|
        for k in tr.boundaries:
            if 2 <= k < len(q):
                jumps.append(float(dv[k - 2]))
                seams.append(float(np.max(dv[k - 2 : k - 2 + WINDOW])))
        jerks.append(np.diff(q, n=3, axis=0) / dt**3)
    jerk = np.concatenate(jerks) if jerks else np.zeros((0, 1))
    return {
        "episodes": len(traces),
        "success_rate": float(np.mean([t.success for t in traces])) if traces else 0.0,
        "jump_mean": float(np.mean(jumps)) if jumps else 0.0,
        "jump_max": float(np.max(jumps)) if jumps else 0.0,
        "seam_jump_mean": float(np.mean(seams)) if seams else 0.0,
        "boundaries": len(jumps),
        "jerk_rms": float(np.sqrt(np.mean(jerk**2))) if jerk.size else 0.0,
        "standstill_s": float(np.mean([t.standstill_ticks * dt for t in traces])) if traces else 0.0,
        "chunks_per_episode": float(np.mean([t.chunks for t in traces])) if traces else 0.0,
    }


def plot(examples: dict[str, Trace], dt: float, path: Path, latency: str) -> None:
    """One joint's commanded trajectory per mode (one episode at ``latency``), chunk arrivals marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(examples), 1, figsize=(9, 2.2 * len(examples)), sharex=True, squeeze=False)
    first = np.asarray(next(iter(examples.values())).commanded)
    joint = int(np.argmax(np.ptp(first, axis=0))) if first.size else 0  # the joint that moves most
    for ax, (mode, tr) in zip(axes[:, 0], examples.items(), strict=True):
        q = np.asarray(tr.commanded)
        if q.size == 0:
            continue
        t = dt * np.arange(len(q))
        ax.plot(t, q[:, joint], ".-", lw=1, ms=3, label=f"joint {joint + 1}")
        for k in tr.boundaries:
            ax.axvline(dt * k, color="tab:red", lw=0.6, alpha=0.5)
        ax.set_ylabel("rad")
        ax.set_title(f"{mode} (latency {latency}; red: a new chunk takes over)", fontsize=9)
        ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("s")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def measured_latency(engine, env, params: dict, task: str, calls: int = 10) -> float:
    """Median seconds of ``engine.predict_chunk`` on a rendered observation (after 3 warm-up calls)."""
    env.reset(task, 0)
    cols = [list(env.joint_names).index(n) for n in params["state_joint_names"]]
    images = [env.render(c) for c in params["camera_names"]]
    state = env.joint_positions()[cols]
    times = []
    for i in range(3 + calls):
        start = time.perf_counter()
        engine.predict_chunk(images, env.instruction, state, seed=i)
        times.append(time.perf_counter() - start)
    return float(np.median(times[3:]))


def latency_caption(mult: float, base: float, kind: str, dt: float) -> str:
    if kind == "control":
        return f"inference latency {mult:g}x the control period"
    return f"inference latency {mult:g}x the measured {1000 * base:.0f} ms ({1000 * mult * base:.0f} ms; control period {1000 * dt:.0f} ms)"


def table(caption: str, rows: dict[str, dict]) -> dict:
    columns = [
        "mode",
        "success",
        "jump mean (rad/s)",
        "jump max (rad/s)",
        f"seam jump, {WINDOW} ticks (rad/s)",
        "jerk RMS (rad/s^3)",
        "standstill (s)",
        "chunks/episode",
    ]
    out = []
    for mode, f in rows.items():
        out.append(
            [
                mode,
                f"{100 * f['success_rate']:.0f}% of {f['episodes']}",
                f"{f['jump_mean']:.3f}",
                f"{f['jump_max']:.3f}",
                f"{f['seam_jump_mean']:.3f}",
                f"{f['jerk_rms']:.1f}",
                f"{f['standstill_s']:.2f}",
                f"{f['chunks_per_episode']:.1f}",
            ]
        )
    return {"caption": caption, "columns": columns, "rows": out}


def main(argv: list[str] | None = None) -> int:
    import torch
    import yaml

    from tinyvla_ros.data.demos import graph_parameters
    from tinyvla_ros.paths import config_dir
    from tinyvla_ros.sim.env import make_env
    from tinyvla_ros.sim.experts import make_expert
    from tinyvla_ros.vla.engines import load_engine

    args = parse_args(argv)
    torch.set_num_threads(max(args.num_threads, 1))
    params = graph_parameters(args.setup)
    all_params = yaml.safe_load((config_dir() / f"{args.setup}.yaml").read_text())
    executor_params = all_params.get("/**/tinyvla_executor", {}).get("ros__parameters", {})
    dt = float(params.get("action_dt", 0.05))
    started = time.perf_counter()
    from tinyvla_ros.data.demos import camera_size

    width, height = camera_size(args.setup, args.width, args.height)
    env = make_env(args.setup, image_width=width, image_height=height, control_dt=dt)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            checkpoint, description = resolve_checkpoint(args, params, Path(tmp), env)
            expected = {
                "camera_names": list(params["camera_names"]),
                "state_dim": len(params["state_joint_names"]),
                "action_dim": len(params["action_names"]),
            }
            engine = load_engine(
                checkpoint, args.engine, "cpu", "fp32", expected, args.num_threads, inpaint=True
            )
            tasks = args.tasks or (env.tasks[:1] if args.quick else list(env.tasks))
            runner = LatencyRunner(engine, env, params, executor_params, args)
            base = measured_latency(engine, env, params, tasks[0]) if args.latency_base == "measured" else dt
            results, examples = {}, {}
            for mult in args.latencies:
                rows = {}
                for mode in args.modes:
                    traces = []
                    for task in tasks:
                        for seed in args.seeds:
                            env.reset(task, seed)
                            limit = args.max_seconds or 1.5 * make_expert(env).duration + 2.0
                            traces.append(runner.episode(mode, task, seed, mult * base, limit))
                            if mult == 2.0 and mode not in examples:
                                examples[mode] = traces[-1]
                    rows[mode] = figures(traces, dt)
                    print(f"latency {mult:g}x {mode}: {json.dumps(rows[mode])}", flush=True)
                results[mult] = rows
            captions = {m: latency_caption(m, base, args.latency_base, dt) for m in args.latencies}
        finally:
            env.close()
    if examples:
        plot(examples, dt, Path(args.plot), captions[2.0].removeprefix("inference latency "))
    notes = [
        f"checkpoint: {description}; setup {args.setup}; tasks {tasks}; scene seeds {args.seeds}; "
        f"control period = action_dt = {dt} s; diffusion seed of chunk i = i in every mode; cameras "
        f"{width}x{height}; latency base: "
        + (
            f"the engine's median predict_chunk time here, {1000 * base:.0f} ms (a chunk reaches the "
            "executor at the first control period after it)"
            if args.latency_base == "measured"
            else "one control period"
        ),
        f"inpaint: weight 1 up to the expected arrival + {args.margin_steps} step, "
        f"{args.soft_decay_steps}-step linear decay after; executor refill at chunk_len // 2 steps left",
        "jump: change of the commanded joint velocity (L2 over arm joints) where a new chunk takes over; "
        "jerk: third difference of the commanded targets; standstill: no planned action after the first chunk",
        f"plot: {Path(args.plot).name} (2x latency, first episode per mode); wall time {time.perf_counter() - started:.0f} s",
    ]
    out = {
        "title": "Chunk transitions per execution mode (inpainting vs. the others)",
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "tables": [table(captions[m], rows) for m, rows in results.items()],
        "notes": notes,
        "figures": {f"{m:g}x": rows for m, rows in results.items()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
