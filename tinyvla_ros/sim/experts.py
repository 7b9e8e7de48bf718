"""Scripted experts: Cartesian waypoints + IK, smooth and velocity-limited, one per task.

An expert is a list of phases. At the start of a phase its goal poses are computed from the
current scene (so a nudged object is still found); during the phase each arm's TCP follows a
minimum-jerk path (position lerp, orientation slerp) from the pose commanded last to the goal;
every control step the path point goes through damped-least-squares IK and the joint change is
limited to ``velocity_scale`` x the joint velocity limits. Used to record demonstrations::

    expert = make_expert(env, "pick_red_cube")  # after env.reset(...)
    while not expert.done:
        q, grip = expert.act(env)  # (Na,), {arm: 0..1}
        env.set_joint_position_targets(q)
        for arm, g in grip.items():
            env.set_gripper(arm, g)
        env.step()
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from tinyvla_ros.sim.env import SimEnv
from tinyvla_ros.sim.kinematics import mat_to_quat, nearest_symmetric_yaw, quat_to_mat, slerp, top_down_rot
from tinyvla_ros.sim.scenes import BOX_HALF, UR_CUBE_HALF
from tinyvla_ros.sim.tasks import yaw_of

Pose = tuple[np.ndarray, np.ndarray]  # position (3,), rotation (3, 3)
GoalFn = Callable[[SimEnv, dict[str, Pose]], dict[str, Pose]]

OPEN, CLOSED = 1.0, 0.0
IK_ITERS_PER_STEP = 12


@dataclass
class Phase:
    """One stage of a script: goal poses per arm (computed at phase start), gripper commands, duration [s].

    ``goals(env, commanded)`` gets the Cartesian poses commanded so far and returns goals for the
    arms that move; arms left out hold their pose. ``grip`` maps arm -> 0 (closed) .. 1 (open).
    """

    name: str
    duration: float
    goals: GoalFn
    grip: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.duration > 0:
            raise ValueError(f"Phase {self.name!r}: duration must be > 0 s, got {self.duration!r}")
        for arm, value in self.grip.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Phase {self.name!r}: grip[{arm!r}] must be in [0, 1], got {value!r}")


def min_jerk(tau: float) -> float:
    """Minimum-jerk time scaling s(tau), tau in [0, 1] -> [0, 1], zero velocity/acceleration at both ends."""
    t = min(max(tau, 0.0), 1.0)
    return t * t * t * (10.0 + t * (-15.0 + 6.0 * t))


class Expert:
    """Runs a list of :class:`Phase` on a :class:`SimEnv`, one :meth:`act` per control step."""

    def __init__(self, env: SimEnv, phases: list[Phase], velocity_scale: float = 0.5) -> None:
        if not 0 < velocity_scale <= 1:
            raise ValueError(f"Expert: velocity_scale must be in (0, 1], got {velocity_scale!r}")
        if not phases:
            raise ValueError("Expert: needs at least one phase")
        self.phases = phases
        self.task = env.task
        self._dt = env.config.control_dt
        self._vmax = {a: velocity_scale * np.asarray(s.velocity_limits) for a, s in env.arm_specs.items()}
        splits = np.cumsum([s.dof for s in env.arm_specs.values()])[:-1]
        per_arm = np.split(env.arm_targets(), splits)
        self._q = dict(zip(env.arms, per_arm, strict=True))  # joint targets commanded so far, (n,) per arm
        self._pose: dict[str, Pose] = {a: env.ee_pose(a) for a in env.arms}
        self._grip = {a: OPEN if env.gripper_opening(a) > 0.5 else CLOSED for a in env.arms}
        self._index = -1
        self._t = 0.0
        self._start: dict[str, Pose] = {}
        self._goal: dict[str, Pose] = {}

    @property
    def done(self) -> bool:
        """True once every phase has run."""
        return self._index >= len(self.phases)

    @property
    def phase(self) -> str:
        """Name of the running phase ('done' at the end)."""
        return self.phases[self._index].name if 0 <= self._index < len(self.phases) else "done"

    @property
    def duration(self) -> float:
        """Total scripted time [s]."""
        return sum(p.duration for p in self.phases)

    def act(self, env: SimEnv) -> tuple[np.ndarray, dict[str, float]]:
        """Next (Na,) arm joint targets and {arm: gripper command}; holds the last ones when done."""
        if self._index < 0 or (not self.done and self._t >= self.phases[self._index].duration - 1e-9):
            self._enter_next_phase(env)
        if not self.done:
            self._t += self._dt
            s = min_jerk(self._t / self.phases[self._index].duration)
            for arm, (p1, r1) in self._goal.items():
                p0, r0 = self._start[arm]
                pos = p0 + s * (p1 - p0)
                rot = quat_to_mat(slerp(mat_to_quat(r0), mat_to_quat(r1), s))
                self._pose[arm] = (pos, rot)
                self._track(env, arm, pos, rot)
        return np.concatenate([self._q[a] for a in env.arms]), dict(self._grip)

    def _enter_next_phase(self, env: SimEnv) -> None:
        self._index += 1
        self._t = 0.0
        if self.done:
            return
        phase = self.phases[self._index]
        self._goal = phase.goals(env, dict(self._pose))
        self._start = {arm: self._pose[arm] for arm in self._goal}
        self._grip.update(phase.grip)

    def _track(self, env: SimEnv, arm: str, pos: np.ndarray, rot: np.ndarray) -> None:
        """IK for the path point, then limit the joint step to the velocity budget."""
        # Path points move a little per step: a few warm-started iterations suffice, and a residual
        # is carried into the next step's solve.
        q_des = env.ik_solve(arm, pos, rot, q_init=self._q[arm], max_iters=IK_ITERS_PER_STEP).q
        step = self._vmax[arm] * self._dt
        self._q[arm] = self._q[arm] + np.clip(q_des - self._q[arm], -step, step)


# ----------------------------------------------------------------------------- pose helpers


def _offset(pose: Pose, dxyz: tuple[float, float, float]) -> Pose:
    return pose[0] + np.asarray(dxyz, dtype=np.float64), pose[1]


def _grasp_yaw(object_yaw: float, tool_rot: np.ndarray, period: float) -> float:
    """Top-down tool yaw aligned with the object's faces, closest to the tool's present yaw."""
    return nearest_symmetric_yaw(object_yaw, yaw_of(tool_rot), period)


def _top_down_above(env: SimEnv, body: str, tool_rot: np.ndarray, height: float, period: float) -> Pose:
    """A top-down pose ``height`` above ``body``'s centre, fingers closing across its faces."""
    pos, rot = env.body_pose(body)
    yaw = _grasp_yaw(yaw_of(rot), tool_rot, period)
    return pos + np.array([0.0, 0.0, height]), top_down_rot(yaw)


