"""Safety filter between the policy and the robot: every command it emits is inside the limits.

Joint commands (``SafetyFilter``), per joint, every control period ``dt``:

- output always finite; NaN/inf targets (or measurements) never move the robot: the filter
  brakes to a stop at the acceleration limit ("hold") and says why;
- position within [lower + margin, upper - margin];
- |command - previous command| <= min(max_step, v_max * dt) (so |velocity| <= v_max);
- |velocity change| <= a_max * dt per command;
- jerk (if given) is limited where that does not conflict with the above (best effort);
- the robot can always stop before a position limit: the velocity towards a limit is bounded
  by the exact discrete braking curve (and by the FR3's position-based velocity law when the
  spec gives one), so no later command ever needs more than a_max to stay inside;
- with forward kinematics and a workspace box, a command is accepted only if the whole braking
  trajectory from it keeps the TCP inside the box; otherwise the filter brakes along the
  trajectory already checked, so the TCP never leaves the box.

End-effector commands (``PoseSafetyFilter``): the same per-axis limiter on xyz with the
workspace box as position limits, and a rotation limiter on angular speed / acceleration.

``GripperHysteresis`` turns a continuous gripper action into open/close with hysteresis.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tinyvla_ros.core.robots import GripperSpec, RobotSpec
from tinyvla_ros.core.rotations import is_rotation_matrix, matrix_to_rotvec, rotvec_to_matrix

__all__ = [
    "SafetyLimits",
    "SafetyResult",
    "SafetyFilter",
    "PoseLimits",
    "PoseSafetyResult",
    "PoseSafetyFilter",
    "GripperHysteresis",
    "braking_velocity",
]

_TOL = 1e-9


def _arr(name: str, value: object, n: int, positive: bool = False) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"SafetyLimits.{name} must be finite, got {value!r}")
    if positive and np.any(arr <= 0):
        raise ValueError(f"SafetyLimits.{name} must be > 0, got {value!r}")
    return arr


def braking_velocity(distance: np.ndarray, decel: np.ndarray, dt: float) -> np.ndarray:
    """Largest speed (>= 0) from which a stop within ``distance`` is possible in discrete time.

    Model: each command moves by v*dt, and speed drops by at most ``decel*dt`` per command.
    From speed v the shortest stop covers D(v) = dt * sum_j max(v - j*c, 0) with c = decel*dt;
    this returns max{v : D(v) <= distance} (0 for distance <= 0). Vectorised over joints.
    """
    d = np.maximum(np.asarray(distance, dtype=np.float64), 0.0) * (1.0 - 1e-12)
    c = np.asarray(decel, dtype=np.float64) * dt
    n = np.floor((-1.0 + np.sqrt(1.0 + 8.0 * d / (dt * c))) / 2.0)
    # guard the floor against rounding: n is the largest integer with dt*c*n(n+1)/2 <= d
    n = np.where(dt * c * (n + 1) * (n + 2) / 2.0 <= d, n + 1, n)
    n = np.where(dt * c * n * (n + 1) / 2.0 > d, np.maximum(n - 1, 0), n)
    return (d / dt + c * n * (n + 1) / 2.0) / (n + 1)


@dataclass(eq=False)
class SafetyLimits:
    """Operating limits for one arm (already scaled; see ``from_spec``).

    Attributes (per joint (J,) arrays; a scalar is broadcast):
        joint_names: joints in command order.
        position_lower, position_upper: hard position limits (rad).
        velocity: |v| limit (rad/s).  acceleration: |a| limit (rad/s^2).
        max_step: largest change per command (rad).
        jerk: optional |jerk| limit (rad/s^3), enforced where compatible with the rest.
        position_margin: commands stay in [lower + margin, upper - margin].
        braking_deceleration, velocity_offset: position-based velocity law near the limits
            (v <= sqrt(2 dec d) - offset); default: braking at ``acceleration``, no offset.
        workspace_min, workspace_max: (3,) TCP box (m) in the kinematics' base frame, or None.
        max_tracking_error: measured further than this (rad) from the last command -> hold.
        gripper_lower, gripper_upper: range of the gripper action, or None.
    """

    joint_names: tuple[str, ...]
    position_lower: np.ndarray
    position_upper: np.ndarray
    velocity: np.ndarray
    acceleration: np.ndarray
    max_step: np.ndarray | float
    jerk: np.ndarray | None = None
    position_margin: float = 0.0
    braking_deceleration: np.ndarray | None = None
    velocity_offset: np.ndarray | None = None
    workspace_min: np.ndarray | None = None
    workspace_max: np.ndarray | None = None
    max_tracking_error: float | None = None
    gripper_lower: float | None = None
    gripper_upper: float | None = None

    def __post_init__(self) -> None:
        self.joint_names = tuple(self.joint_names)
        n = len(self.joint_names)
        if n == 0:
            raise ValueError("SafetyLimits.joint_names must not be empty")
        self.position_lower = _arr("position_lower", self.position_lower, n)
        self.position_upper = _arr("position_upper", self.position_upper, n)
        for k in ("velocity", "acceleration", "max_step"):
            setattr(self, k, _arr(k, getattr(self, k), n, positive=True))
        if self.jerk is not None:
            self.jerk = _arr("jerk", self.jerk, n, positive=True)
        dec = self.acceleration if self.braking_deceleration is None else self.braking_deceleration
        self.braking_deceleration = np.minimum(
            _arr("braking_deceleration", dec, n, positive=True), self.acceleration
        )
        off = 0.0 if self.velocity_offset is None else self.velocity_offset
        self.velocity_offset = np.maximum(_arr("velocity_offset", off, n), 0.0)
        m = self.position_margin
        if not isinstance(m, (int, float)) or not math.isfinite(m) or m < 0:
            raise ValueError(f"SafetyLimits.position_margin must be a finite number >= 0, got {m!r}")
        if not np.all(self.command_lower < self.command_upper):
            raise ValueError(
                f"SafetyLimits: lower + margin must be < upper - margin; lower={self.position_lower.tolist()}, "
                f"upper={self.position_upper.tolist()}, margin={m}"
            )
        self._check_workspace()
        if self.max_tracking_error is not None and not (
            math.isfinite(self.max_tracking_error) and self.max_tracking_error > 0
        ):
            raise ValueError(
                f"SafetyLimits.max_tracking_error must be > 0 or None, got {self.max_tracking_error!r}"
            )
        if (self.gripper_lower is None) != (self.gripper_upper is None) or (
            self.gripper_lower is not None and not self.gripper_lower < self.gripper_upper
        ):
            raise ValueError(
                f"SafetyLimits gripper range invalid: [{self.gripper_lower}, {self.gripper_upper}]"
            )

    def _check_workspace(self) -> None:
        if (self.workspace_min is None) != (self.workspace_max is None):
            raise ValueError("SafetyLimits.workspace_min and workspace_max must be given together")
        if self.workspace_min is not None:
            self.workspace_min = _arr("workspace_min", self.workspace_min, 3)
            self.workspace_max = _arr("workspace_max", self.workspace_max, 3)
            if not np.all(self.workspace_min < self.workspace_max):
                raise ValueError(
                    f"SafetyLimits.workspace_min {self.workspace_min.tolist()} must be < "
                    f"workspace_max {self.workspace_max.tolist()}"
                )

    @property
    def dof(self) -> int:
        return len(self.joint_names)

    @property
    def command_lower(self) -> np.ndarray:
        return self.position_lower + self.position_margin

    @property
    def command_upper(self) -> np.ndarray:
        return self.position_upper - self.position_margin

    def clip_gripper(self, value: float) -> float | None:
        """Gripper action clipped to its range; None for NaN/inf."""
        v = float(value)
        if not math.isfinite(v):
            return None
        if self.gripper_lower is None:
            return v
        return min(max(v, self.gripper_lower), self.gripper_upper)

    @classmethod
    def from_spec(
        cls,
        spec: RobotSpec,
        *,
        velocity_scale: float | None = None,
        acceleration_scale: float | None = None,
        position_margin: float | None = None,
        max_step: float | None = None,
        use_workspace: bool = True,
        max_tracking_error: float | None = None,
    ) -> SafetyLimits:
        """Limits from a robot spec and its safety profile; keyword arguments override the profile."""
        prof = spec.safety
        vs = prof.velocity_scale if velocity_scale is None else velocity_scale
        acs = prof.acceleration_scale if acceleration_scale is None else acceleration_scale
        for name, v in (("velocity_scale", vs), ("acceleration_scale", acs)):
            if not 0 < v <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {v!r}")
        acc = spec.acceleration * acs
        dec = None if spec.braking_deceleration is None else spec.braking_deceleration * acs
        ws = use_workspace and prof.workspace_min is not None and spec.kinematics is not None
        grip = spec.gripper
        return cls(
            joint_names=spec.joint_names,
            position_lower=spec.position_lower,
            position_upper=spec.position_upper,
            velocity=spec.velocity * vs,
            acceleration=acc,
            max_step=prof.max_step if max_step is None else max_step,
            jerk=spec.jerk,
            position_margin=prof.position_margin if position_margin is None else position_margin,
            braking_deceleration=dec,
            velocity_offset=spec.velocity_offset,
            workspace_min=prof.workspace_min if ws else None,
            workspace_max=prof.workspace_max if ws else None,
            max_tracking_error=prof.max_tracking_error if max_tracking_error is None else max_tracking_error,
            gripper_lower=None if grip is None else grip.action_closed,
            gripper_upper=None if grip is None else grip.action_open,
        )


@dataclass
class SafetyResult:
    """One filtered command.

    command (J,) positions to send; velocity (J,) its velocity (for trajectory controllers);
    clamps: constraint name -> number of joints it changed this step; held: True when the
    filter is braking/holding instead of following the target; reason: why it held.
    """

    command: np.ndarray
    velocity: np.ndarray
    clamps: dict[str, int] = field(default_factory=dict)
    held: bool = False
    reason: str | None = None


class _Limiter:
    """Per-axis second-order limiter: position box, velocity, acceleration, optional jerk.

    State: last command q (n,), its velocity v (n,) and acceleration a (n,), last target.
    """

    def __init__(
        self,
        lower: np.ndarray,
        upper: np.ndarray,
        vmax: np.ndarray,
        amax: np.ndarray,
        dt: float,
        dec: np.ndarray | None = None,
        offset: np.ndarray | None = None,
        jerk: np.ndarray | None = None,
        feedforward: bool = True,
    ) -> None:
        self.lower, self.upper, self.vmax, self.amax, self.dt = lower, upper, vmax, amax, dt
        self.dec = amax if dec is None else np.minimum(dec, amax)
        self.offset = np.zeros_like(lower) if offset is None else offset
        self.jerk = jerk
        self.feedforward = feedforward
        n = len(lower)
        self.q, self.v, self.a = np.zeros(n), np.zeros(n), np.zeros(n)
        self.prev_target: np.ndarray | None = None

    def reset(self, q: np.ndarray) -> None:
        self.q = np.array(q, dtype=np.float64)
        self.v = np.zeros_like(self.q)
        self.a = np.zeros_like(self.q)
        self.prev_target = None

    def brake_velocity(self, v: np.ndarray) -> np.ndarray:
        return np.sign(v) * np.maximum(np.abs(v) - self.amax * self.dt, 0.0)

    def brake_trajectory(self, q: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Positions (N, n), starting with q, visited when braking from (q, v) to a stop."""
        dv = self.amax * self.dt
        steps = int(np.ceil(np.max(np.abs(v) / dv) - 1e-9)) if np.any(v) else 0
        if steps <= 0:
            return q[None, :].copy()
        k = np.arange(1, steps + 1)[:, None]
        vel = np.sign(v) * np.maximum(np.abs(v) - k * dv, 0.0)  # (N-1, n), as brake_velocity repeated
        return np.concatenate([q[None, :], q + np.cumsum(vel * self.dt, axis=0)])

    def _bounds_and_closing(self, err: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Position-limit velocity interval from q and, if err is given, the closing speed for |err|.

        One vectorised braking_velocity call for all three (it dominates the filter's cost).
        """
        n = len(self.q)
        dist = [self.upper - self.q, self.q - self.lower]
        dec = [self.dec, self.dec]
        if err is not None:
            dist.append(np.abs(err))
            dec.append(self.amax)
        vb = braking_velocity(np.concatenate(dist), np.concatenate(dec), self.dt)
        up = np.maximum(vb[:n] - self.offset, 0.0)
        down = np.maximum(vb[n : 2 * n] - self.offset, 0.0)
        closing = None if err is None else np.minimum(np.abs(err) / self.dt, vb[2 * n :])
        return -down, up, closing

    def _feedforward(self, target: np.ndarray) -> np.ndarray:
        """Target velocity estimated from consecutive targets; 0 for jumps (faster than vmax)."""
        if not self.feedforward or self.prev_target is None:
            return np.zeros_like(target)
        v_ff = (target - self.prev_target) / self.dt
        return np.where(np.abs(v_ff) > self.vmax, 0.0, v_ff)

    def step(self, target: np.ndarray | None, clamps: dict[str, int]) -> None:
        """Advance one command towards ``target`` (None: brake); updates q, v, a and clamps.

        Tracking law: v = v_ff + sign(e) * min(|e| / dt, braking_velocity(|e|)), with e the
        error to the previous target; deadbeat on reachable trajectories, no overshoot on a
        stationary target. Then velocity, acceleration, (jerk) and position-braking clamps.
        """
        dt = self.dt
        if target is None:
            lo, hi, _ = self._bounds_and_closing(None)
            v_new = self.brake_velocity(self.v)
            self.prev_target = None
        else:
            clipped = np.clip(target, self.lower, self.upper)
            _count(clamps, "position", clipped != target)
            err = (clipped if self.prev_target is None else self.prev_target) - self.q
            lo, hi, closing = self._bounds_and_closing(err)
            v_new = self._feedforward(clipped) + np.sign(err) * closing
            self.prev_target = clipped
            v_cap = np.clip(v_new, -self.vmax, self.vmax)
            _count(clamps, "velocity", v_cap != v_new)
            v_acc = np.clip(v_cap, self.v - self.amax * dt, self.v + self.amax * dt)
            _count(clamps, "acceleration", v_acc != v_cap)
            v_new = self._jerk_limit(v_acc, lo, hi, clamps)
        acc_lo, acc_hi = self.v - self.amax * dt - _TOL, self.v + self.amax * dt + _TOL
        v_pos = np.clip(v_new, lo, hi)
        _count(clamps, "position", np.abs(v_pos - v_new) > _TOL)
        infeasible = (v_pos < acc_lo) | (v_pos > acc_hi)
        _count(clamps, "infeasible", infeasible)  # only after a reset outside the limits
        self._commit(v_pos)

    def _jerk_limit(
        self, v: np.ndarray, plo: np.ndarray, phi: np.ndarray, clamps: dict[str, int]
    ) -> np.ndarray:
        if self.jerk is None:
            return v
        dt = self.dt
        lo = np.maximum(self.v + (self.a - self.jerk * dt) * dt, self.v - self.amax * dt)
        hi = np.minimum(self.v + (self.a + self.jerk * dt) * dt, self.v + self.amax * dt)
        lo, hi = np.maximum(lo, plo), np.minimum(hi, phi)
        ok = lo <= hi
        out = np.where(ok, np.clip(v, lo, hi), v)
        _count(clamps, "jerk", ok & (out != v))
        return out

    def _commit(self, v_new: np.ndarray) -> None:
        q_new = self.q + v_new * self.dt
        self.a = (v_new - self.v) / self.dt
        self.q, self.v = q_new, v_new


def _count(clamps: dict[str, int], name: str, mask: np.ndarray) -> None:
    k = int(np.count_nonzero(mask))
    if k:
        clamps[name] = clamps.get(name, 0) + k


class SafetyFilter:
    """Filters joint targets into commands that respect ``limits`` at control period ``dt``.

    Args:
        limits: SafetyLimits of the arm.
        dt: control period (s); the guarantees assume one command per dt.
        fk: batched forward kinematics, joint positions (N, J) -> TCP xyz (N, 3); needed for
            the workspace box (e.g. ``RobotSpec.fk_xyz``).
        feedforward: follow moving targets with their velocity (no lag on smooth trajectories).
    """

    def __init__(
        self,
        limits: SafetyLimits,
        dt: float,
        fk: Callable[[np.ndarray], np.ndarray] | None = None,
        feedforward: bool = True,
    ) -> None:
        if not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
            raise ValueError(f"SafetyFilter.dt must be a finite number > 0, got {dt!r}")
        if limits.workspace_min is not None and fk is None:
            raise ValueError("SafetyFilter: limits have a workspace box but no fk was given")
        self.limits, self.dt, self.fk = limits, float(dt), fk
        vmax = np.minimum(limits.velocity, limits.max_step / dt)
        self._lim = _Limiter(
            limits.command_lower,
            limits.command_upper,
            vmax,
            limits.acceleration,
            self.dt,
            limits.braking_deceleration,
            limits.velocity_offset,
            limits.jerk,
            feedforward,
        )
        self._lock = threading.Lock()
        self._initialized = False
        self._ws_violation = 0.0

    @property
    def initialized(self) -> bool:
        return self._initialized

    @property
    def command(self) -> np.ndarray | None:
        """Last command (J,), or None before reset."""
        return self._lim.q.copy() if self._initialized else None

    def reset(self, measured_positions: np.ndarray) -> None:
        """Start from the robot's measured positions (J,) at rest."""
        q = self._vector(measured_positions, "measured_positions")
        if not np.all(np.isfinite(q)):
            raise ValueError(f"SafetyFilter.reset: measured positions must be finite, got {q.tolist()}")
        with self._lock:
            self._lim.reset(q)
            self._ws_violation = self._violation(q[None, :])
            self._initialized = True

    def _vector(self, value: np.ndarray, name: str) -> np.ndarray:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
        if arr.size != self.limits.dof:
            raise ValueError(f"SafetyFilter: {name} must have {self.limits.dof} entries, got {arr.size}")
        return arr

    def _violation(self, qs: np.ndarray) -> float:
        """Largest distance (m) of the TCP outside the workspace box over configurations (N, J)."""
        if self.limits.workspace_min is None or self.fk is None:
            return 0.0
        xyz = np.asarray(self.fk(qs), dtype=np.float64).reshape(-1, 3)
        below = self.limits.workspace_min - xyz
        above = xyz - self.limits.workspace_max
        return float(np.max(np.maximum(np.maximum(below, above), 0.0)))

    def hold(self, measured: np.ndarray | None = None) -> SafetyResult:
        """A hold command: brake to a stop within the limits (starts from ``measured`` if not reset)."""
        return self.filter(None, measured)

    def filter(self, target: np.ndarray | None, measured: np.ndarray | None = None) -> SafetyResult:
        """One command towards ``target`` (J,) (None = hold), given the measured positions (J,) if known.

        Raises ValueError on wrong lengths and RuntimeError when neither reset() nor a finite
        ``measured`` gave a starting point. Everything else (NaN/inf, limits) is handled.
        """
        tgt = None if target is None else self._vector(target, "target")
        meas = None if measured is None else self._vector(measured, "measured")
        with self._lock:
            if not self._initialized:
                if meas is None or not np.all(np.isfinite(meas)):
                    raise RuntimeError("SafetyFilter: call reset(measured_positions) before filter()")
                self._lim.reset(meas)
                self._ws_violation = self._violation(meas[None, :])
                self._initialized = True
            return self._filter(tgt, meas)

    def _filter(self, tgt: np.ndarray | None, meas: np.ndarray | None) -> SafetyResult:
        clamps: dict[str, int] = {}
        reason = None if tgt is not None else "hold requested"
        if tgt is not None and not np.all(np.isfinite(tgt)):
            _count(clamps, "nonfinite", ~np.isfinite(tgt))
            tgt, reason = None, "target has NaN/inf"
        if meas is not None and not np.all(np.isfinite(meas)):
            _count(clamps, "nonfinite_measured", ~np.isfinite(meas))
            tgt, reason = None, "measured joint state has NaN/inf"
        elif meas is not None and self.limits.max_tracking_error is not None and tgt is not None:
            err = float(np.max(np.abs(meas - self._lim.q)))
            if err > self.limits.max_tracking_error:
                clamps["tracking"] = 1
                tgt = np.clip(meas, self.limits.command_lower, self.limits.command_upper)
                reason = (
                    f"tracking error {err:.3f} rad > {self.limits.max_tracking_error} rad: moving to measured"
                )
        lim = self._lim
        if np.any(lim.q < lim.lower - _TOL) or np.any(lim.q > lim.upper + _TOL):
            reason = reason or "command outside the position limits (reset there): moving inside"
        state = (
            lim.q.copy(),
            lim.v.copy(),
            lim.a.copy(),
            None if lim.prev_target is None else lim.prev_target.copy(),
        )
        lim.step(tgt, clamps)
        held = reason is not None and (tgt is None or "tracking" in clamps)
        if self.fk is not None and self.limits.workspace_min is not None and tgt is not None:
            viol = self._violation(lim.brake_trajectory(lim.q, lim.v))
            if viol > max(self._ws_violation, 0.0) + 1e-9:
                lim.q, lim.v, lim.a, _ = state
                lim.step(None, clamps)
                lim.prev_target = state[3]
                viol = self._violation(lim.brake_trajectory(lim.q, lim.v))
                clamps["workspace"] = clamps.get("workspace", 0) + 1
                held, reason = True, "TCP would leave the workspace box: braking"
            self._ws_violation = viol
        elif self.fk is not None and self.limits.workspace_min is not None:
            self._ws_violation = min(self._ws_violation, self._violation(lim.brake_trajectory(lim.q, lim.v)))
        return SafetyResult(lim.q.copy(), lim.v.copy(), clamps, held, reason)


# ---------------------------------------------------------------------- end effector
@dataclass(eq=False)
class PoseLimits:
    """End-effector command limits: workspace box (m) and linear / angular rate limits.

    Linear limits apply per axis as value / sqrt(3), so the Euclidean speed and acceleration
    never exceed the given values.
    """

    workspace_min: np.ndarray
    workspace_max: np.ndarray
    linear_velocity: float
    linear_acceleration: float
    angular_velocity: float
    angular_acceleration: float
    max_step_linear: float = math.inf
    max_step_angular: float = math.inf

    def __post_init__(self) -> None:
        self.workspace_min = _arr("workspace_min", self.workspace_min, 3)
        self.workspace_max = _arr("workspace_max", self.workspace_max, 3)
        if not np.all(self.workspace_min < self.workspace_max):
            raise ValueError(
                f"PoseLimits.workspace_min {self.workspace_min} must be < workspace_max {self.workspace_max}"
            )
        for k in ("linear_velocity", "linear_acceleration", "angular_velocity", "angular_acceleration"):
            v = getattr(self, k)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"PoseLimits.{k} must be a finite number > 0, got {v!r}")
        for k in ("max_step_linear", "max_step_angular"):
            v = getattr(self, k)
            if not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"PoseLimits.{k} must be > 0, got {v!r}")

    @classmethod
    def from_spec(cls, spec: RobotSpec) -> PoseLimits:
        prof = spec.safety
        cart = prof.cartesian or spec.cartesian_limits
        if cart is None or prof.workspace_min is None:
            raise ValueError(
                f"robot spec {spec.name!r} needs safety.workspace_* and cartesian limits for pose commands"
            )
        return cls(
            prof.workspace_min,
            prof.workspace_max,
            cart.linear_velocity,
            cart.linear_acceleration,
            cart.angular_velocity,
            cart.angular_acceleration,
            prof.max_step_linear,
            prof.max_step_angular,
        )


