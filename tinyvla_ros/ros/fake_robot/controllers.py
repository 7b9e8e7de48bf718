"""ros2_controllers command semantics on plain arrays: what the fake robot's controllers do.

Shapes: J = joints of one arm, K = points of a trajectory; times are float seconds on the sim clock.

ForwardPositionController (position_controllers/JointGroupPositionController, ``~/commands``)
    A command must hold exactly J finite values, else it is rejected and the previous command
    stays. The last accepted command is applied forever: there is no timeout (the executor's
    watchdog is what makes that safe), exactly like the real controller.
JointTrajectoryController (joint_trajectory_controller, ``~/joint_trajectory``)
    A new trajectory replaces the current one on arrival. header.stamp 0 = start now; otherwise
    it starts at the stamp (one that ends in the past is rejected). joint_names may come in any
    order but must name every joint of the controller once (no partial goals). Interpolation of
    each segment: positions only -> linear, + velocities -> cubic, + accelerations -> quintic.
    The segment before the first point starts from the controller's current reference
    (position and velocity: the ``interpolate_from_desired_state`` behaviour, which keeps a
    replacement smooth). Before the start time the reference holds; after the last point the
    controller holds the last point's position: a trajectory that ends stops the arm. An empty
    trajectory cancels the current one (hold where the reference is now).
EquilibriumPoseController (a Cartesian impedance controller's ``equilibrium_pose``, PoseStamped)
    A pose in the arm's base frame (another frame_id, NaN or a non-unit quaternion: rejected);
    the arm is pulled to the last accepted pose forever (no timeout), through a joint target
    found by IK inside the joint limits (a pose out of reach: the closest one, counted).
GripperOpeningInput (``/<gripper>/opening_command``, std_msgs/Float64MultiArray [opening])
    Exactly one finite value, 1 = open, 0 = closed; values outside [0, 1] are clamped and counted.

Limits: the values of every accepted command are checked against the simulated joint limits;
out-of-limit values are counted (``LimitCounter``) and clamped, so a bad command never crashes
the fake and never drives a joint past its range.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tinyvla_ros.core.rotations import quaternion_to_matrix

CONTROLLERS = ("forward", "trajectory", "pose")


class CommandRejected(ValueError):
    """A command the real controller would refuse (wrong size or names, NaN, bad times)."""


@dataclass(frozen=True)
class JointLimits:
    """Position limits of one arm: names (J), lower (J,), upper (J,) in rad."""

    names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray

    def __post_init__(self) -> None:
        lower = np.asarray(self.lower, dtype=np.float64)
        upper = np.asarray(self.upper, dtype=np.float64)
        n = len(self.names)
        if n == 0 or lower.shape != (n,) or upper.shape != (n,):
            raise ValueError(
                f"JointLimits: names ({n}), lower {lower.shape} and upper {upper.shape} must have one entry "
                "per joint"
            )
        if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper)) and np.all(lower <= upper)):
            raise ValueError(
                f"JointLimits: need finite lower <= upper, got {lower.tolist()} / {upper.tolist()}"
            )
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)

    @property
    def dof(self) -> int:
        return len(self.names)

    def outside(self, q: np.ndarray) -> np.ndarray:
        """Boolean mask (..., J): where ``q`` (..., J) lies outside [lower, upper]."""
        q = np.asarray(q, dtype=np.float64)
        return (q < self.lower) | (q > self.upper)

    def clip(self, q: np.ndarray) -> np.ndarray:
        """``q`` (..., J) clamped into the limits."""
        return np.clip(q, self.lower, self.upper)


class LimitCounter:
    """Counts commands holding at least one out-of-limit value, and out-of-limit values per joint."""

    def __init__(self) -> None:
        self.commands = 0
        self.per_joint: Counter[str] = Counter()

    def record(self, names: Sequence[str], mask: np.ndarray) -> bool:
        """Record one command's mask ((J,) or (K, J)); True when it held a violation."""
        mask = np.asarray(mask, dtype=bool).reshape(-1, len(names))
        if not mask.any():
            return False
        self.commands += 1
        for j, count in enumerate(mask.sum(axis=0)):
            if count:
                self.per_joint[names[j]] += int(count)
        return True


