"""Fault-injection harness: a real graph (policy, executor, MuJoCo fake as processes) with an
injector node between the fake and the graph, over real DDS.

The fake robot's outputs are remapped to ``/fault_src/...`` (its /clock, joint states and camera
images); the ``FaultInjector`` node (own rclpy context, own thread, in the test process) relays
them to the topics the graph listens to and corrupts them on request:

- cameras: silent, frozen (same stamp and pixels), drifting stamps, other resolution, other
  (unsupported) encoding;
- joint states: NaN / inf in a joint, a joint missing, silent;
- clock: a jump backwards or forwards (the offset is applied to /clock and every relayed stamp,
  as a sim reset or a bag loop would do).

The graph's clock IS the relayed /clock, so every time here (injection, executor status stamps,
command receipt) is on the clock the graph uses, not the test's wall clock.

The injector also records what reaches the fake: every controller command (same DDS topics
the fake subscribes to), the executor's ~/status transitions (with their stamp), /diagnostics,
the policy's chunks and /joint_states. ``check_commands`` checks each command against the
robot's hardware limits (position, per-command velocity and acceleration at the control
period, TCP workspace box).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, String, UInt32
from trajectory_msgs.msg import JointTrajectory

from tinyvla_ros.core.robots import load_robot_spec
from tinyvla_ros.ros.conversions import stamp_to_sec
from tinyvla_ros.ros.graph import GraphArgs, GraphRunner, NodeSpec, build_graph
from tinyvla_ros.ros.qos import latched_qos, reliable_qos

SRC = "/fault_src"
FAKE = "tinyvla_fake_robot"
EXECUTOR = "tinyvla_executor"
POLICY = "tinyvla_policy"
NS = 1_000_000_000
LOCKSTEP_PREVIEW = SRC + "/lockstep/preview"  # the fake's lockstep inputs, relayed by the injector
LOCKSTEP_CHUNK = SRC + "/lockstep/chunk"

FRANKA_CAMERAS = {
    "zed_left": "/zed_left/zed_node/rgb/color/rect/image",
    "zed_right": "/zed_right/zed_node/rgb/color/rect/image",
}
UR5_CAMERAS = {
    "wrist_left": "/camera/wrist_left/color/image_raw",
    "wrist_right": "/camera/wrist_right/color/image_raw",
    "top": "/camera/top/color/image_raw",
}
FR3_HOME = np.array([0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4])
UR5_HOME = np.array([0.0, -math.pi / 2, math.pi / 2, -math.pi / 2, -math.pi / 2, 0.0])


def src_topic(topic: str) -> str:
    """The fake's remapped output topic for a graph input topic."""
    return SRC + topic


def _set_stamp(stamp, seconds: float) -> None:
    ns = int(round(seconds * NS))
    stamp.sec, stamp.nanosec = ns // NS, ns % NS


# --- the injector -------------------------------------------------------------------------


@dataclass
class Fault:
    """The active fault: kind, target (camera / joint name) and parameters."""

    kind: str = ""
    target: str = ""
    value: float = 0.0
    since: float = math.nan  # graph time of injection


