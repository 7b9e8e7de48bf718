"""The executor's control logic, without ROS: chunks + joint states in, safe per-arm commands out.

``ControlLoop.tick(now, actuating)`` runs once per control period and decides:

- ``idle``  no usable joint state (none yet, older than ``hold_after``, a missing joint, NaN/inf):
            NO command at all (forward controllers keep their last command, trajectories end);
- ``hold``  joint state fine but no fresh chunk (none received within ``hold_after``, or no step
            of the plan covers ``now``): the safety filter brakes to a stop and stays there
            (never the last chunk step replayed);
- ``run``   the chunk executor's action for ``now``, split per arm (ActionLayout), through each
            arm's SafetyFilter (joint layouts) or PoseSafetyFilter (end-effector layouts), plus
            gripper open/close decided with hysteresis.

While actuation is off the filters still run (the preview shows what would be sent) but track
their own commands (no measured-position checks); ``reset_to_measured`` restarts them from the
measured positions at rest when actuation is switched on.

Shapes: J = joints of one arm, A = action_dim; times in float seconds on the node's clock.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from tinyvla_ros.core.chunking import ChunkExecutor, ChunkExecutorConfig
from tinyvla_ros.core.robots import ActionLayout, RobotSpec, make_action_layout
from tinyvla_ros.core.safety import (
    GripperHysteresis,
    PoseLimits,
    PoseSafetyFilter,
    SafetyFilter,
    SafetyLimits,
)
from tinyvla_ros.core.stats import LatencyStats
from tinyvla_ros.ros.params import ExecutorNodeConfig


@dataclass
class ArmCommand:
    """One arm's command of a tick: joints (J,) + velocities (J,), or a pose (xyz (3,), R (3, 3))."""

    positions: np.ndarray | None = None
    velocities: np.ndarray | None = None
    xyz: np.ndarray | None = None
    rotation: np.ndarray | None = None
    moving: bool = True


@dataclass
class TickResult:
    """What the control loop decided at one tick (see the module docstring for the modes)."""

    mode: str
    reason: str
    arms: list[ArmCommand] = field(default_factory=list)
    gripper_closed: list[bool | None] = field(default_factory=list)
    gripper_changed: list[bool] = field(default_factory=list)


def make_layout(cfg: ExecutorNodeConfig, spec: RobotSpec) -> ActionLayout:
    """The ActionLayout of the executor config (prefixed joint names per arm)."""
    if cfg.action_layout == "franka_joint":
        return make_action_layout(
            "franka_joint", joint_names=[cfg.arm_prefixes[0] + n for n in spec.joint_names]
        )
    if cfg.action_layout == "franka_ee":
        return make_action_layout("franka_ee")
    if len(cfg.arm_prefixes) != 2:
        raise ValueError(f"ur5_bimanual_joint needs 2 arm_prefixes, got {cfg.arm_prefixes!r}")
    left, right = cfg.arm_prefixes
    return make_action_layout(
        "ur5_bimanual_joint", left_prefix=left, right_prefix=right, joint_names=spec.joint_names
    )