@dataclass
class Reference:
    """A controller's reference for one instant: positions (J,) and velocities (J,)."""

    positions: np.ndarray
    velocities: np.ndarray

    def copy(self) -> Reference:
        return Reference(self.positions.copy(), self.velocities.copy())


def _finite(name: str, values: np.ndarray) -> None:
    if not np.all(np.isfinite(values)):
        raise CommandRejected(f"{name} must be finite, got {np.asarray(values).tolist()}")


# --- forward position controller ----------------------------------------------------------


class ForwardPositionController:
    """Last accepted position command, applied forever (no timeout)."""

    def __init__(self, limits: JointLimits) -> None:
        self.limits = limits
        self.command: np.ndarray | None = None  # (J,) as received

    def accept(self, values: Sequence[float]) -> np.ndarray:
        """Take a command of J values; returns its out-of-limit mask (J,). CommandRejected otherwise."""
        q = np.asarray(values, dtype=np.float64)
        if q.shape != (self.limits.dof,):
            raise CommandRejected(
                f"forward command has {q.size} values, the controller has {self.limits.dof} joints "
                f"{list(self.limits.names)}: rejected, the previous command stays"
            )
        _finite("forward command", q)
        self.command = q.copy()
        return self.limits.outside(q)

    def reference(self) -> Reference | None:
        """The held command (clamped into the limits, zero velocity), None before the first one."""
        if self.command is None:
            return None
        return Reference(self.limits.clip(self.command), np.zeros(self.limits.dof))


# --- joint trajectory controller ----------------------------------------------------------


