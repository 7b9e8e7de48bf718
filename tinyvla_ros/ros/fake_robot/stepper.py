"""The fake robot's simulation loop, without ROS: MuJoCo stepping, commands, sim clock, pacing, lockstep.

``FakeRobotSim`` owns the MuJoCo scene of one set-up (``tinyvla_ros.sim``) and the state of the
sim thread: one ``ArmController`` per arm (tinyvla_ros.ros.fake_robot.controllers), the sim clock
(``origin + sim time``, integer nanoseconds), pacing and the lockstep gates (pacing), the camera
schedule, the episode (task, success, resets) and the counters of /diagnostics.

Each ``step()``: wait for the followed nodes (lockstep), apply a requested reset, solve pending
equilibrium poses (IK), set the arms' targets and step the physics, sleep until the state may be
published (pacing), then advance the clock by ``step_dt`` and emit what is due: joint states
(before the clock, so a tick triggered by the clock sees them), the clock, camera frames, a
success change. Everything emitted goes to a ``SimOutputs`` (the node publishes it; tests record
it). Commands, gate messages and reset requests come from other threads (the node's callbacks);
a lock guards the arms, the counters and the clock.

This module imports no rclpy; mujoco is imported only by ``make_sim_env``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinyvla_ros.core.images import add_sensor_noise
from tinyvla_ros.core.stats import LatencyStats
from tinyvla_ros.ros.fake_robot.config import FakeRobotConfig
from tinyvla_ros.ros.fake_robot.controllers import ArmController, CommandRejected, JointLimits
from tinyvla_ros.ros.fake_robot.pacing import NS, LockstepGate, Pacer

MEASURED_LIMIT_TOLERANCE = 1e-3  # rad: MuJoCo joint limits are soft constraints
CLOCK_RESEND_S = 0.05  # lockstep: re-send the clock this often while waiting (/clock is best effort)
RESET_TIMEOUT_S = 10.0


class SimOutputs:
    """Where the simulation's output goes; every method does nothing here (override what you need).

    Called from the sim thread, except ``episode`` (also from ``start``).
    """

    def clock(self, ns: int) -> None:
        """The sim clock (ns) after a step; re-sent while a lockstep wait lasts."""

    def joint_states(
        self, ns: int, names: Sequence[str], position: np.ndarray, velocity: np.ndarray, effort: np.ndarray
    ) -> None:
        """Joint states (all joints incl. gripper joints) at ``ns``."""

    def camera_frame(self, camera: str, rgb: np.ndarray, ns: int) -> None:
        """A rendered (H, W, 3) uint8 frame of ``camera`` (sensor noise added), taken at ``ns``."""

    def episode(self, instruction: str, success: bool, violations: int) -> None:
        """An episode began (at start and after each reset)."""

    def reset(self, message: str) -> None:
        """A reset succeeded (``message`` names the task, instruction and seed)."""

    def success(self, task: str, success: bool, episode_time: float) -> None:
        """The task's success changed."""

    def lockstep_timeout(self, gate: str, timeout_s: float) -> None:
        """A followed node did not answer within ``timeout_s``: the sim runs on in real time."""

    def failed(self, message: str) -> None:
        """The sim thread failed; it has stopped."""


@dataclass(frozen=True)
class CommandResult:
    """What became of one command: rejected (with the reason) or accepted, maybe clamped to the limits.

    ``violations``: commands outside the joint limits so far (the ~/limit_violations count).
    """

    rejected: str = ""
    violated: bool = False
    violations: int = 0


@dataclass(frozen=True)
class SimReport:
    """The simulation's /diagnostics values, a one-line summary, and the sim time (ns) they belong to."""

    values: dict[str, Any]
    summary: str
    stamp_ns: int


def make_sim_env(cfg: FakeRobotConfig):
    """The MuJoCo scene of ``cfg`` (imports mujoco)."""
    from tinyvla_ros.sim.env import make_env

    return make_env(
        cfg.setup,
        image_width=cfg.image_width,
        image_height=cfg.image_height,
        physics_dt=cfg.physics_dt,
        control_dt=cfg.step_dt,
        camera_hz=cfg.camera_rate,
    )


