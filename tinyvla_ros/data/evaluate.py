"""``tinyvla-eval``: run a checkpoint in the MuJoCo fake on each task over N seeds; print a success table.

The loop is the robot's: the executor's ControlLoop (tinyvla_ros.core.control) built from the
set-up's params file (chunk execution mode, fault checks, safety filter, gripper hysteresis),
ticked every control period (1 / control_rate of simulated time) with the fake's joint state.
At each chunk step (the policy's ``action_dt``) where the chunk executor asks for a chunk, the
cameras are rendered and the engine predicts one from the current observation (inference takes
no simulated time). The loop's commands go to the fake as a forward position controller takes
them (joint targets; none while idle) and its open/close decisions to the grippers. An episode ends at the first step the task reports success, or after
``max_seconds`` (default: 1.5 x the scripted expert's duration + 2 s).

``evaluate(...)`` returns the per-episode results and the per-task success rates; the demo and the
benchmarks call it too.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyvla_ros.core.chunking import EXECUTION_MODES
from tinyvla_ros.core.images import add_sensor_noise
from tinyvla_ros.data.demos import SETUPS, graph_parameters


@dataclass(frozen=True)
class EvalConfig:
    """setup; tasks (None: all); seeds: episode seeds (scene layout); policy_seed: diffusion noise
    seed (-1: fresh noise; chunk i of an episode uses policy_seed + i); execution_mode: "" = the
    params file's; max_seconds: 0 = per-task default; engine/device: as tinyvla_ros.vla.engines;
    instruction: "" = each task's own, else this instruction in every episode (language checks);
    latency: simulated s from an observation to its chunk's arrival (0: inference takes no time and
    a chunk is computed only when the executor asks for one; > 0: the policy node's loop, see
    PolicyRunner.episode); image_noise: std of the Gaussian sensor noise on every rendered frame
    (intensity levels, as the fake robot's cameras add; 0: clean renders)."""

    setup: str = "franka"
    tasks: tuple[str, ...] | None = None
    seeds: tuple[int, ...] = (0, 1, 2)
    policy_seed: int = 0
    execution_mode: str = ""
    max_seconds: float = 0.0
    image_width: int = 0
    image_height: int = 0
    engine: str = "torch"
    device: str = "cpu"
    num_threads: int = 0
    instruction: str = ""
    latency: float = 0.0
    image_noise: float = 0.0

    def __post_init__(self) -> None:
        if self.setup not in SETUPS:
            raise ValueError(f"EvalConfig.setup must be one of {list(SETUPS)}, got {self.setup!r}")
        if not self.seeds or any(int(s) < 0 for s in self.seeds):
            raise ValueError(f"EvalConfig.seeds must be non-negative ints, got {self.seeds!r}")
        if self.execution_mode not in ("", *EXECUTION_MODES):
            raise ValueError(
                f"EvalConfig.execution_mode {self.execution_mode!r} is not a chunk execution mode"
            )
        if not (math.isfinite(self.max_seconds) and self.max_seconds >= 0):
            raise ValueError(f"EvalConfig.max_seconds must be >= 0 (0 = default), got {self.max_seconds!r}")
        if not (math.isfinite(self.latency) and 0.0 <= self.latency <= 2.0):
            raise ValueError(f"EvalConfig.latency must be in [0, 2] s, got {self.latency!r}")
        if not (math.isfinite(self.image_noise) and 0.0 <= self.image_noise <= 50.0):
            raise ValueError(f"EvalConfig.image_noise must be in [0, 50] levels, got {self.image_noise!r}")


@dataclass(frozen=True)
class EpisodeOutcome:
    """One episode: inferences = chunks predicted, chunks_refused = of those, refused by the fault
    checks (the robot would not move on them); ticks_run / ticks_hold = control periods that
    followed a chunk / held (braked or stood still); safety_clamps: joint values the safety
    filter changed (position, velocity, acceleration, jerk limits), summed over the ticks."""

    task: str
    seed: int
    success: bool
    sim_seconds: float
    inferences: int
    wall_seconds: float
    chunks_refused: int = 0
    ticks_run: int = 0
    ticks_hold: int = 0
    safety_clamps: int = 0


@dataclass
class EvalResults:
    """Per-episode outcomes and per-task success rates."""

    setup: str
    checkpoint: str
    episodes: list[EpisodeOutcome] = field(default_factory=list)

    def success_rates(self) -> dict[str, float]:
        tasks = dict.fromkeys(e.task for e in self.episodes)
        return {t: float(np.mean([e.success for e in self.episodes if e.task == t])) for t in tasks}

    def to_dict(self) -> dict[str, Any]:
        return {
            "setup": self.setup,
            "checkpoint": self.checkpoint,
            "success_rates": self.success_rates(),
            "episodes": [asdict(e) for e in self.episodes],
        }

    def table(self) -> str:
        """Markdown success table: one row per task, then the mean."""
        rates = self.success_rates()
        lines = ["| task | episodes | success | mean sim time (s) | chunks refused | ticks held | safety clamps |",
                 "|---|---|---|---|---|---|---|"]  # fmt: skip
        for task, rate in rates.items():
            eps = [e for e in self.episodes if e.task == task]
            ok = sum(e.success for e in eps)
            refused, inferred = sum(e.chunks_refused for e in eps), sum(e.inferences for e in eps)
            held = sum(e.ticks_hold for e in eps) / max(1, sum(e.ticks_hold + e.ticks_run for e in eps))
            lines.append(f"| {task} | {len(eps)} | {ok}/{len(eps)} ({100 * rate:.0f}%) | "
                         f"{np.mean([e.sim_seconds for e in eps]):.1f} | {refused}/{inferred} | "
                         f"{100 * held:.0f}% | {sum(e.safety_clamps for e in eps)} |")  # fmt: skip
        mean = float(np.mean(list(rates.values()))) if rates else 0.0
        lines.append(f"| **mean** | {len(self.episodes)} | {100 * mean:.1f}% | | | | |")
        return "\n".join(lines)


class PolicyRunner:
    """Runs one engine on a SimEnv through the robot's control loop (see the module docstring).

    ``executor_params``: the executor's ``ros__parameters`` (its params file); ``mode``: an
    execution mode overriding the file's ('' keeps it). The env must step one control period
    (1 / control_rate) at a time, the period the safety filter is built for.
    """

    def __init__(
        self,
        engine: Any,
        env: Any,
        params: dict[str, Any],
        executor_params: dict[str, Any],
        mode: str,
        image_noise: float = 0.0,
    ):
        from tinyvla_ros.core.control import ControlConfig, ControlLoop, FaultChecks
        from tinyvla_ros.core.robots import load_robot_spec

        self.engine, self.env = engine, env
        self.image_noise = float(image_noise)
        self._noise_rng = np.random.default_rng(0)
        self.cameras = list(params["camera_names"])
        self.state_names = list(params["state_joint_names"])
        self.action_names = list(params["action_names"])
        self.dt = float(params.get("action_dt", 0.05))
        self.inference_period = 1.0 / float(params.get("inference_rate", 15.0))
        control = ControlConfig.from_params(
            executor_params, execution_mode=mode or None, action_names=tuple(self.action_names)
        )
        if control.action_layout == "franka_ee":
            raise ValueError("tinyvla-eval runs joint action layouts only (the fake takes joint targets)")
        if abs(control.action_dt - self.dt) > 1e-9:
            raise ValueError(f"executor action_dt {control.action_dt} s != the policy's {self.dt} s")
        period = 1.0 / control.control_rate
        if abs(env.config.control_dt - period) > 1e-9:
            raise ValueError(
                f"the env steps {env.config.control_dt} s, the control loop ticks every {period} s "
                f"(control_rate {control.control_rate} Hz): make the env with control_dt={period}"
            )
        self.ticks_per_step = max(1, round(self.dt / period))
        spec, checks = (
            load_robot_spec(executor_params.get("robot", "fr3")),
            FaultChecks.from_params(executor_params),
        )
        self._new_loop = lambda: ControlLoop(control, spec, checks)
        self.loop = self._new_loop()
        self.executor = self.loop.executor
        self._joint_names = list(env.joint_names)  # read once: the tick runs at control_rate
        joint_index = {n: i for i, n in enumerate(self._joint_names)}
        missing = [n for n in self.state_names if n not in joint_index]
        if missing:
            raise ValueError(f"state joints {missing} are not reported by the {env.setup} fake")
        self._state_cols = [joint_index[n] for n in self.state_names]
        arms = list(env.arms)
        if len(arms) != len(self.loop.joint_names) or any(
            set(env.arm_joint_names[a]) != set(names)
            for a, names in zip(arms, self.loop.joint_names, strict=False)
        ):
            raise ValueError(
                f"the control loop's arms {self.loop.joint_names} are not the {env.setup} fake's "
                f"{[list(env.arm_joint_names[a]) for a in arms]}"
            )
        self._arms = arms
        self._gripper_sent: set[str] = set()
        self._command_order = [j for a in arms for j in env.arm_joint_names[a]]

    def observe(self) -> tuple[list[np.ndarray], np.ndarray]:
        """(camera images in policy order, (Ds,) state) of the current sim state."""
        images = [
            add_sensor_noise(self.env.render(c), self.image_noise, self._noise_rng) for c in self.cameras
        ]
        return images, self.env.joint_positions()[self._state_cols]

    def _predict(self, instruction: str, policy_seed: int, index: int) -> np.ndarray:
        """The engine's chunk for the current observation (the episode's ``index``-th inference:
        diffusion noise seed policy_seed + index, fresh noise when policy_seed < 0)."""
        images, state = self.observe()
        seed = None if policy_seed < 0 else policy_seed + index
        return self.engine.predict_chunk(images, instruction, state, seed=seed)

    def tick(self, now: float) -> Any:
        """One control period: the joint state in, the loop's TickResult applied to the fake."""
        env, loop = self.env, self.loop
        loop.set_joint_state(self._joint_names, env.joint_positions(), now)
        result = loop.tick(now, actuating=True)
        if result.mode == "idle":
            return result  # no command: the fake keeps its last targets, as a forward controller
        values = {}
        for names, arm in zip(loop.joint_names, result.arms, strict=True):
            values.update(zip(names, arm.positions, strict=True))
        env.set_joint_position_targets(np.array([values[j] for j in self._command_order]))
        if result.mode == "run":
            for arm, closed, changed in zip(
                self._arms, result.gripper_closed, result.gripper_changed, strict=True
            ):
                if closed is not None and (changed or arm not in self._gripper_sent):
                    env.set_gripper(arm, 0.0 if closed else 1.0)
                    self._gripper_sent.add(arm)
        return result

    def episode(
        self,
        task: str,
        seed: int,
        policy_seed: int,
        max_seconds: float,
        instruction: str = "",
        latency: float = 0.0,
    ) -> EpisodeOutcome:
        """One evaluation episode (``instruction``: '' = the task's own).

        ``latency`` > 0 runs the policy as the policy node does: an inference starts on the newest
        observation whenever none is running (at most ``inference_rate`` per second), its chunk
        reaches the loop ``latency`` simulated seconds later, stamped with the observation's time,
        while the arm goes on executing the older plan; the loop's execution mode decides what
        to do with it (open_loop keeps its plan mid-way and only notes the observation)."""
        from tinyvla_ros.sim.experts import make_expert

        env = self.env
        env.reset(task, seed)
        limit = max_seconds or 1.5 * make_expert(env).duration + 2.0
        self.loop = loop = self._new_loop()  # filters, plan and grippers start from this episode
        self.executor = loop.executor
        self._gripper_sent: set[str] = set()
        self._noise_rng = np.random.default_rng(seed)  # the same noise for the same scene
        instruction = instruction or env.instruction
        start, inferences, success, tick = time.perf_counter(), 0, False, 0
        pending: tuple[float, float, np.ndarray] | None = None  # (arrival, observation time, chunk)
        next_start = 0.0
        while env.time < limit - 1e-9:
            now = env.time
            if latency > 0:
                if pending is not None and now >= pending[0] - 1e-9:
                    loop.add_chunk(pending[2], pending[1], self.dt, now)
                    pending = None
                if pending is None and now >= next_start - 1e-9:
                    chunk = self._predict(instruction, policy_seed, inferences)
                    pending, next_start = (now + latency, now, chunk), now + self.inference_period
                    inferences += 1
            elif tick % self.ticks_per_step == 0:
                if self.executor.needs_chunk(now):
                    chunk = self._predict(instruction, policy_seed, inferences)
                    loop.add_chunk(chunk, now, self.dt, now)
                    inferences += 1
                else:  # the live policy's chunk here would be skipped (open loop): not computed
                    loop.note_observation(now)
            self.tick(now)
            env.step()
            tick += 1
            if not np.all(np.isfinite(env.joint_positions())):
                break
            if env.success():
                success = True
                break
        counts = loop.counters
        return EpisodeOutcome(
            env.task,
            seed,
            success,
            env.time,
            inferences,
            time.perf_counter() - start,
            chunks_refused=counts["bad_chunks"],
            ticks_run=counts["ticks_run"],
            ticks_hold=counts["ticks_hold"],
            safety_clamps=int(sum(loop.clamps.values())),
        )


def evaluate(checkpoint: str | Path, cfg: EvalConfig | None = None, progress: bool = False) -> EvalResults:
    """Run ``checkpoint`` on every (task, seed) of ``cfg`` in the fake robot; returns the results."""
    import yaml

    from tinyvla_ros.paths import config_dir
    from tinyvla_ros.sim.env import make_env
    from tinyvla_ros.vla.engines import load_engine

    cfg = cfg or EvalConfig()
    params = graph_parameters(cfg.setup)
    all_params = yaml.safe_load((config_dir() / f"{cfg.setup}.yaml").read_text())
    executor_params = all_params.get("/**/tinyvla_executor", {}).get("ros__parameters", {})
    expected = {
        "camera_names": list(params["camera_names"]),
        "state_dim": len(params["state_joint_names"]),
        "action_dim": len(params["action_names"]),
    }
    engine = load_engine(checkpoint, cfg.engine, cfg.device, "fp32", expected, cfg.num_threads)
    from tinyvla_ros.data.demos import camera_size

    width, height = camera_size(cfg.setup, cfg.image_width, cfg.image_height)  # 0: the params file's
    period = 1.0 / float(executor_params.get("control_rate", 100.0))  # the loop's tick
    env = make_env(cfg.setup, image_width=width, image_height=height, control_dt=period)
    results = EvalResults(cfg.setup, str(checkpoint))
    try:
        runner = PolicyRunner(engine, env, params, executor_params, cfg.execution_mode, cfg.image_noise)
        jobs = [(t, int(s)) for t in (cfg.tasks or env.tasks) for s in cfg.seeds]
        if progress:
            from tqdm import tqdm

            jobs = tqdm(jobs, desc="eval", unit="episode")
        for task, seed in jobs:
            results.episodes.append(
                runner.episode(task, seed, cfg.policy_seed, cfg.max_seconds, cfg.instruction, cfg.latency)
            )
    finally:
        env.close()
    return results


def main(argv: list[str] | None = None) -> int:
    """``tinyvla-eval CHECKPOINT --setup franka --seeds 0-9 [--json out.json]``"""
    from tinyvla_ros.data.demos import parse_seeds

    p = argparse.ArgumentParser(prog="tinyvla-eval", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="checkpoint directory (e.g. a training run's final/)")
    p.add_argument("--setup", choices=SETUPS, default="franka")
    p.add_argument("--tasks", nargs="+", default=None)
    p.add_argument("--seeds", default="0-4", help="scene seeds, e.g. 0-9")
    p.add_argument("--policy-seed", type=int, default=0, help="diffusion noise seed (-1: fresh noise)")
    p.add_argument(
        "--execution-mode",
        default="",
        choices=("", *EXECUTION_MODES),
    )
    p.add_argument("--max-seconds", type=float, default=0.0, help="episode time limit (0: per-task default)")
    p.add_argument("--width", type=int, default=0, help="camera width (0: the params file's fake cameras)")
    p.add_argument("--height", type=int, default=0, help="camera height (0: the params file's)")
    p.add_argument("--engine", default="torch", help="inference engine (torch, onnx, ...: see vla.engines)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default="", help="also write the results as JSON here")
    p.add_argument("--instruction", default="", help="give the policy this instruction in every episode")
    p.add_argument("--num-threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="simulated s from an observation to its chunk's arrival, policy-node loop (0: none)",
    )
    p.add_argument(
        "--image-noise",
        type=float,
        default=0.0,
        help="sensor noise std on every frame, intensity levels (the fake's cameras: 2.0; 0: clean)",
    )
    args = p.parse_args(argv)
    try:
        cfg = EvalConfig(
            setup=args.setup,
            tasks=tuple(args.tasks) if args.tasks else None,
            seeds=tuple(parse_seeds(args.seeds)),
            policy_seed=args.policy_seed,
            execution_mode=args.execution_mode,
            max_seconds=args.max_seconds,
            image_width=args.width,
            image_height=args.height,
            engine=args.engine,
            device=args.device,
            num_threads=args.num_threads,
            instruction=args.instruction,
            latency=args.latency,
            image_noise=args.image_noise,
        )
        results = evaluate(args.checkpoint, cfg, progress=True)
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"tinyvla-eval: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(results.table())
    if args.json:
        Path(args.json).write_text(json.dumps(results.to_dict(), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