def _segment(
    p0: np.ndarray,
    v0: np.ndarray | None,
    a0: np.ndarray | None,
    p1: np.ndarray,
    v1: np.ndarray | None,
    a1: np.ndarray | None,
    duration: float,
    tau: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Position and velocity (J,) at ``tau`` in [0, duration] of one segment.

    No velocities -> linear; velocities -> cubic Hermite; velocities + accelerations -> quintic.
    """
    T, s = duration, min(max(tau, 0.0), duration)
    if v0 is None or v1 is None:
        slope = (p1 - p0) / T
        return p0 + slope * s, slope
    if a0 is None or a1 is None:
        c2 = (3.0 * (p1 - p0) - (2.0 * v0 + v1) * T) / T**2
        c3 = (2.0 * (p0 - p1) + (v0 + v1) * T) / T**3
        coeffs = [p0, v0, c2, c3]
    else:
        dp = p1 - p0
        c3 = (20.0 * dp - (8.0 * v1 + 12.0 * v0) * T - (3.0 * a0 - a1) * T**2) / (2.0 * T**3)
        c4 = (-30.0 * dp + (14.0 * v1 + 16.0 * v0) * T + (3.0 * a0 - 2.0 * a1) * T**2) / (2.0 * T**4)
        c5 = (12.0 * dp - 6.0 * (v1 + v0) * T - (a0 - a1) * T**2) / (2.0 * T**5)
        coeffs = [p0, v0, 0.5 * a0, c3, c4, c5]
    pos = sum(c * s**k for k, c in enumerate(coeffs))
    vel = sum(k * c * s ** (k - 1) for k, c in enumerate(coeffs) if k > 0)
    return np.asarray(pos, dtype=np.float64), np.asarray(vel, dtype=np.float64)


@dataclass(frozen=True)
class Trajectory:
    """An accepted trajectory in controller joint order.

    start: absolute start time (s); times (K,) time_from_start, strictly increasing, >= 0;
    positions (K, J); velocities, accelerations (K, J) or None; before: the reference at arrival.
    """

    start: float
    times: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray | None
    accelerations: np.ndarray | None
    before: Reference

    @property
    def end(self) -> float:
        return self.start + float(self.times[-1])

    @property
    def interpolation(self) -> str:
        if self.velocities is None:
            return "linear"
        return "cubic" if self.accelerations is None else "quintic"

    def _point(self, i: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(position, velocity, acceleration) of knot i (0 = the state before the first point)."""
        if i == 0:
            vel = None if self.velocities is None else self.before.velocities
            acc = None if self.accelerations is None else np.zeros_like(self.before.positions)
            return self.before.positions, vel, acc
        vel = None if self.velocities is None else self.velocities[i - 1]
        acc = None if self.accelerations is None else self.accelerations[i - 1]
        return self.positions[i - 1], vel, acc

    def sample(self, t: float) -> Reference:
        """The reference at absolute time ``t``: hold before the start and after the end."""
        if t <= self.start:
            return self.before.copy()
        if t >= self.end:
            return Reference(self.positions[-1].copy(), np.zeros(self.positions.shape[1]))
        knots = np.concatenate([[0.0], self.times])  # (K + 1,) relative times
        rel = t - self.start
        i = int(np.searchsorted(knots, rel, side="right")) - 1  # knots[i] <= rel < knots[i + 1]
        p0, v0, a0 = self._point(i)
        p1, v1, a1 = self._point(i + 1)
        pos, vel = _segment(p0, v0, a0, p1, v1, a1, float(knots[i + 1] - knots[i]), rel - float(knots[i]))
        return Reference(pos, vel)


def _optional_block(name: str, rows: Sequence[Sequence[float]], k: int, j: int) -> np.ndarray | None:
    """(K, J) array when every point gives J values, None when every point gives none."""
    lengths = {len(r) for r in rows}
    if lengths == {0}:
        return None
    if lengths != {j}:
        raise CommandRejected(
            f"trajectory {name} must be empty or have {j} values in every point, got {lengths}"
        )
    block = np.asarray(rows, dtype=np.float64).reshape(k, j)
    _finite(f"trajectory {name}", block)
    return block


class JointTrajectoryController:
    """Replace-on-arrival trajectory following (see the module docstring)."""

    def __init__(self, limits: JointLimits) -> None:
        self.limits = limits
        self.trajectory: Trajectory | None = None
        self._hold: Reference | None = None

    def _order(self, joint_names: Sequence[str]) -> list[int]:
        names = list(joint_names)
        if len(set(names)) != len(names) or set(names) != set(self.limits.names):
            raise CommandRejected(
                f"trajectory joint_names {names} must name each of the controller's joints "
                f"{list(self.limits.names)} exactly once"
            )
        return [names.index(n) for n in self.limits.names]

    def accept(
        self,
        joint_names: Sequence[str],
        stamp: float,
        times: Sequence[float],
        positions: Sequence[Sequence[float]],
        velocities: Sequence[Sequence[float]],
        accelerations: Sequence[Sequence[float]],
        now: float,
        current: Reference,
    ) -> np.ndarray:
        """Replace the trajectory; returns the (K, J) out-of-limit mask. CommandRejected otherwise.

        ``stamp`` 0 = start now; ``current`` is the reference at arrival (start of the first segment).
        Per point: positions (J), velocities (J or none), accelerations (J or none), all in
        ``joint_names`` order; no points = cancel (hold ``current``).
        """
        order = self._order(joint_names)
        k, j = len(times), self.limits.dof
        if k == 0:
            self.trajectory, self._hold = None, Reference(current.positions.copy(), np.zeros(j))
            return np.zeros((0, j), dtype=bool)
        t = np.asarray(times, dtype=np.float64)
        _finite("trajectory time_from_start", t)
        if t[0] < 0.0 or np.any(np.diff(t) <= 0.0):
            raise CommandRejected(f"trajectory time_from_start must be >= 0 and increasing, got {t.tolist()}")
        pos = _optional_block("positions", positions, k, j)
        if pos is None:
            raise CommandRejected("trajectory points need positions")
        vel = _optional_block("velocities", velocities, k, j)
        acc = _optional_block("accelerations", accelerations, k, j)
        if acc is not None and vel is None:
            raise CommandRejected("trajectory accelerations need velocities too")
        start = now if stamp == 0.0 else float(stamp)
        if start + t[-1] < now:
            raise CommandRejected(f"trajectory starting at {start:.3f} s ends before now ({now:.3f} s)")
        pos, vel, acc = (None if b is None else b[:, order] for b in (pos, vel, acc))
        self.trajectory = Trajectory(start, t, pos, vel, acc, current.copy())
        self._hold = None
        return self.limits.outside(pos)

    def reference(self, t: float) -> Reference | None:
        """The reference at time ``t`` (clamped into the limits); None before the first trajectory."""
        if self.trajectory is not None:
            ref = self.trajectory.sample(t)
        elif self._hold is not None:
            ref = self._hold.copy()
        else:
            return None
        clipped = self.limits.clip(ref.positions)
        velocities = np.where(clipped == ref.positions, ref.velocities, 0.0)
        return Reference(clipped, velocities)


# --- gripper ------------------------------------------------------------------------------


class GripperOpeningInput:
    """Opening command of one gripper: 1 = open, 0 = closed."""

    def __init__(self, opening: float = 1.0) -> None:
        self.opening = float(opening)

    def accept(self, values: Sequence[float]) -> bool:
        """Take [opening]; returns True when it was outside [0, 1] (then clamped). CommandRejected otherwise."""
        data = list(values)
        if len(data) != 1:
            raise CommandRejected(
                f"gripper opening command needs exactly 1 value (0..1), got {len(data)}: {data}"
            )
        value = float(data[0])
        if not math.isfinite(value):
            raise CommandRejected(f"gripper opening must be finite, got {value!r}")
        self.opening = min(max(value, 0.0), 1.0)
        return self.opening != value


# --- Cartesian equilibrium pose ---------------------------------------------------------------


class EquilibriumPoseController:
    """The equilibrium pose of a Cartesian impedance controller (geometry_msgs/PoseStamped in the
    arm's base frame), as franka_ros2 set-ups take it: the arm is pulled to the last accepted pose,
    with no timeout. Here the pose becomes a joint target by inverse kinematics (damped least
    squares inside the joint limits), solved by the sim thread: ``accept`` validates and queues
    the pose, ``take`` hands it to the solver, ``solved`` installs the joint target.
    """

    UNREACHABLE_M = 0.005  # an IK residual above this counts as an unreachable pose

    def __init__(self, frame_id: str, dof: int) -> None:
        self.frame_id = frame_id
        self.dof = dof
        self._pending: tuple[np.ndarray, np.ndarray] | None = None
        self._ref: Reference | None = None
        self.residual_m = 0.0

    def accept(self, frame_id: str, xyz: Sequence[float], quat_xyzw: Sequence[float]) -> None:
        """Queue a pose; CommandRejected for another frame, non-finite values or a non-unit quaternion."""
        if frame_id != self.frame_id:
            raise CommandRejected(f"frame_id {frame_id!r}: equilibrium poses must be in {self.frame_id!r}")
        xyz_a = np.asarray(xyz, dtype=np.float64)
        quat = np.asarray(quat_xyzw, dtype=np.float64)
        _finite("position", xyz_a)
        _finite("orientation", quat)
        norm = float(np.linalg.norm(quat))
        if abs(norm - 1.0) > 1e-2:
            raise CommandRejected(f"orientation quaternion has norm {norm:.4f}, not 1")
        self._pending = (xyz_a, quaternion_to_matrix(quat / norm))

    def take(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The newest queued pose (xyz (3,), rotation (3, 3)) not yet solved, or None."""
        pending, self._pending = self._pending, None
        return pending

    def solved(self, q: np.ndarray, residual_m: float) -> bool:
        """Install the IK solution (J,); returns whether the pose was out of reach."""
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (self.dof,):
            raise ValueError(f"IK solution must have shape ({self.dof},), got {q.shape}")
        self._ref = Reference(q.copy(), np.zeros(self.dof))
        self.residual_m = float(residual_m)
        return self.residual_m > self.UNREACHABLE_M

    def reference(self) -> Reference | None:
        return None if self._ref is None else self._ref.copy()


# --- one arm ------------------------------------------------------------------------------


class ArmController:
    """One arm's forward, trajectory and gripper inputs; the last accepted arm command drives it.

    On the real robot one controller claims the joints at a time; here both listen and the
    controller that accepted the most recent command is active (the executor uses one output).
    Counters: ``counts["<controller>.accepted" | ".rejected"]``, ``limits`` (LimitCounter).
    """

    def __init__(self, name: str, limits: JointLimits, initial: np.ndarray, pose_frame: str = "") -> None:
        self.name = name
        self.limits = limits
        self.pose_frame = pose_frame
        self.forward = ForwardPositionController(limits)
        self.trajectory = JointTrajectoryController(limits)
        self.pose = EquilibriumPoseController(pose_frame, limits.dof)
        self.gripper = GripperOpeningInput()
        self.counts: Counter[str] = Counter()
        self.violations = LimitCounter()
        self.active = "none"
        self.last_error = ""
        self._ref = Reference(limits.clip(np.asarray(initial, dtype=np.float64)), np.zeros(limits.dof))

    def reset(self, positions: np.ndarray) -> None:
        """Forget every command and hold ``positions`` (J,) (after a task reset)."""
        self.forward = ForwardPositionController(self.limits)
        self.trajectory = JointTrajectoryController(self.limits)
        self.pose = EquilibriumPoseController(self.pose_frame, self.limits.dof)
        self.gripper = GripperOpeningInput()
        self.active = "none"
        self._ref = Reference(
            self.limits.clip(np.asarray(positions, dtype=np.float64)), np.zeros(self.limits.dof)
        )

    def _rejected(self, controller: str, exc: CommandRejected) -> None:
        self.counts[f"{controller}.rejected"] += 1
        self.last_error = f"{controller}: {exc}"

    def on_forward(self, values: Sequence[float]) -> bool:
        """A forward command; returns whether it held a limit violation. Raises CommandRejected."""
        try:
            mask = self.forward.accept(values)
        except CommandRejected as exc:
            self._rejected("forward", exc)
            raise
        self.counts["forward.accepted"] += 1
        self.active = "forward"
        return self.violations.record(self.limits.names, mask)

    def on_trajectory(
        self,
        joint_names: Sequence[str],
        stamp: float,
        times: Sequence[float],
        positions: Sequence[Sequence[float]],
        velocities: Sequence[Sequence[float]],
        accelerations: Sequence[Sequence[float]],
        now: float,
    ) -> bool:
        """A trajectory (see JointTrajectoryController.accept); returns whether it held a violation."""
        current = self.target(now)
        try:
            mask = self.trajectory.accept(
                joint_names, stamp, times, positions, velocities, accelerations, now, current
            )
        except CommandRejected as exc:
            self._rejected("trajectory", exc)
            raise
        self.counts["trajectory.accepted"] += 1
        self.active = "trajectory"
        return self.violations.record(self.limits.names, mask)

    def on_pose(self, frame_id: str, xyz: Sequence[float], quat_xyzw: Sequence[float]) -> bool:
        """An equilibrium pose (solved to a joint target by the sim thread, inside the joint limits,
        so it never holds a limit violation). Raises CommandRejected."""
        try:
            self.pose.accept(frame_id, xyz, quat_xyzw)
        except CommandRejected as exc:
            self._rejected("pose", exc)
            raise
        self.counts["pose.accepted"] += 1
        self.active = "pose"
        return False

    def pose_solved(self, q: np.ndarray, residual_m: float) -> None:
        """The sim thread's IK solution of the pose taken from ``self.pose``."""
        if self.pose.solved(self.limits.clip(q), residual_m):
            self.counts["pose.unreachable"] += 1

    def on_gripper(self, values: Sequence[float]) -> bool:
        """A gripper opening command; returns whether it was out of [0, 1]. Raises CommandRejected."""
        try:
            clamped = self.gripper.accept(values)
        except CommandRejected as exc:
            self._rejected("gripper", exc)
            raise
        self.counts["gripper.accepted"] += 1
        if clamped:
            self.counts["gripper.out_of_range"] += 1
        return clamped

    def target(self, now: float) -> Reference:
        """The position/velocity reference (J,) the arm follows at ``now`` (inside the limits)."""
        ref = None
        if self.active == "forward":
            ref = self.forward.reference()
        elif self.active == "trajectory":
            ref = self.trajectory.reference(now)
        elif self.active == "pose":
            ref = self.pose.reference()
        if ref is not None:
            self._ref = ref
        return self._ref.copy()