class FaultInjector:
    """Relay + fault injection + recording (see the module docstring); ``close()`` when done."""

    def __init__(
        self, cameras: dict[str, str], command_topics: list[str], name: str = "tinyvla_fault_injector"
    ):
        self._lock = threading.Lock()
        self.fault = Fault()
        self.offset = 0.0  # s added to the relayed clock and stamps
        self.now = math.nan  # graph time: the last relayed /clock
        self._last_frame: dict[str, Image] = {}
        self.commands: dict[str, list[tuple[float, np.ndarray]]] = {t: [] for t in command_topics}
        self.statuses: list[tuple[float, dict]] = []
        self.diagnostics: list[tuple[float, str, int, str]] = []  # (graph time, name, level, message)
        self.chunks: list[tuple[float, np.ndarray]] = []
        self.joint_states: list[tuple[float, dict[str, float], dict[str, float]]] = []
        self.limit_violations = 0
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node(name, context=self.context)
        n, rel = self.node, reliable_qos(100)
        self._clock_pub = n.create_publisher(ClockMsg, "/clock", reliable_qos(10))
        self._js_pub = n.create_publisher(JointState, "/joint_states", reliable_qos(10))
        n.create_subscription(ClockMsg, src_topic("/clock"), self._on_clock, reliable_qos(10))
        n.create_subscription(JointState, src_topic("/joint_states"), self._on_joint_state, rel)
        self._image_pubs = {}
        for camera, topic in cameras.items():
            self._image_pubs[camera] = n.create_publisher(Image, topic, reliable_qos(5))
            n.create_subscription(Image, src_topic(topic), self._image_cb(camera), qos_profile_sensor_data)
        for topic in command_topics:
            n.create_subscription(Float64MultiArray, topic, self._command_cb(topic), rel)
        n.create_subscription(String, f"/{EXECUTOR}/status", self._on_status, latched_qos())
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, rel)
        n.create_subscription(JointTrajectory, f"/{POLICY}/chunk", self._on_chunk, rel)
        n.create_subscription(UInt32, f"/{FAKE}/limit_violations", self._on_violations, latched_qos())
        # lockstep answers go back to the fake on its own time base (the clock offset removed)
        self._lockstep_preview = n.create_publisher(JointState, LOCKSTEP_PREVIEW, rel)
        self._lockstep_chunk = n.create_publisher(JointTrajectory, LOCKSTEP_CHUNK, rel)
        n.create_subscription(JointState, f"/{EXECUTOR}/preview", self._on_preview, rel)
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(n)
        self._thread = threading.Thread(target=self._spin, daemon=True, name="fault-injector")
        self._thread.start()

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except Exception:  # noqa: BLE001 - the context goes away at close()
            pass

    # --- control --------------------------------------------------------------------------

    def inject(self, kind: str, target: str = "", value: float = 0.0) -> float:
        """Start fault ``kind``; returns the graph time of injection."""
        with self._lock:
            if kind == "clock_jump":
                self.offset += value
                self.now = self.now + value
            self.fault = Fault(kind, target, value, self.now)
            return self.now

    def clear(self) -> float:
        """End the fault (a clock jump stays: the time base has moved); returns the graph time."""
        with self._lock:
            self.fault = Fault()
            return self.now

    def graph_time(self) -> float:
        with self._lock:
            return self.now

    # --- relays ---------------------------------------------------------------------------

    def _on_clock(self, msg: ClockMsg) -> None:
        with self._lock:
            t = stamp_to_sec(msg.clock) + self.offset
            self.now = t
        _set_stamp(msg.clock, t)
        self._clock_pub.publish(msg)

    def _on_joint_state(self, msg: JointState) -> None:
        with self._lock:
            fault, offset, now = self.fault, self.offset, self.now
        _set_stamp(msg.header.stamp, stamp_to_sec(msg.header.stamp) + offset)
        names = list(msg.name)
        positions = list(msg.position)
        velocities = list(msg.velocity) if len(msg.velocity) == len(names) else [0.0] * len(names)
        with self._lock:
            self.joint_states.append(
                (now, dict(zip(names, positions, strict=False)), dict(zip(names, velocities, strict=False)))
            )
        if fault.kind == "joints_silent":
            return
        if fault.kind in ("joints_nan", "joints_inf") and fault.target in names:
            i = names.index(fault.target)
            positions[i] = math.nan if fault.kind == "joints_nan" else math.inf
            msg.position = positions
        if fault.kind == "joints_missing" and fault.target in names:
            i = names.index(fault.target)
            for attr in ("name", "position", "velocity", "effort"):
                values = list(getattr(msg, attr))
                if len(values) == len(names):
                    del values[i]
                    setattr(msg, attr, values)
        self._js_pub.publish(msg)

    def _image_cb(self, camera: str) -> Callable[[Image], None]:
        def callback(msg: Image) -> None:
            with self._lock:
                fault, offset, now = self.fault, self.offset, self.now
            _set_stamp(msg.header.stamp, stamp_to_sec(msg.header.stamp) + offset)
            if fault.target != camera or fault.kind != "camera_frozen":
                self._last_frame[camera] = msg
            if fault.target == camera:
                msg = self._corrupt(camera, msg, fault, now)
                if msg is None:
                    return
            self._image_pubs[camera].publish(msg)

        return callback

    def _corrupt(self, camera: str, msg: Image, fault: Fault, now: float) -> Image | None:
        if fault.kind == "camera_silent":
            return None
        if fault.kind == "camera_frozen":  # the last frame before the injection, again and again
            return self._last_frame.get(camera)
        if fault.kind == "camera_drift":  # stamps fall behind at `value` s per s
            _set_stamp(
                msg.header.stamp, stamp_to_sec(msg.header.stamp) - fault.value * max(now - fault.since, 0.0)
            )
            return msg
        if fault.kind == "camera_resolution":  # every other row and column: half the size
            channels = msg.step // msg.width
            pixels = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, channels)
            half = np.ascontiguousarray(pixels[::2, ::2])
            msg.height, msg.width = half.shape[:2]
            msg.step = msg.width * channels
            msg.data = half.tobytes()
            return msg
        if fault.kind == "camera_encoding":  # a depth-style encoding the policy cannot use
            msg.encoding = "32FC1"
            msg.step = msg.width * 4
            msg.data = bytes(msg.height * msg.width * 4)
            return msg
        return msg

    # --- recording ------------------------------------------------------------------------

    def _command_cb(self, topic: str) -> Callable[[Float64MultiArray], None]:
        def callback(msg: Float64MultiArray) -> None:
            with self._lock:
                self.commands[topic].append((self.now, np.array(msg.data, dtype=np.float64)))

        return callback

    def _on_status(self, msg: String) -> None:
        with self._lock:
            self.statuses.append((self.now, json.loads(msg.data)))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self._lock:
            for s in msg.status:
                level = s.level[0] if isinstance(s.level, bytes) else int(s.level)
                self.diagnostics.append((self.now, s.name, level, s.message))

    def _on_chunk(self, msg: JointTrajectory) -> None:
        chunk = np.array([list(p.positions) for p in msg.points], dtype=np.float64)
        with self._lock:
            self.chunks.append((self.now, chunk))
            offset = self.offset
        _set_stamp(msg.header.stamp, stamp_to_sec(msg.header.stamp) - offset)
        self._lockstep_chunk.publish(msg)

    def _on_preview(self, msg: JointState) -> None:
        with self._lock:
            offset = self.offset
        _set_stamp(msg.header.stamp, stamp_to_sec(msg.header.stamp) - offset)
        self._lockstep_preview.publish(msg)

    def _on_violations(self, msg: UInt32) -> None:
        with self._lock:
            self.limit_violations = int(msg.data)

    # --- queries --------------------------------------------------------------------------

    def mode(self) -> str:
        with self._lock:
            return self.statuses[-1][1].get("mode", "") if self.statuses else ""

    def statuses_since(self, t: float) -> list[dict]:
        """Status transitions whose executor stamp is >= t (graph time)."""
        with self._lock:
            return [s for _, s in self.statuses if s.get("stamp", -math.inf) >= t]

    def diagnostics_since(self, t: float) -> list[tuple[float, str, int, str]]:
        with self._lock:
            return [d for d in self.diagnostics if d[0] >= t]

    def commands_since(self, t: float) -> dict[str, list[tuple[float, np.ndarray]]]:
        with self._lock:
            return {topic: [c for c in cmds if c[0] >= t] for topic, cmds in self.commands.items()}

    def all_commands(self) -> dict[str, list[tuple[float, np.ndarray]]]:
        with self._lock:
            return {topic: list(cmds) for topic, cmds in self.commands.items()}

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)


