"""Benchmark the MuJoCo fakes: lockstep real-time factor, render rate, scripted-expert success.

Writes benchmarks/results/sim.json and one image per set-up (all camera views side by side,
mid-episode) to docs/images/sim_<setup>.png. Usage::

    MUJOCO_GL=egl .venv/bin/python benchmarks/bench_sim.py            # full: 50 seeds per task
    MUJOCO_GL=egl .venv/bin/python benchmarks/bench_sim.py --quick    # 5 seeds, short runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tinyvla_ros.sim.env import make_env  # noqa: E402
from tinyvla_ros.sim.experts import make_expert, run_expert_episode  # noqa: E402
from tinyvla_ros.sim.perf import measure_lockstep, measure_render_rate  # noqa: E402
from tinyvla_ros.sim.scenes import SETUPS  # noqa: E402
from tinyvla_ros.sim.tasks import get_task  # noqa: E402


def expert_success(setup: str, seeds: range) -> dict[str, dict[str, object]]:
    """Success rate of every task's scripted expert over ``seeds``."""
    env = make_env(setup, render_cameras=False)
    out: dict[str, dict[str, object]] = {}
    for task in env.tasks:
        cpu0 = time.process_time()
        results = [run_expert_episode(env, task, seed) for seed in seeds]
        failed = [r.seed for r in results if not r.success]
        out[task] = {
            "instruction": get_task(setup, task).instruction,
            "seeds": f"{seeds.start}..{seeds.stop - 1}",
            "episodes": len(results),
            "success_rate": 1.0 - len(failed) / len(results),
            "failed_seeds": failed,
            "episode_sim_seconds": results[0].sim_time,
            "cpu_seconds_per_episode": (time.process_time() - cpu0) / len(results),
        }
        print(f"  {setup}/{task}: {out[task]['success_rate']:.0%} over {len(results)} seeds", flush=True)
    env.close()
    return out


def save_views(
    setup: str, path: Path, width: int = 320, height: int = 240, task_fraction: float = 0.45
) -> None:
    """Run the first task's expert part-way and save all camera views side by side as PNG."""
    from PIL import Image

    env = make_env(setup, image_width=width, image_height=height)
    env.reset(env.tasks[0], seed=0)
    expert = make_expert(env)
    for _ in range(int(task_fraction * expert.duration / env.config.control_dt)):
        q, grip = expert.act(env)
        env.set_joint_position_targets(q)
        for arm, value in grip.items():
            env.set_gripper(arm, value)
        env.step()
    views = [env.render(camera) for camera in env.camera_names]
    env.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(views, axis=1)).save(path)
    print(f"  wrote {path} ({', '.join(env.camera_names)})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 seeds per task, short lockstep runs")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per task (default 50, quick 5)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sim.json")
    parser.add_argument("--images", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    seeds = range(args.seeds or (5 if args.quick else 50))
    sim_seconds = 4.0 if args.quick else 20.0

    print("lockstep (physics 500 Hz, control 50 Hz, all cameras at 15 Hz):", flush=True)
    lockstep = {}
    for setup in SETUPS:
        for w, h in ((96, 96), (224, 224)):
            stats = measure_lockstep(setup, sim_seconds=sim_seconds, image_width=w, image_height=h)
            lockstep[f"{setup}_{w}x{h}"] = stats.as_dict()
            print(
                f"  {setup} {w}x{h}: {stats.realtime_factor:.1f}x real time (wall), "
                f"{stats.realtime_factor_cpu:.1f}x (CPU time)",
                flush=True,
            )
    print("render rate (one camera image):", flush=True)
    render = {}
    for setup in SETUPS:
        for w, h in ((96, 96), (224, 224), (640, 480)):
            rate = measure_render_rate(setup, w, h, frames=30 if args.quick else 120)
            render[f"{setup}_{w}x{h}"] = rate
            print(
                f"  {setup} {w}x{h}: {rate['renders_per_s']:.0f}/s wall, {rate['renders_per_cpu_s']:.0f}/s CPU"
            )
    print(f"scripted experts ({len(seeds)} seeds per task):", flush=True)
    experts = {setup: expert_success(setup, seeds) for setup in SETUPS}
    for setup in SETUPS:
        save_views(setup, args.images / f"sim_{setup}.png")

    result = {
        "benchmark": "sim",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_avg_1min": os.getloadavg()[0],
        },
        "mujoco_gl": os.environ.get("MUJOCO_GL", ""),
        "quick": args.quick,
        "lockstep": lockstep,
        "render": render,
        "experts": experts,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
