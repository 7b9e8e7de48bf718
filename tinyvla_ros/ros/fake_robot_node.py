"""``tinyvla_fake_robot``: a MuJoCo fake robot that speaks the real drivers' and controllers' topics.

One node per set-up (parameter ``setup``: franka | ur5_bimanual) steps the MuJoCo scene of
``tinyvla_ros.sim`` on its own thread and publishes what the real robot's drivers publish:

- ``/clock`` (rosgraph_msgs/Clock) every step (``step_dt``, default 10 ms of sim time);
- ``/joint_states`` (sensor_msgs/JointState: the drivers' joint names incl. gripper joints,
  position/velocity/effort) at ``joint_state_rate``;
- per camera, at ``camera_rate`` and ``image_width`` x ``image_height``: the driver's image topic
  and encoding (ZED 2: bgra8 on /<cam>/zed_node/rgb/color/rect/image; RealSense D435i: rgb8 on
  /camera/<cam>/color/image_raw), its frame id, sensor noise (``image_noise``) and a CameraInfo
  from the sim intrinsics, both stamped with the render time;
- ``instruction`` (std_msgs/String, latched): the task's language instruction, at start and reset;
- ``~/success`` (std_msgs/Bool, latched) on change, ``~/limit_violations`` (std_msgs/UInt32,
  latched): commands received with a position outside the joint limits; ``/diagnostics`` at 1 Hz.

It listens, per arm, to the controller topics the executor targets, with the real controllers'
semantics (tinyvla_ros.ros.fake_robot.controllers): forward position controller ``~/commands``
(exactly J values else rejected + logged; the last command holds forever), joint trajectory
controller ``~/joint_trajectory`` (replace on arrival, stamp 0 = now, linear / cubic / quintic,
hold the last point at the end), the gripper opening topic (Float64MultiArray [0..1]) and, for
the Franka, a Cartesian impedance controller's ``/cartesian_impedance_controller/equilibrium_pose``
(geometry_msgs/PoseStamped in fr3_link0; IK to a joint target inside the limits, held forever).
Out-of-limit commands are clamped by the simulator and counted, never a crash.

Timing (``time_mode``, see tinyvla_ros.ros.fake_robot.pacing): realtime (default; stamps ~ wall
time, works without use_sim_time), fast (``real_time_factor``) and lockstep (waits for the
executor's tick every control period and for the policy's chunks). Faults and episodes at run
time: ``cameras_paused`` (parameter: those cameras stop publishing), ``task`` / ``seed``
(parameters) then ``~/reset`` (std_srvs/Trigger: arm(s) home, objects re-placed, instruction
re-published).

    python -m tinyvla_ros.ros.fake_robot_node --ros-args -p setup:=franka -p task:=close_drawer
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Bool, Float64MultiArray, String, UInt32
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from tinyvla_ros.core.camera_calib import CameraInfoFields
from tinyvla_ros.core.stats import LatencyStats
from tinyvla_ros.ros.cameras.messages import camera_info_msg, image_qos
from tinyvla_ros.ros.conversions import diagnostic_status, duration_to_sec, rgb_to_image, stamp_to_sec
from tinyvla_ros.ros.diagnostics import DiagnosticState, summarize
from tinyvla_ros.ros.fake_robot.config import CameraOutput, FakeRobotConfig, camera_info_fields, camera_output
from tinyvla_ros.ros.fake_robot.controllers import ArmController, CommandRejected, JointLimits
from tinyvla_ros.ros.fake_robot.pacing import NS, LockstepGate, Pacer
from tinyvla_ros.ros.params import declare_dataclass
from tinyvla_ros.ros.qos import latched_qos, reliable_qos
from tinyvla_ros.ros.shutdown import ignore_further_interrupts, spin_until_shutdown

NODE_NAME = "tinyvla_fake_robot"
DYNAMIC_PARAMETERS = ("cameras_paused", "task", "seed")
MEASURED_LIMIT_TOLERANCE = 1e-3  # rad: MuJoCo joint limits are soft constraints
CLOCK_RESEND_S = 0.05  # lockstep: re-send /clock this often while waiting (it is best effort)


def _stamp(msg_stamp, ns: int) -> None:
    """Write integer nanoseconds into a builtin_interfaces/Time in place (exact, no float)."""
    msg_stamp.sec, msg_stamp.nanosec = ns // NS, ns % NS


@dataclass
class _Camera:
    """A camera's publishers, calibration and counters."""

    output: CameraOutput
    image_pub: object
    info_pub: object
    info: CameraInfoFields
    next_due_ns: int = 0
    frames: int = 0


