"""Tasks: a language instruction, a seeded randomisation of the scene and a success check.

Every scene holds several coloured cubes, so the instruction has to be read to know which
object matters. Randomisation uses only the ``numpy.random.Generator`` built from the seed:
the same seed gives the same object poses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tinyvla_ros.sim.scenes import BIN_HALF, BOWL_HEIGHT, BOWL_RADIUS, BOX_HALF, CUBE_HALF, UR_CUBE_HALF

if TYPE_CHECKING:
    from tinyvla_ros.sim.env import SimEnv

LIFT_HEIGHT = 0.05  # an object counts as lifted this far above its resting height [m]
MAX_BOX_TILT = math.radians(20.0)


@dataclass(frozen=True)
class Region:
    """An axis-aligned rectangle on the table: x in [x0, x1], y in [y0, y1] (world metres)."""

    x0: float
    x1: float
    y0: float
    y1: float

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return np.array([rng.uniform(self.x0, self.x1), rng.uniform(self.y0, self.y1)])


def sample_apart(rng: np.random.Generator, region: Region, count: int, min_dist: float) -> list[np.ndarray]:
    """``count`` points (2,) in ``region`` at least ``min_dist`` apart (rejection sampling)."""
    for _ in range(1000):
        points = [region.sample(rng) for _ in range(count)]
        if all(np.linalg.norm(a - b) >= min_dist for i, a in enumerate(points) for b in points[i + 1 :]):
            return points
    raise RuntimeError(f"cannot place {count} objects {min_dist} m apart in {region}")


def yaw_of(rot: np.ndarray) -> float:
    """Yaw (rad) of a (3, 3) rotation's x axis projected on the table."""
    return math.atan2(rot[1, 0], rot[0, 0])


class Task:
    """Base class: subclasses set ``name``, ``setup``, ``instruction`` and implement the three hooks."""

    name: str = ""
    setup: str = ""
    instruction: str = ""

    def reset(self, env: SimEnv, rng: np.random.Generator) -> None:
        """Place the objects for a new episode (arm already at home)."""
        raise NotImplementedError

    def success(self, env: SimEnv) -> bool:
        """Whether the task is solved in the current state."""
        raise NotImplementedError

    def state(self, env: SimEnv) -> dict[str, Any]:
        """Object poses and task facts (plain numbers and arrays)."""
        return {}