class ControlLoop:
    """Chunk execution + safety for all arms of one robot set-up (thread-safe per call)."""

    def __init__(self, cfg: ExecutorNodeConfig, spec: RobotSpec) -> None:
        self.cfg = cfg
        self.layout = make_layout(cfg, spec)
        if len(self.layout.arms) != len(cfg.arm_prefixes):
            raise ValueError(
                f"action_layout {cfg.action_layout!r} has {len(self.layout.arms)} arm(s) but arm_prefixes "
                f"{cfg.arm_prefixes!r} names {len(cfg.arm_prefixes)}"
            )
        names = tuple(cfg.action_names) or self.layout.names
        if names != self.layout.names:
            raise ValueError(f"action_names {list(names)} differ from the layout's {list(self.layout.names)}")
        self.action_names = list(names)
        self.specs = [spec.with_prefix(p) for p in cfg.arm_prefixes]
        self.joint_names = [list(s.joint_names) for s in self.specs]
        self.dt = 1.0 / cfg.control_rate
        self.filters = [self._joint_filter(s) for s in self.specs]
        self.pose_filters = (
            [PoseSafetyFilter(PoseLimits.from_spec(s), self.dt) for s in self.specs]
            if cfg.action_layout == "franka_ee"
            else None
        )
        grip = spec.gripper
        self.grippers = [
            GripperHysteresis(grip.close_below, grip.open_above) if grip else GripperHysteresis(0.4, 0.6)
            for _ in self.specs
        ]
        self.executor = ChunkExecutor(
            ChunkExecutorConfig(
                cfg.execution_mode,
                cfg.action_dt,
                action_dim=len(names),
                chunk_len=cfg.chunk_len,
                open_loop_steps=cfg.open_loop_steps,
                ensemble_k=cfg.ensemble_k,
                blend_steps=cfg.blend_steps,
            )
        )
        self.counters: Counter[str] = Counter()
        self.clamps: Counter[str] = Counter()
        self.latency = LatencyStats(window=500)  # observation stamp -> first command using its chunk
        self._positions: dict[str, float] = {}
        self._state_time = -math.inf
        self._state_problem = "no joint state received yet"
        self._last_chunk_time = -math.inf
        self._pending_stamp: float | None = None
        self._initialized = False

    def _joint_filter(self, spec: RobotSpec) -> SafetyFilter:
        limits = SafetyLimits.from_spec(spec)
        fk = spec.fk_xyz if limits.workspace_min is not None else None
        return SafetyFilter(limits, self.dt, fk=fk)

    # --- inputs ---------------------------------------------------------------------------

    def set_joint_state(self, names: list[str], positions: np.ndarray, now: float) -> None:
        """Record a JointState (only the arms' joints matter); NaN/inf marks the state bad."""
        wanted = {n for arm in self.joint_names for n in arm}
        update = {n: float(p) for n, p in zip(names, positions, strict=True) if n in wanted}
        if not update:
            return
        bad = sorted(n for n, p in update.items() if not math.isfinite(p))
        if bad:
            self._state_problem = f"joint state has NaN/inf for {bad}"
            self.counters["joint_states_bad"] += 1
            self._state_time = now  # a fresh but bad state: no command until a good one arrives
            self._positions.update(update)
            return
        self._positions.update(update)
        self._state_time = now
        self._state_problem = ""

    def add_chunk(self, chunk: np.ndarray, obs_stamp: float, dt: float, now: float) -> str | None:
        """Queue a (T, A) chunk; returns why it was dropped, or None when kept."""
        if abs(dt - self.cfg.action_dt) > 1e-6:
            return self._dropped(
                "dt_mismatch", f"chunk dt {dt:.4f} s != action_dt {self.cfg.action_dt:.4f} s"
            )
        if chunk.shape[1] != len(self.action_names) or not 1 <= chunk.shape[0] <= self.cfg.chunk_len:
            return self._dropped(
                "shape", f"chunk shape {chunk.shape} does not fit {len(self.action_names)} actions"
            )
        if self.cfg.execution_mode == "open_loop" and not self.executor.needs_chunk(now):
            self.counters["chunks_skipped_open_loop"] += 1
            return None
        kept = self.executor.add_chunk(chunk, obs_stamp, now)
        if kept == 0:
            return self._dropped(
                "rejected", self.executor.last_drop_reason or "dropped by the chunk executor"
            )
        self.counters["chunks_used"] += 1
        self._last_chunk_time = now
        self._pending_stamp = obs_stamp
        return None

    def _dropped(self, code: str, reason: str) -> str:
        self.counters[f"chunks_dropped_{code}"] += 1
        return reason

    # --- the tick -------------------------------------------------------------------------

    def measured(self, now: float) -> tuple[list[np.ndarray] | None, str]:
        """Per-arm measured positions (J,), or None and why they cannot be used."""
        if self._state_problem:
            return None, self._state_problem
        if now - self._state_time > self.cfg.hold_after:
            return None, f"joint state older than hold_after ({now - self._state_time:.2f} s)"
        missing = [n for arm in self.joint_names for n in arm if n not in self._positions]
        if missing:
            return None, f"joint state lacks {missing}"
        return [np.array([self._positions[n] for n in arm]) for arm in self.joint_names], ""

    def reset_to_measured(self, now: float) -> bool:
        """Restart every filter from the measured positions at rest; False without a usable state."""
        measured, _ = self.measured(now)
        if measured is None:
            return False
        for i, q in enumerate(measured):
            self.filters[i].reset(q)
            if self.pose_filters is not None:
                pose = self.specs[i].kinematics.fk(q)
                self.pose_filters[i].reset(pose[:3, 3], pose[:3, :3])
        self._initialized = True
        return True

    def tick(self, now: float, actuating: bool, hold_reason: str = "") -> TickResult:
        """Decide this period's commands (see the module docstring); ``hold_reason`` forces a hold."""
        measured, problem = self.measured(now)
        if measured is None:
            self.counters["ticks_idle"] += 1
            return TickResult("idle", problem)
        if not self._initialized:
            self.reset_to_measured(now)
        action, why = (None, hold_reason) if hold_reason else self._action(now)
        if action is None:
            self.counters["ticks_hold"] += 1
            return TickResult("hold", why, self._hold(measured if actuating else None))
        self.counters["ticks_run"] += 1
        parts = self.layout.split(action)
        arms, closed, changed = [], [], []
        for i, arm in enumerate(self.layout.arms):
            part = parts[arm.name]
            arms.append(self._follow(i, part, measured[i] if actuating else None))
            grip = self.grippers[i]
            closed.append(grip.update(part.gripper) if part.gripper is not None else None)
            changed.append(grip.changed)
        if self._pending_stamp is not None:
            self.latency.add(now - self._pending_stamp)
            self._pending_stamp = None
        return TickResult("run", "", arms, closed, changed)

    def _action(self, now: float) -> tuple[np.ndarray | None, str]:
        if now - self._last_chunk_time > self.cfg.hold_after:
            if self._last_chunk_time == -math.inf:
                return None, "no chunk received yet"
            return (
                None,
                f"no fresh chunk for {now - self._last_chunk_time:.2f} s (hold_after {self.cfg.hold_after} s)",
            )
        action = self.executor.action_at(now)
        if action is None:
            return None, "no chunk step covers now (plan exhausted)"
        return action, ""

    def _follow(self, i: int, part, measured: np.ndarray | None) -> ArmCommand:
        if self.pose_filters is not None:
            res = self.pose_filters[i].filter(part.position, part.rotation)
            self._count(res.clamps, res.held)
            return ArmCommand(xyz=res.position, rotation=res.rotation, moving=True)
        res = self.filters[i].filter(part.joints, measured)
        self._count(res.clamps, res.held)
        return ArmCommand(res.command, res.velocity, moving=True)

    def _hold(self, measured: list[np.ndarray] | None) -> list[ArmCommand]:
        out = []
        for i in range(len(self.specs)):
            if self.pose_filters is not None:
                res = self.pose_filters[i].hold()
                moving = bool(np.any(res.linear_velocity) or np.any(res.angular_velocity))
                out.append(ArmCommand(xyz=res.position, rotation=res.rotation, moving=moving))
                continue
            res = self.filters[i].hold(None if measured is None else measured[i])
            out.append(ArmCommand(res.command, res.velocity, moving=bool(np.any(res.velocity))))
        return out

    def _count(self, clamps: dict[str, int], held: bool) -> None:
        for key, n in clamps.items():
            self.clamps[key] += n
        if held:
            self.counters["safety_holds"] += 1

    def reset_plan(self) -> None:
        """Forget the queued chunks (after a stop, the old plan must not resume)."""
        self.executor.reset()
        self._last_chunk_time = -math.inf
        self._pending_stamp = None
