"""One MetaWorld task as the harness uses it: seeded resets, an upright camera image, the 4-D
state and action, and the task's shipped scripted expert.

Seeding. metaworld 3.1.1's public entry points fix an episode's layout through a list of 50
pre-sampled "tasks" (``MT1(name, seed)`` + ``env.set_task``, or ``gym.make("Meta-World/MT1",
...)``, which picks one of the 50 at random on every reset). The harness needs one layout per
integer seed instead, as ``metaworld.env_dict.ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE`` builds them,
without that class's fixed camera and size: it makes the task's class with the camera, sets the
same flags as that goal-observable class (``_partially_observable = False`` so the observation
carries the goal the scripted experts read, ``_set_task_called``) and lets every reset draw the
layout from the environment's own generator (``_freeze_rand_vec = False``, ``seeded_rand_vec =
True``). ``reset(seed)`` calls ``env.seed(seed)`` then ``env.reset()``: the layout depends on the
seed only, not on earlier episodes (tested).

Camera. ``corner4`` (metaworld's ``corner2`` view moved to (0.75, 0.075, 0.7), the viewpoint of
Seo et al. 2022 and of later imitation-learning work on MetaWorld), rendered by gymnasium's
MuJoCo renderer (``render_mode="rgb_array"``) at ``width`` x ``height`` (default 128 x 128) with
metaworld's lighting and shadows unchanged. That camera's frames come out upside down (table at the
top); ``upright`` turns them 180 degrees (both axes flipped: a flip of the rows alone would mirror
the scene), so the table is at the bottom and the robot's base at the left.

State and action (what the policy sees and commands, in metaworld's own units):
    state   (4,)  end-effector x, y, z (m) and the gripper opening (0 closed .. 1 open): the
                  observation's first 4 numbers
    action  (4,)  end-effector displacement x, y, z (1 = 1 cm per step) and gripper effort
                  (-1 open .. +1 close), each in [-1, 1]; actions are clipped before stepping
One step is ``env.dt`` = 12.5 ms of simulated time (80 Hz); an episode lasts at most
``max_path_length`` = 500 steps.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinyvla_ros.metaworld.tasks import group_of, instruction_of

CAMERA = "corner4"
IMAGE_SIZE = 128
MAX_PATH_LENGTH = 500
EVAL_SEED_START = 1000  # evaluation layouts use seeds from here on, recordings those below
ROBOT = "metaworld_sawyer"
STATE_NAMES: tuple[str, ...] = ("ee_x", "ee_y", "ee_z", "gripper_opening")
ACTION_NAMES: tuple[str, ...] = ("ee_dx", "ee_dy", "ee_dz", "gripper_effort")
# the scene cameras whose frames come out upside down (checked on renders): ``upright`` turns them
CAMERAS = ("corner", "corner2", "corner3", "corner4")


@dataclass(frozen=True)
class RenderConfig:
    """The camera image: a camera of metaworld's scene and the size of its frames (pixels)."""

    camera: str = CAMERA
    width: int = IMAGE_SIZE
    height: int = IMAGE_SIZE

    def __post_init__(self) -> None:
        if self.camera not in CAMERAS:
            raise ValueError(f"RenderConfig.camera must be one of {list(CAMERAS)}, got {self.camera!r}")
        for name in ("width", "height"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 16 <= value <= 1024:
                raise ValueError(f"RenderConfig.{name} must be an int in [16, 1024], got {value!r}")


def upright(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) frame as rendered -> the same frame turned 180 degrees (see the module docstring)."""
    return np.ascontiguousarray(frame[::-1, ::-1])


def clip_action(action: Any) -> np.ndarray:
    """(4,) action -> float64 clipped to [-1, 1]; ValueError for another shape or a non-finite value."""
    a = np.asarray(action, dtype=np.float64)
    if a.shape != (len(ACTION_NAMES),):
        raise ValueError(f"a MetaWorld action has {len(ACTION_NAMES)} values, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"MetaWorld action is not finite: {a.tolist()}")
    return np.clip(a, -1.0, 1.0)


def _metaworld() -> Any:
    try:
        import metaworld  # noqa: F401 - registers the environments
        from metaworld import env_dict
    except ImportError as exc:
        raise ImportError(
            "the MetaWorld harness needs metaworld 3.1.1: pip install -r requirements/sim.txt"
        ) from exc
    return env_dict


def registry_tasks() -> list[str]:
    """The task names metaworld's registry holds (``ALL_V3_ENVIRONMENTS``)."""
    return list(_metaworld().ALL_V3_ENVIRONMENTS)


class MetaWorldEnv:
    """One MetaWorld task with seeded resets and an upright camera (see the module docstring)."""

    def __init__(self, task: str, render: RenderConfig | None = None) -> None:
        self.group = group_of(task)  # ValueError for a task that is not one of the 50
        self.instruction = instruction_of(task)
        self.task = task
        self.render_config = render or RenderConfig()
        classes = _metaworld().ALL_V3_ENVIRONMENTS
        if task not in classes:
            raise ValueError(f"metaworld's registry has no task {task!r} (metaworld 3.1.1 expected)")
        cfg = self.render_config
        env = classes[task](
            render_mode="rgb_array", camera_name=cfg.camera, width=cfg.width, height=cfg.height
        )
        # the flags ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE sets, layouts drawn from env.np_random
        env._partially_observable = False
        env.__dict__.pop("sawyer_observation_space", None)  # a cached_property of the observability
        env._set_task_called = True
        env._freeze_rand_vec = False
        env.seeded_rand_vec = True
        self._env = env
        self.max_steps = int(env.max_path_length)
        self.dt = float(env.dt)
        self.obs: np.ndarray | None = None
        self.steps = 0

    @property
    def fps(self) -> float:
        return 1.0 / self.dt

    def reset(self, seed: int) -> np.ndarray:
        """Start the episode of layout ``seed``; returns metaworld's (39,) observation."""
        if not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"episode seed must be an int >= 0, got {seed!r}")
        self._env.seed(int(seed))
        self.obs, _ = self._env.reset()
        self.steps = 0
        return self.obs

    def step(self, action: Any) -> tuple[np.ndarray, bool, bool]:
        """Apply the clipped action for one step -> (observation, success, episode limit reached)."""
        if self.obs is None:
            raise RuntimeError("reset the MetaWorld env before stepping it")
        if self.steps >= self.max_steps:
            raise RuntimeError(f"the episode is over: {self.max_steps} steps were taken")
        self.obs, _, _, truncated, info = self._env.step(clip_action(action))
        self.steps += 1
        return self.obs, bool(info["success"]), bool(truncated) or self.steps >= self.max_steps

    def state(self) -> np.ndarray:
        """(4,) float32 state of the current observation (end effector xyz, gripper opening)."""
        if self.obs is None:
            raise RuntimeError("reset the MetaWorld env before reading its state")
        return np.asarray(self.obs[: len(STATE_NAMES)], dtype=np.float32)

    def render(self) -> np.ndarray:
        """(height, width, 3) uint8 upright camera image of the current state."""
        return upright(self._env.render())

    def expert(self) -> Any:
        """The task's scripted expert (``metaworld.policies.ENV_POLICY_MAP``): ``get_action(obs)``."""
        from metaworld.policies import ENV_POLICY_MAP

        return ENV_POLICY_MAP[self.task]()

    def expert_action(self, policy: Any) -> np.ndarray:
        """The expert's action for the current observation, clipped (its gain warnings silenced)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Constant(s) may be too high": the env clips anyway
            return clip_action(policy.get_action(self.obs))

    def close(self) -> None:
        self._env.close()

    def __enter__(self) -> MetaWorldEnv:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def check_steps(max_steps: int, what: str) -> None:
    """ValueError unless 1 <= max_steps <= metaworld's max_path_length (its env refuses more)."""
    if not isinstance(max_steps, int) or not 1 <= max_steps <= MAX_PATH_LENGTH:
        raise ValueError(f"{what} must be an int in [1, {MAX_PATH_LENGTH}], got {max_steps!r}")