def _pick_phases(
    arm: str, body: str, grasp_dz: float, lift_z: float, period: float = math.pi / 2
) -> list[Phase]:
    """Open, hover above ``body``, descend so the TCP is ``grasp_dz`` above its centre, close, lift to ``lift_z``."""

    def above(env: SimEnv, cmd: dict[str, Pose]) -> dict[str, Pose]:
        return {arm: _top_down_above(env, body, cmd[arm][1], 0.12, period)}

    def descend(env: SimEnv, cmd: dict[str, Pose]) -> dict[str, Pose]:
        pos, rot = _top_down_above(env, body, cmd[arm][1], grasp_dz, period)
        pos[2] = max(pos[2], 0.013)  # fingertips stay above the table
        return {arm: (pos, rot)}

    def lift(env: SimEnv, cmd: dict[str, Pose]) -> dict[str, Pose]:
        pos, rot = cmd[arm]
        return {arm: (np.array([pos[0], pos[1], lift_z]), rot)}

    return [
        Phase("above", 1.6, above, {arm: OPEN}),
        Phase("descend", 1.0, descend),
        Phase("close", 0.6, _stay, {arm: CLOSED}),
        Phase("lift", 1.2, lift),
    ]


def _stay(env: SimEnv, cmd: dict[str, Pose]) -> dict[str, Pose]:
    """Goal function of a phase in which no arm moves (grippers may act)."""
    return {}


