"""The control loop, plain Python: chunks + joint states in, safe per-arm commands out.

One loop for the robot and for evaluation: the executor node (tinyvla_ros.ros.executor_node)
ticks it at ``control_rate`` from ROS inputs, and ``tinyvla-eval`` (tinyvla_ros.data.evaluate)
ticks it from the MuJoCo fake, safety filter and fault checks included. Its settings are a
``ControlConfig`` (which the executor's ROS parameters build) and ``FaultChecks``.

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

Fault checks (``FaultChecks``, executor parameters ``faults.*``), on top of ``hold_after``:

- every joint is timed on its own: a joint missing from the messages, or older than
  ``state_timeout``, makes the state unusable (idle) even while other joints keep arriving;
- a chunk that is not a plausible command (NaN/inf, a target further than
  ``chunk_limit_tolerance`` outside the position limits, consecutive steps faster than
  ``max_chunk_speed_factor`` x the joint velocity limits, a first step further than
  ``max_start_distance`` from the current command) is refused, the plan is dropped and the very
  next tick holds until a good chunk arrives;
- ``max_observation_age``: hold when the newest chunk's observation is older than this, so a
  silent or frozen camera stops the arm even while an older plan still covers now;
- the clock going backwards (sim time reset, bag loop) drops the plan and every joint-state
  time (they lie in the new future); a forward jump beyond ``hold_after`` drops the plan. Steps
  back under 50 ms are not jumps (a callback's clock reading racing the tick).

``ActuationGate`` is the executor's on / stopping / off state machine (``~/enable``, ``~/stop``):
after a stop only braking commands are sent, and none once at rest, until ``enable()``.

Shapes: J = joints of one arm, A = action_dim; times in float seconds on the node's clock.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from tinyvla_ros.core.chunking import EXECUTION_MODES, ChunkExecutor, ChunkExecutorConfig
from tinyvla_ros.core.robots import ACTION_LAYOUTS, ActionLayout, RobotSpec, make_action_layout
from tinyvla_ros.core.safety import (
    GripperHysteresis,
    PoseLimits,
    PoseSafetyFilter,
    SafetyFilter,
    SafetyLimits,
)
from tinyvla_ros.core.stats import LatencyStats

# s: a clock reading this much earlier than the latest one is a jump backwards. Smaller steps back
# are the inputs' callbacks racing the tick (a callback reads the clock, then waits for the lock).
_BACKWARDS_TOLERANCE = 0.05


def _check(cond: bool, name: str, value: object, need: str) -> None:
    if not cond:
        raise ValueError(f"parameter {name!r} {need}, got {value!r}")


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class ControlConfig:
    """What the control loop needs to know (the executor's parameters of the same names).

    action_layout: franka_joint | franka_ee | ur5_bimanual_joint; arm_prefixes: joint-name prefix
    per arm ('' for one arm, left_/right_); action_names: the chunk's joint_names (empty: the
    layout's); control_rate: ticks per second (Hz); action_dt: s between chunk steps; chunk_len:
    steps per chunk; execution_mode and its settings (core.chunking); hold_after: s without a
    fresh chunk or joint state before holding.
    """

    action_layout: str = "franka_joint"
    arm_prefixes: tuple[str, ...] = ("",)
    action_names: tuple[str, ...] = ()
    control_rate: float = 100.0
    action_dt: float = 0.05
    chunk_len: int = 16
    execution_mode: str = "temporal_ensemble"
    open_loop_steps: int = 8
    ensemble_k: float = 0.01
    blend_steps: int = 4
    hold_after: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "arm_prefixes", tuple(self.arm_prefixes))
        object.__setattr__(self, "action_names", tuple(self.action_names))
        _check(self.action_layout in ACTION_LAYOUTS, "action_layout", self.action_layout,
               f"must be one of {list(ACTION_LAYOUTS)}")  # fmt: skip
        if self.action_names:
            names = self.action_names
            _check(all(names), "action_names", list(names), "must be a non-empty list of non-empty names")
            _check(len(set(names)) == len(names), "action_names", list(names), "must not repeat a name")
        _check(
            len(self.arm_prefixes) >= 1, "arm_prefixes", list(self.arm_prefixes), "must name at least one arm"
        )
        for name in ("control_rate", "action_dt", "hold_after"):
            value = getattr(self, name)
            _check(_number(value) and value > 0.0, name, value, "must be a finite number > 0")
        _check(self.execution_mode in EXECUTION_MODES, "execution_mode", self.execution_mode,
               f"must be one of {list(EXECUTION_MODES)}")  # fmt: skip
        _check(self.chunk_len >= 1, "chunk_len", self.chunk_len, "must be >= 1")
        _check(1 <= self.open_loop_steps <= self.chunk_len, "open_loop_steps", self.open_loop_steps,
               "must be in [1, chunk_len]")  # fmt: skip
        _check(0 <= self.blend_steps <= self.chunk_len, "blend_steps", self.blend_steps,
               "must be in [0, chunk_len]")  # fmt: skip
        _check(
            _number(self.ensemble_k) and self.ensemble_k >= 0.0, "ensemble_k", self.ensemble_k, "must be >= 0"
        )

    def chunk_executor_config(self, action_dim: int) -> ChunkExecutorConfig:
        """The chunk executor's settings (mode, step, chunk length) for ``action_dim`` actions."""
        return ChunkExecutorConfig(
            self.execution_mode,
            self.action_dt,
            action_dim=action_dim,
            chunk_len=self.chunk_len,
            open_loop_steps=self.open_loop_steps,
            ensemble_k=self.ensemble_k,
            blend_steps=self.blend_steps,
        )

    @classmethod
    def from_params(cls, params: Mapping[str, Any], **overrides: Any) -> ControlConfig:
        """From the executor's ``ros__parameters`` (a params file's map; other keys ignored)."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in params.items() if k in names}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass
class FaultChecks:
    """The executor's input checks beyond ``hold_after`` (declared as ``faults.<field>`` parameters).

    state_timeout: s; a joint whose latest state is older makes the state unusable (idle);
        0 = ``hold_after``.
    max_observation_age: s; hold when the newest chunk's observation (its header stamp) is
        older than this; 0 = off.
    chunk_limit_tolerance: rad; a chunk target further outside the joint position limits is a
        bad command (refused, hold); targets inside the tolerance are clamped by the filter.
    max_chunk_speed_factor: a chunk whose consecutive steps need more than this many times
        the joint velocity limits is refused; 0 = off.
    max_start_distance: rad; a chunk whose first step is further than this from the current
        command is refused (the policy lost track of the arm); 0 = off.
    """

    state_timeout: float = field(default=0.0, metadata={"doc": "s per joint; 0 = hold_after"})
    max_observation_age: float = field(
        default=0.0, metadata={"doc": "hold when the newest chunk's observation is older (s); 0 = off"}
    )
    chunk_limit_tolerance: float = field(
        default=2.0, metadata={"doc": "rad outside the position limits that makes a chunk a bad command"}
    )
    max_chunk_speed_factor: float = field(
        default=0.0, metadata={"doc": "refuse chunks faster than this x the velocity limits; 0 = off"}
    )
    max_start_distance: float = field(
        default=0.0, metadata={"doc": "refuse chunks starting further from the command (rad); 0 = off"}
    )

    def __post_init__(self) -> None:
        for name in (
            "state_timeout",
            "max_observation_age",
            "chunk_limit_tolerance",
            "max_chunk_speed_factor",
            "max_start_distance",
        ):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"parameter 'faults.{name}' must be a finite number >= 0, got {value!r}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> FaultChecks:
        """From the executor's ``ros__parameters``: its ``faults`` map (or ``faults.<field>`` keys)."""
        nested = params.get("faults") or {}
        flat = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("faults.")}
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in {**nested, **flat}.items() if k in names})


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