# --- safety checks of what the fake received --------------------------------------------------


@dataclass
class ArmLimits:
    """Hardware limits of one arm for checking commands: position (J,), velocity (J,), acceleration (J,)."""

    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray
    acceleration: np.ndarray
    fk: Callable | None = None
    workspace_min: np.ndarray | None = None
    workspace_max: np.ndarray | None = None

    @classmethod
    def from_robot(cls, robot: str) -> ArmLimits:
        spec = load_robot_spec(robot)
        ws = spec.safety.workspace_min is not None and spec.kinematics is not None
        return cls(
            np.asarray(spec.position_lower, float),
            np.asarray(spec.position_upper, float),
            np.asarray(spec.velocity, float),
            np.asarray(spec.acceleration, float),
            spec.fk_xyz if ws else None,
            np.asarray(spec.safety.workspace_min, float) if ws else None,
            np.asarray(spec.safety.workspace_max, float) if ws else None,
        )


def check_commands(commands: list[np.ndarray], limits: ArmLimits, dt: float, tol: float = 1e-6) -> list[str]:
    """Violations in a sequence of forward position commands (J,), one per control period ``dt``.

    position within [lower, upper]; |q_k - q_k-1| <= v dt; |q_k - 2 q_k-1 + q_k-2| <= a dt^2
    (the safety filter's per-command bounds, at the hardware limits); FK inside the workspace box.
    """
    bad: list[str] = []
    if not commands:
        return bad
    q = np.stack(commands)
    if not np.all(np.isfinite(q)):
        bad.append(f"{int(np.sum(~np.isfinite(q).all(axis=1)))} non-finite commands")
        return bad
    n_pos = int(np.sum(np.any((q < limits.lower - tol) | (q > limits.upper + tol), axis=1)))
    if n_pos:
        bad.append(f"{n_pos} commands outside the position limits")
    if len(q) > 1:
        step = np.abs(np.diff(q, axis=0))
        n_vel = int(np.sum(np.any(step > limits.velocity * dt * 1.0001 + tol, axis=1)))
        if n_vel:
            bad.append(f"{n_vel} commands over the velocity limit (max step {float(step.max()):.4f} rad)")
    if len(q) > 2:
        acc = np.abs(np.diff(q, n=2, axis=0))
        n_acc = int(np.sum(np.any(acc > limits.acceleration * dt * dt * 1.0001 + tol, axis=1)))
        if n_acc:
            bad.append(f"{n_acc} commands over the acceleration limit")
    if limits.fk is not None:
        xyz = np.asarray(limits.fk(q), dtype=np.float64).reshape(-1, 3)
        out = np.any((xyz < limits.workspace_min - 1e-4) | (xyz > limits.workspace_max + 1e-4), axis=1)
        if np.any(out):
            bad.append(f"{int(np.sum(out))} commands with the TCP outside the workspace box")
    return bad