@dataclass
class PoseSafetyResult:
    """position (3,), rotation (3, 3), linear_velocity (3,), angular_velocity (3,) of the command."""

    position: np.ndarray
    rotation: np.ndarray
    linear_velocity: np.ndarray
    angular_velocity: np.ndarray
    clamps: dict[str, int] = field(default_factory=dict)
    held: bool = False
    reason: str | None = None


def _clip_norm(v: np.ndarray, limit: float) -> tuple[np.ndarray, bool]:
    n = float(np.linalg.norm(v))
    return (v * (limit / n), True) if n > limit else (v, False)


class PoseSafetyFilter:
    """Filters end-effector targets (position (3,), rotation (3, 3)) at control period ``dt``."""

    def __init__(self, limits: PoseLimits, dt: float, feedforward: bool = True) -> None:
        if not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
            raise ValueError(f"PoseSafetyFilter.dt must be a finite number > 0, got {dt!r}")
        self.limits, self.dt = limits, float(dt)
        s3 = math.sqrt(3.0)
        vmax = np.full(3, min(limits.linear_velocity, limits.max_step_linear / dt * s3) / s3)
        amax = np.full(3, limits.linear_acceleration / s3)
        self._lin = _Limiter(
            limits.workspace_min, limits.workspace_max, vmax, amax, self.dt, feedforward=feedforward
        )
        self._wmax = min(limits.angular_velocity, limits.max_step_angular / dt)
        self._rot = np.eye(3)
        self._omega = np.zeros(3)
        self._prev_rot_target: np.ndarray | None = None
        self._feedforward = feedforward
        self._initialized = False
        self._lock = threading.Lock()

    @property
    def initialized(self) -> bool:
        return self._initialized

    def reset(self, position: np.ndarray, rotation: np.ndarray) -> None:
        """Start from the measured pose, at rest."""
        p = np.asarray(position, dtype=np.float64).reshape(3)
        r = np.asarray(rotation, dtype=np.float64).reshape(3, 3)
        if not (np.all(np.isfinite(p)) and np.all(np.isfinite(r))):
            raise ValueError("PoseSafetyFilter.reset: pose must be finite")
        with self._lock:
            self._lin.reset(p)
            self._rot = _orthonormalize(r)
            self._omega = np.zeros(3)
            self._prev_rot_target = None
            self._initialized = True

    def hold(self) -> PoseSafetyResult:
        return self.filter(None, None)

    def filter(self, position: np.ndarray | None, rotation: np.ndarray | None) -> PoseSafetyResult:
        """One command towards the target pose (None/NaN anywhere = brake and hold)."""
        if not self._initialized:
            raise RuntimeError("PoseSafetyFilter: call reset(position, rotation) before filter()")
        clamps: dict[str, int] = {}
        reason = None
        p = None if position is None else np.asarray(position, dtype=np.float64).reshape(3)
        r = None if rotation is None else np.asarray(rotation, dtype=np.float64).reshape(3, 3)
        if p is None or r is None:
            p, r, reason = None, None, "hold requested"
        elif not (np.all(np.isfinite(p)) and np.all(np.isfinite(r))):
            clamps["nonfinite"] = 1
            p, r, reason = None, None, "target pose has NaN/inf"
        elif not is_rotation_matrix(r, tol=1e-3):
            clamps["bad_rotation"] = 1
            p, r, reason = None, None, "target rotation is not a proper rotation matrix"
        with self._lock:
            self._lin.step(p, clamps)
            self._step_rotation(None if r is None else _orthonormalize(r), clamps)
            return PoseSafetyResult(
                self._lin.q.copy(),
                self._rot.copy(),
                self._lin.v.copy(),
                self._omega.copy(),
                clamps,
                p is None,
                reason,
            )

    def _step_rotation(self, target: np.ndarray | None, clamps: dict[str, int]) -> None:
        dt, alpha = self.dt, self.limits.angular_acceleration
        if target is None:
            n = float(np.linalg.norm(self._omega))
            w_new = self._omega * (max(n - alpha * dt, 0.0) / n) if n > 0 else self._omega
            self._prev_rot_target = None
        else:
            ref = target if self._prev_rot_target is None else self._prev_rot_target
            w_ff = np.zeros(3)
            if self._feedforward and self._prev_rot_target is not None:
                w_ff = matrix_to_rotvec(target @ self._prev_rot_target.T) / dt
                if np.linalg.norm(w_ff) > self._wmax:
                    w_ff = np.zeros(3)
            err = matrix_to_rotvec(ref @ self._rot.T)  # world-frame rotation still to do
            e = float(np.linalg.norm(err))
            closing = min(e / dt, float(braking_velocity(np.array(e), np.array(alpha), dt)))
            w_des = w_ff + (err / e * closing if e > 0 else 0.0)
            w_cap, hit_v = _clip_norm(w_des, self._wmax)
            dw, hit_a = _clip_norm(w_cap - self._omega, alpha * dt)
            w_new = self._omega + dw
            _count(clamps, "angular_velocity", np.array(hit_v))
            _count(clamps, "angular_acceleration", np.array(hit_a))
            self._prev_rot_target = target
        self._rot = _orthonormalize(rotvec_to_matrix(w_new * dt) @ self._rot)
        self._omega = w_new