def _hold(duration: float = 0.4) -> Phase:
    return Phase("hold", duration, _stay)


# ----------------------------------------------------------------------------- Franka scripts


def _franka_pick(colour: str) -> list[Phase]:
    return [*_pick_phases("fr3", f"{colour}_cube", -0.004, 0.2), _hold()]


def _franka_place_in_bowl(colour: str) -> list[Phase]:
    def over_bowl(env: SimEnv, cmd: dict[str, Pose]) -> dict[str, Pose]:
        bowl, _ = env.body_pose("bowl")
        return {"fr3": (bowl + np.array([0.0, 0.0, 0.16]), cmd["fr3"][1])}

    def lower(env: SimEnv, cmd: dict[str, Pose]) -> dict[str, Pose]:
        return {"fr3": _offset(cmd["fr3"], (0.0, 0.0, -0.06))}

    def retreat(env: SimEnv, cmd: dict[str, Pose]) -> dict[str, Pose]:
        return {"fr3": _offset(cmd["fr3"], (0.0, 0.0, 0.12))}

    return [
        *_pick_phases("fr3", f"{colour}_cube", -0.004, 0.2),
        Phase("over_bowl", 1.5, over_bowl),
        Phase("lower", 0.8, lower),
        Phase("release", 0.5, _stay, {"fr3": OPEN}),
        Phase("retreat", 0.8, retreat),
        _hold(0.6),
    ]


def _franka_close_drawer() -> list[Phase]:
    finger_half, handle_radius, overshoot = 0.0095, 0.008, 0.012

    def push_frame(env: SimEnv) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
        """Handle position (3,), push direction u (3,), opening q [m], tool rotation (3, 3)."""
        state = env.task_state()
        yaw = state["cabinet_yaw"]
        u = np.array([math.cos(yaw), math.sin(yaw), 0.0])  # into the cabinet
        tool_yaw = nearest_symmetric_yaw(yaw, 0.0, math.pi)  # fingers side by side across the handle
        return state["drawer_handle_pos"], u, state["drawer_opening"], top_down_rot(tool_yaw)

    def approach(env: SimEnv, cmd: dict[str, Pose]) -> dict[str, Pose]:
        handle, u, _, rot = push_frame(env)
        return {"fr3": (handle - 0.07 * u + np.array([0.0, 0.0, 0.08]), rot)}

    def down(env: SimEnv, cmd: dict[str, Pose]) -> dict[str, Pose]:
        handle, u, _, rot = push_frame(env)
        return {"fr3": (handle - 0.05 * u, rot)}

    def push(env: SimEnv, cmd: dict[str, Pose]) -> dict[str, Pose]:
        handle, u, opening, rot = push_frame(env)
        closed_handle = handle + opening * u
        return {"fr3": (closed_handle - (finger_half + handle_radius - overshoot) * u, rot)}

    def retreat(env: SimEnv, cmd: dict[str, Pose]) -> dict[str, Pose]:
        _, u, _, _ = push_frame(env)
        pos, rot = cmd["fr3"]
        return {"fr3": (pos - 0.08 * u + np.array([0.0, 0.0, 0.06]), rot)}

    return [
        Phase("close_gripper", 0.4, _stay, {"fr3": CLOSED}),
        Phase("approach", 1.6, approach),
        Phase("down", 0.8, down),
        Phase("push", 2.0, push),
        Phase("retreat", 0.8, retreat),
        _hold(0.4),
    ]


# ----------------------------------------------------------------------------- bimanual scripts