def make_layout(cfg: ControlConfig, spec: RobotSpec) -> ActionLayout:
    """The ActionLayout of the control config (prefixed joint names per arm)."""
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

    def __init__(self, cfg: ControlConfig, spec: RobotSpec, checks: FaultChecks | None = None) -> None:
        self.cfg = cfg
        self.checks = checks or FaultChecks()
        self.state_timeout = self.checks.state_timeout or cfg.hold_after
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
            GripperHysteresis.from_spec(grip) if grip else GripperHysteresis(0.4, 0.6) for _ in self.specs
        ]
        self.executor = ChunkExecutor(cfg.chunk_executor_config(len(names)))
        self.counters: Counter[str] = Counter()
        self.clamps: Counter[str] = Counter()
        self.latency = LatencyStats(window=500)  # observation stamp -> first command using its chunk
        self._positions: dict[str, float] = {}
        self._joint_times: dict[str, float] = {}  # joint -> time of its latest finite value
        self._bad_joints: set[str] = set()  # joints whose latest value was NaN/inf
        self._state_time = -math.inf
        self._last_now = -math.inf
        self._newest_obs = -math.inf
        self._fault = ""  # why the plan was dropped (bad chunk, clock jump) until a good chunk arrives
        self._events: list[str] = []  # clock jumps since the last pop_events()
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
        self._check_clock(now)
        bad = {n for n, p in update.items() if not math.isfinite(p)}
        # a joint stays bad until a finite value of that joint arrives (not just any message)
        self._bad_joints = (self._bad_joints - set(update)) | bad
        self._positions.update({n: p for n, p in update.items() if n not in bad})
        self._joint_times.update({n: now for n in update if n not in bad})
        self._state_time = now
        if bad:
            self.counters["joint_states_bad"] += 1
        self._state_problem = (
            f"joint state has NaN/inf for {sorted(self._bad_joints)}" if self._bad_joints else ""
        )

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
        self._check_clock(now)
        bad = self.bad_chunk_reason(chunk, obs_stamp, now)
        if bad:
            self.reset_plan()
            self._fault = f"bad chunk refused: {bad}"
            self.counters["bad_chunks"] += 1
            return self._dropped("bad_command", self._fault)
        if self.cfg.execution_mode == "open_loop" and not self.executor.needs_chunk(now):
            self.counters["chunks_skipped_open_loop"] += 1
            self.note_observation(obs_stamp)  # the plan is kept, but the inputs are fresh
            return None
        kept = self.executor.add_chunk(chunk, obs_stamp, now)
        if kept == 0:
            return self._dropped(
                "rejected", self.executor.last_drop_reason or "dropped by the chunk executor"
            )
        self.counters["chunks_used"] += 1
        self._last_chunk_time = now
        self._pending_stamp = obs_stamp
        self._newest_obs = max(self._newest_obs, obs_stamp)
        self._fault = ""
        return None

    def note_observation(self, obs_stamp: float) -> None:
        """A good chunk from an observation at ``obs_stamp`` arrived but was not needed (open loop
        mid-plan): the cameras and the policy are alive, for ``max_observation_age``."""
        self._newest_obs = max(self._newest_obs, obs_stamp)

    def bad_chunk_reason(self, chunk: np.ndarray, obs_stamp: float, now: float) -> str:
        """Why a (T, A) chunk is not a plausible command ("" when it is); joint layouts only.

        NaN/inf anywhere; a joint target beyond the limits by more than chunk_limit_tolerance;
        consecutive steps faster than max_chunk_speed_factor x the joint velocity limits; a
        first step further than max_start_distance from the current command.
        """
        if not np.all(np.isfinite(chunk)):
            return (
                f"chunk has NaN/inf at steps {sorted(set(np.argwhere(~np.isfinite(chunk))[:, 0].tolist()))}"
            )
        if self.pose_filters is not None:
            return ""
        tol, factor, dt = (
            self.checks.chunk_limit_tolerance,
            self.checks.max_chunk_speed_factor,
            self.cfg.action_dt,
        )
        rows = [self.layout.split(row) for row in chunk]
        for i, arm in enumerate(self.layout.arms):
            joints = np.stack([r[arm.name].joints for r in rows])  # (T, J)
            spec, names = self.specs[i], self.joint_names[i]
            excess = np.maximum(spec.position_lower - joints, joints - spec.position_upper)
            if np.max(excess) > tol:
                j = int(np.argmax(np.max(excess, axis=0)))
                return f"{names[j]} target {float(joints[np.argmax(excess[:, j]), j]):.3f} rad is beyond its limits"
            vmax = factor * np.asarray(spec.velocity, dtype=np.float64)
            if factor > 0 and len(joints) > 1:
                speed = np.max(np.abs(np.diff(joints, axis=0)), axis=0) / dt
                if np.any(speed > vmax):
                    j = int(np.argmax(speed / vmax))
                    return f"{names[j]} jumps at {speed[j]:.2f} rad/s between steps (limit {vmax[j]:.2f})"
            current = self.filters[i].command
            start = self.checks.max_start_distance
            if start > 0 and current is not None:
                gap = np.abs(joints[0] - current)
                if np.any(gap > start):
                    j = int(np.argmax(gap))
                    return f"{names[j]} first step is {gap[j]:.3f} rad from the command (> {start} rad)"
        return ""

    def _dropped(self, code: str, reason: str) -> str:
        self.counters[f"chunks_dropped_{code}"] += 1
        return reason

    # --- the tick -------------------------------------------------------------------------

    def measured(self, now: float) -> tuple[list[np.ndarray] | None, str]:
        """Per-arm measured positions (J,), or None and why they cannot be used."""
        if self._state_problem:
            return None, self._state_problem
        if now - self._state_time > self.state_timeout:
            return None, f"joint state older than {self.state_timeout} s ({now - self._state_time:.2f} s)"
        missing = [n for arm in self.joint_names for n in arm if n not in self._positions]
        if missing:
            return None, f"joint state lacks {missing}"
        stale = [
            n
            for arm in self.joint_names
            for n in arm
            if now - self._joint_times.get(n, -math.inf) > self.state_timeout
        ]
        if stale:
            return None, f"joint state lacks {stale} for more than {self.state_timeout} s"
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
        self._check_clock(now)
        measured, problem = self.measured(now)
        if measured is None:
            self.counters["ticks_idle"] += 1
            return TickResult("idle", problem)
        if not self._initialized:
            self.reset_to_measured(now)
        action, why = (None, hold_reason) if hold_reason else self._action(now)
        if action is None:
            self.counters["ticks_hold"] += 1
            grippers = [
                g.closed if self.layout.arms[i].has_gripper else None for i, g in enumerate(self.grippers)
            ]
            return TickResult(  # the grippers keep their last decision (reported, not re-sent)
                "hold", why, self._hold(measured if actuating else None), grippers, [False] * len(grippers)
            )
        self.counters["ticks_run"] += 1
        parts = self.layout.split(action)
        arms, closed, changed = [], [], []
        for i, arm in enumerate(self.layout.arms):
            part = parts[arm.name]
            arms.append(self._follow(i, part, measured[i] if actuating else None))
            grip = self.grippers[i]
            deferred = grip.deferred
            closed.append(grip.update(part.gripper, now) if part.gripper is not None else None)
            self.counters["gripper_decisions"] += int(grip.changed)
            self.counters["gripper_decisions_deferred"] += grip.deferred - deferred
            changed.append(grip.changed)
        if self._pending_stamp is not None:
            self.latency.add(now - self._pending_stamp)
            self._pending_stamp = None
        return TickResult("run", "", arms, closed, changed)

    def _check_clock(self, now: float) -> None:
        """Drop the plan (and, going backwards, the joint-state times) when the clock jumps."""
        last = self._last_now
        self._last_now = max(last, now)
        if now < last - _BACKWARDS_TOLERANCE:
            self._last_now = now
            self.reset_plan()
            self._joint_times.clear()
            self._bad_joints.clear()
            self._state_time = -math.inf
            self._newest_obs = -math.inf
            self._fault = f"clock jumped backwards by {last - now:.3f} s: plan dropped"
            self._events.append(self._fault)
            self.counters["clock_jumps_backwards"] += 1
        elif now - last > max(self.cfg.hold_after, self.state_timeout) and last > -math.inf:
            self.reset_plan()
            self._fault = f"clock jumped forwards by {now - last:.3f} s: plan dropped"
            self._events.append(self._fault)
            self.counters["clock_jumps_forwards"] += 1

    def pop_events(self) -> list[str]:
        """Clock jumps seen since the last call (for /diagnostics), oldest first."""
        events, self._events = self._events, []
        return events

    def _action(self, now: float) -> tuple[np.ndarray | None, str]:
        if self._fault:
            return None, self._fault
        age = now - self._newest_obs
        if self.checks.max_observation_age > 0 and age > self.checks.max_observation_age:
            if self._newest_obs > -math.inf:
                return (
                    None,
                    f"newest observation is {age:.3f} s old (max_observation_age {self.checks.max_observation_age} s)",
                )
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