# --- the rig: graph + injector ----------------------------------------------------------------


@dataclass
class FaultResult:
    """One row of the fault table (times in s of graph time)."""

    robot: str
    fault: str
    injected_at: float
    unsafe_commands: int
    time_to_hold: float | None
    deadline: float | None
    diagnostics: str
    recovered: bool | None
    violations: list[str] = field(default_factory=list)
    note: str = ""

    def row(self) -> str:
        hold = "-" if self.time_to_hold is None else f"{self.time_to_hold * 1e3:.0f} ms"
        deadline = "-" if self.deadline is None else f"<= {self.deadline * 1e3:.0f} ms"
        recovered = "n/a" if self.recovered is None else ("yes" if self.recovered else "NO")
        return (
            f"| {self.robot} | {self.fault} | {self.unsafe_commands} | {hold} ({deadline}) | {recovered} | "
            f"{self.diagnostics[:70]} |"
        )


TABLE_HEADER = "| robot | fault | unsafe commands | time to hold | recovered | diagnostics entry |\n|---|---|---|---|---|---|"
RESULTS: list[FaultResult] = []


def write_table(results: list[FaultResult], path: Path) -> str:
    """Markdown table of ``results``; also written as JSON to ``path`` (out/, ignored)."""
    text = "\n".join([TABLE_HEADER, *(r.row() for r in results)])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps([dataclasses.asdict(r) for r in results], indent=1, default=str), encoding="utf-8"
    )
    return text


