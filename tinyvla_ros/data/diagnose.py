"""``tinyvla-diagnose``: a checkpoint's chunks along the scripted expert's own path (teacher forcing).

The scripted expert drives the MuJoCo fake at the demonstrations' step (1 / fps of the set-up's
layout, as ``tinyvla-record-demos`` records), and every ``every`` steps before the first grasp the
policy predicts a chunk from the rendered cameras and the expert's current state. For each chunk the
figure is where its last step would put each hand against where the expert's command at that step
puts it (forward kinematics of both joint vectors, cm; the largest over the arms).

Why: a policy that is precise here and misses in closed loop (``tinyvla-eval``) is not failing to
see; it drifts on states the demonstrations never visited (covariate shift, models/README "Why run 7
misses"). A policy imprecise here as well needs a better condition or head. Only the path up to the
first grasp is checked (after it the scene moves with the hand).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyvla_ros.data.demos import (
    SETUPS,
    _action_vector,
    camera_size,
    graph_parameters,
    setup_layout,
    split_action,
)


@dataclass(frozen=True)
class ChunkCheck:
    """One teacher-forced chunk: the step it was asked at and its last step's hand error (cm)."""

    step: int
    hand_error_cm: float


@dataclass
class EpisodeCheck:
    task: str
    seed: int
    grasp_step: int
    chunks: list[ChunkCheck] = field(default_factory=list)


class HandKinematics:
    """Forward kinematics of the fake's arms on a second, camera-less env: joint vector -> hands."""

    def __init__(self, setup: str) -> None:
        import mujoco

        from tinyvla_ros.sim.env import make_env

        self._mujoco = mujoco
        self.env = make_env(setup, image_width=8, image_height=8, render_cameras=False)

    def hands(self, q: np.ndarray) -> np.ndarray:
        """(Na,) arm joints in command order -> (arms, 3) hand positions (m)."""
        env = self.env
        names = [j for arm in env.arms for j in env.arm_joint_names[arm]]
        for joint, value in zip(names, np.asarray(q, dtype=np.float64), strict=True):
            env.set_joint_value(joint, float(value))
        self._mujoco.mj_forward(env.model, env.data)
        return np.stack([env.ee_pose(arm)[0] for arm in env.arms])

    def close(self) -> None:
        self.env.close()


def expert_path(
    env: Any, task: str, seed: int, names: Sequence[str], state_cols: Sequence[int], cameras, every: int = 1
):
    """Run the expert on (task, seed); -> ({step: (images, state)} at every ``every``-th step, (L, A)
    actions). Only the steps a chunk is asked at are rendered."""
    from tinyvla_ros.sim.experts import make_expert

    env.reset(task, seed)
    expert = make_expert(env)
    observations, actions = {}, []
    while not expert.done:
        if len(actions) % every == 0:
            observations[len(actions)] = (
                [env.render(c) for c in cameras],
                env.joint_positions()[list(state_cols)],
            )
        q, grip = expert.act(env)
        actions.append(_action_vector(env, q, grip, names))
        env.set_joint_position_targets(q)
        for arm, value in grip.items():
            env.set_gripper(arm, value)
        env.step()
    return observations, np.asarray(actions)


def first_grasp(actions: np.ndarray, names: Sequence[str]) -> int:
    """Index of the first step where a gripper that was open (>= 0.5) is commanded closed (< 0.5);
    len(actions) if none is."""
    steps = [len(actions)]
    for col in (i for i, n in enumerate(names) if n == "gripper" or n.endswith("_gripper")):
        grip = actions[:, col]
        grasps = np.nonzero(np.maximum.accumulate(grip >= 0.5) & (grip < 0.5))[0]
        if grasps.size:
            steps.append(int(grasps[0]))
    return min(steps)


def diagnose(
    engine: Any,
    setup: str,
    tasks: Sequence[str],
    seeds: Sequence[int],
    every: int = 8,
    width: int = 0,
    height: int = 0,
    policy_seed: int = 0,
) -> list[EpisodeCheck]:
    """Teacher-forced chunk checks of ``engine`` (anything with ``predict_chunk``) on each (task, seed)."""
    from tinyvla_ros.sim.env import make_env

    if every < 1:
        raise ValueError(f"every must be >= 1 step, got {every}")
    params = graph_parameters(setup)
    layout, _ = setup_layout(setup)
    names = list(params["action_names"])
    w, h = camera_size(setup, width, height)
    env = make_env(setup, image_width=w, image_height=h, control_dt=round(1.0 / layout.fps, 9))
    kinematics = HandKinematics(setup)
    out = []
    try:
        joints = list(env.joint_names)
        state_cols = [joints.index(n) for n in params["state_joint_names"]]
        for task in tasks:
            for seed in seeds:
                observations, actions = expert_path(
                    env, task, int(seed), names, state_cols, list(params["camera_names"]), every
                )
                check = EpisodeCheck(task, int(seed), first_grasp(actions, names))
                for k in range(0, check.grasp_step, every):
                    images, state = observations[k]
                    chunk = np.asarray(
                        engine.predict_chunk(images, env.instruction, state, seed=policy_seed + k)
                    )
                    last = min(len(chunk), len(actions) - k) - 1
                    q_policy, _ = split_action(chunk[last], names, env)
                    q_expert, _ = split_action(actions[k + last], names, env)
                    gap = kinematics.hands(q_policy) - kinematics.hands(q_expert)
                    check.chunks.append(ChunkCheck(k, float(100 * np.linalg.norm(gap, axis=1).max())))
                out.append(check)
    finally:
        kinematics.close()
        env.close()
    return out


def table(checks: Sequence[EpisodeCheck]) -> str:
    """Markdown: per chunk index (over episodes) the mean and max hand error."""
    depth = max((len(c.chunks) for c in checks), default=0)
    lines = [
        "| chunk | asked at step | episodes | hand error mean (cm) | max (cm) |",
        "|---|---|---|---|---|",
    ]
    for i in range(depth):
        rows = [c.chunks[i] for c in checks if len(c.chunks) > i]
        errors = [r.hand_error_cm for r in rows]
        lines.append(
            f"| {i + 1} | {rows[0].step} | {len(rows)} | {np.mean(errors):.2f} | {np.max(errors):.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``tinyvla-diagnose CHECKPOINT --setup franka --tasks pick_red_cube --seeds 1000-1004``"""
    from tinyvla_ros.data.demos import parse_seeds
    from tinyvla_ros.vla.engines import load_engine

    p = argparse.ArgumentParser(prog="tinyvla-diagnose", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--setup", choices=SETUPS, default="franka")
    p.add_argument("--tasks", nargs="+", default=None, help="default: the set-up's first task")
    p.add_argument("--seeds", default="1000-1004")
    p.add_argument("--every", type=int, default=8, help="ask for a chunk every N expert steps")
    p.add_argument("--num-threads", type=int, default=0)
    p.add_argument("--json", default="")
    args = p.parse_args(argv)
    try:
        from tinyvla_ros.sim.tasks import task_names

        tasks = args.tasks or task_names(args.setup)[:1]
        engine = load_engine(args.checkpoint, "torch", "cpu", "fp32", None, args.num_threads)
        checks = diagnose(engine, args.setup, tasks, parse_seeds(args.seeds), args.every)
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"tinyvla-diagnose: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(table(checks))
    if args.json:
        rows = [
            {
                "task": c.task,
                "seed": c.seed,
                "grasp_step": c.grasp_step,
                "chunks": [vars(x) for x in c.chunks],
            }
            for c in checks
        ]
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
