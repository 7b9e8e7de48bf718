"""Evaluate a checkpoint on MetaWorld tasks: seeded episodes per task, success by difficulty group.

Per task, episodes use layout seeds ``seed_start .. seed_start + episodes - 1`` (default from
1000 on: disjoint from the recording seeds, which stay below 1000). In an episode, the policy
sees the upright camera image, the task's instruction and the 4-D state, predicts a chunk
(``engine.predict_chunk``, robot units), and the first ``execute_steps`` actions of it (default
8 of 16) run open loop, each clipped to [-1, 1]; then it predicts again from the new observation.
Chunk i of an episode uses diffusion noise seed ``policy_seed + i`` (-1: fresh noise). An
episode succeeds when metaworld's ``info["success"]`` is true at any step before the limit
(``max_steps``, default metaworld's max_path_length: 500 steps = 6.25 s simulated); it ends there.

Rates: per task the fraction of its episodes that succeeded; per difficulty group and overall
the mean over the evaluated tasks (each task weighs the same, as in the paper's table).

Any policy evaluates: ``evaluate`` loads a checkpoint directory through
``tinyvla_ros.vla.engines.load_engine`` (the torch or ONNX engines), or takes a ready ``engine``:
any object with ``predict_chunk(images, instruction, state, seed=...) -> (T, 4)`` (e.g. a
baseline without the language model).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyvla_ros.metaworld.env import (
    ACTION_NAMES,
    EVAL_SEED_START,
    MAX_PATH_LENGTH,
    STATE_NAMES,
    MetaWorldEnv,
    RenderConfig,
    check_steps,
)
from tinyvla_ros.metaworld.tasks import GROUP_SIZES, GROUPS, group_of, select_tasks


@dataclass(frozen=True)
class EvalConfig:
    """tasks: MetaWorld task names; episodes per task from layout seed ``seed_start``;
    execute_steps: actions of each chunk run before the next prediction; max_steps: episode
    limit; policy_seed: see the module docstring; render: must match the recording's camera and
    size; engine/device/num_threads: as tinyvla_ros.vla.engines; instruction: "" = each task's."""

    tasks: tuple[str, ...]
    episodes: int = 10
    seed_start: int = EVAL_SEED_START
    execute_steps: int = 8
    max_steps: int = MAX_PATH_LENGTH
    policy_seed: int = 0
    render: RenderConfig = field(default_factory=RenderConfig)
    engine: str = "torch"
    device: str = "cpu"
    num_threads: int = 0
    instruction: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(select_tasks(self.tasks)))
        if not isinstance(self.episodes, int) or self.episodes < 1:
            raise ValueError(f"EvalConfig.episodes must be an int >= 1, got {self.episodes!r}")
        if self.seed_start < 0:
            raise ValueError(f"EvalConfig.seed_start must be >= 0, got {self.seed_start!r}")
        if not isinstance(self.execute_steps, int) or self.execute_steps < 1:
            raise ValueError(f"EvalConfig.execute_steps must be an int >= 1, got {self.execute_steps!r}")
        check_steps(self.max_steps, "EvalConfig.max_steps")

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed_start, self.seed_start + self.episodes))


@dataclass(frozen=True)
class EpisodeResult:
    """One evaluation episode: steps taken (success ends it), chunks predicted, wall time."""

    task: str
    group: str
    seed: int
    success: bool
    steps: int
    inferences: int
    wall_seconds: float