def _object_state(env: SimEnv, bodies: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for body in bodies:
        pos, rot = env.body_pose(body)
        out[f"{body}_pos"] = pos
        out[f"{body}_rot"] = rot
        out[f"{body}_yaw"] = yaw_of(rot)
    return out


# ----------------------------------------------------------------------------- Franka

FRANKA_CUBES = ("red_cube", "green_cube", "blue_cube")
# Regions keep the Franka Hand (0.2 m wide) clear of the cabinet and the bowl while it picks a cube.
FRANKA_CUBE_REGION = Region(0.35, 0.58, -0.12, 0.12)
FRANKA_BOWL_REGION = Region(0.42, 0.58, 0.28, 0.36)
FRANKA_CABINET_REGION = Region(0.62, 0.68, -0.46, -0.40)


class _FrankaTask(Task):
    setup = "franka"
    drawer_range = (0.0, 0.04)  # (min, max) initial drawer opening [m]: nearly closed, out of the way

    def reset(self, env: SimEnv, rng: np.random.Generator) -> None:
        cab_xy = FRANKA_CABINET_REGION.sample(rng)
        cab_yaw = math.atan2(cab_xy[1], cab_xy[0]) + rng.uniform(-0.12, 0.12)  # front faces the robot
        env.set_fixed_body("cabinet", np.array([cab_xy[0], cab_xy[1], 0.0]), cab_yaw)
        env.set_joint_value("drawer_joint", rng.uniform(*self.drawer_range))
        bowl_xy = FRANKA_BOWL_REGION.sample(rng)
        env.set_free_body("bowl", np.array([bowl_xy[0], bowl_xy[1], 0.0]), rng.uniform(-math.pi, math.pi))
        for body, xy in zip(FRANKA_CUBES, sample_apart(rng, FRANKA_CUBE_REGION, 3, 0.1), strict=True):
            env.set_free_body(
                body, np.array([xy[0], xy[1], CUBE_HALF]), rng.uniform(-math.pi / 4, math.pi / 4)
            )

    def state(self, env: SimEnv) -> dict[str, Any]:
        out = _object_state(env, (*FRANKA_CUBES, "bowl", "cabinet"))
        out["drawer_opening"] = env.joint_value("drawer_joint")
        out["drawer_handle_pos"] = env.data.geom("drawer_handle").xpos.copy()
        out["tcp_pos"], out["tcp_rot"] = env.ee_pose("fr3")
        out["gripper_opening"] = env.gripper_opening("fr3")
        return out


class PickCube(_FrankaTask):
    """Lift the named cube at least LIFT_HEIGHT off the table, held between both fingers."""

    def __init__(self, colour: str) -> None:
        self.cube = f"{colour}_cube"
        self.name = f"pick_{colour}_cube"
        self.instruction = f"pick up the {colour} cube"

    def success(self, env: SimEnv) -> bool:
        pos, _ = env.body_pose(self.cube)
        return bool(pos[2] > CUBE_HALF + LIFT_HEIGHT and env.grasped_by(self.cube, "fr3"))


class CubeInBowl(_FrankaTask):
    """The named cube rests inside the bowl, released by the gripper, bowl upright."""

    def __init__(self, colour: str) -> None:
        self.cube = f"{colour}_cube"
        self.name = f"{colour}_cube_in_bowl"
        self.instruction = f"put the {colour} cube in the bowl"

    def success(self, env: SimEnv) -> bool:
        cube, _ = env.body_pose(self.cube)
        bowl, bowl_rot = env.body_pose("bowl")
        inside = np.linalg.norm(cube[:2] - bowl[:2]) < BOWL_RADIUS - 0.5 * CUBE_HALF
        low = cube[2] < bowl[2] + BOWL_HEIGHT
        upright = bowl_rot[2, 2] > math.cos(math.radians(15))
        return bool(inside and low and upright and not env.touched_by(self.cube, "fr3"))


class CloseDrawer(_FrankaTask):
    """The drawer starts 8-14 cm open and must end within 1.5 cm of closed."""

    name = "close_drawer"
    instruction = "close the drawer"
    drawer_range = (0.08, 0.14)
    closed_tolerance = 0.015

    def success(self, env: SimEnv) -> bool:
        return env.joint_value("drawer_joint") < self.closed_tolerance


# ----------------------------------------------------------------------------- bimanual UR5

UR_BOX_REGION = Region(0.54, 0.60, -0.03, 0.03)
UR_LEFT_CUBE_REGION = Region(0.32, 0.42, 0.16, 0.26)
UR_RIGHT_CUBE_REGION = Region(0.30, 0.44, -0.30, -0.14)
UR_BIN_REGION = Region(0.60, 0.68, -0.46, -0.40)


class _BimanualTask(Task):
    setup = "ur5_bimanual"

    def reset(self, env: SimEnv, rng: np.random.Generator) -> None:
        box_xy = UR_BOX_REGION.sample(rng)
        env.set_free_body("box", np.array([box_xy[0], box_xy[1], BOX_HALF[2]]), rng.uniform(-0.15, 0.15))
        red = UR_LEFT_CUBE_REGION.sample(rng)
        env.set_free_body(
            "red_cube", np.array([red[0], red[1], UR_CUBE_HALF]), rng.uniform(-math.pi / 4, math.pi / 4)
        )
        for body, xy in zip(
            ("green_cube", "blue_cube"), sample_apart(rng, UR_RIGHT_CUBE_REGION, 2, 0.11), strict=True
        ):
            env.set_free_body(
                body, np.array([xy[0], xy[1], UR_CUBE_HALF]), rng.uniform(-math.pi / 4, math.pi / 4)
            )
        bin_xy = UR_BIN_REGION.sample(rng)
        env.set_fixed_body("bin", np.array([bin_xy[0], bin_xy[1], 0.0]), rng.uniform(-0.2, 0.2))

    def state(self, env: SimEnv) -> dict[str, Any]:
        out = _object_state(env, ("box", "red_cube", "green_cube", "blue_cube", "bin"))
        for arm in ("left", "right"):
            out[f"{arm}_tcp_pos"], out[f"{arm}_tcp_rot"] = env.ee_pose(arm)
            out[f"{arm}_gripper_opening"] = env.gripper_opening(arm)
        return out


class LiftBox(_BimanualTask):
    """The long box is held by both grippers, lifted LIFT_HEIGHT, and tilted less than 20 deg."""

    name = "lift_box"
    instruction = "lift the box with both arms"

    def success(self, env: SimEnv) -> bool:
        pos, rot = env.body_pose("box")
        level = rot[2, 2] > math.cos(MAX_BOX_TILT)
        held = env.grasped_by("box", "left") and env.grasped_by("box", "right")
        return bool(pos[2] > BOX_HALF[2] + LIFT_HEIGHT and level and held)


class HandoverCube(_BimanualTask):
    """The red cube ends in the right gripper only, off the table."""

    name = "handover_cube"
    instruction = "hand the cube from the left arm to the right"

    def success(self, env: SimEnv) -> bool:
        pos, _ = env.body_pose("red_cube")
        right_only = env.grasped_by("red_cube", "right") and not env.touched_by("red_cube", "left")
        return bool(pos[2] > UR_CUBE_HALF + LIFT_HEIGHT and right_only)


class CubeInBin(_BimanualTask):
    """The blue cube rests inside the bin, released by the gripper."""

    name = "blue_cube_in_bin"
    instruction = "put the blue cube in the bin"

    def success(self, env: SimEnv) -> bool:
        cube, _ = env.body_pose("blue_cube")
        bin_pos, bin_rot = env.body_pose("bin")
        local = bin_rot.T @ (cube - bin_pos)
        inside = abs(local[0]) < BIN_HALF[0] - 0.01 and abs(local[1]) < BIN_HALF[1] - 0.01
        low = local[2] < 2 * BIN_HALF[2]
        return bool(inside and low and not env.touched_by("blue_cube", "right"))


# ----------------------------------------------------------------------------- registry

_TASKS: dict[str, tuple[Task, ...]] = {
    "franka": (PickCube("red"), CubeInBowl("green"), CloseDrawer()),
    "ur5_bimanual": (LiftBox(), HandoverCube(), CubeInBin()),
}
# Evaluation-only tasks: the same scenes with another object named (a policy trained on the tasks
# above is asked, e.g., for the green cube: does it follow the words or the habit?). Not recorded
# by default and not in task_names(); get_task and tinyvla-eval --tasks find them.
_SWAP_TASKS: dict[str, tuple[Task, ...]] = {
    "franka": (PickCube("green"), PickCube("blue")),
    "ur5_bimanual": (),
}


def task_names(setup: str, swaps: bool = False) -> list[str]:
    """Task names of ``setup`` (``swaps``: the evaluation-only tasks after them)."""
    if setup not in _TASKS:
        raise ValueError(f"unknown setup {setup!r}; setups: {tuple(_TASKS)}")
    return [t.name for t in _TASKS[setup] + (_SWAP_TASKS[setup] if swaps else ())]


def get_task(setup: str, task: str) -> Task:
    """The task of ``setup`` named ``task`` (its name or its instruction)."""
    if setup not in _TASKS:
        raise ValueError(f"unknown setup {setup!r}; setups: {tuple(_TASKS)}")
    for candidate in _TASKS[setup] + _SWAP_TASKS[setup]:
        if task in (candidate.name, candidate.instruction):
            return candidate
    raise ValueError(f"unknown task {task!r} for setup {setup!r}; tasks: {task_names(setup, swaps=True)}")
