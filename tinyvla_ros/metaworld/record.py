"""Record MetaWorld expert demonstrations into the project's episode dataset.

For each task, seeds ``seed_start``, ``seed_start + 1``, ... are tried in turn until ``episodes``
successful demonstrations are kept (at most ``max_attempts`` seeds per task; a task that falls
short is reported, not fatal). Each seed is first
run without rendering (the scripted expert on the state, fast); a seed whose expert reaches
metaworld's ``info["success"]`` within ``max_steps`` is then run again with the camera (the
physics is deterministic: the second run must end at the same step, else RuntimeError), and
written; the others are counted as failures and skipped.

A written episode holds, per step t (the observation before the action, the action the expert
issued at t), up to and including the step that reached success:
    images.<camera>  (T, H, W, 3) uint8   the upright camera image (tinyvla_ros.metaworld.env)
    state            (T, 4)               end-effector xyz + gripper opening
    action           (T, 4)               clipped expert action (end-effector delta xyz + gripper)
with the task's instruction, ``task`` = the MetaWorld task name, success True and the seed in
``extra``. The dataset's fps is 1 / env.dt (80 Hz). ``metaworld_record.json`` beside info.json
lists what was recorded: camera, size, seeds, kept and failed episodes per task.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyvla_ros.data.episodes import DatasetInfo, DatasetWriter, Episode
from tinyvla_ros.metaworld.env import (
    ACTION_NAMES,
    EVAL_SEED_START,
    MAX_PATH_LENGTH,
    ROBOT,
    STATE_NAMES,
    MetaWorldEnv,
    RenderConfig,
    check_steps,
)
from tinyvla_ros.metaworld.tasks import select_tasks

RECORD_FILE = "metaworld_record.json"
SOURCE = "metaworld 3.1.1 scripted experts"


@dataclass(frozen=True)
class RecordConfig:
    """tasks: MetaWorld task names; episodes: successful demonstrations kept per task; seeds
    tried from ``seed_start`` on, at most ``max_attempts`` per task (0: 2 x episodes);
    max_steps: episode limit (metaworld's max_path_length, 500, at most)."""

    tasks: tuple[str, ...]
    episodes: int = 50
    seed_start: int = 0
    max_attempts: int = 0
    max_steps: int = MAX_PATH_LENGTH
    render: RenderConfig = field(default_factory=RenderConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(select_tasks(self.tasks)))
        if not isinstance(self.episodes, int) or self.episodes < 1:
            raise ValueError(f"RecordConfig.episodes must be an int >= 1, got {self.episodes!r}")
        if self.max_attempts and self.max_attempts < self.episodes:
            raise ValueError(
                f"RecordConfig.max_attempts ({self.max_attempts}) is below episodes ({self.episodes})"
            )
        if self.seed_start < 0 or self.seed_start + self.attempts > EVAL_SEED_START:
            raise ValueError(
                f"recording seeds {self.seed_start}..{self.seed_start + self.attempts - 1} must stay in "
                f"[0, {EVAL_SEED_START}): seeds from {EVAL_SEED_START} on are the evaluation's"
            )
        check_steps(self.max_steps, "RecordConfig.max_steps")

    @property
    def attempts(self) -> int:
        return self.max_attempts or 2 * self.episodes


@dataclass
class TaskRecord:
    """What recording one task gave: seeds kept and failed, steps per kept episode, wall time."""

    task: str
    kept_seeds: list[int] = field(default_factory=list)
    failed_seeds: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def attempts(self) -> int:
        return len(self.kept_seeds) + len(self.failed_seeds)

    @property
    def expert_success_rate(self) -> float:
        return len(self.kept_seeds) / max(1, self.attempts)


def expert_rollout(
    env: MetaWorldEnv, seed: int, max_steps: int, camera: bool
) -> tuple[bool, dict[str, np.ndarray]]:
    """Run the task's expert from layout ``seed`` until success or ``max_steps`` ->
    (success, {"state": (T, 4), "action": (T, 4)[, "images": (T, H, W, 3) uint8 when camera]})."""
    policy = env.expert()
    env.reset(seed)
    states, actions, frames = [], [], []
    success = False
    for _ in range(max_steps):
        states.append(env.state())
        if camera:
            frames.append(env.render())
        action = env.expert_action(policy)
        actions.append(action.astype(np.float32))
        _, success, done = env.step(action)
        if success or done:
            break
    out = {"state": np.stack(states), "action": np.stack(actions)}
    if camera:
        out["images"] = np.stack(frames)
    return success, out


def record_task(
    env: MetaWorldEnv, cfg: RecordConfig, add: Callable[[Episode], Any], log: Callable[[str], None] = print
) -> TaskRecord:
    """Record ``cfg.episodes`` successful demonstrations of ``env``'s task through ``add``."""
    result = TaskRecord(env.task)
    start = time.perf_counter()
    for seed in range(cfg.seed_start, cfg.seed_start + cfg.attempts):
        if len(result.kept_seeds) == cfg.episodes:
            break
        ok, dry = expert_rollout(env, seed, cfg.max_steps, camera=False)
        if not ok:
            result.failed_seeds.append(seed)
            continue
        ok, run = expert_rollout(env, seed, cfg.max_steps, camera=True)
        if not ok or len(run["action"]) != len(dry["action"]):
            raise RuntimeError(
                f"{env.task} seed {seed}: the rendered rerun of the expert did not repeat its first run "
                f"({len(dry['action'])} steps, success) but took {len(run['action'])} steps, success {ok}"
            )
        length = len(run["action"])
        add(
            Episode(
                images={env.render_config.camera: run["images"]},
                state=run["state"],
                action=run["action"],
                timestamp=np.arange(length) * env.dt,
                instruction=env.instruction,
                success=True,
                task=env.task,
                source=SOURCE,
                extra={"seed": str(seed), "group": env.group, "camera": env.render_config.camera},
            )
        )
        result.kept_seeds.append(seed)
        result.lengths.append(length)
    result.seconds = time.perf_counter() - start
    kept = len(result.kept_seeds)
    log(
        f"{env.task}: kept {kept}/{cfg.episodes} ({result.attempts} seeds tried, "
        f"{len(result.failed_seeds)} expert failures), "
        f"{np.mean(result.lengths) if kept else 0:.0f} steps/episode, "
        f"{result.seconds / max(1, kept):.1f} s per kept episode"
    )
    if kept < cfg.episodes:
        log(
            f"WARNING: {env.task}: only {kept} of {cfg.episodes} expert episodes succeeded in "
            f"{cfg.attempts} seeds (raise --max-attempts for more)"
        )
    return result


def record(
    cfg: RecordConfig, out_dir: str | Path, overwrite: bool = False, log: Callable[[str], None] = print
) -> tuple[DatasetInfo, list[TaskRecord]]:
    """Record every task of ``cfg`` into one episode dataset at ``out_dir``; returns its info and
    the per-task records (also written to ``metaworld_record.json``)."""
    out = Path(out_dir)
    env0 = MetaWorldEnv(cfg.tasks[0], cfg.render)
    fps = env0.fps
    try:
        writer = DatasetWriter(
            out,
            fps=fps,
            camera_names=[cfg.render.camera],
            state_names=STATE_NAMES,
            action_names=ACTION_NAMES,
            robot=ROBOT,
            source=SOURCE,
            overwrite=overwrite,
        )
    except BaseException:
        env0.close()
        raise
    records: list[TaskRecord] = []
    for i, task in enumerate(cfg.tasks):
        env = env0 if i == 0 else MetaWorldEnv(task, cfg.render)
        try:
            records.append(record_task(env, cfg, writer.add, log))
        finally:
            env.close()
    info = writer.close()
    summary = {
        "source": SOURCE,
        "config": {**asdict(cfg), "tasks": list(cfg.tasks)},
        "image_rotation_deg": 180,
        "fps": fps,
        "tasks": {
            r.task: {
                "kept": len(r.kept_seeds),
                "failed": len(r.failed_seeds),
                "expert_success_rate": r.expert_success_rate,
                "kept_seeds": r.kept_seeds,
                "failed_seeds": r.failed_seeds,
                "mean_length": float(np.mean(r.lengths)),
                "seconds": r.seconds,
            }
            for r in records
        },
    }
    (out / RECORD_FILE).write_text(json.dumps(summary, indent=1) + "\n")
    return info, records
