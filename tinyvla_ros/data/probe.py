"""``tinyvla-probe``: can a model's condition tell where the instructed object is?

A condition that cannot localise the object will not grasp it, whatever the diffusion loss says,
so this is the check to run before training a policy (and on a trained checkpoint).

The probe renders fresh scenes of a set-up's fake (the arm at home, objects placed by seed),
takes the instructed object's position on the table (xy, metres) as the target, and reads it out
    1. from the condition (B, C) the action head receives, with a linear (ridge) readout;
    2. from the spatial keypoints alone (B, 2NK), where the model has them;
    3. after training the model's condition pathway (everything trainable before the head's
       UNet) together with a linear readout on the target for ``steps`` steps (``--steps 0``
       skips it: the right setting for a trained checkpoint, whose condition is what it is).
Errors are the mean Euclidean distance on held-out scenes in centimetres, beside the mean
predictor's (what a condition that carries no position scores). Scenes are rendered at the
params file's camera size; the tower's feature maps are computed once when it is frozen.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tinyvla_ros.core.robots import SETUPS

# Position (task_state key) each task's instruction refers to.
PROBE_TARGETS = {
    "pick_red_cube": "red_cube_pos",
    "green_cube_in_bowl": "green_cube_pos",
    "close_drawer": "drawer_handle_pos",
    "lift_box": "box_pos",
    "handover_cube": "red_cube_pos",
    "blue_cube_in_bin": "blue_cube_pos",
}


@dataclass
class ProbeConfig:
    """target: a preset name or a checkpoint directory; tasks: None = the set-up's first task;
    scenes: rendered scenes, the last ``held_out`` of them only evaluated; steps: training steps
    of the condition pathway + readout (0: readouts of the condition as it is)."""

    target: str
    setup: str = "franka"
    tasks: tuple[str, ...] | None = None
    scenes: int = 600
    held_out: int = 150
    steps: int = 400
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    first_seed: int = 200_000
    image_width: int = 0
    image_height: int = 0
    threads: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scenes < 20 or not 10 <= self.held_out <= self.scenes - 10:
            raise ValueError(
                f"ProbeConfig: scenes >= 20 and 10 <= held_out <= scenes - 10 needed, got {self.scenes}, "
                f"{self.held_out}"
            )
        if self.steps < 0 or self.batch_size < 1 or not 0 < self.lr < 1:
            raise ValueError(f"ProbeConfig: steps >= 0, batch_size >= 1, lr in (0, 1) needed, got {self}")


@dataclass
class Scenes:
    """Rendered probe scenes: images (n, N, 3, S, S) uint8, instructions, targets (n, 2) metres."""

    pixels: torch.Tensor
    instructions: list[str]
    targets: np.ndarray


def build_policy(cfg: ProbeConfig) -> tuple[Any, str]:
    """(policy in eval mode, source) for a preset (shaped for the set-up) or a checkpoint."""
    from pathlib import Path

    from tinyvla_ros.data.demos import graph_parameters
    from tinyvla_ros.vla.config import PRESETS, get_config
    from tinyvla_ros.vla.policy import TinyVLAPolicy

    if cfg.target in PRESETS:
        p = graph_parameters(cfg.setup)
        robot = {
            "camera_names": tuple(p["camera_names"]),
            "state_dim": len(p["state_joint_names"]),
            "action_dim": len(p["action_names"]),
        }
        config = get_config(cfg.target, **{**robot, **cfg.overrides})
        if config.tokenizer != "tiny":
            config = config.replace(tokenizer="tiny")
        return TinyVLAPolicy(config), "preset"
    if not Path(cfg.target).is_dir():
        raise ValueError(
            f"{cfg.target!r} is neither a preset ({', '.join(PRESETS)}) nor a checkpoint directory"
        )
    return TinyVLAPolicy.from_pretrained(cfg.target), "checkpoint"


def render_scenes(cfg: ProbeConfig, policy: Any) -> Scenes:
    """Fresh scenes (seeds from ``first_seed``), tasks in turn, the arm at home."""
    from tinyvla_ros.data.demos import camera_size
    from tinyvla_ros.sim import make_env
    from tinyvla_ros.sim.tasks import get_task, task_names

    tasks = list(cfg.tasks or task_names(cfg.setup)[:1])
    width, height = camera_size(cfg.setup, cfg.image_width, cfg.image_height)
    env = make_env(cfg.setup, image_width=width, image_height=height)
    pixels, instructions, targets = [], [], []
    try:
        for i in range(cfg.scenes):
            task = get_task(cfg.setup, tasks[i % len(tasks)])
            env.reset(task.name, seed=cfg.first_seed + i)
            images = [env.render(cam) for cam in policy.config.camera_names]
            pixels.append(policy.preprocess_images(images).mul(255).round().to(torch.uint8))
            instructions.append(task.instruction)
            targets.append(np.asarray(env.task_state()[PROBE_TARGETS[task.name]][:2], dtype=np.float64))
    finally:
        env.close()
    return Scenes(torch.stack(pixels), instructions, np.stack(targets))


def ridge_error(x: np.ndarray, y: np.ndarray, n_fit: int, alpha: float = 1e-2) -> float:
    """Linear (ridge) readout fitted on the first ``n_fit`` rows -> mean held-out error (same units as y)."""
    mean, std = x[:n_fit].mean(0), x[:n_fit].std(0) + 1e-6
    z = np.concatenate([(x - mean) / std, np.ones((len(x), 1))], axis=1)  # (n, F + 1)
    a = z[:n_fit]
    reg = alpha * n_fit * np.eye(a.shape[1])
    reg[-1, -1] = 0.0
    w = np.linalg.solve(a.T @ a + reg, a.T @ y[:n_fit])  # (F + 1, 2)
    return float(np.linalg.norm(z[n_fit:] @ w - y[n_fit:], axis=1).mean())


class _Encoder:
    """The condition (and keypoints) of scenes ``idx``, from cached maps when the tower is frozen."""

    def __init__(self, policy: Any, scenes: Scenes) -> None:
        self.policy, self.scenes = policy, scenes
        c = policy.config
        self.state = torch.zeros((1, c.state_dim))
        self.maps = None
        if c.vision.frozen and c.vision.tower != "clip":
            with torch.no_grad():
                self.maps = torch.cat(
                    [policy.backbone.tower_features(scenes.pixels[i : i + 32].float() / 255.0) for i in range(0, len(scenes.targets), 32)]
                )  # fmt: skip

    def __call__(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        p = self.policy
        ids, mask = p.tokenize_batch([self.scenes.instructions[i] for i in idx])
        state = self.state.expand(len(idx), -1)
        pos = p._position(ids)
        if self.maps is not None:
            hidden, tmask, maps = p.backbone(None, ids, mask, pos, maps=self.maps[idx])
        else:
            hidden, tmask, maps = p.backbone(self.scenes.pixels[idx].float() / 255.0, ids, mask, pos)
        # (b, cond_dim), as the head reads it (object slots appended)
        cond = p._with_slots(p.head.condition(hidden, tmask, state, maps))
        points = p.head.condition.spatial_features(maps) if p.config.spatial_keypoints else None
        return cond, points

    @torch.no_grad()
    def all(self) -> tuple[np.ndarray, np.ndarray | None]:
        conds, points = [], []
        for start in range(0, len(self.scenes.targets), 64):
            c, k = self(np.arange(start, min(start + 64, len(self.scenes.targets))))
            conds.append(c.float().numpy())
            if k is not None:
                points.append(k.float().numpy())
        return np.concatenate(conds), (np.concatenate(points) if points else None)


def readouts(encoder: _Encoder, targets: np.ndarray, n_fit: int) -> dict[str, float]:
    """Held-out errors (cm) of ridge readouts from the condition and from the keypoints alone."""
    conds, points = encoder.all()
    out = {"condition_linear_cm": 100 * ridge_error(conds, targets, n_fit)}
    if points is not None:
        out["keypoints_linear_cm"] = 100 * ridge_error(points, targets, n_fit)
    return out


def train_pathway(cfg: ProbeConfig, encoder: _Encoder, targets: np.ndarray, n_fit: int) -> float:
    """Train the condition pathway + a linear readout on the target; -> held-out error (cm)."""
    policy = encoder.policy
    mean, std = targets[:n_fit].mean(0), targets[:n_fit].std(0) + 1e-9
    y = torch.from_numpy((targets - mean) / std).float()  # (n, 2)
    readout = torch.nn.Linear(policy.config.cond_dim, 2)
    params = [p for p in policy.parameters() if p.requires_grad] + list(readout.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-4)
    rng = np.random.default_rng(cfg.seed)
    policy.train()
    for _ in range(cfg.steps):
        idx = rng.choice(n_fit, size=min(cfg.batch_size, n_fit), replace=False)
        cond, _ = encoder(idx)
        loss = torch.nn.functional.mse_loss(readout(cond.float()), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    policy.eval()
    with torch.no_grad():
        held = np.arange(n_fit, len(targets))
        pred = torch.cat([readout(encoder(held[i : i + 64])[0].float()) for i in range(0, len(held), 64)])
    xy = pred.numpy() * std + mean
    return float(100 * np.linalg.norm(xy - targets[n_fit:], axis=1).mean())


def run_probe(cfg: ProbeConfig, scenes: Scenes | None = None) -> dict[str, Any]:
    """Render (or take ``scenes``, rendered for a model of the same image size), read out,
    (train,) and return the figures (errors in cm) as a dict."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    tick = time.perf_counter()
    policy, source = build_policy(cfg)
    policy.eval()
    if scenes is None:
        scenes = render_scenes(cfg, policy)
    if len(scenes.targets) != cfg.scenes or scenes.pixels.shape[-1] != policy.config.image_size:
        raise ValueError(
            f"scenes hold {len(scenes.targets)} images of {scenes.pixels.shape[-1]} px; the probe wants "
            f"{cfg.scenes} of {policy.config.image_size} px"
        )
    n_fit = cfg.scenes - cfg.held_out
    targets = scenes.targets
    mean_cm = 100 * float(np.linalg.norm(targets[n_fit:] - targets[:n_fit].mean(0), axis=1).mean())
    c = policy.config
    result: dict[str, Any] = {
        "target": cfg.target,
        "source": source,
        "preset": c.name,
        "tower": c.vision.tower,
        "spatial_keypoints": c.spatial_keypoints,
        "image_size": c.image_size,
        "setup": cfg.setup,
        "tasks": sorted(set(scenes.instructions)),
        "scenes_fit": n_fit,
        "scenes_held_out": cfg.held_out,
        "mean_predictor_cm": mean_cm,
    }
    encoder = _Encoder(policy, scenes)
    result.update(readouts(encoder, targets, n_fit))
    if cfg.steps:
        result["trained_steps"] = cfg.steps
        result["condition_trained_cm"] = train_pathway(cfg, encoder, targets, n_fit)
        result.update({f"after_training_{k}": v for k, v in readouts(encoder, targets, n_fit).items()})
    result["seconds"] = round(time.perf_counter() - tick, 1)
    return result