def _lift_box() -> list[Phase]:
    grip_offset = BOX_HALF[1] - 0.04  # grasp points from the box centre along its long axis [m]

    def grasp_poses(env: SimEnv, cmd: dict[str, Pose], dz: float) -> dict[str, Pose]:
        pos, rot = env.body_pose("box")
        along = rot[:, 1]  # the long axis; +y side is the left arm's
        out = {}
        for arm, sign in (("left", 1.0), ("right", -1.0)):
            # fingers (tool y) close across the box's width, i.e. tool x along the long axis
            yaw = _grasp_yaw(yaw_of(rot) + math.pi / 2, cmd[arm][1], math.pi)
            out[arm] = (pos + sign * grip_offset * along + np.array([0.0, 0.0, dz]), top_down_rot(yaw))
        return out

    def lift(env: SimEnv, cmd: dict[str, Pose]) -> dict[str, Pose]:
        return {arm: _offset(cmd[arm], (0.0, 0.0, 0.15)) for arm in ("left", "right")}

    both_open = {"left": OPEN, "right": OPEN}
    return [
        Phase("above", 1.8, lambda env, cmd: grasp_poses(env, cmd, 0.14), both_open),
        Phase("descend", 1.0, lambda env, cmd: grasp_poses(env, cmd, BOX_HALF[2] - 0.018)),
        Phase("close", 0.6, _stay, {"left": CLOSED, "right": CLOSED}),
        Phase("lift", 1.5, lift),
        _hold(0.5),
    ]


def _handover() -> list[Phase]:
    handover_point = np.array([0.45, 0.06, 0.30])
    # Right gripper horizontal, pointing +y, fingers closing along world x (columns: tool x, y, z).
    right_rot = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]])

    def to_handover(env: SimEnv, cmd: dict[str, Pose]) -> dict[str, Pose]:
        yaw = nearest_symmetric_yaw(math.pi / 2, yaw_of(cmd["left"][1]), math.pi)  # fingers along world x
        return {"left": (handover_point.copy(), top_down_rot(yaw))}

    def right_pose(env: SimEnv, back: float) -> Pose:
        cube, _ = env.body_pose("red_cube")
        bottom = cube[2] - UR_CUBE_HALF
        return np.array([cube[0], cube[1] - back, bottom + 0.012]), right_rot

    def left_up(env: SimEnv, cmd: dict[str, Pose]) -> dict[str, Pose]:
        return {"left": _offset(cmd["left"], (0.0, 0.05, 0.10))}

    return [
        *_pick_phases("left", "red_cube", UR_CUBE_HALF - 0.006, 0.2),
        Phase("to_handover", 1.6, to_handover),
        Phase("right_approach", 1.8, lambda env, cmd: {"right": right_pose(env, 0.13)}, {"right": OPEN}),
        Phase("right_insert", 1.2, lambda env, cmd: {"right": right_pose(env, 0.0)}),
        Phase("right_close", 0.6, _stay, {"right": CLOSED}),
        Phase("left_release", 0.5, _stay, {"left": OPEN}),
        Phase("left_retreat", 1.0, left_up),
        _hold(0.5),
    ]


def _cube_in_bin() -> list[Phase]:
    def over_bin(env: SimEnv, cmd: dict[str, Pose]) -> dict[str, Pose]:
        pos, _ = env.body_pose("bin")
        return {"right": (pos + np.array([0.0, 0.0, 0.25]), cmd["right"][1])}

    def lower(env: SimEnv, cmd: dict[str, Pose]) -> dict[str, Pose]:
        return {"right": _offset(cmd["right"], (0.0, 0.0, -0.07))}

    def retreat(env: SimEnv, cmd: dict[str, Pose]) -> dict[str, Pose]:
        return {"right": _offset(cmd["right"], (0.0, 0.0, 0.1))}

    return [
        *_pick_phases("right", "blue_cube", -0.004, 0.25),
        Phase("over_bin", 1.6, over_bin),
        Phase("lower", 0.8, lower),
        Phase("release", 0.5, _stay, {"right": OPEN}),
        Phase("retreat", 0.8, retreat),
        _hold(0.6),
    ]