class FakeRobotSim:
    """The fake robot's simulation (see the module docstring).

    ``cfg`` is shared with its owner: ``cameras_paused``, ``task`` and ``seed`` may change at run
    time (the task and seed take effect at the next ``request_reset``).
    """

    def __init__(self, cfg: FakeRobotConfig, env, outputs: SimOutputs | None = None) -> None:
        self.cfg = cfg
        self.env = env
        self.outputs = outputs if outputs is not None else SimOutputs()
        self.task = cfg.task or env.tasks[0]
        self.check_cameras(cfg.cameras_paused)
        env.reset(self.task, cfg.seed)
        self._lock = threading.Lock()  # guards arms, counters and the published time
        self.arms = self._make_arms()
        self._step_ns = int(round(cfg.step_dt * NS))
        self._origin_ns = time.time_ns() if cfg.clock_origin == "wall" else 0
        self._sim_ns = 0  # sim time since start (monotonic across resets)
        self.pacing = cfg.pacing()
        self.pacer = Pacer(self.pacing, 0.0, time.monotonic())
        self.gates = {"executor": LockstepGate("executor", self.pacing.lockstep_period)}
        if self.pacing.lockstep_chunk_budget > 0:
            self.gates["policy"] = LockstepGate("policy", self.pacing.lockstep_chunk_budget)
        self._gate_cv = threading.Condition()
        self._noise_rng = np.random.default_rng(cfg.seed)
        self._js_every = max(1, int(round(1.0 / (cfg.joint_state_rate * cfg.step_dt))))
        self._success_every = max(1, int(round(cfg.success_period / cfg.step_dt)))
        self.frames = {name: 0 for name in env.camera_specs}
        self._next_frame_ns = {name: 0 for name in env.camera_specs}
        self.steps = 0
        self.episode = 0
        self.succeeded = False
        self.success_time = float("nan")
        self.violations = 0
        self.measured_excess = 0.0
        self.measured_steps = 0
        self.lockstep_waits = 0
        self._reset_request: tuple[str, int] | None = None
        self._reset_done = threading.Event()
        self._reset_message = ""
        self._reset_ok = False
        self.physics_ms = LatencyStats(window=500)
        self.render_ms = LatencyStats(window=200)
        self._window = (time.monotonic(), 0, 0)  # (wall, sim ns, frames) at the last report
        self.fatal = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _make_arms(self) -> list[ArmController]:
        specs, names = self.env.arm_specs, self.env.arm_joint_names
        frame = self.cfg.defaults.pose_frame
        return [
            ArmController(
                a, JointLimits(names[a], np.array(specs[a].lower), np.array(specs[a].upper)), q, frame
            )
            for a, q in zip(self.env.arms, self._split(self.env.home), strict=True)
        ]

    def _split(self, q: np.ndarray) -> list[np.ndarray]:
        """(Na,) arm joint vector -> one (J,) part per arm."""
        sizes = [len(self.env.arm_joint_names[a]) for a in self.env.arms]
        return np.split(np.asarray(q), np.cumsum(sizes)[:-1])

    def check_cameras(self, names: Sequence[str]) -> None:
        """ValueError unless every name is a camera of the scene (for ``cameras_paused``)."""
        unknown = [n for n in names if n not in self.env.camera_names]
        if unknown:
            raise ValueError(
                f"parameter 'cameras_paused' names unknown cameras {unknown}; cameras: {list(self.env.camera_names)}"
            )

    # --- time -----------------------------------------------------------------------------

    def now_ns(self) -> int:
        """The sim clock as published (ns): origin + sim time since start."""
        return self._origin_ns + self._sim_ns

    def now(self) -> float:
        return self.now_ns() / NS

    # --- input (any thread) ---------------------------------------------------------------

    def forward(self, arm: int, values: Sequence[float]) -> CommandResult:
        """A forward position command (J values) for arm number ``arm``."""
        return self._command(arm, "forward", lambda a, now: a.on_forward(values))

    def trajectory(
        self,
        arm: int,
        joint_names: Sequence[str],
        stamp: float,
        times: Sequence[float],
        positions: Sequence[Sequence[float]],
        velocities: Sequence[Sequence[float]],
        accelerations: Sequence[Sequence[float]],
    ) -> CommandResult:
        """A joint trajectory (stamp and times in s; stamp 0 = now) for arm number ``arm``."""
        return self._command(
            arm,
            "trajectory",
            lambda a, now: a.on_trajectory(
                joint_names, stamp, times, positions, velocities, accelerations, now
            ),
        )

    def pose(
        self, arm: int, frame_id: str, xyz: Sequence[float], quat_xyzw: Sequence[float]
    ) -> CommandResult:
        """An equilibrium pose for arm number ``arm`` (solved to a joint target at the next step)."""
        return self._command(arm, "pose", lambda a, now: a.on_pose(frame_id, xyz, quat_xyzw))

    def gripper(self, arm: int, values: Sequence[float]) -> CommandResult:
        """A gripper opening command ([opening], 1 = open) for arm number ``arm``."""
        return self._command(arm, "gripper", lambda a, now: a.on_gripper(values))

    def _command(
        self, index: int, kind: str, accept: Callable[[ArmController, float], bool]
    ) -> CommandResult:
        """Apply a command; a limit violation (not a clamped gripper opening) is counted."""
        with self._lock:
            try:
                violated = accept(self.arms[index], self.now())
            except CommandRejected as exc:
                return CommandResult(rejected=str(exc), violations=self.violations)
            if violated and kind != "gripper":
                self.violations += 1
                return CommandResult(violated=True, violations=self.violations)
            return CommandResult(violations=self.violations)

    def gate_message(self, gate: str, stamp_ns: int) -> None:
        """Lockstep: a stamped message from the executor (its tick) or the policy (a chunk)."""
        with self._gate_cv:
            self.gates[gate].on_message(stamp_ns)
            self._gate_cv.notify_all()

    def request_reset(
        self, task: str = "", seed: int = 0, timeout: float = RESET_TIMEOUT_S
    ) -> tuple[bool, str]:
        """Reset to ``task`` ('' = the set-up's first) and ``seed`` on the sim thread; (ok, message)
        once it is done, (False, ...) if the sim thread does not do it within ``timeout`` s."""
        self._reset_done.clear()
        with self._lock:
            self._reset_request = (task or self.env.tasks[0], seed)
        done = self._reset_done.wait(timeout=timeout) and not self.fatal
        if not done:
            return False, "reset timed out: is the sim running?"
        return self._reset_ok, self._reset_message

    # --- the sim thread -------------------------------------------------------------------

    def start(self, ok: Callable[[], bool] = lambda: True) -> None:
        """Emit the first episode and run the loop on its own thread until ``stop()`` or not ``ok()``."""
        self.outputs.episode(self.env.instruction, self.succeeded, self.violations)
        self._thread = threading.Thread(
            target=self.run, args=(ok,), name="tinyvla-fake-robot-sim", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop (a lockstep wait ends at once); the loop frees the renderer."""
        self._stop.set()
        with self._gate_cv:
            self._gate_cv.notify_all()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=timeout)

    def run(self, ok: Callable[[], bool] = lambda: True) -> None:
        """Step until stopped; a failure is fatal (``fatal``, ``outputs.failed``). Closes the env."""
        try:
            self.outputs.clock(self.now_ns())
            while not self._stop.is_set() and ok():
                self.step()
        except Exception as exc:  # noqa: BLE001 - any sim failure must end the node loudly
            if self._stop.is_set() or not ok():
                return  # shutting down: the outputs go away under the thread
            self.fatal = f"{type(exc).__name__}: {exc}"
            self.outputs.failed(self.fatal)
        finally:
            self.env.close()  # the GL context belongs to this thread

    def step(self) -> None:
        """One loop iteration (see the module docstring)."""
        self._wait_for_graph()
        self._apply_reset()
        self._step_physics()
        self._pace()
        self._advance()

    def _solve_poses(self) -> None:
        """Equilibrium poses received since the last step -> joint targets (IK, sim thread: the
        model belongs to it); warm-started from the arm's current reference, so it moves smoothly."""
        with self._lock:
            now = self.now()
            todo = [(arm, pose, arm.target(now).positions) for arm in self.arms if (pose := arm.pose.take())]
        for arm, (xyz, rot), q0 in todo:
            result = self.env.ik_solve(arm.name, xyz, rot, q_init=q0, max_iters=30)
            with self._lock:
                arm.pose_solved(result.q, result.position_error)

    def _step_physics(self) -> None:
        start = time.perf_counter()
        self._solve_poses()
        with self._lock:
            now = self.now()
            refs = [arm.target(now) for arm in self.arms]
            grips = [arm.gripper.opening for arm in self.arms]
        self.env.set_joint_position_targets(np.concatenate([r.positions for r in refs]))
        for arm, opening in zip(self.env.arms, grips, strict=True):
            self.env.set_gripper(arm, opening)
        self.env.step()
        self._check_measured_limits()
        self.physics_ms.add((time.perf_counter() - start) * 1e3)

    def _check_measured_limits(self) -> None:
        q = self.env.joint_positions()[: len(self.env.lower_limits)]
        excess = float(np.max(np.maximum(self.env.lower_limits - q, q - self.env.upper_limits)))
        if excess > MEASURED_LIMIT_TOLERANCE:
            self.measured_steps += 1
            self.measured_excess = max(self.measured_excess, excess)

    def _pace(self) -> None:
        """Sleep until the next state may be published (see pacing); realtime slips move the origin."""
        next_s = (self._sim_ns + self._step_ns) / NS
        mode = self.pacing.mode
        following = mode != "lockstep" or self.gates["executor"].following
        factor = self.pacing.factor if following else 1.0
        due = self.pacer.deadline(next_s, factor)
        wall = time.monotonic()
        if due is not None and due > wall:
            self._stop.wait(due - wall)
            return
        if due is None or wall - due <= self.pacing.max_lag:
            return
        if mode == "realtime":
            lag = self.pacer.late(next_s, wall)
            with self._lock:
                self._origin_ns += int(lag * NS)  # stamps stay ~ wall time
        else:
            self.pacer.rebase(next_s, wall)  # cannot keep the factor: no catch-up burst

    def _wait_for_graph(self) -> None:
        """Lockstep: wait until the followed nodes have caught up with the published time (or time out)."""
        if self.pacing.mode != "lockstep":
            return
        clock_ns = self.now_ns()
        deadline = time.monotonic() + self.pacing.lockstep_timeout
        with self._gate_cv:
            if not any(g.blocking(clock_ns) for g in self.gates.values()):
                return
            self.lockstep_waits += 1
            while not self._stop.is_set():
                blocking = [g for g in self.gates.values() if g.blocking(clock_ns)]
                if not blocking:
                    return
                if time.monotonic() >= deadline:
                    self._gates_timed_out(blocking)
                    return
                if not self._gate_cv.wait(min(deadline - time.monotonic(), CLOCK_RESEND_S)):
                    self.outputs.clock(self.now_ns())  # make sure the waited-for nodes have it

    def _gates_timed_out(self, blocking: list[LockstepGate]) -> None:
        for gate in blocking:
            gate.timed_out()
            self.outputs.lockstep_timeout(gate.name, self.pacing.lockstep_timeout)
        self.pacer.rebase(self._sim_ns / NS, time.monotonic())

    def _apply_reset(self) -> None:
        with self._lock:
            request, self._reset_request = self._reset_request, None
        if request is None:
            return
        task, seed = request
        try:
            self.env.reset(task, seed)
        except ValueError as exc:
            self._reset_ok, self._reset_message = False, f"reset failed: {exc}"
        else:
            self._reset_ok = True
            with self._lock:
                for arm, q in zip(self.arms, self._split(self.env.home), strict=True):
                    arm.reset(q)
                self.task, self.episode = task, self.episode + 1
                self.succeeded, self.success_time = False, float("nan")
            self.outputs.episode(self.env.instruction, self.succeeded, self.violations)
            self._reset_message = f"reset: task {task!r} ({self.env.instruction!r}), seed {seed}"
            self.outputs.reset(self._reset_message)
        self._reset_done.set()

    # --- output ---------------------------------------------------------------------------

    def _advance(self) -> None:
        """The clock moves one step; emit what is due at the new time."""
        with self._lock:
            self._sim_ns += self._step_ns
            self.steps += 1
        if self.steps % self._js_every == 0:  # before the clock: a tick triggered by it sees this state
            env = self.env
            self.outputs.joint_states(
                self.now_ns(),
                list(env.joint_names),
                env.joint_positions(),
                env.joint_velocities(),
                env.joint_efforts(),
            )
        self.outputs.clock(self.now_ns())
        self._render_cameras()
        if self.steps % self._success_every == 0:
            self._update_success()

    def _render_cameras(self) -> None:
        period_ns = int(round(NS / self.cfg.camera_rate))
        paused = set(self.cfg.cameras_paused)
        for name, due_ns in self._next_frame_ns.items():
            if self._sim_ns < due_ns:
                continue
            self._next_frame_ns[name] = max(due_ns + period_ns, self._sim_ns)
            if name in paused:
                continue
            start = time.perf_counter()
            rgb = self._add_noise(self.env.render(name))  # (H, W, 3) uint8
            self.render_ms.add((time.perf_counter() - start) * 1e3)
            self.outputs.camera_frame(name, rgb, self.now_ns())
            self.frames[name] += 1

    def _add_noise(self, rgb: np.ndarray) -> np.ndarray:
        """Sensor noise (std ``image_noise`` levels) on an (H, W, 3) uint8 image.

        A real camera never delivers two identical frames; frozen-camera checks rely on that.
        """
        return add_sensor_noise(rgb, self.cfg.image_noise, self._noise_rng)

    def _update_success(self) -> None:
        success = self.env.success()
        if success == self.succeeded:
            return
        self.succeeded = success
        if success and np.isnan(self.success_time):  # first success of the episode
            self.success_time = self.env.time
        self.outputs.success(self.task, success, self.env.time)

    # --- diagnostics ----------------------------------------------------------------------

    def report(self) -> SimReport:
        """The values of /diagnostics (rates over the time since the previous report)."""
        wall, frames = time.monotonic(), sum(self.frames.values())
        with self._lock:
            sim_ns = self._sim_ns
            stamp_ns = self._origin_ns + sim_ns
            w0, s0, f0 = self._window
            self._window = (wall, sim_ns, frames)
            span = max(wall - w0, 1e-9)
            values = {
                "setup": self.cfg.setup,
                "task": self.task,
                "instruction": self.env.instruction,
                "seed": self.cfg.seed,
                "episode": self.episode,
                "episode_time_s": self.env.time,
                "sim_time_s": sim_ns / NS,
                "time_mode": self.pacing.mode,
                "real_time_factor": (sim_ns - s0) / NS / span,
                "render_rate_hz": (frames - f0) / span,
                "physics_step_ms_p50": self.physics_ms.summary()["p50"],
                "render_ms_p50": self.render_ms.summary()["p50"],
                "realtime_slips": self.pacer.slips,
                "realtime_slipped_s": self.pacer.slipped_s,
                "lockstep_waits": self.lockstep_waits,
                "lockstep_timeouts": sum(g.timeouts for g in self.gates.values()),
                "success": self.succeeded,
                "success_time_s": self.success_time,
                "limit_violations": self.violations,
                "measured_limit_steps": self.measured_steps,
                "measured_limit_excess_max_rad": self.measured_excess,
                "cameras_paused": ",".join(self.cfg.cameras_paused),
            }
            for gate in self.gates.values():
                values[f"lockstep_following.{gate.name}"] = gate.following
                values[f"lockstep_timeouts.{gate.name}"] = gate.timeouts
            for name, count in self.frames.items():
                values[f"frames.{name}"] = count
            for arm in self.arms:
                values[f"active_controller.{arm.name}"] = arm.active
                values.update({f"commands.{arm.name}.{k}": v for k, v in sorted(arm.counts.items())})
                values.update(
                    {f"limit_violations.{j}": n for j, n in sorted(arm.violations.per_joint.items())}
                )
        summary = f"{self.task}: success {self.succeeded}, sim {sim_ns / NS:.1f} s"
        return SimReport(values, summary, stamp_ns)
