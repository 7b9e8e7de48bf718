"""Head or perception? An action head given the objects' positions, in the robot's control loop.

Trains a head on a dataset's episodes of ``--tasks`` (default ``pick_red_cube``) whose condition is
the normalised robot state plus object positions (the simulator's, from the episode's seed: metres
from the cube region's centre / 0.15, as data/aux_targets.py) and, with several tasks, a one-hot of
the task; then runs it through ``tinyvla-eval``'s control loop (``PolicyRunner``, open_loop,
config/franka.yaml's executor) on held-out seeds of every task. ``--inputs``: ``red`` (the red
cube's xy), ``all`` (every object: 10 numbers) or ``instructed`` (the instructed object's and its
destination's xy: 4). Training gives the positions the scene started with on every step; the
evaluation gives them:

- ``exact``: from the simulator as they are now (a grasped cube moves with the hand), or with
  ``--initial`` as they were at the episode's first chunk (as trained);
- ``--readout CKPT``: a trained checkpoint's sim-only object readout (``--aux-objects``) of the
  rendered cameras, every chunk (what that checkpoint's images tell the head, in closed loop).

Heads: ``unet`` (the project's ConditionalUnet1D, DDPM epsilon training, DDIM 10 trailing steps,
EMA) or ``mlp`` (deterministic chunk regression). ``--train-noise M`` adds Gaussian noise of M
metres to the training positions. Prints the success count per task and, with a readout, its error
in cm at every chunk; appends a record to benchmarks/results/oracle_head.jsonl.

    python benchmarks/oracle_head.py data/franka_dart_ds --head unet --steps 4000
    python benchmarks/oracle_head.py data/franka_dart_ds --head mlp --steps 3000 --batch-size 256 \
        --train-noise 0.02 --readout runs/franka_run12/final
    python benchmarks/oracle_head.py data/franka_dart_ds --head mlp --steps 3000 --batch-size 256 \
        --tasks pick_red_cube,green_cube_in_bowl,close_drawer --inputs instructed --initial
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

TASK = "pick_red_cube"
CHUNK = 16


def positions(env, inputs: str, task: str) -> np.ndarray:
    """The red cube's normalised xy now (``red``: the first two auxiliary targets,
    data/aux_targets.py), every object's (``all``: the 10 targets) or the instructed object's and
    its destination's (``instructed``: 4)."""
    from tinyvla_ros.data.aux_targets import instructed, scene_targets

    xy = scene_targets(env)
    if inputs == "instructed":
        return instructed(xy, "franka", task)
    return xy[:2] if inputs == "red" else xy


def task_code(task: str, tasks: list[str]) -> np.ndarray:
    """One-hot of ``task`` among ``tasks`` (empty for a single task)."""
    return (
        np.eye(len(tasks), dtype=np.float32)[tasks.index(task)] if len(tasks) > 1 else np.zeros(0, np.float32)
    )


