"""``tinyvla-record-demos``: run the scripted experts in the MuJoCo fakes and write one bag per episode.

No ROS is needed: every message is serialised with the rosbags typestore exactly as the real
drivers and our nodes publish it, stamped with simulation time (bag time = ``start_time`` +
sim time, so /clock from a player never starts at zero):

    <camera topic>     sensor_msgs/Image in the driver's encoding (ZED bgra8, RealSense rgb8),
                       header.stamp = render time, one frame per control step, received (bag
                       time) ``camera_latency`` (5 ms) after its stamp, like a real camera's frames
    /joint_states      sensor_msgs/JointState (every reported joint: arms + grippers), received
                       at its stamp
    /tinyvla/action    sensor_msgs/JointState named by the policy's action names: the expert's
                       arm joint targets and gripper commands (0 closed .. 1 open) at that step
    /instruction       std_msgs/String, latched

The topic names, camera names, state and action names and the control period come from the
set-up's params file (config/<setup>.yaml, ``tinyvla_policy`` parameters), so a converted demo
dataset fits the policy node without renaming. Each bag's ``custom_data`` holds the instruction,
the success flag at the end of the episode, task, seed, set-up and the layout for conversion.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyvla_ros.core.robots import SETUPS
from tinyvla_ros.data.bag import LATCHED, BagWriter, BagWriterConfig, TopicQos
from tinyvla_ros.data.convert import LAYOUT_KEY, BagLayout
from tinyvla_ros.data.messages import (
    IMAGE,
    JOINT_STATE,
    STRING,
    image_msg,
    joint_state_msg,
    sec_to_ns,
    string_msg,
)

ACTION_TOPIC = "/tinyvla/action"
CAMERA_QOS = TopicQos(depth=10)


def graph_parameters(setup: str) -> dict[str, Any]:
    """The ``tinyvla_policy`` parameters of config/<setup>.yaml."""
    import yaml

    from tinyvla_ros.paths import config_dir

    if setup not in SETUPS:
        raise ValueError(f"setup must be one of {list(SETUPS)}, got {setup!r}")
    path = config_dir() / f"{setup}.yaml"
    params = yaml.safe_load(path.read_text())
    try:
        return params["/**/tinyvla_policy"]["ros__parameters"]
    except KeyError as exc:
        raise ValueError(f"{path}: no '/**/tinyvla_policy: ros__parameters' section") from exc


def camera_size(setup: str, width: int = 0, height: int = 0) -> tuple[int, int]:
    """(width, height) given, or (when either is <= 0) the fake robot's cameras in config/<setup>.yaml:
    the resolution demos are recorded at and policies are evaluated with unless a command says otherwise."""
    import yaml

    from tinyvla_ros.paths import config_dir

    if width > 0 and height > 0:
        return width, height
    if setup not in SETUPS:
        raise ValueError(f"setup must be one of {list(SETUPS)}, got {setup!r}")
    params = yaml.safe_load((config_dir() / f"{setup}.yaml").read_text())
    fake = params.get("/**/tinyvla_fake_robot", {}).get("ros__parameters", {})
    return int(fake.get("image_width", 128)), int(fake.get("image_height", 96))


def setup_layout(setup: str) -> tuple[BagLayout, dict[str, str]]:
    """(BagLayout, {camera: encoding}) of a set-up, from its params file."""
    p = graph_parameters(setup)
    cameras = {name: p["cameras"][name]["topic"] for name in p["camera_names"]}
    encodings = {name: p["cameras"][name].get("encoding", "rgb8") for name in p["camera_names"]}
    layout = BagLayout(
        cameras=cameras,
        state_names=tuple(p["state_joint_names"]),
        action_names=tuple(p["action_names"]),
        joint_states_topic=p.get("joint_states_topic", "/joint_states"),
        action_topic=ACTION_TOPIC,
        instruction_topic="/" + p.get("instruction_topic", "instruction").lstrip("/"),
        fps=1.0 / float(p.get("action_dt", 0.05)),
        robot=setup,
    )
    return layout, encodings


@dataclass
class DemoConfig:
    """What to record.

    setup: "franka" | "ur5_bimanual"; tasks: task names (None: every task of the set-up);
    seeds: episode seeds; image_width/height: simulated camera resolution (0: the params
    file's fake cameras); substeps: expert
    steps per recorded step (the expert runs at action_dt / substeps); hold_steps: steps recorded
    after the script ends (the robot at rest); start_time: bag time of sim time 0 (s);
    camera_latency: a frame stamped t is received (bag time) at t + camera_latency, as a real
    camera's transport delays it (joint states are received at their stamp).
    action_noise: std (rad) of a temporally correlated (Ornstein-Uhlenbeck, correlation
    ``noise_correlation`` per recorded step) noise added to the arm joint targets the robot
    executes, while the recorded action stays the expert's clean command (DART, Laskey et al.
    2017): the demonstrations then visit states off the nominal path and show the way back, the
    states a policy's own small errors lead to. Seeded by the episode seed; 0: none.
    policy: a checkpoint directory that drives each episode first (DAgger-style takeover, Ross et
    al. 2011, with the expert taking over as in HG-DAgger): it runs open loop, ``policy_steps``
    of each chunk, for a number of steps drawn per episode from ``takeover`` (inclusive, seeded by
    the episode seed), or until it first closes a gripper if that comes sooner; then the
    expert restarts its script from that state (``sim.experts.recovery_expert``) and only that
    part is recorded. The bag starts at the takeover state: the states the policy's own errors
    lead to, labelled with the expert's way back. "": the expert drives from the start.
    num_threads: the policy's torch CPU threads (0: torch's default).
    """

    setup: str = "franka"
    tasks: list[str] | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    image_width: int = 0
    image_height: int = 0
    substeps: int = 1
    hold_steps: int = 4
    start_time: float = 1.0
    camera_latency: float = 0.005
    storage: str = "mcap"
    compression: str = "none"
    action_noise: float = 0.0
    noise_correlation: float = 0.9
    policy: str = ""
    takeover: tuple[int, int] = (8, 48)
    policy_steps: int = 8
    num_threads: int = 0

    def __post_init__(self) -> None:
        if self.setup not in SETUPS:
            raise ValueError(f"DemoConfig.setup must be one of {list(SETUPS)}, got {self.setup!r}")
        self.image_width, self.image_height = camera_size(self.setup, self.image_width, self.image_height)
        if not self.seeds or any(int(s) < 0 for s in self.seeds):
            raise ValueError(f"DemoConfig.seeds must be non-negative ints, got {self.seeds!r}")
        if self.substeps < 1 or self.hold_steps < 0:
            raise ValueError(
                f"DemoConfig.substeps must be >= 1 and hold_steps >= 0, got {self.substeps}, {self.hold_steps}"
            )
        if not (math.isfinite(self.start_time) and self.start_time > 0):
            raise ValueError(f"DemoConfig.start_time must be > 0 s, got {self.start_time!r}")
        if not (math.isfinite(self.camera_latency) and 0 <= self.camera_latency < 0.5):
            raise ValueError(f"DemoConfig.camera_latency must be in [0, 0.5) s, got {self.camera_latency!r}")
        if not (math.isfinite(self.action_noise) and 0 <= self.action_noise <= 0.5):
            raise ValueError(f"DemoConfig.action_noise must be in [0, 0.5] rad, got {self.action_noise!r}")
        if not (math.isfinite(self.noise_correlation) and 0 <= self.noise_correlation < 1):
            raise ValueError(
                f"DemoConfig.noise_correlation must be in [0, 1), got {self.noise_correlation!r}"
            )
        lo, hi = (int(v) for v in self.takeover)
        if not 0 <= lo <= hi:
            raise ValueError(f"DemoConfig.takeover must be 0 <= first <= last steps, got {self.takeover!r}")
        self.takeover = (lo, hi)
        if self.policy_steps < 1:
            raise ValueError(f"DemoConfig.policy_steps must be >= 1, got {self.policy_steps!r}")
        if self.policy and not Path(self.policy).is_dir():
            raise ValueError(f"DemoConfig.policy {self.policy!r} is not a checkpoint directory")
        BagWriterConfig(self.storage, 9, self.compression)


@dataclass(frozen=True)
class DemoResult:
    """One recorded episode."""

    path: Path
    task: str
    seed: int
    success: bool
    steps: int
    sim_seconds: float
    wall_seconds: float
    error: str = ""


def _action_vector(env: Any, q: np.ndarray, grip: dict[str, float], names: Sequence[str]) -> np.ndarray:
    """Expert output -> (A,) in the policy's action-name order: arm joint names, and '<arm>_gripper'
    (or 'gripper' for a single arm) = the gripper command, 0 closed .. 1 open."""
    values: dict[str, float] = {}
    offset = 0
    for arm in env.arms:
        joints = env.arm_joint_names[arm]
        values.update(zip(joints, q[offset : offset + len(joints)], strict=True))
        offset += len(joints)
        values[f"{arm}_gripper"] = float(grip[arm])
        if len(env.arms) == 1:  # single-arm layouts call it just "gripper"
            values["gripper"] = float(grip[arm])
    missing = [n for n in names if n not in values]
    if missing:
        raise ValueError(
            f"action names {missing} are not produced by the {env.setup} expert ({sorted(values)})"
        )
    return np.asarray([values[n] for n in names], dtype=np.float64)


def split_action(action: np.ndarray, names: Sequence[str], env: Any) -> tuple[np.ndarray, dict[str, float]]:
    """(A,) action in ``names`` order -> ((Na,) arm joint targets in the env's command order,
    {arm: gripper 0..1}). Gripper entries are '<arm>_gripper', or 'gripper' for a single arm."""
    index = {n: i for i, n in enumerate(names)}
    q, grip = [], {}
    for arm in env.arms:
        for joint in env.arm_joint_names[arm]:
            if joint not in index:
                raise ValueError(f"action names {list(names)} lack joint {joint!r} of arm {arm!r}")
            q.append(action[index[joint]])
        key = f"{arm}_gripper" if f"{arm}_gripper" in index else "gripper" if len(env.arms) == 1 else None
        if key is not None and key in index:
            grip[arm] = float(np.clip(action[index[key]], 0.0, 1.0))
    return np.asarray(q, dtype=np.float64), grip


def _declare_topics(bag: BagWriter, layout: BagLayout) -> None:
    for topic in layout.cameras.values():
        bag.add_topic(topic, IMAGE, CAMERA_QOS)
    bag.add_topic(layout.joint_states_topic, JOINT_STATE)
    bag.add_topic(ACTION_TOPIC, JOINT_STATE)
    bag.add_topic(layout.instruction_topic, STRING, LATCHED)


def _record_step(
    bag: BagWriter, env: Any, layout: BagLayout, encodings: dict[str, str], t: float, latency: float
) -> None:
    """Joint states (received at t) and camera frames (stamped t, received t + latency) of the current
    sim state; t in bag seconds."""
    bag.write(
        layout.joint_states_topic,
        sec_to_ns(t),
        joint_state_msg(env.joint_names, env.joint_positions(), t, env.joint_velocities()),
    )
    for cam, topic in layout.cameras.items():
        bag.write(
            topic,
            sec_to_ns(t + latency),
            image_msg(env.render(cam), encodings[cam], t, f"{cam}_optical_frame"),
        )


class PolicyDriver:
    """DemoConfig.policy: a checkpoint that drives an episode until the expert takes over.

    Chunks are played open loop as joint targets and gripper commands, ``policy_steps`` of each,
    one per recorded step (the recorder's step is the policy's ``action_dt``); the cameras are
    rendered at the recording's size. Diffusion noise is seeded by (episode seed, chunk index).
    """

    def __init__(self, cfg: DemoConfig, env: Any) -> None:
        from tinyvla_ros.vla.engines import load_engine

        params = graph_parameters(cfg.setup)
        self.cameras = list(params["camera_names"])
        self.names = list(params["action_names"])
        joints = list(env.joint_names)
        missing = [n for n in params["state_joint_names"] if n not in joints]
        if missing:
            raise ValueError(f"state joints {missing} are not reported by the {cfg.setup} fake")
        self.state_cols = [joints.index(n) for n in params["state_joint_names"]]
        expected = {
            "camera_names": self.cameras,
            "state_dim": len(self.state_cols),
            "action_dim": len(self.names),
        }
        self.engine = load_engine(cfg.policy, "torch", "cpu", "fp32", expected, cfg.num_threads)
        self.takeover, self.policy_steps = cfg.takeover, cfg.policy_steps

    def drive(self, env: Any, seed: int) -> tuple[int, str]:
        """Run the policy from the reset state; returns (steps driven, why it stopped)."""
        from tinyvla_ros.sim.experts import OPEN, make_expert

        # stop at the policy's first close where the script opens the gripper first (a grasp
        # follows); close_drawer pushes with closed fingers from its first step
        stop_on_close = OPEN in make_expert(env).phases[0].grip.values()

        rng = np.random.default_rng([int(seed), 0x7A4E])
        limit = int(rng.integers(self.takeover[0], self.takeover[1] + 1))
        steps, chunk = 0, np.zeros((0, len(self.names)))
        while steps < limit:
            k = steps % self.policy_steps
            if k == 0:
                images = [env.render(c) for c in self.cameras]
                state = env.joint_positions()[self.state_cols]
                chunk = np.asarray(
                    self.engine.predict_chunk(images, env.instruction, state, seed=int(seed) * 1000 + steps)
                )
            if k >= len(chunk):
                raise ValueError(
                    f"the policy's chunks have {len(chunk)} steps, fewer than {self.policy_steps}"
                )
            q, grip = split_action(chunk[k], self.names, env)
            if stop_on_close and any(value < 0.5 for value in grip.values()):
                return steps, "grasp"  # the expert takes over at the policy's first close
            env.set_joint_position_targets(q)
            for arm, value in grip.items():
                env.set_gripper(arm, value)
            env.step()
            steps += 1
            if not np.all(np.isfinite(env.joint_positions())):
                return steps, "unstable"
        return steps, "steps"


def record_episode(
    env: Any,
    task: str,
    seed: int,
    path: Path,
    cfg: DemoConfig,
    layout: BagLayout,
    encodings,
    driver: PolicyDriver | None = None,
) -> DemoResult:
    """Reset ``env`` to (task, seed), run the expert (after ``driver``'s policy, if given), write
    one bag at ``path``."""
    from tinyvla_ros.sim.experts import make_expert, recovery_expert

    start = time.perf_counter()
    env.reset(task, seed)
    takeover: dict[str, Any] = {}
    if driver is not None:
        driven, why = driver.drive(env, seed)
        takeover = {"policy": str(cfg.policy), "takeover_step": driven, "takeover_reason": why}
        expert = recovery_expert(env)
    else:
        expert = make_expert(env)
    steps, held, error = 0, 0, ""
    noise = ExecutionNoise(cfg.action_noise, cfg.noise_correlation, len(env.home), seed)
    with BagWriter(path, BagWriterConfig(cfg.storage, 9, cfg.compression)) as bag:
        _declare_topics(bag, layout)
        bag.write(layout.instruction_topic, sec_to_ns(cfg.start_time), string_msg(env.instruction))
        while held <= cfg.hold_steps:
            t = cfg.start_time + env.time
            if not np.all(np.isfinite(env.joint_positions())):
                error = f"simulation unstable (non-finite joint positions) at sim time {env.time:.3f} s"
                break
            _record_step(bag, env, layout, encodings, t, cfg.camera_latency)
            q, grip = expert.act(env)
            bag.write(ACTION_TOPIC, sec_to_ns(t), _joint_state_action(env, q, grip, layout, t))
            offset = noise.next()  # executed, not recorded
            for sub in range(cfg.substeps):
                if sub:
                    q, grip = expert.act(env)
                env.set_joint_position_targets(q + offset)
                for arm, value in grip.items():
                    env.set_gripper(arm, value)
                env.step()
            steps += 1
            held += int(expert.done)
        success = bool(env.success()) and not error
        bag.set_metadata(
            {
                "instruction": env.instruction,
                "success": success,
                "task": env.task,
                "seed": seed,
                "robot": cfg.setup,
                "recorder": "tinyvla-record-demos",
                "action_noise": cfg.action_noise,
                **takeover,
                "error": error,
                "sim": json.dumps({"image_width": cfg.image_width, "image_height": cfg.image_height}),
                LAYOUT_KEY: json.dumps(layout.to_dict()),
            }
        )
    return DemoResult(path, env.task, seed, success, steps, env.time, time.perf_counter() - start, error)


class ExecutionNoise:
    """DemoConfig.action_noise: an Ornstein-Uhlenbeck offset (n,) per recorded step, stationary std
    ``std`` and step correlation ``rho``, seeded by the episode seed (zeros when std is 0)."""

    def __init__(self, std: float, rho: float, n: int, seed: int) -> None:
        self.std, self.rho = float(std), float(rho)
        self._rng = np.random.default_rng([int(seed), 0xDA27])
        self._x = self.std * self._rng.standard_normal(n) if self.std else np.zeros(n)

    def next(self) -> np.ndarray:
        if self.std:
            kick = self.std * math.sqrt(1.0 - self.rho**2) * self._rng.standard_normal(self._x.shape)
            self._x = self.rho * self._x + kick
        return self._x.copy()


def _joint_state_action(env: Any, q: np.ndarray, grip: dict[str, float], layout: BagLayout, t: float) -> Any:
    return joint_state_msg(layout.action_names, _action_vector(env, q, grip, layout.action_names), t)


def record_demos(cfg: DemoConfig, out_dir: str | Path, progress: bool = False) -> list[DemoResult]:
    """Every (task, seed) of ``cfg`` -> ``out_dir/<setup>_<task>_seed<NNNN>/`` bags. Returns the results."""
    from tinyvla_ros.sim.env import make_env

    layout, encodings = setup_layout(cfg.setup)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dt = 1.0 / layout.fps / cfg.substeps
    env = make_env(
        cfg.setup, image_width=cfg.image_width, image_height=cfg.image_height, control_dt=round(dt, 9)
    )
    try:
        missing = [c for c in layout.cameras if c not in env.camera_names]
        if missing:
            raise ValueError(
                f"config cameras {missing} are not simulated; the {cfg.setup} fake has {env.camera_names}"
            )
        tasks = cfg.tasks or env.tasks
        driver = PolicyDriver(cfg, env) if cfg.policy else None
        jobs = [(task, int(seed)) for task in tasks for seed in cfg.seeds]
        if progress:
            from tqdm import tqdm

            jobs = tqdm(jobs, desc="demos", unit="episode")
        results = []
        for task, seed in jobs:
            path = out / f"{cfg.setup}_{task}_seed{seed:04d}"
            results.append(record_episode(env, task, seed, path, cfg, layout, encodings, driver))
        return results
    finally:
        env.close()


def parse_seeds(text: str) -> list[int]:
    """ "0-9,20,30-31" -> [0, ..., 9, 20, 30, 31]; ValueError naming a malformed part."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        try:
            seeds.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
        except ValueError as exc:
            raise ValueError(f"seeds must look like '0-9,20', got part {part!r}") from exc
    return seeds


def main(argv: list[str] | None = None) -> int:
    """``tinyvla-record-demos --setup franka --seeds 0-49 --out demos/``"""
    parser = argparse.ArgumentParser(prog="tinyvla-record-demos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--setup", choices=SETUPS, default="franka")
    parser.add_argument("--tasks", nargs="+", default=None, help="task names (default: all of the set-up)")
    parser.add_argument("--seeds", default="0-9", help="seeds, e.g. 0-49 or 0,3,5-7 (default 0-9)")
    parser.add_argument("--out", required=True, help="directory that receives one bag per episode")
    parser.add_argument("--width", type=int, default=0, help="camera width in pixels (0: the params file's)")
    parser.add_argument(
        "--height", type=int, default=0, help="camera height in pixels (0: the params file's)"
    )
    parser.add_argument("--substeps", type=int, default=1, help="expert steps per recorded step")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument(
        "--action-noise",
        type=float,
        default=0.0,
        metavar="RAD",
        help="DART: correlated noise of this std on the executed joint targets, clean actions recorded",
    )
    parser.add_argument(
        "--policy",
        default="",
        metavar="CHECKPOINT",
        help="DAgger-style takeover: this policy drives first, the expert takes over and is recorded",
    )
    parser.add_argument(
        "--takeover",
        default="8-48",
        metavar="FIRST-LAST",
        help="with --policy: steps the policy drives, drawn per episode (default 8-48)",
    )
    parser.add_argument("--num-threads", type=int, default=0, help="with --policy: torch CPU threads")
    args = parser.parse_args(argv)
    try:
        first, _, last = args.takeover.partition("-")
        try:
            takeover = (int(first), int(last or first))
        except ValueError as exc:
            raise ValueError(f"--takeover must look like 8-48, got {args.takeover!r}") from exc
        cfg = DemoConfig(
            setup=args.setup,
            tasks=args.tasks,
            seeds=parse_seeds(args.seeds),
            image_width=args.width,
            image_height=args.height,
            substeps=args.substeps,
            storage=args.storage,
            action_noise=args.action_noise,
            policy=args.policy,
            takeover=takeover,
            num_threads=args.num_threads,
        )
        results = record_demos(cfg, args.out, progress=True)
    except (ValueError, OSError) as exc:
        print(f"tinyvla-record-demos: {exc}", file=sys.stderr)
        return 2
    for r in results:
        status = "ok  " if r.success else "FAIL"
        print(
            f"{status} {r.path.name}: {r.steps} steps, {r.sim_seconds:.1f} s sim in {r.wall_seconds:.1f} s {r.error}"
        )
    ok = sum(r.success for r in results)
    sim = sum(r.sim_seconds for r in results)
    wall = sum(r.wall_seconds for r in results)
    print(
        f"{ok}/{len(results)} successful; {sim:.1f} s recorded in {wall:.1f} s ({sim / max(wall, 1e-9):.1f}x real time)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