def format_table(r: dict[str, Any]) -> str:
    rows = [("mean predictor (no position)", r["mean_predictor_cm"])]
    rows.append(("condition, linear readout", r["condition_linear_cm"]))
    if "keypoints_linear_cm" in r:
        rows.append(("keypoints alone, linear readout", r["keypoints_linear_cm"]))
    if "condition_trained_cm" in r:
        rows.append((f"condition pathway trained {r['trained_steps']} steps", r["condition_trained_cm"]))
        if "after_training_keypoints_linear_cm" in r:
            rows.append(("  then keypoints alone, linear", r["after_training_keypoints_linear_cm"]))
    head = (
        f"probe: {r['target']} ({r['source']}; tower {r['tower']}, {r['spatial_keypoints']} keypoints/camera, "
        f"{r['image_size']} px), {r['setup']} {', '.join(r['tasks'])}: {r['scenes_fit']} scenes fitted, "
        f"{r['scenes_held_out']} held out, {r['seconds']} s"
    )
    width = max(len(name) for name, _ in rows)
    lines = [head, f"{'readout':<{width}}  held-out error"]
    lines += [f"{name:<{width}}  {value:6.2f} cm" for name, value in rows]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    d = ProbeConfig(target="")
    p = argparse.ArgumentParser(prog="tinyvla-probe", description=__doc__.split("\n\n")[0])
    p.add_argument("target", help="preset name or checkpoint directory")
    p.add_argument("--setup", default=d.setup, choices=SETUPS)
    p.add_argument("--tasks", nargs="+", default=None, help="tasks (default: the set-up's first)")
    p.add_argument("--scenes", type=int, default=d.scenes)
    p.add_argument("--held-out", type=int, default=d.held_out)
    p.add_argument(
        "--steps", type=int, default=d.steps, help="training steps of the condition pathway (0: none)"
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--width", type=int, default=0, help="camera width (0: the params file's)")
    p.add_argument("--height", type=int, default=0, help="camera height (0: the params file's)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="preset override")
    p.add_argument("--json", default="", help="also write the figures to this JSON file")
    return p


def main(argv: list[str] | None = None) -> int:
    from tinyvla_ros.data.train import parse_overrides

    args = build_parser().parse_args(argv)
    try:
        cfg = ProbeConfig(
            target=args.target, setup=args.setup, tasks=tuple(args.tasks) if args.tasks else None,
            scenes=args.scenes, held_out=args.held_out, steps=args.steps, batch_size=args.batch_size,
            lr=args.lr, seed=args.seed, image_width=args.width, image_height=args.height,
            threads=args.threads, overrides=parse_overrides(args.set),
        )  # fmt: skip
        result = run_probe(cfg)
    except (ValueError, FileNotFoundError) as exc:
        print(f"tinyvla-probe: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
