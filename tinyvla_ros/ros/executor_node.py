"""``tinyvla_executor``: action chunks -> safe controller commands at the control rate.

Inputs: the policy's chunks (trajectory_msgs/JointTrajectory, ``chunk_topic``) and
``joint_states_topic``. Every 1/control_rate s the ControlLoop (tinyvla_ros.core.control) picks the
action for now from the chunk executor (open_loop | temporal_ensemble | overlap_blend | inpaint), passes it
through the safety filter and the node publishes:

- always (while the joint state is usable): ``~/preview`` (sensor_msgs/JointState: commanded
  positions, velocities and gripper openings; geometry_msgs/PoseStamped for ee_pose output);
- with actuation on: the controller commands of ``output`` (forward_position | joint_trajectory |
  ee_pose) on one topic per arm, and gripper commands (topic or franka_msgs actions) on change.

Watchdog: no fresh chunk within ``hold_after`` -> hold (brake to a stop, keep the stop position:
repeated for forward controllers, sent until at rest for trajectory/pose controllers); no usable
joint state (none, stale, NaN) -> no command at all. ``enable_actuation`` is false by default.

Services: ``~/enable`` (std_srvs/SetBool; true restarts from the measured position and waits
for a fresh chunk; false brakes to a stop, then stops commanding) and ``~/stop`` (std_srvs/Trigger:
brake, stop commanding, forget the plan; needs ``~/enable`` true to move again).
``committed_topic`` (default ``~/committed``, trajectory_msgs/JointTrajectory: the steps the chunk
executor will run from now on, header.stamp = the first step's time, time_from_start = i *
action_dt; no points when nothing is planned) on every accepted chunk and at ``committed_rate``:
the policy node inpaints them into its next chunk (``execution_mode: inpaint``).
``~/status`` (std_msgs/String, latched JSON {"mode", "reason", "actuation", "stamp"}: stamp = the
tick's time on the node's clock) changes with the mode; command guard and fault checks: see
tinyvla_ros.ros.command_guard (parameters ``guard.*``) and tinyvla_ros.core.control (``faults.*``);
/diagnostics at ~1 Hz.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.clock import Clock, ClockType, JumpThreshold
from rclpy.duration import Duration
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

from tinyvla_ros.core.control import ActuationGate, ControlLoop, FaultChecks, TickResult
from tinyvla_ros.core.realtime import (
    MonotonicClock,
    RealtimeConfig,
    SlackGc,
    SteppedClock,
    TickThread,
    apply_realtime,
)
from tinyvla_ros.core.robots import load_robot_spec
from tinyvla_ros.ros.command_guard import CommandGuard, CommandGuardConfig, Endpoint, node_fqn
from tinyvla_ros.ros.conversions import (
    ChunkFormatError,
    chunk_to_trajectory,
    joint_state,
    joint_state_fields,
    pose_stamped,
    sec_to_stamp,
    trajectory_to_chunk,
)
from tinyvla_ros.ros.diagnostics import DiagnosticsPublisher, DiagnosticState, summarize
from tinyvla_ros.ros.entry import run_node
from tinyvla_ros.ros.outputs import (
    ForwardPositionOutput,
    FrankaGripperOutput,
    GripperTopicOutput,
    JointTrajectoryOutput,
    PoseOutput,
    franka_msgs_available,
)
from tinyvla_ros.ros.params import ExecutorNodeConfig, declare_dataclass
from tinyvla_ros.ros.qos import QosConfig, latched_qos, reliable_qos, sensor_qos

NODE_NAME = "tinyvla_executor"


class ExecutorNode(Node):
    """Runs the ControlLoop in a deadline thread and publishes previews and controller commands.

    Subscriptions, services and the guard/diagnostics timers run on the node's (single-threaded)
    executor; the control tick runs in its own ``TickThread`` (tinyvla_ros.core.realtime) on
    absolute deadlines of the node's clock: ``time.monotonic`` on wall time, the sim clock (woken
    by its updates) with ``use_sim_time``. ``go_realtime()`` (called by ``main``, not by tests
    that host the node in their own process) applies the ``realtime.*`` settings.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.cfg: ExecutorNodeConfig = declare_dataclass(self, ExecutorNodeConfig)
        self.checks = declare_dataclass(self, FaultChecks, prefix="faults.")
        self.loop = ControlLoop(self.cfg.control_config(), load_robot_spec(self.cfg.robot), self.checks)
        guard_cfg = declare_dataclass(self, CommandGuardConfig, prefix="guard.")
        self.guard = CommandGuard(guard_cfg, self.get_fully_qualified_name(), self.get_namespace())
        self._guard_refreshed = 0.0
        self.realtime = declare_dataclass(self, RealtimeConfig, prefix="realtime.")
        self.diag = DiagnosticState()
        self._lock = threading.Lock()  # guards loop and actuation state: the tick thread vs callbacks
        self._gripper_state: dict[int, bool] = {}  # arm -> closed, as last sent
        self._status = None
        self._mode = ("", "")
        self._make_outputs()
        self._status_pub = self.create_publisher(String, "~/status", latched_qos())
        # committed steps for the policy's inpainting: JointTrajectory, header.stamp = first step's time
        self._committed_pub = self.create_publisher(
            JointTrajectory, self.cfg.committed_topic, reliable_qos(10)
        )
        self._committed_next = -float("inf")
        qos = sensor_qos(QosConfig(self.cfg.qos_reliability, 10))
        self.create_subscription(JointTrajectory, self.cfg.chunk_topic, self._on_chunk, reliable_qos(10))
        self.create_subscription(JointState, self.cfg.joint_states_topic, self._on_joint_state, qos)
        self.create_service(SetBool, "~/enable", self._on_enable)
        self.create_service(Trigger, "~/stop", self._on_stop)
        self._diag_pub = DiagnosticsPublisher(
            self,
            f"{self.get_name()}: executor",
            self.get_fully_qualified_name(),
            self.cfg.diagnostics_period,
            self.report,
        )
        self.gate = ActuationGate(self.cfg.enable_actuation, self.output.repeat_hold)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(guard_cfg.period, self._check_guard, clock=steady)
        if self.cfg.enable_actuation:
            self.get_logger().warning("enable_actuation is true: commands go to the controllers")
        self.ticker = TickThread(self._on_tick, 1.0 / self.cfg.control_rate, self._tick_clock())
        self.ticker.start()

    def _tick_clock(self):
        """Deadlines on time.monotonic, or on the sim clock (woken by each /clock update)."""
        clock = self.get_clock()
        if not clock.ros_time_is_active:
            return MonotonicClock()
        stepped = SteppedClock(self._now)
        threshold = JumpThreshold(
            min_forward=Duration(nanoseconds=1), min_backward=Duration(nanoseconds=-1), on_clock_change=True
        )
        self._jump_handle = clock.create_jump_callback(threshold, post_callback=lambda _: stepped.notify())
        return stepped

    def go_realtime(self) -> None:
        """Apply ``realtime.*`` to this process and its tick thread; collect garbage in its slack."""
        lines = apply_realtime(self.realtime, self.ticker.native_id)
        log = self.get_logger()
        for applied, text in lines:
            (log.info if applied else log.warning)(text)
        if not lines:
            log.info("normal scheduling (realtime.* off)")
        gc_policy = SlackGc(self.realtime.gc_full_every)
        gc_policy.start()
        self.ticker.gc = gc_policy

    def destroy_node(self) -> None:
        self.ticker.stop()
        if self.ticker.gc is not None:
            self.ticker.gc.stop()
        super().destroy_node()

    def _make_outputs(self) -> None:
        cfg, loop = self.cfg, self.loop
        topics = cfg.command_topics()
        if cfg.output == "forward_position":
            self.output = ForwardPositionOutput(self, topics, loop.joint_names)
        elif cfg.output == "joint_trajectory":
            lower = [f.limits.command_lower for f in loop.filters]
            upper = [f.limits.command_upper for f in loop.filters]
            self.output = JointTrajectoryOutput(
                self, topics, loop.joint_names, cfg.trajectory_horizon, lower, upper
            )
        else:
            self.output = PoseOutput(self, topics, cfg.ee_frame_id, self.get_clock())
        kind = cfg.gripper_output
        if kind == "auto":
            kind = "franka_action" if franka_msgs_available() else "topic"
        self.gripper_kind = kind
        self.gripper = None
        if kind == "topic":
            self.gripper = GripperTopicOutput(self, cfg.gripper_topics)
        elif kind == "franka_action":
            self.gripper = FrankaGripperOutput(
                self,
                cfg.gripper_action_ns,
                cfg.gripper_open_width,
                cfg.gripper_speed,
                cfg.gripper_force,
                cfg.gripper_epsilon,
            )
        preview_type = PoseStamped if cfg.output == "ee_pose" else JointState
        self._preview_pub = self.create_publisher(preview_type, "~/preview", reliable_qos(10))

    # --- inputs ---------------------------------------------------------------------------

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_chunk(self, msg: JointTrajectory, info: dict) -> None:
        """A chunk with its MessageInfo (rclpy passes it to two-argument callbacks)."""
        now = self._now()
        self.diag.count("chunks_received")
        if not self._chunk_source_allowed(info):
            return
        try:
            stamp, chunk, dt = trajectory_to_chunk(msg, self.loop.action_names)
        except ChunkFormatError as exc:
            self.diag.count("chunks_dropped_format")
            self.diag.problem("chunk", "error", str(exc))
            return
        with self._lock:
            reason = self.loop.add_chunk(chunk, stamp, dt, now)
        if reason:
            level = "error" if reason.startswith("bad chunk") else "warn"
            self.diag.problem("chunk", level, f"dropped: {reason}")
        else:
            self.diag.clear("chunk")
            self._publish_committed(now, force=True)

    # --- command guard --------------------------------------------------------------------

    def _endpoints(self, topic: str) -> list[Endpoint]:
        infos = self.get_publishers_info_by_topic(self.resolve_topic_name(topic))
        return [Endpoint(node_fqn(i.node_namespace, i.node_name), bytes(i.endpoint_gid)) for i in infos]

    def _check_guard(self) -> None:
        """Graph check (steady timer): intruders on the chunk topic, foreign controller commanders."""
        self._guard_refreshed = time.monotonic()
        command_topics = list(self.cfg.command_topics())
        if self.gripper_kind == "topic":
            command_topics += list(self.cfg.gripper_topics)
        commands = {t: self._endpoints(t) for t in command_topics}
        chunks = self._endpoints(self.cfg.chunk_topic)
        with self._lock:
            verdict = self.guard.update(chunks, commands)
        if verdict.refuse:
            self.diag.problem("guard", "error", verdict.refuse)
        else:
            self.diag.clear("guard")
        if verdict.warnings:
            self.diag.problem("command topics", "warn", "; ".join(verdict.warnings))
        else:
            self.diag.clear("command topics")
        if verdict.absent:
            self.diag.problem("policy", "warn", f"chunk publisher(s) {verdict.absent} not in the graph")
        else:
            self.diag.clear("policy")

    def _chunk_source_allowed(self, info) -> bool:
        """A chunk counts only when its publisher is an allowed node (graph re-checked once if unknown)."""
        gid = None if info is None else info.get("publisher_gid")
        if gid is None or self.guard.accepts(gid):
            return True
        if time.monotonic() - self._guard_refreshed > 0.02:
            self._check_guard()
            if self.guard.accepts(gid):
                return True
        self.diag.count("chunks_dropped_foreign_source")
        return False

    def _on_joint_state(self, msg: JointState) -> None:
        try:
            _, names, positions = joint_state_fields(msg)
        except ValueError as exc:
            self.diag.count("joint_states_malformed")
            self.diag.problem("joint_states", "error", str(exc))
            return
        with self._lock:
            self.loop.set_joint_state(names, positions, self._now())

    # --- services -------------------------------------------------------------------------

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        with self._lock:
            if request.data:
                if not self.loop.reset_to_measured(self._now()):
                    response.success = False
                    response.message = f"cannot enable: {self.loop.measured(self._now())[1]}"
                    return response
                self.loop.reset_plan()
                self.gate.enable()
                response.message = "actuation enabled: following the next fresh chunk"
            else:
                self.gate.disable("actuation disabled (~/enable false)")
                response.message = "actuation disabled after braking to a stop"
        self.get_logger().info(response.message)
        response.success = True
        return response

    def _on_stop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            self.loop.reset_plan()
            self.gate.disable("stopped (~/stop)")
        response.success = True
        response.message = "stopping: braking to a stop, then no commands until ~/enable true"
        self.get_logger().warning(response.message)
        return response

    # --- control tick ---------------------------------------------------------------------

    def _on_tick(self) -> None:
        """Control timer: never raises (an unexpected error means no command this tick, reported)."""
        try:
            self._tick()
        except Exception as exc:  # noqa: BLE001 - a control loop must survive; nothing is sent on error
            self.diag.count("tick_errors")
            self.diag.problem("control", "error", f"{type(exc).__name__}: {exc}")
            self.get_logger().error(f"control tick failed, no command sent: {type(exc).__name__}: {exc}")

    def _tick(self) -> None:
        now = self._now()
        with self._lock:
            hold_reason = self.gate.stopping or self.guard.refusing
            actuating = self.gate.actuating
            result = self.loop.tick(now, actuating, hold_reason=hold_reason)
            self._actuate(result)
            events = self.loop.pop_events()
            for event in events:
                self.diag.problem("clock", "warn", event)
        self._publish_preview(result, now)
        self._publish_status(result, actuating, now)
        self._publish_committed(now)
        if events:
            # a clock jump is an event, not a state: report it now rather than at the next
            # diagnostics period (a timer on the same jumping clock, which may fire before this tick)
            self._diag_pub.publish_now()

    def _actuate(self, result: TickResult) -> None:
        """Send this tick's controller commands as the ActuationGate decides (lock held)."""
        actions, grippers = self.gate.actions(result)
        for action in actions:
            arm = result.arms[action.arm]
            if action.kind == "pose":
                self.output.send_pose(action.arm, arm.xyz, arm.rotation)
            elif action.kind == "hold":
                self.output.hold(action.arm, arm.positions)
            else:
                self.output.send(action.arm, arm.positions, arm.velocities)
        if actions:
            self.diag.count("commands_published")
        if grippers and self.gripper is not None:
            for i, (closed, changed) in enumerate(
                zip(result.gripper_closed, result.gripper_changed, strict=True)
            ):
                if closed is not None and (changed or i not in self._gripper_state):
                    self.gripper.command(i, not closed)
                    self._gripper_state[i] = closed

    def _publish_preview(self, result: TickResult, now: float) -> None:
        if result.mode == "idle" or not result.arms:
            return
        if self.cfg.output == "ee_pose":
            arm = result.arms[0]
            self._preview_pub.publish(pose_stamped(arm.xyz, arm.rotation, now, self.cfg.ee_frame_id))
            return
        names, positions, velocities = [], [], []
        for i, arm in enumerate(result.arms):
            names += self.loop.joint_names[i]
            positions += list(arm.positions)
            velocities += list(arm.velocities)
            closed = result.gripper_closed[i] if i < len(result.gripper_closed) else None
            if closed is not None:
                names.append(f"{self.cfg.arm_prefixes[i]}gripper")
                positions.append(0.0 if closed else 1.0)
                velocities.append(0.0)
        self._preview_pub.publish(joint_state(names, np.array(positions), now, np.array(velocities)))

    def _publish_committed(self, now: float, force: bool = False) -> None:
        """Publish the steps the chunk executor will run from ``now`` on (no points: none), at most
        ``committed_rate`` times per second unless ``force`` (a chunk was just accepted)."""
        rate = self.cfg.committed_rate
        if not force and (rate <= 0.0 or now < self._committed_next):
            return
        if self._committed_pub.get_subscription_count() == 0:
            return  # nobody inpaints from it: spare the control thread the work
        self._committed_next = now + (1.0 / rate if rate > 0.0 else float("inf"))
        with self._lock:
            actions, times = self.loop.executor.committed_steps(now)
        if len(times) == 0:
            msg = JointTrajectory(joint_names=list(self.loop.action_names))
            msg.header.stamp = sec_to_stamp(now)
        else:
            msg = chunk_to_trajectory(actions, self.loop.action_names, float(times[0]), self.cfg.action_dt)
        self._committed_pub.publish(msg)

    def _publish_status(self, result: TickResult, actuating: bool, now: float) -> None:
        key = (result.mode, str(actuating))
        if key == self._mode:
            return
        self._mode = key
        self._status = {"mode": result.mode, "reason": result.reason, "actuation": actuating, "stamp": now}
        self._status_pub.publish(String(data=json.dumps(self._status)))
        text = f"mode {result.mode}{': ' + result.reason if result.reason else ''} (actuation {actuating})"
        if result.mode == "run":
            self.get_logger().info(text)
        else:
            self.get_logger().warning(text)

    # --- diagnostics ----------------------------------------------------------------------

    def report(self) -> tuple[str, str, dict]:
        """(level, message, values) for /diagnostics."""
        counters, problems = self.diag.snapshot()
        with self._lock:
            loop_counters = dict(self.loop.counters)
            clamps = dict(self.loop.clamps)
            executor_counters = self.loop.executor.counters.as_dict()
            idle_status = {"mode": "starting", "reason": "", "actuation": self.gate.actuating}
            status = dict(self._status or idle_status)
        if self.ticker.error is not None:
            error = self.ticker.error
            problems = [
                ("control", "error", f"tick thread ended: {type(error).__name__}: {error}"),
                *problems,
            ]
        if status["mode"] == "idle":
            problems = [("joint_states", "error", status["reason"]), *problems]
        elif status["mode"] == "hold":
            problems = [*problems, ("watchdog", "warn", f"holding: {status['reason']}")]
        problems.sort(key=lambda p: {"error": 0, "warn": 1}.get(p[1], 2))
        level, message = summarize(problems, f"{status['mode']} (actuation {status['actuation']})")
        latency = self.loop.latency.summary(1e3)
        values = {
            "mode": status["mode"],
            "reason": status["reason"],
            "actuation": status["actuation"],
            "output": self.cfg.output,
            "gripper_output": self.gripper_kind,
            "execution_mode": self.cfg.execution_mode,
            "control_rate_hz": self.cfg.control_rate,
            **self.ticker.stats.summary_ms(),
            "ticks_skipped": self.ticker.stats.skipped,
            "gc_in_slack_max_ms": self.ticker.gc.durations.max * 1e3 if self.ticker.gc else 0.0,
            "tick_clock_jumps": self.ticker.stats.jumps,
            "obs_to_command_latency_p50_ms": latency["p50"],
            "obs_to_command_latency_p99_ms": latency["p99"],
            "safety_clamps_total": sum(clamps.values()),
        }
        values.update(sorted(counters.items()))
        values.update(sorted(loop_counters.items()))
        values.update({f"clamps.{k}": v for k, v in sorted(clamps.items())})
        values.update({f"chunk_executor.{k}": v for k, v in executor_counters.items()})
        return level, message, values


def main(argv: list[str] | None = None) -> int:
    """Run the executor node (``python -m tinyvla_ros.ros.executor_node --ros-args ...``)."""
    return run_node(
        ExecutorNode,
        argv,
        errors=(ValueError, FileNotFoundError),  # a bad parameter or robot spec
        error_format=f"[{NODE_NAME}] configuration error: {{exc}}",
        before_spin=ExecutorNode.go_realtime,
    )


if __name__ == "__main__":
    sys.exit(main())