class FakeRobotNode(Node):
    """The fake robot (see the module docstring)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        if self.get_parameter("use_sim_time").value:
            # This node is the clock: listening to its own /clock would only cost CPU. Its stamps
            # come from the simulation; its node clock (diagnostics timer) stays on system time.
            self.set_parameters([Parameter("use_sim_time", value=False)])
        self.cfg: FakeRobotConfig = declare_dataclass(self, FakeRobotConfig)
        from tinyvla_ros.sim.env import make_env  # mujoco: imported only when a fake robot starts

        cfg = self.cfg
        self.env = make_env(
            cfg.setup,
            image_width=cfg.image_width,
            image_height=cfg.image_height,
            physics_dt=cfg.physics_dt,
            control_dt=cfg.step_dt,
            camera_hz=cfg.camera_rate,
        )
        self._task = cfg.task or self.env.tasks[0]
        self._check_paused(cfg.cameras_paused)
        self.env.reset(self._task, cfg.seed)
        self._lock = threading.Lock()  # guards arms, counters and the published time
        self.diag = DiagnosticState()
        self.arms = self._make_arms()
        self._init_state()
        self._make_publishers()
        self._make_subscriptions()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        services = MutuallyExclusiveCallbackGroup()
        self.create_service(Trigger, "~/reset", self._on_reset, callback_group=services)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(
            cfg.diagnostics_period, self._publish_diagnostics, callback_group=services, clock=steady
        )
        self.fatal = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tinyvla-fake-robot-sim", daemon=True)
        self._publish_episode()
        self._thread.start()
        self.get_logger().info(
            f"{cfg.setup} fake robot: task {self._task!r} seed {cfg.seed}, time_mode {cfg.time_mode}, "
            f"cameras {list(self.env.camera_names)} at {cfg.image_width}x{cfg.image_height} {cfg.camera_rate:g} Hz"
        )

    # --- construction ---------------------------------------------------------------------

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

    def _init_state(self) -> None:
        cfg = self.cfg
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
        self._step = 0
        self._episode = 0
        self._success = False
        self._success_time = float("nan")
        self._violations = 0
        self._measured_excess = 0.0
        self._measured_steps = 0
        self._lockstep_waits = 0
        self._reset_request: tuple[str, int] | None = None
        self._reset_done = threading.Event()
        self._reset_message = ""
        self._reset_ok = False
        self.physics_ms = LatencyStats(window=500)
        self.render_ms = LatencyStats(window=200)
        self._window = (time.monotonic(), 0, 0)  # (wall, sim ns, frames) at the last diagnostics
        self._report_ns = self._origin_ns

    def _make_publishers(self) -> None:
        cfg = self.cfg
        self._clock_pub = self.create_publisher(ClockMsg, "/clock", reliable_qos(10))
        self._js_pub = self.create_publisher(JointState, cfg.joint_states_topic, reliable_qos(10))
        self._instruction_pub = self.create_publisher(String, cfg.instruction_topic, latched_qos())
        self._success_pub = self.create_publisher(Bool, "~/success", latched_qos())
        self._violations_pub = self.create_publisher(UInt32, "~/limit_violations", latched_qos())
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", reliable_qos(10))
        qos = image_qos(cfg.camera_qos_reliability, 5)
        self.cameras: dict[str, _Camera] = {}
        for name, spec in self.env.camera_specs.items():
            out = camera_output(name, spec.model, spec.encoding, cfg.zed_topic_naming)
            info = camera_info_fields(out, self.env.camera_intrinsics(name))
            image_pub = self.create_publisher(Image, out.image_topic, qos)
            info_pub = self.create_publisher(CameraInfo, out.info_topic, qos)
            self.cameras[name] = _Camera(out, image_pub, info_pub, info)

    def _make_subscriptions(self) -> None:
        """Commands and lockstep answers, on the io node (a small wait set, a single-threaded executor).

        The io node takes no global ROS arguments (``__node`` remaps would rename it too): it
        lives in this node's namespace, without parameters or rosout. Topic names are resolved
        the same way as on the main node.
        """
        self.io = Node(
            f"{self.get_name()}_io",
            namespace=self.get_namespace(),
            context=self.context,
            use_global_arguments=False,
            start_parameter_services=False,
            enable_rosout=False,
        )
        cfg, group, qos, io = self.cfg, MutuallyExclusiveCallbackGroup(), reliable_qos(10), self.io
        for i, arm in enumerate(self.arms):
            for kind, msg_type, factory in (
                ("forward", Float64MultiArray, self._forward_callback),
                ("trajectory", JointTrajectory, self._trajectory_callback),
                ("gripper", Float64MultiArray, self._gripper_callback),
            ):
                io.create_subscription(msg_type, cfg.topics(kind)[i], factory(arm), qos, callback_group=group)
        for arm, topic in zip(self.arms, cfg.topics("pose"), strict=False):  # the arms that offer one
            io.create_subscription(PoseStamped, topic, self._pose_callback(arm), qos, callback_group=group)
        if self.pacing.mode != "lockstep":
            return
        io.create_subscription(JointState, cfg.lockstep_topic, self._gate_callback("executor"), qos)
        if "policy" in self.gates:
            io.create_subscription(
                JointTrajectory,
                cfg.lockstep_chunk_topic,
                self._gate_callback("policy"),
                qos,
            )

    # --- time -----------------------------------------------------------------------------

    def now_ns(self) -> int:
        """The sim clock as published (ns): origin + sim time since start."""
        return self._origin_ns + self._sim_ns

    def now(self) -> float:
        return self.now_ns() / NS

    # --- command callbacks ----------------------------------------------------------------

    def _forward_callback(self, arm: ArmController):
        def callback(msg: Float64MultiArray) -> None:
            with self._lock:
                self._command(arm, "forward", lambda: arm.on_forward(list(msg.data)))

        return callback

    def _trajectory_callback(self, arm: ArmController):
        def callback(msg: JointTrajectory) -> None:
            times = [duration_to_sec(p.time_from_start) for p in msg.points]
            positions = [list(p.positions) for p in msg.points]
            velocities = [list(p.velocities) for p in msg.points]
            accelerations = [list(p.accelerations) for p in msg.points]
            stamp = stamp_to_sec(msg.header.stamp)
            with self._lock:
                now = self.now()
                self._command(
                    arm,
                    "trajectory",
                    lambda: arm.on_trajectory(
                        msg.joint_names, stamp, times, positions, velocities, accelerations, now
                    ),
                )

        return callback

    def _pose_callback(self, arm: ArmController):
        def callback(msg: PoseStamped) -> None:
            p, o = msg.pose.position, msg.pose.orientation
            xyz, quat = (p.x, p.y, p.z), (o.x, o.y, o.z, o.w)
            with self._lock:
                self._command(arm, "pose", lambda: arm.on_pose(msg.header.frame_id, xyz, quat))

        return callback

    def _gripper_callback(self, arm: ArmController):
        def callback(msg: Float64MultiArray) -> None:
            with self._lock:
                self._command(arm, "gripper", lambda: arm.on_gripper(list(msg.data)))

        return callback

    def _command(self, arm: ArmController, kind: str, accept) -> None:
        """Run ``accept`` (called with the lock held); log rejections, count limit violations."""
        try:
            violated = accept()
        except CommandRejected as exc:
            self.diag.problem(f"{arm.name} {kind}", "error", f"rejected: {exc}")
            self.get_logger().error(f"{arm.name} {kind} command rejected: {exc}", throttle_duration_sec=1.0)
            return
        if violated and kind != "gripper":
            self._violations += 1
            self._violations_pub.publish(UInt32(data=min(self._violations, 2**32 - 1)))
            self.diag.problem(
                f"{arm.name} limits", "warn", f"{kind} command outside the joint limits (clamped)"
            )
            self.get_logger().warning(
                f"{arm.name} {kind} command outside the joint limits, clamped ({dict(arm.violations.per_joint)})",
                throttle_duration_sec=1.0,
            )

    def _gate_callback(self, gate: str):
        """Lockstep: a stamped message from the executor (its tick) or the policy (a chunk)."""

        def callback(msg) -> None:
            stamp = msg.header.stamp
            with self._gate_cv:
                self.gates[gate].on_message(stamp.sec * NS + stamp.nanosec)
                self._gate_cv.notify_all()

        return callback

    # --- parameters and services ----------------------------------------------------------

    def _check_paused(self, names: list[str]) -> None:
        unknown = [n for n in names if n not in self.env.camera_names]
        if unknown:
            raise ValueError(
                f"parameter 'cameras_paused' names unknown cameras {unknown}; cameras: {list(self.env.camera_names)}"
            )

    def _on_set_parameters(self, params) -> SetParametersResult:
        """Only cameras_paused, task and seed change at run time (task/seed take effect at ~/reset)."""
        from tinyvla_ros.sim.tasks import get_task

        for p in params:
            try:
                if p.name not in DYNAMIC_PARAMETERS:
                    raise ValueError(f"{p.name} is read once at start-up: restart the node")
                if p.name == "cameras_paused":
                    self._check_paused(list(p.value or []))
                elif p.name == "task":
                    get_task(self.cfg.setup, str(p.value))
                elif not isinstance(p.value, int) or isinstance(p.value, bool) or p.value < 0:
                    raise ValueError(f"parameter 'seed' must be an int >= 0, got {p.value!r}")
            except ValueError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        for p in params:
            if p.name == "cameras_paused":
                self.cfg.cameras_paused = list(p.value or [])
                self.get_logger().warning(f"cameras paused: {self.cfg.cameras_paused}")
            else:
                setattr(self.cfg, p.name, p.value)
        return SetParametersResult(successful=True)

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """Reset to the ``task`` and ``seed`` parameters; answered once the sim thread has done it."""
        self._reset_done.clear()
        with self._lock:
            self._reset_request = (self.cfg.task or self.env.tasks[0], self.cfg.seed)
        done = self._reset_done.wait(timeout=10.0) and not self.fatal
        response.success = done and self._reset_ok
        response.message = self._reset_message if done else "reset timed out: is the sim running?"
        return response

    # --- the sim thread -------------------------------------------------------------------

    def _run(self) -> None:
        """Step, pace and publish until stopped; a failure is fatal for the node."""
        try:
            self._publish_clock()
            while not self._stop.is_set() and self.context.ok():
                self._wait_for_graph()
                self._apply_reset()
                self._step_physics()
                self._pace()
                self._publish_state()
        except Exception as exc:  # noqa: BLE001 - any sim failure must end the node loudly
            if self._stop.is_set() or not self.context.ok():
                return  # shutting down: publishers go away under the thread
            self.fatal = f"{type(exc).__name__}: {exc}"
            self.get_logger().fatal(f"simulation thread failed: {self.fatal}")
            self.context.try_shutdown()
        finally:
            self.env.close()  # the GL context belongs to this thread

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
            self._measured_steps += 1
            self._measured_excess = max(self._measured_excess, excess)

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
            self._lockstep_waits += 1
            while not self._stop.is_set():
                blocking = [g for g in self.gates.values() if g.blocking(clock_ns)]
                if not blocking:
                    return
                if time.monotonic() >= deadline:
                    self._gates_timed_out(blocking)
                    return
                if not self._gate_cv.wait(min(deadline - time.monotonic(), CLOCK_RESEND_S)):
                    self._publish_clock()  # /clock is best effort: make sure the waited-for nodes have it

    def _gates_timed_out(self, blocking: list[LockstepGate]) -> None:
        for gate in blocking:
            gate.timed_out()
            self.get_logger().warning(
                f"lockstep: no answer from the {gate.name} for {self.pacing.lockstep_timeout:g} s: "
                "running on in real time until it answers",
                throttle_duration_sec=5.0,
            )
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
                self._task, self._episode = task, self._episode + 1
                self._success, self._success_time = False, float("nan")
            self._publish_episode()
            self._reset_message = f"reset: task {task!r} ({self.env.instruction!r}), seed {seed}"
            self.get_logger().info(self._reset_message)
        self._reset_done.set()

    # --- publishing -----------------------------------------------------------------------

    def _publish_clock(self) -> None:
        msg = ClockMsg()
        _stamp(msg.clock, self.now_ns())
        self._clock_pub.publish(msg)

    def _publish_state(self) -> None:
        with self._lock:
            self._sim_ns += self._step_ns
            self._step += 1
        if self._step % self._js_every == 0:
            self._publish_joint_states()  # before /clock: a tick triggered by the clock sees this state
        self._publish_clock()
        self._publish_cameras()
        if self._step % self._success_every == 0:
            self._update_success()

    def _publish_joint_states(self) -> None:
        msg = JointState()
        _stamp(msg.header.stamp, self.now_ns())
        msg.name = list(self.env.joint_names)
        msg.position = self.env.joint_positions().tolist()
        msg.velocity = self.env.joint_velocities().tolist()
        msg.effort = self.env.joint_efforts().tolist()
        self._js_pub.publish(msg)

    def _publish_cameras(self) -> None:
        period_ns = int(round(NS / self.cfg.camera_rate))
        paused = set(self.cfg.cameras_paused)
        for name, cam in self.cameras.items():
            if self._sim_ns < cam.next_due_ns:
                continue
            cam.next_due_ns = max(cam.next_due_ns + period_ns, self._sim_ns)
            if name in paused:
                continue
            start = time.perf_counter()
            rgb = self._add_noise(self.env.render(name))  # (H, W, 3) uint8
            self.render_ms.add((time.perf_counter() - start) * 1e3)
            ns = self.now_ns()
            image = rgb_to_image(rgb, cam.output.encoding, 0.0, cam.output.frame_id)
            _stamp(image.header.stamp, ns)  # exactly the camera_info's stamp
            cam.image_pub.publish(image)
            cam.info_pub.publish(camera_info_msg(cam.info, ns))
            cam.frames += 1

    def _add_noise(self, rgb: np.ndarray) -> np.ndarray:
        """Sensor noise (std ``image_noise`` levels) on an (H, W, 3) uint8 image.

        A real camera never delivers two identical frames; frozen-camera checks rely on that.
        """
        sigma = self.cfg.image_noise
        if sigma <= 0:
            return rgb
        noise = self._noise_rng.normal(0.0, sigma, rgb.shape).astype(np.float32)  # (H, W, 3)
        return np.clip(rgb.astype(np.float32) + noise, 0, 255).astype(np.uint8)

    def _update_success(self) -> None:
        success = self.env.success()
        if success == self._success:
            return
        self._success = success
        if success and np.isnan(self._success_time):  # first success of the episode
            self._success_time = self.env.time
        self._success_pub.publish(Bool(data=success))
        self.get_logger().info(f"task {self._task!r}: success {success} at {self.env.time:.2f} s")

    def _publish_episode(self) -> None:
        """Instruction, success and violation count at start and after each reset."""
        self._instruction_pub.publish(String(data=self.env.instruction))
        self._success_pub.publish(Bool(data=self._success))
        self._violations_pub.publish(UInt32(data=self._violations))

    # --- diagnostics ----------------------------------------------------------------------

    def report(self) -> tuple[str, str, dict]:
        """(level, message, values) for /diagnostics."""
        counters, problems = self.diag.snapshot()
        wall, frames = time.monotonic(), sum(c.frames for c in self.cameras.values())
        with self._lock:
            sim_ns = self._sim_ns
            self._report_ns = self._origin_ns + sim_ns
            w0, s0, f0 = self._window
            self._window = (wall, sim_ns, frames)
            span = max(wall - w0, 1e-9)
            values = {
                "setup": self.cfg.setup,
                "task": self._task,
                "instruction": self.env.instruction,
                "seed": self.cfg.seed,
                "episode": self._episode,
                "episode_time_s": self.env.time,
                "sim_time_s": sim_ns / NS,
                "time_mode": self.pacing.mode,
                "real_time_factor": (sim_ns - s0) / NS / span,
                "render_rate_hz": (frames - f0) / span,
                "physics_step_ms_p50": self.physics_ms.summary()["p50"],
                "render_ms_p50": self.render_ms.summary()["p50"],
                "realtime_slips": self.pacer.slips,
                "realtime_slipped_s": self.pacer.slipped_s,
                "lockstep_waits": self._lockstep_waits,
                "lockstep_timeouts": sum(g.timeouts for g in self.gates.values()),
                "success": self._success,
                "success_time_s": self._success_time,
                "limit_violations": self._violations,
                "measured_limit_steps": self._measured_steps,
                "measured_limit_excess_max_rad": self._measured_excess,
                "cameras_paused": ",".join(self.cfg.cameras_paused),
            }
            for gate in self.gates.values():
                values[f"lockstep_following.{gate.name}"] = gate.following
                values[f"lockstep_timeouts.{gate.name}"] = gate.timeouts
            for name, cam in self.cameras.items():
                values[f"frames.{name}"] = cam.frames
            for arm in self.arms:
                values[f"active_controller.{arm.name}"] = arm.active
                values.update({f"commands.{arm.name}.{k}": v for k, v in sorted(arm.counts.items())})
                values.update(
                    {f"limit_violations.{j}": n for j, n in sorted(arm.violations.per_joint.items())}
                )
        values.update(counters)
        level, message = summarize(
            problems, f"{self._task}: success {self._success}, sim {sim_ns / NS:.1f} s"
        )
        return level, message, values

    def _publish_diagnostics(self) -> None:
        level, message, values = self.report()
        msg = DiagnosticArray()
        _stamp(msg.header.stamp, self._report_ns)  # the sim time the values belong to
        name = f"{self.get_name()}: fake robot"
        msg.status = [diagnostic_status(name, self.get_fully_qualified_name(), level, message, values)]
        self._diag_pub.publish(msg)

    # --- lifetime -------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop the sim thread (it frees the renderer)."""
        self._stop.set()
        with self._gate_cv:
            self._gate_cv.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        self.io.destroy_node()


