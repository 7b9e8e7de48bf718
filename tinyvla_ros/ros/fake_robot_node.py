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

The simulation itself (MuJoCo stepping, commands, sim clock, pacing, resets) is
tinyvla_ros.ros.fake_robot.stepper, which imports no rclpy; this node wires it to topics,
parameters and services.

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
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Bool, Float64MultiArray, String, UInt32
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from tinyvla_ros.core.camera_calib import CameraInfoFields
from tinyvla_ros.ros.cameras.messages import camera_info_msg, image_qos
from tinyvla_ros.ros.conversions import diagnostic_status, duration_to_sec, rgb_to_image, stamp_to_sec
from tinyvla_ros.ros.diagnostics import DiagnosticState, summarize
from tinyvla_ros.ros.entry import run_node
from tinyvla_ros.ros.fake_robot.config import CameraOutput, FakeRobotConfig, camera_info_fields, camera_output
from tinyvla_ros.ros.fake_robot.pacing import NS
from tinyvla_ros.ros.fake_robot.stepper import CommandResult, FakeRobotSim, SimOutputs, make_sim_env
from tinyvla_ros.ros.params import declare_dataclass
from tinyvla_ros.ros.qos import latched_qos, reliable_qos
from tinyvla_ros.ros.shutdown import spin_until_shutdown

NODE_NAME = "tinyvla_fake_robot"
DYNAMIC_PARAMETERS = ("cameras_paused", "task", "seed")


def _stamp(msg_stamp, ns: int) -> None:
    """Write integer nanoseconds into a builtin_interfaces/Time in place (exact, no float)."""
    msg_stamp.sec, msg_stamp.nanosec = ns // NS, ns % NS


@dataclass
class _Camera:
    """A camera's publishers and calibration."""

    output: CameraOutput
    image_pub: object
    info_pub: object
    info: CameraInfoFields


class _Publishers(SimOutputs):
    """The simulation's output on the real drivers' topics (called from the sim thread)."""

    def __init__(self, node: Node, env, cfg: FakeRobotConfig) -> None:
        self._node, self._log = node, node.get_logger()
        self._clock_pub = node.create_publisher(ClockMsg, "/clock", reliable_qos(10))
        self._js_pub = node.create_publisher(JointState, cfg.joint_states_topic, reliable_qos(10))
        self._instruction_pub = node.create_publisher(String, cfg.instruction_topic, latched_qos())
        self._success_pub = node.create_publisher(Bool, "~/success", latched_qos())
        self.violations_pub = node.create_publisher(UInt32, "~/limit_violations", latched_qos())
        qos = image_qos(cfg.camera_qos_reliability, 5)
        self.cameras: dict[str, _Camera] = {}
        for name, spec in env.camera_specs.items():
            out = camera_output(name, spec.model, spec.encoding, cfg.zed_topic_naming)
            info = camera_info_fields(out, env.camera_intrinsics(name))
            image_pub = node.create_publisher(Image, out.image_topic, qos)
            info_pub = node.create_publisher(CameraInfo, out.info_topic, qos)
            self.cameras[name] = _Camera(out, image_pub, info_pub, info)

    def clock(self, ns: int) -> None:
        msg = ClockMsg()
        _stamp(msg.clock, ns)
        self._clock_pub.publish(msg)

    def joint_states(
        self, ns: int, names: Sequence[str], position: np.ndarray, velocity: np.ndarray, effort: np.ndarray
    ) -> None:
        msg = JointState()
        _stamp(msg.header.stamp, ns)
        msg.name = list(names)
        msg.position = position.tolist()
        msg.velocity = velocity.tolist()
        msg.effort = effort.tolist()
        self._js_pub.publish(msg)

    def camera_frame(self, camera: str, rgb: np.ndarray, ns: int) -> None:
        cam = self.cameras[camera]
        image = rgb_to_image(rgb, cam.output.encoding, 0.0, cam.output.frame_id)
        _stamp(image.header.stamp, ns)  # exactly the camera_info's stamp
        cam.image_pub.publish(image)
        cam.info_pub.publish(camera_info_msg(cam.info, ns))

    def episode(self, instruction: str, success: bool, violations: int) -> None:
        """Instruction, success and violation count at start and after each reset."""
        self._instruction_pub.publish(String(data=instruction))
        self._success_pub.publish(Bool(data=success))
        self.violations_pub.publish(UInt32(data=violations))

    def reset(self, message: str) -> None:
        self._log.info(message)

    def success(self, task: str, success: bool, episode_time: float) -> None:
        self._success_pub.publish(Bool(data=success))
        self._log.info(f"task {task!r}: success {success} at {episode_time:.2f} s")

    def lockstep_timeout(self, gate: str, timeout_s: float) -> None:
        self._log.warning(
            f"lockstep: no answer from the {gate} for {timeout_s:g} s: running on in real time until it answers",
            throttle_duration_sec=5.0,
        )

    def failed(self, message: str) -> None:
        self._log.fatal(f"simulation thread failed: {message}")
        self._node.context.try_shutdown()