_SCRIPTS: dict[str, Callable[[], list[Phase]]] = {
    "pick_red_cube": lambda: _franka_pick("red"),
    "pick_green_cube": lambda: _franka_pick("green"),  # evaluation-only tasks (sim/tasks._SWAP_TASKS)
    "pick_blue_cube": lambda: _franka_pick("blue"),
    "green_cube_in_bowl": lambda: _franka_place_in_bowl("green"),
    "close_drawer": _franka_close_drawer,
    "lift_box": _lift_box,
    "handover_cube": _handover,
    "blue_cube_in_bin": _cube_in_bin,
}


def make_expert(env: SimEnv, task: str | None = None, velocity_scale: float = 0.5) -> Expert:
    """The scripted expert for ``task`` (default: the env's current task); call after ``env.reset``."""
    name = env.task if task is None else task
    if name is None:
        raise ValueError("make_expert: reset the env first or name the task")
    if name not in _SCRIPTS:
        from tinyvla_ros.sim.tasks import get_task

        name = get_task(env.setup, name).name  # accepts an instruction too
    if name != env.task:
        raise ValueError(f"make_expert: env is reset for task {env.task!r}, not {name!r}")
    return Expert(env, _SCRIPTS[name](), velocity_scale)


# Mean tool speed of the scripts' first approach (0.3-0.4 m from home in 1.6-1.8 s) [m/s].
RECOVERY_SPEED = 0.2


def recovery_expert(
    env: SimEnv, task: str | None = None, velocity_scale: float = 0.5, min_duration: float = 0.4
) -> Expert:
    """The task's script restarted from whatever state the robot is in (a policy's takeover point).

    Every script opens with a motion phase whose goal comes from the scene (above the object, at
    the drawer), so it is valid from any arm pose; a gripper that closed on nothing re-opens with
    it. From home that phase takes its scripted time; from nearer it is shortened to the distance
    over :data:`RECOVERY_SPEED` (at least ``min_duration``), so a correction moves at the
    demonstrations' pace instead of crawling the last centimetres. The joint velocity limit
    still applies. A leading gripper-only phase whose command already holds is dropped. Call
    before the policy grasps: a script restarted with an object in hand re-opens the gripper and
    picks it up again.
    """
    if not min_duration > 0:
        raise ValueError(f"recovery_expert: min_duration must be > 0 s, got {min_duration!r}")
    expert = make_expert(env, task, velocity_scale)
    pose = {a: env.ee_pose(a) for a in env.arms}
    phases = list(expert.phases)
    # a leading gripper-only phase whose command already holds (close_drawer's "close_gripper"
    # after a policy that closed it) would only make the robot pause
    while (
        len(phases) > 1
        and not phases[0].goals(env, dict(pose))
        and all((env.gripper_opening(a) > 0.5) == (v > 0.5) for a, v in phases[0].grip.items())
    ):
        phases.pop(0)
    first = phases[0]
    goals = first.goals(env, dict(pose))
    distance = max((float(np.linalg.norm(goals[a][0] - pose[a][0])) for a in goals), default=0.0)
    duration = min(first.duration, max(min_duration, distance / RECOVERY_SPEED))
    expert.phases = [replace(first, duration=duration), *phases[1:]]
    return expert


@dataclass(frozen=True)
class EpisodeResult:
    """Outcome of one scripted episode."""

    task: str
    seed: int
    success: bool
    steps: int
    sim_time: float


def run_expert_episode(env: SimEnv, task: str, seed: int, velocity_scale: float = 0.5) -> EpisodeResult:
    """Reset ``env`` to (task, seed), run the expert to its end, report success at the end."""
    env.reset(task, seed)
    expert = make_expert(env, velocity_scale=velocity_scale)
    steps = 0
    while not expert.done:
        q, grip = expert.act(env)
        env.set_joint_position_targets(q)
        for arm, value in grip.items():
            env.set_gripper(arm, value)
        env.step()
        steps += 1
    return EpisodeResult(env.task or task, seed, env.success(), steps, env.time)