def main(argv: list[str] | None = None) -> int:
    """Run the fake robot (``python -m tinyvla_ros.ros.fake_robot_node --ros-args ...``)."""
    rclpy.init(args=sys.argv if argv is None else argv)
    node = None
    io_executor, io_thread = SingleThreadedExecutor(), None
    code = 0
    try:
        node = FakeRobotNode()
        io_executor.add_node(node.io)
        io_thread = threading.Thread(
            target=spin_until_shutdown, args=(io_executor,), name="tinyvla-fake-robot-io", daemon=True
        )
        io_thread.start()
        # one thread: rclpy's multi-threaded executor spins its wait loop while a callback group
        # is busy, holding the GIL against the work threads (a core burnt, inference slowed 5x)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        spin_until_shutdown(executor)
    except ValueError as exc:  # a bad parameter: say which and exit non-zero
        print(f"[{NODE_NAME}] configuration error: {exc}", file=sys.stderr)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        ignore_further_interrupts()
        io_executor.shutdown(timeout_sec=2.0)  # bounded: a callback may wait for the sim thread
        if io_thread is not None:
            io_thread.join(5.0)  # out of rcl before the nodes go (see tinyvla_ros.ros.bag_play.main)
        if node is not None:
            node.shutdown()
            code = 1 if node.fatal else code
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