@dataclass
class MetaWorldResults:
    """Episodes of an evaluation and their success rates by task, group and overall."""

    checkpoint: str
    config: dict[str, Any] = field(default_factory=dict)
    episodes: list[EpisodeResult] = field(default_factory=list)

    def task_rates(self) -> dict[str, float]:
        tasks = dict.fromkeys(e.task for e in self.episodes)
        return {t: float(np.mean([e.success for e in self.episodes if e.task == t])) for t in tasks}

    def group_rates(self) -> dict[str, dict[str, Any]]:
        """{group: {"tasks": evaluated, "of": tasks in the group, "success_rate": mean}} for the
        groups with an evaluated task, in the split's order."""
        rates = self.task_rates()
        out = {}
        for group in GROUPS:
            values = [r for t, r in rates.items() if group_of(t) == group]
            if values:
                out[group] = {
                    "tasks": len(values),
                    "of": GROUP_SIZES[group],
                    "success_rate": float(np.mean(values)),
                }
        return out

    def average(self) -> float:
        rates = self.task_rates()
        return float(np.mean(list(rates.values()))) if rates else 0.0

    def to_dict(self) -> dict[str, Any]:
        rates = self.task_rates()
        return {
            "checkpoint": self.checkpoint,
            "config": self.config,
            "tasks": {t: {"group": group_of(t), "success_rate": r} for t, r in rates.items()},
            "groups": self.group_rates(),
            "average": self.average(),
            "episodes": [asdict(e) for e in self.episodes],
        }

    def table(self) -> str:
        """Markdown: one row per task (grouped), one per difficulty group, then the average."""
        rates = self.task_rates()
        lines = ["| group | task | episodes | success | mean steps |", "|---|---|---|---|---|"]
        for group in GROUPS:
            for task, rate in rates.items():
                if group_of(task) != group:
                    continue
                eps = [e for e in self.episodes if e.task == task]
                ok = sum(e.success for e in eps)
                lines.append(
                    f"| {group} | {task} | {len(eps)} | {ok}/{len(eps)} ({100 * rate:.0f}%) | "
                    f"{np.mean([e.steps for e in eps]):.0f} |"
                )
        for group, g in self.group_rates().items():
            lines.append(
                f"| **{group}** | {g['tasks']} of {g['of']} tasks | | {100 * g['success_rate']:.1f}% | |"
            )
        lines.append(
            f"| **average** | {len(rates)} tasks | {len(self.episodes)} | {100 * self.average():.1f}% | |"
        )
        return "\n".join(lines)


def run_episode(engine: Any, env: MetaWorldEnv, seed: int, cfg: EvalConfig) -> EpisodeResult:
    """One episode of ``engine`` on ``env`` from layout ``seed`` (see the module docstring)."""
    instruction = cfg.instruction or env.instruction
    start = time.perf_counter()
    env.reset(seed)
    steps = inferences = 0
    success = done = False
    while not (success or done or steps >= cfg.max_steps):
        noise_seed = None if cfg.policy_seed < 0 else cfg.policy_seed + inferences
        chunk = np.asarray(engine.predict_chunk([env.render()], instruction, env.state(), seed=noise_seed))
        inferences += 1
        if chunk.ndim != 2 or chunk.shape[1] != len(ACTION_NAMES) or chunk.shape[0] < 1:
            raise ValueError(f"the policy's chunk must be (T, {len(ACTION_NAMES)}), got shape {chunk.shape}")
        for action in chunk[: cfg.execute_steps]:
            _, success, done = env.step(action)  # clipped to [-1, 1] there
            steps += 1
            if success or done or steps >= cfg.max_steps:
                break
    return EpisodeResult(
        env.task, env.group, int(seed), success, steps, inferences, time.perf_counter() - start
    )


def load_policy(checkpoint: str | Path, cfg: EvalConfig) -> Any:
    """The checkpoint as an inference engine, checked against the harness's camera and sizes."""
    from tinyvla_ros.vla.engines import load_engine

    expected = {
        "camera_names": [cfg.render.camera],
        "state_dim": len(STATE_NAMES),
        "action_dim": len(ACTION_NAMES),
    }
    return load_engine(checkpoint, cfg.engine, cfg.device, "fp32", expected, cfg.num_threads)


def evaluate(
    checkpoint: str | Path,
    cfg: EvalConfig,
    engine: Any = None,
    log: Callable[[str], None] | None = None,
) -> MetaWorldResults:
    """Every (task, seed) of ``cfg`` with ``engine`` (default: ``checkpoint`` loaded by
    ``load_policy``); returns the results."""
    engine = engine if engine is not None else load_policy(checkpoint, cfg)
    chunk_len = getattr(getattr(engine, "config", None), "chunk_len", None)
    if chunk_len is not None and cfg.execute_steps > chunk_len:
        raise ValueError(f"execute_steps {cfg.execute_steps} exceeds the policy's chunk of {chunk_len}")
    config = {**asdict(cfg), "tasks": list(cfg.tasks), "seeds": cfg.seeds}
    results = MetaWorldResults(str(checkpoint), config)
    for task in cfg.tasks:
        with MetaWorldEnv(task, cfg.render) as env:
            for seed in cfg.seeds:
                results.episodes.append(run_episode(engine, env, seed, cfg))
        if log is not None:
            eps = [e for e in results.episodes if e.task == task]
            log(f"{task}: {sum(e.success for e in eps)}/{len(eps)} succeeded")
    return results