def _orthonormalize(r: np.ndarray) -> np.ndarray:
    """Nearest rotation matrix (SVD), guarding against drift and slightly non-orthogonal input."""
    u, _, vt = np.linalg.svd(r)
    m = u @ vt
    if np.linalg.det(m) < 0:
        u[:, -1] *= -1
        m = u @ vt
    return m


# ------------------------------------------------------------------------------ gripper
class GripperHysteresis:
    """Continuous gripper action -> open/closed with hysteresis and a minimum dwell.

    Closes when the action drops below ``close_below``, opens when it rises above
    ``open_above``; in between (and on NaN/inf) the previous state is kept, so a policy output
    hovering around one threshold does not chatter. With ``min_dwell`` > 0 and the time passed to
    ``update``, a decision is also kept for at least ``min_dwell`` seconds: a change wanted
    earlier waits (counted in ``deferred``) and happens at the first update after the dwell if the
    action still asks for it. The hand thus gets at most one open/close decision per
    ``min_dwell``, the time it needs to finish a motion.
    """

    def __init__(
        self, close_below: float, open_above: float, closed: bool = False, min_dwell: float = 0.0
    ) -> None:
        if not (math.isfinite(close_below) and math.isfinite(open_above) and close_below < open_above):
            raise ValueError(
                f"GripperHysteresis needs finite close_below < open_above, got {close_below}, {open_above}"
            )
        if not (math.isfinite(min_dwell) and min_dwell >= 0):
            raise ValueError(f"GripperHysteresis min_dwell must be a finite number >= 0, got {min_dwell!r}")
        self.close_below, self.open_above = float(close_below), float(open_above)
        self.min_dwell = float(min_dwell)
        self.closed = bool(closed)
        self.changed = False
        self.deferred = 0
        self._changed_at = -math.inf

    @classmethod
    def from_spec(cls, spec: GripperSpec, closed: bool = False) -> GripperHysteresis:
        return cls(spec.close_below, spec.open_above, closed, spec.min_dwell)

    def update(self, value: float, now: float | None = None) -> bool:
        """Feed one action value (at time ``now``, s); returns True when the gripper should be closed."""
        v = float(value)
        want = self.closed
        if math.isfinite(v):
            if v < self.close_below:
                want = True
            elif v > self.open_above:
                want = False
        self.changed = False
        if want != self.closed:
            if now is not None and now - self._changed_at < self.min_dwell:
                self.deferred += 1
            else:
                self.closed, self.changed = want, True
                if now is not None:
                    self._changed_at = now
        return self.closed

    def reset(self, closed: bool = False) -> None:
        self.closed = bool(closed)
        self.changed = False
        self._changed_at = -math.inf