def load_samples(
    dataset: str, tasks: list[str], inputs: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(states (n, Ds), positions [+ task one-hot] (n, P), action chunks (n, T, Da), episodes) of
    the episodes of ``tasks``."""
    from tinyvla_ros.data.episodes import EpisodeFile, load_info
    from tinyvla_ros.sim import make_env

    info = load_info(dataset)
    env = make_env("franka", image_width=8, image_height=8)
    states, poses, chunks, count = [], [], [], 0
    try:
        for entry in info.episodes:
            task = entry.get("task")
            if task not in tasks:
                continue
            env.reset(task, int(re.search(r"seed(\d+)", entry["source"]).group(1)))
            episode = EpisodeFile(Path(dataset) / entry["file"])
            state, action = np.asarray(episode.state), np.asarray(episode.action)
            idx = np.minimum(np.arange(len(action))[:, None] + np.arange(CHUNK)[None], len(action) - 1)
            states.append(state)
            chunks.append(action[idx])  # the last action repeated past the end
            code = np.concatenate([positions(env, inputs, task), task_code(task, tasks)])
            poses.append(np.repeat(code[None], len(action), 0))
            count += 1
    finally:
        env.close()
    if not count:
        raise SystemExit(f"{dataset} has no {tasks} episodes")
    return (*(torch.from_numpy(np.concatenate(x)).float() for x in (states, poses, chunks)), count)


class Scaler:
    """Min-max to [-1, 1] (the project's normaliser's convention)."""

    def __init__(self, rows: torch.Tensor) -> None:
        self.lo, self.span = rows.min(0).values, (rows.max(0).values - rows.min(0).values).clamp_min(1e-6)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * (x - self.lo) / self.span - 1

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        return (x + 1) / 2 * self.span + self.lo


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dataset")
    p.add_argument("--head", choices=("unet", "mlp"), default="unet")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--train-noise", type=float, default=0.0, help="m of Gaussian noise on training positions")
    p.add_argument("--readout", default="", help="checkpoint whose object readout gives the position")
    p.add_argument("--seeds", default="1000-1019")
    p.add_argument(
        "--tasks",
        default=TASK,
        help="comma-separated tasks trained on and evaluated (one-hot input when several)",
    )
    p.add_argument(
        "--inputs",
        choices=("red", "all", "instructed"),
        default="red",
        help="the red cube's xy, all 10 object coordinates or the instructed object's and destination's",
    )
    p.add_argument(
        "--initial", action="store_true",
        help="exact positions as at the episode's first chunk (as trained), not as they move",
    )  # fmt: skip
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "oracle_head.jsonl"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from diffusers import DDIMScheduler, DDPMScheduler
    from diffusers.training_utils import EMAModel

    from tinyvla_ros.data.aux_targets import SCALE
    from tinyvla_ros.vla.config import HeadConfig
    from tinyvla_ros.vla.head import ConditionalUnet1D

    start = time.perf_counter()
    tasks = args.tasks.split(",")
    if args.readout and args.inputs != "red":
        raise SystemExit("--readout gives the red cube's position only (--inputs red)")
    states, poses, chunks, episodes = load_samples(args.dataset, tasks, args.inputs)
    npos = {"red": 2, "all": 10, "instructed": 4}[args.inputs]
    s_scale, a_scale = Scaler(states), Scaler(chunks.reshape(-1, chunks.shape[-1]))
    cond, target = torch.cat([s_scale(states), poses], 1), a_scale(chunks)
    s_dim = states.shape[1]
    da = chunks.shape[-1]
    kw = {"beta_schedule": "squaredcos_cap_v2", "clip_sample": True}
    ddpm = DDPMScheduler(100, **kw)
    ddim = DDIMScheduler(100, timestep_spacing="trailing", **kw)
    ddim.set_timesteps(10)
    if args.head == "unet":
        net = ConditionalUnet1D(da, cond.shape[1], HeadConfig(down_dims=(64, 128, 256), step_embed_dim=64))
    else:
        net = nn.Sequential(
            nn.Linear(cond.shape[1], 512), nn.Mish(), nn.Linear(512, 512), nn.Mish(),
            nn.Linear(512, 512), nn.Mish(), nn.Linear(512, CHUNK * da),
        )  # fmt: skip
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-6)
    warm = 300

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * step / args.steps))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    ema = EMAModel(net.parameters(), power=0.75)
    gen = torch.Generator().manual_seed(0)
    for _ in range(args.steps):
        rows = torch.randint(0, len(cond), (args.batch_size,), generator=gen)
        c, a = cond[rows].clone(), target[rows]
        if args.train_noise:
            c[:, s_dim : s_dim + npos] += (
                args.train_noise / SCALE * torch.randn((len(rows), npos), generator=gen)
            )
        if args.head == "unet":
            noise = torch.randn(a.shape, generator=gen)
            t = torch.randint(0, 100, (len(rows),), generator=gen)
            loss = ((net(ddpm.add_noise(a, noise, t), t, c) - noise) ** 2).mean()
        else:
            loss = ((net(c).view(a.shape) - a) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        ema.step(net.parameters())
    ema.copy_to(net.parameters())
    net.eval()
    train_s = time.perf_counter() - start
    print(
        f"{episodes} {args.tasks} episodes, {len(cond)} samples; {args.head} {args.steps} steps in {train_s:.0f} s"
    )

    success, errors = evaluate(args, tasks, net, ddim, s_scale, a_scale, da, SCALE)
    lo, hi = (int(x) for x in args.seeds.split("-"))
    record = {
        "dataset": args.dataset,
        "head": args.head,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "train_noise_m": args.train_noise,
        "position": args.readout or ("exact, initial" if args.initial else "exact"),
        "inputs": args.inputs,
        "tasks": args.tasks,
        "seeds": args.seeds,
        "success": success,
        "episodes": hi - lo + 1,
        "train_s": round(train_s, 1),
    }
    if errors:
        record["readout_error_cm"] = {
            "median": round(float(np.median(errors)), 2),
            "mean": round(float(np.mean(errors)), 2),
            "p90": round(float(np.percentile(errors, 90)), 2),
            "chunks": len(errors),
        }
    print(json.dumps(record))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(record) + "\n")


def evaluate(args, tasks, net, ddim, s_scale, a_scale, da, scale) -> tuple[dict[str, int], list[float]]:
    import yaml

    from tinyvla_ros.data.demos import camera_size, graph_parameters
    from tinyvla_ros.data.evaluate import PolicyRunner
    from tinyvla_ros.paths import config_dir
    from tinyvla_ros.sim.env import make_env

    readout = Readout(args.readout) if args.readout else None
    executor = yaml.safe_load((config_dir() / "franka.yaml").read_text())["/**/tinyvla_executor"][
        "ros__parameters"
    ]
    width, height = camera_size("franka") if readout else (8, 8)  # exact positions need no images
    env = make_env(
        "franka", image_width=width, image_height=height, control_dt=1.0 / executor["control_rate"]
    )
    errors: list[float] = []

    class Engine:
        task = tasks[0]
        latched = None  # --initial: this episode's positions at its first chunk

        def predict_chunk(self, images, instruction, state, seed=None):
            if args.initial:  # where the objects were at the episode's first chunk (as trained)
                if self.latched is None:
                    self.latched = positions(env, args.inputs, self.task)
                xy = self.latched
            else:
                xy = positions(env, args.inputs, self.task)
            if readout is not None:
                seen = readout(images, instruction, state)
                errors.append(float(np.linalg.norm(seen - xy)) * scale * 100)
                xy = seen
            code = torch.from_numpy(np.concatenate([xy, task_code(self.task, tasks)]).astype(np.float32))
            c = torch.cat([s_scale(torch.as_tensor(state, dtype=torch.float32)), code])[None]
            with torch.no_grad():
                if args.head == "unet":
                    x = torch.randn((1, CHUNK, da), generator=torch.Generator().manual_seed(seed or 0))
                    for t in ddim.timesteps:
                        x = ddim.step(net(x, t.expand(1), c), t, x).prev_sample
                else:
                    x = net(c).view(1, CHUNK, da)
            return a_scale.inverse(x.clamp(-1, 1))[0].numpy()

    lo, hi = (int(x) for x in args.seeds.split("-"))
    try:
        engine = Engine()
        runner = PolicyRunner(engine, env, graph_parameters("franka"), executor, "open_loop")
        success = {}
        for task in tasks:
            engine.task, success[task] = task, 0
            for s in range(lo, hi + 1):
                engine.latched = None
                success[task] += runner.episode(task, s, 100 * s, 0.0).success
    finally:
        env.close()
    return success, errors


class Readout:
    """A checkpoint's sim-only object readout, its first two coordinates: the red cube's xy (scene
    targets) or the instructed object's (``object_targets=instructed``; the red cube on pick)."""

    def __init__(self, checkpoint: str) -> None:
        from tinyvla_ros.vla.engines.chunk_io import ChunkIO
        from tinyvla_ros.vla.policy import TinyVLAPolicy

        self.policy = TinyVLAPolicy.from_pretrained(checkpoint).eval()
        if not self.policy.config.aux_dim:
            raise SystemExit(f"{checkpoint} has no object readout (trained without --aux-objects)")
        self.io = ChunkIO(self.policy.config, self.policy.normalizer)

    def __call__(self, images, instruction, state) -> np.ndarray:
        policy = self.policy
        ims, texts, states, noise = self.io.single(images, instruction, state, None, None, None)
        x = self.io.prepare(ims, texts, states, 0, noise, None, None, 1)
        ids, mask = policy.tokenize_batch(texts)
        with torch.no_grad():
            cond = policy.encode_observation(
                torch.from_numpy(x.pixel_values), ids, mask, torch.from_numpy(x.state_norm)
            )
            if policy.config.object_slots:  # the readout ends the condition
                return cond[0, -policy.config.slot_dim :][:2].numpy()
            return policy.head.aux(cond)[0, :2].numpy()


if __name__ == "__main__":
    main()