@dataclass
class ArmSend:
    """What the executor sends for one arm this tick: kind "send" | "hold" | "pose"."""

    kind: str
    arm: int


class ActuationGate:
    """The executor's actuation state (no ROS): off, on, or stopping (braking before off).

    ``enable()`` switches on; ``disable(reason)`` / a stop brake to a stop and then switch off;
    ``actions(result)`` says what to send for one tick and advances the state. Guarantees: while
    off nothing is sent; while stopping only hold (braking) commands are sent; once the arm is at
    rest after a stop nothing is sent until ``enable()``; a hold whose stop command has been sent
    is not repeated unless the controller needs it (``repeat_hold``: forward controllers).
    """

    def __init__(self, enabled: bool, repeat_hold: bool) -> None:
        self.actuating = bool(enabled)
        self.stopping = ""  # non-empty while braking before actuation goes off
        self.repeat_hold = bool(repeat_hold)
        self._hold_done = False

    def enable(self) -> None:
        """Actuation on (the caller has reset the filters to the measured positions)."""
        self.actuating, self.stopping, self._hold_done = True, "", False

    def disable(self, reason: str) -> None:
        """Brake to a stop, then actuation off (no effect while already off)."""
        if self.actuating:
            self.stopping = reason

    def actions(self, result: TickResult) -> tuple[list[ArmSend], bool]:
        """(per-arm actions to send, whether gripper commands may be sent) for one tick."""
        out: list[ArmSend] = []
        grippers = False
        if self.actuating and result.mode == "idle":
            self._hold_done = False
        elif self.actuating:
            hold = result.mode == "hold"
            if not (hold and self._hold_done and not self.repeat_hold):
                for i, arm in enumerate(result.arms):
                    if arm.positions is None:
                        out.append(ArmSend("pose", i))
                    else:
                        out.append(ArmSend("hold" if hold and not arm.moving else "send", i))
                self._hold_done = hold and not any(a.moving for a in result.arms)
                grippers = not hold
        if self.stopping and not any(a.moving for a in result.arms):
            self.actuating, self.stopping = False, ""
        return out, grippers