class FakeRobotNode(Node):
    """The fake robot (see the module docstring): a FakeRobotSim behind topics, parameters and ~/reset."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        if self.get_parameter("use_sim_time").value:
            # This node is the clock: listening to its own /clock would only cost CPU. Its stamps
            # come from the simulation; its node clock (diagnostics timer) stays on system time.
            self.set_parameters([Parameter("use_sim_time", value=False)])
        self.cfg: FakeRobotConfig = declare_dataclass(self, FakeRobotConfig)
        cfg = self.cfg
        env = make_sim_env(cfg)  # mujoco: imported only when a fake robot starts
        self.pubs = _Publishers(self, env, cfg)
        self.sim = FakeRobotSim(cfg, env, self.pubs)  # shares cfg: the dynamic parameters reach it
        self.diag = DiagnosticState()
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", reliable_qos(10))
        self._make_subscriptions()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        services = MutuallyExclusiveCallbackGroup()
        self.create_service(Trigger, "~/reset", self._on_reset, callback_group=services)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(
            cfg.diagnostics_period, self._publish_diagnostics, callback_group=services, clock=steady
        )
        self._io_executor: SingleThreadedExecutor | None = None
        self._io_thread: threading.Thread | None = None
        self.sim.start(ok=self.context.ok)
        self.get_logger().info(
            f"{cfg.setup} fake robot: task {self.sim.task!r} seed {cfg.seed}, time_mode {cfg.time_mode}, "
            f"cameras {list(env.camera_names)} at {cfg.image_width}x{cfg.image_height} {cfg.camera_rate:g} Hz"
        )

    @property
    def fatal(self) -> str:
        """Why the sim thread failed ('' while it runs or after a clean stop)."""
        return self.sim.fatal

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
        for i in range(len(self.sim.arms)):
            for kind, msg_type, factory in (
                ("forward", Float64MultiArray, self._forward_callback),
                ("trajectory", JointTrajectory, self._trajectory_callback),
                ("gripper", Float64MultiArray, self._gripper_callback),
            ):
                io.create_subscription(msg_type, cfg.topics(kind)[i], factory(i), qos, callback_group=group)
        for i, topic in enumerate(cfg.topics("pose")):  # the arms that offer one
            io.create_subscription(PoseStamped, topic, self._pose_callback(i), qos, callback_group=group)
        if self.sim.pacing.mode != "lockstep":
            return
        io.create_subscription(JointState, cfg.lockstep_topic, self._gate_callback("executor"), qos)
        if "policy" in self.sim.gates:
            io.create_subscription(
                JointTrajectory,
                cfg.lockstep_chunk_topic,
                self._gate_callback("policy"),
                qos,
            )

    # --- command callbacks ----------------------------------------------------------------

    def _forward_callback(self, arm: int):
        def callback(msg: Float64MultiArray) -> None:
            self._command(arm, "forward", self.sim.forward(arm, list(msg.data)))

        return callback

    def _trajectory_callback(self, arm: int):
        def callback(msg: JointTrajectory) -> None:
            result = self.sim.trajectory(
                arm,
                msg.joint_names,
                stamp_to_sec(msg.header.stamp),
                [duration_to_sec(p.time_from_start) for p in msg.points],
                [list(p.positions) for p in msg.points],
                [list(p.velocities) for p in msg.points],
                [list(p.accelerations) for p in msg.points],
            )
            self._command(arm, "trajectory", result)

        return callback

    def _pose_callback(self, arm: int):
        def callback(msg: PoseStamped) -> None:
            p, o = msg.pose.position, msg.pose.orientation
            result = self.sim.pose(arm, msg.header.frame_id, (p.x, p.y, p.z), (o.x, o.y, o.z, o.w))
            self._command(arm, "pose", result)

        return callback

    def _gripper_callback(self, arm: int):
        def callback(msg: Float64MultiArray) -> None:
            self._command(arm, "gripper", self.sim.gripper(arm, list(msg.data)))

        return callback

    def _command(self, index: int, kind: str, result: CommandResult) -> None:
        """Log a rejection; publish and log a limit violation."""
        arm = self.sim.arms[index]
        if result.rejected:
            self.diag.problem(f"{arm.name} {kind}", "error", f"rejected: {result.rejected}")
            self.get_logger().error(
                f"{arm.name} {kind} command rejected: {result.rejected}", throttle_duration_sec=1.0
            )
            return
        if result.violated:
            self.pubs.violations_pub.publish(UInt32(data=min(result.violations, 2**32 - 1)))
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
            self.sim.gate_message(gate, stamp.sec * NS + stamp.nanosec)

        return callback

    # --- parameters and services ----------------------------------------------------------

    def _on_set_parameters(self, params) -> SetParametersResult:
        """Only cameras_paused, task and seed change at run time (task/seed take effect at ~/reset)."""
        from tinyvla_ros.sim.tasks import get_task

        for p in params:
            try:
                if p.name not in DYNAMIC_PARAMETERS:
                    raise ValueError(f"{p.name} is read once at start-up: restart the node")
                if p.name == "cameras_paused":
                    self.sim.check_cameras(list(p.value or []))
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
        response.success, response.message = self.sim.request_reset(self.cfg.task, self.cfg.seed)
        return response

    # --- diagnostics ----------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        counters, problems = self.diag.snapshot()
        report = self.sim.report()
        values = {**report.values, **counters}
        level, message = summarize(problems, report.summary)
        msg = DiagnosticArray()
        _stamp(msg.header.stamp, report.stamp_ns)  # the sim time the values belong to
        name = f"{self.get_name()}: fake robot"
        msg.status = [diagnostic_status(name, self.get_fully_qualified_name(), level, message, values)]
        self._diag_pub.publish(msg)

    # --- lifetime -------------------------------------------------------------------------

    def spin_io(self) -> None:
        """Spin the io node (commands, lockstep answers) on its own thread and executor."""
        self._io_executor = SingleThreadedExecutor()
        self._io_executor.add_node(self.io)
        self._io_thread = threading.Thread(
            target=spin_until_shutdown, args=(self._io_executor,), name="tinyvla-fake-robot-io", daemon=True
        )
        self._io_thread.start()

    def shutdown(self) -> None:
        """Stop the io thread, then the sim thread (it frees the renderer)."""
        if self._io_executor is not None:
            self._io_executor.shutdown(timeout_sec=2.0)  # bounded: a callback may wait for the sim thread
        if self._io_thread is not None:
            self._io_thread.join(5.0)  # out of rcl before the nodes go (see tinyvla_ros.ros.bag_play._play)
        self.sim.stop()
        self.io.destroy_node()


def _shut_down(node: FakeRobotNode) -> int | None:
    node.shutdown()
    return 1 if node.fatal else None  # the sim thread failed


def main(argv: list[str] | None = None) -> int:
    """Run the fake robot (``python -m tinyvla_ros.ros.fake_robot_node --ros-args ...``)."""
    return run_node(
        FakeRobotNode,
        argv,
        error_format=f"[{NODE_NAME}] configuration error: {{exc}}",  # a bad parameter: say which
        before_spin=FakeRobotNode.spin_io,
        on_shutdown=_shut_down,
    )


if __name__ == "__main__":
    sys.exit(main())