class FaultRig:
    """A graph (policy + executor + fake) with the injector between fake and graph."""

    def __init__(
        self,
        robot: str,
        checkpoint: Path,
        log_dir: Path,
        cameras: dict[str, str],
        extra: dict[str, dict],
        env: dict[str, str] | None = None,
    ) -> None:
        specs = build_graph(
            GraphArgs(
                robot,
                use_sim=True,
                checkpoint=str(checkpoint),
                enable_actuation=True,
                use_sim_time=True,
                extra_parameters=extra,
            )
        )
        self.specs = [self._reroute(s, cameras) for s in specs]
        executor = next(s for s in self.specs if s.name == EXECUTOR)
        self.command_topics = list(
            executor.parameters.get("forward_command_topics") or self._params_topics(robot)
        )
        self.log_dir = log_dir
        self.runner = GraphRunner(self.specs, env=env, log_dir=log_dir)
        self.injector = FaultInjector(cameras, self.command_topics)

    @staticmethod
    def _params_topics(robot: str) -> list[str]:
        if robot == "franka":
            return ["/forward_position_controller/commands"]
        return ["/left_forward_position_controller/commands", "/right_forward_position_controller/commands"]

    @staticmethod
    def _reroute(spec: NodeSpec, cameras: dict[str, str]) -> NodeSpec:
        """The fake publishes its clock, joint states and images under /fault_src."""
        if spec.name != FAKE:
            return spec
        params = dict(
            spec.parameters,
            joint_states_topic=src_topic("/joint_states"),
            lockstep_topic=LOCKSTEP_PREVIEW,
            lockstep_chunk_topic=LOCKSTEP_CHUNK,
        )
        remaps = (("/clock", src_topic("/clock")), *((t, src_topic(t)) for t in cameras.values()))
        return dataclasses.replace(spec, parameters=params, remappings=tuple(remaps))

    def start(self, timeout: float = 240.0) -> None:
        self.runner.start()
        self.runner.activate_lifecycle_nodes(timeout)

    def process(self, name: str):
        return next(p for p in self.runner.processes if p.spec.name == name)

    def logs(self) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')[-2500:]}")
        return "\n".join(parts)

    def wait(
        self, predicate: Callable[[], bool], timeout: float, what: str, allow_dead: tuple[str, ...] = ()
    ) -> None:
        """Poll ``predicate`` (wall ``timeout``); AssertionError with the logs on timeout or a dead node."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            dead = [p.spec.name for p in self.runner.dead() if p.spec.name not in allow_dead]
            if dead:
                raise AssertionError(f"nodes died: {dead}\n{self.logs()}")
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{self.logs()}")

    def wait_graph_time(
        self, seconds: float, timeout: float = 60.0, allow_dead: tuple[str, ...] = ()
    ) -> float:
        """Wait until ``seconds`` of graph time have passed; returns the graph time."""
        start = self.injector.graph_time()
        self.wait(
            lambda: self.injector.graph_time() >= start + seconds,
            timeout,
            f"{seconds} s of graph time",
            allow_dead,
        )
        return self.injector.graph_time()

    def stop(self) -> dict[str, int]:
        self.injector.close()
        return self.runner.stop()


def graph_params(cameras, rate: float, policy_extra: dict[str, object] | None = None) -> dict[str, dict]:
    """Per-node parameters of a fault rig on top of the shipped params file: lockstep fake (1x real
    time at most, 1 s gate timeout), 64x48 cameras at 30 Hz, a one-thread policy, an executor at
    ``rate`` Hz, faster diagnostics. The fault checks and deadlines (``faults.*``, ``max_age``,
    ``inference_rate``, ``hold_after``) are the shipped ones. ``policy_extra`` adds policy
    parameters (the engine)."""
    return {
        FAKE: {
            "time_mode": "lockstep",
            "real_time_factor": 1.0,
            "lockstep_timeout": 1.0,
            "lockstep_chunk_budget": 0.1,
            "image_width": 64,
            "image_height": 48,
            "camera_rate": 30.0,
            "diagnostics_period": 0.5,
        },
        POLICY: {
            **(policy_extra or {}),
            "warmup_runs": 1,
            "num_threads": 1,
            **{f"cameras.{c}.{k}": v for c in cameras for k, v in (("width", 64), ("height", 48))},
            "diagnostics_period": 0.25,
        },
        EXECUTOR: {
            "control_rate": rate,
            "diagnostics_period": 0.25,
        },
    }


def env_with_fault_hooks() -> dict[str, str]:
    """The test environment plus TINYVLA_ENABLE_FAULT_HOOKS=1 (for the policy's fault engine)."""
    return dict(os.environ, TINYVLA_ENABLE_FAULT_HOOKS="1")


def tiny_checkpoint(
    directory: Path, cameras: list[str], home: np.ndarray, grippers: list[int], spread=(0.05, 0.15)
) -> Path:
    """A random-init nano checkpoint; joint actions in home + spread, grippers in [0, 1] (one torch thread)."""
    import torch

    from tinyvla_ros.vla.testing import make_tiny_checkpoint

    torch.set_num_threads(1)
    low, high, mean = [], [], []
    joints = iter(home)
    dim = len(home) + len(grippers)
    for i in range(dim):
        if i in grippers:
            low.append(0.0), high.append(1.0), mean.append(0.04)
        else:
            q = float(next(joints))
            low.append(q + spread[0]), high.append(q + spread[1]), mean.append(q)
    return make_tiny_checkpoint(
        directory,
        cameras,
        dim,
        dim,
        seed=0,
        action_low=low,
        action_high=high,
        state_mean=mean,
        state_std=[0.5] * dim,
    )


# --- one fault, start to end -----------------------------------------------------------------


def first_bad_chunk_time(injector: FaultInjector, since: float, limits: ArmLimits) -> float | None:
    """Graph time at which the first non-finite / out-of-limit / jumping chunk was seen after ``since``."""
    with injector._lock:
        chunks = [c for c in injector.chunks if c[0] >= since]
    for t, chunk in chunks:
        joints = chunk[:, : len(limits.lower)]
        if (
            not np.all(np.isfinite(chunk))
            or np.any(joints > limits.upper + 0.5)
            or np.any(joints < limits.lower - 0.5)
        ):
            return t
        if len(joints) > 1 and np.max(np.abs(np.diff(joints, axis=0))) > 0.5:
            return t
    return None


def run_fault(
    rig: FaultRig,
    robot: str,
    name: str,
    inject: Callable[[], float],
    clear: Callable[[], None] | None,
    expect: str,
    deadline: float | None,
    limits: list[ArmLimits],
    dt: float,
    duration: float = 1.0,
    reference: Callable[[float], float | None] | None = None,
    recover_timeout: float = 20.0,
) -> FaultResult:
    """Wait for the graph to run, inject, measure hold / diagnostics / safety, clear, wait for recovery.

    ``inject`` returns the graph time of injection; ``reference(t_inj)`` may give a later time the
    hold deadline counts from (e.g. the arrival of the first bad chunk); ``clear`` None means the
    fault does not clear (no recovery expected).
    """
    inj = rig.injector
    rig.wait(lambda: inj.mode() == "run", 60.0, f"{name}: the executor running before the fault")
    rig.wait_graph_time(0.3)
    start_index = {t: max(len(c) - 2, 0) for t, c in inj.all_commands().items()}
    t_inj = inject()
    rig.wait(
        lambda: math.isfinite(inj.graph_time()) and inj.graph_time() >= t_inj + duration,
        60.0,
        f"{name}: fault window",
    )
    holds = [s for s in inj.statuses_since(t_inj) if s["mode"] in ("hold", "idle")]
    t_ref = t_inj
    if reference is not None:
        ref = reference(t_inj)
        t_ref = ref if ref is not None else t_inj
    time_to_hold = (holds[0]["stamp"] - t_ref) if holds else None
    matched = [d for d in inj.diagnostics_since(t_inj) if expect.lower() in d[3].lower() and d[2] >= 1]
    diag = f"{matched[0][1]}: {matched[0][3]}" if matched else f"(none containing {expect!r})"
    recovered = None
    if clear is not None:
        clear()
        try:
            rig.wait(lambda: inj.mode() == "run", recover_timeout, f"{name}: recovery")
            recovered = True
        except AssertionError:
            recovered = False
    violations: list[str] = []
    for (topic, cmds), arm in zip(inj.all_commands().items(), limits, strict=True):
        seq = [c[1] for c in cmds[start_index[topic] :]]
        violations += [f"{topic}: {v}" for v in check_commands(seq, arm, dt)]
    unsafe = len(violations)
    note = "" if holds else f"no hold/idle status after injection; statuses: {inj.statuses[-4:]}"
    result = FaultResult(
        robot, name, t_inj, unsafe, time_to_hold, deadline, diag, recovered, violations, note
    )
    RESULTS.append(result)
    print(result.row(), flush=True)
    return result


# --- intruders (another process publishing where it must not) -------------------------------------

INTRUDER_SCRIPT = """
import sys, time, rclpy
from rclpy.node import Node
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from builtin_interfaces.msg import Duration
name, kind, topic, names, target = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(","), [float(v) for v in sys.argv[5].split(",")]
rclpy.init()
node = Node(name)
if kind == "chunk":
    pub = node.create_publisher(JointTrajectory, topic, 10)
else:
    pub = node.create_publisher(Float64MultiArray, topic, 10)  # present on the topic, never publishes
print("intruder up", flush=True)
try:
    while rclpy.ok():
        if kind == "chunk":
            msg = JointTrajectory(joint_names=names)
            msg.header.stamp = node.get_clock().now().to_msg()
            for i in range(16):
                ns = int(i * 0.05 * 1e9)
                msg.points.append(JointTrajectoryPoint(positions=target, time_from_start=Duration(sec=ns // 10**9, nanosec=ns % 10**9)))
            pub.publish(msg)
        rclpy.spin_once(node, timeout_sec=0.1)
except KeyboardInterrupt:
    pass
finally:
    node.destroy_node()
    rclpy.try_shutdown()
"""


def start_intruder(name: str, kind: str, topic: str, names: list[str], target: list[float], log: Path):
    """An intruder process: kind "chunk" publishes chunks towards ``target``; "command" only advertises."""
    import subprocess
    import sys

    out = open(log, "wb")  # noqa: SIM115 - closed with the process by the caller
    argv = [
        sys.executable,
        "-c",
        INTRUDER_SCRIPT,
        name,
        kind,
        topic,
        ",".join(names),
        ",".join(map(str, target)),
    ]
    argv += ["--ros-args", "-p", "use_sim_time:=true"]
    return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop_intruder(proc) -> int:
    """SIGINT (a clean exit removes its endpoints from the graph at once), then SIGKILL."""
    import signal
    import subprocess

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode
