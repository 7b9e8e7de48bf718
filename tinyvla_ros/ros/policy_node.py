"""``tinyvla_policy``: a lifecycle node that turns camera frames + joint states into action chunks.

Lifecycle:
  configure  load the checkpoint through an engine (a checkpoint that does not fit the robot's
             cameras/state/action sizes -> FAILURE with the reason logged and on /diagnostics),
             warm it up, create the subscriptions;
  activate   start the inference worker thread (never inside an executor callback);
  deactivate stop the worker; cleanup frees the engine and the subscriptions.

Data flow: subscription callbacks (their own callback group) decode images (any supported
encoding is converted to RGB; an unknown encoding or a wrong size is a diagnostics ERROR and the
frame is dropped) and feed an ObservationAssembler. The worker starts an inference as soon as a
fresh synchronised observation exists (every camera has a frame newer than the last one used; it
sleeps until a frame arrives, never polls), at most ``inference_rate`` times per second. Frames
older than ``max_start_age`` when the worker is free are replaced by the next synchronised
observation if it comes within ``max_start_age`` (counted as ``late_start.replaced``), else used
(``late_start.kept``), so a late start costs at most ``max_start_age`` and never starves. The
worker runs the engine and publishes the chunk as trajectory_msgs/JointTrajectory on ``~/chunk``
with header.stamp = the observation's stamp, joint_names = action names, time_from_start = i * action_dt.

Inpainting (``inpaint.enabled``; the executor in any mode, best ``execution_mode: inpaint``): the
node keeps the executor's latest committed steps (``inpaint.committed_topic``, JointTrajectory:
header.stamp + time_from_start = each step's time) and an online estimate of its inference time
(EMA). Each chunk predicted from an observation at s holds, on its grid s + i * action_dt, the
committed actions up to the expected arrival (now + estimated inference time + margin_steps)
with weight 1 and the following ``soft_decay_steps`` with a decaying weight (core.chunking.
inpaint_prefix -> engine.predict_chunk(prefix=, prefix_weight=)). No committed plan, or one older
than ``max_committed_age``: the chunk is sampled freely.

Topics: in  cameras.<name>.topic (Image or CompressedImage), joint_states_topic, instruction_topic
        (std_msgs/String, transient local), inpaint.committed_topic (when enabled);
        out ~/chunk, /diagnostics.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from tinyvla_ros.core.chunking import DelayEstimator, inpaint_prefix
from tinyvla_ros.core.images import ImageFormatError
from tinyvla_ros.core.observation import Observation, ObservationAssembler, ObservationConfig, Rejection
from tinyvla_ros.core.realtime import renice_process
from tinyvla_ros.core.stats import LatencyStats
from tinyvla_ros.ros.conversions import (
    chunk_to_trajectory,
    compressed_to_rgb,
    duration_to_sec,
    image_to_rgb,
    joint_state_fields,
    stamp_to_sec,
)
from tinyvla_ros.ros.diagnostics import DiagnosticsPublisher, DiagnosticState, summarize
from tinyvla_ros.ros.entry import run_node
from tinyvla_ros.ros.params import CameraSpec, PolicyNodeConfig, declare_policy_config
from tinyvla_ros.ros.qos import QosConfig, latched_qos, reliable_qos, sensor_qos

NODE_NAME = "tinyvla_policy"
_IDLE_S = 0.1  # s the worker sleeps at most without a new frame (instruction and health re-checked)


def committed_fields(msg: JointTrajectory, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Committed-steps JointTrajectory -> (times (k,) s, actions (k, A) in ``names`` order).

    Step i's time is header.stamp + points[i].time_from_start; k may be 0 (nothing committed).
    Raises ValueError naming the problem (missing names, ragged points, times not increasing, NaN).
    """
    have = list(msg.joint_names)
    missing = [n for n in names if n not in have]
    if missing and msg.points:
        raise ValueError(f"committed joint_names {have} lack action names {missing}")
    if not msg.points:
        return np.zeros(0), np.zeros((0, len(names)))
    rows = [list(p.positions) for p in msg.points]
    if any(len(r) != len(have) for r in rows):
        raise ValueError(f"committed points must have {len(have)} positions each")
    full = np.asarray(rows, dtype=np.float64)  # (k, len(have))
    actions = full[:, [have.index(n) for n in names]]  # (k, A)
    times = stamp_to_sec(msg.header.stamp) + np.array(
        [duration_to_sec(p.time_from_start) for p in msg.points]
    )
    if not (np.all(np.isfinite(actions)) and np.all(np.isfinite(times))):
        raise ValueError("committed steps contain NaN or inf")
    if np.any(np.diff(times) <= 0.0):
        raise ValueError(f"committed step times must increase, got {times.tolist()}")
    return times, actions


class PolicyNode(LifecycleNode):
    """Lifecycle node running TinyVLA inference on a worker thread (see the module docstring)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.cfg: PolicyNodeConfig = declare_policy_config(self)
        self.diag = DiagnosticState()
        self.latency = LatencyStats()
        self.start_age = LatencyStats()  # oldest frame's age when its inference starts
        self._lock = threading.Lock()  # guards the assembler
        self._instruction = self.cfg.instruction
        self._engine = None
        self._assembler: ObservationAssembler | None = None
        self._subs: list = []
        self._chunk_pub = None
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._new_frame = threading.Event()  # set by each buffered camera frame: wakes the worker
        self._committed: tuple[float, np.ndarray, np.ndarray] | None = None  # (received, times, actions)
        self._delay: DelayEstimator | None = None
        self._last_hard_steps = 0
        self._last_skew = float("nan")
        self._max_skew = 0.0
        self._converted: set[str] = set()
        self._state_label = "unconfigured"
        self._sensor_group = MutuallyExclusiveCallbackGroup()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._diag_pub = DiagnosticsPublisher(
            self,
            f"{self.get_name()}: policy",
            self.get_fully_qualified_name(),
            self.cfg.diagnostics_period,
            self.report,
            callback_group=MutuallyExclusiveCallbackGroup(),
        )

    # --- lifecycle ------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load and warm up the engine, then subscribe. FAILURE (with the reason) on a bad checkpoint."""
        cfg = self.cfg
        expected = {
            "action_dim": len(cfg.action_names),
            "camera_names": list(cfg.camera_names),
            "state_dim": len(cfg.state_joint_names),
        }
        try:
            from tinyvla_ros.vla.engines import load_engine

            self._engine = load_engine(
                cfg.checkpoint,
                cfg.engine,
                cfg.device,
                cfg.precision,
                expected,
                cfg.num_threads,
                inpaint=cfg.inpaint.enabled,
            )
            warm = self._engine.warmup(cfg.warmup_runs)
        except (ValueError, FileNotFoundError, OSError, RuntimeError, ImportError) as exc:
            message = f"cannot load checkpoint {cfg.checkpoint!r}: {type(exc).__name__}: {exc}"
            self.get_logger().error(message)
            self.diag.problem("checkpoint", "error", message)
            self._engine = None
            return TransitionCallbackReturn.FAILURE
        self.diag.clear("checkpoint")
        self._delay = DelayEstimator(cfg.inpaint.delay_alpha, initial=float(warm))
        self._committed = None
        self.get_logger().info(
            f"loaded {cfg.checkpoint} ({self._engine.name}, {cfg.device}, {cfg.precision}); warm-up inference {warm * 1e3:.1f} ms"
        )
        self._assembler = ObservationAssembler(
            ObservationConfig(
                camera_names=list(cfg.camera_names),
                joint_names=list(cfg.state_joint_names),
                max_age=cfg.max_age,
                max_skew=cfg.max_skew,
                frozen_timeout=cfg.frozen_timeout,
                buffer_len=cfg.buffer_len,
            )
        )
        self._chunk_pub = self.create_lifecycle_publisher(JointTrajectory, cfg.chunk_topic, reliable_qos(10))
        self._subscribe()
        self._state_label = "inactive"
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start the inference worker."""
        result = super().on_activate(state)
        self._stop.clear()
        self._worker = threading.Thread(target=self._run, name="tinyvla-inference", daemon=True)
        self._worker.start()
        self._state_label = "active"
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the worker (waits for the running inference to finish)."""
        self._stop_worker()
        self._state_label = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Free the engine, subscriptions and publisher."""
        self._release()
        self._state_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop everything."""
        self._stop_worker()
        self._release()
        self._state_label = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def _stop_worker(self) -> None:
        self._stop.set()
        self._new_frame.set()
        if self._worker is not None:
            self._worker.join(timeout=30.0)
            self._worker = None

    def _release(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        if self._chunk_pub is not None:
            self.destroy_lifecycle_publisher(self._chunk_pub)
            self._chunk_pub = None
        self._engine = None
        self._assembler = None

    # --- subscriptions --------------------------------------------------------------------

    def _subscribe(self) -> None:
        cfg = self.cfg
        qos = sensor_qos(QosConfig(cfg.qos_reliability, cfg.qos_depth))
        for name in cfg.camera_names:
            spec = cfg.cameras[name]
            msg_type = CompressedImage if spec.transport == "compressed" else Image
            callback = self._image_callback(name, spec)
            self._subs.append(
                self.create_subscription(
                    msg_type, spec.topic, callback, qos, callback_group=self._sensor_group
                )
            )
        self._subs.append(
            self.create_subscription(
                JointState,
                cfg.joint_states_topic,
                self._on_joint_state,
                qos,
                callback_group=self._sensor_group,
            )
        )
        self._subs.append(
            self.create_subscription(
                String,
                cfg.instruction_topic,
                self._on_instruction,
                latched_qos(),
                callback_group=self._sensor_group,
            )
        )
        if cfg.inpaint.enabled:
            self._subs.append(
                self.create_subscription(
                    JointTrajectory,
                    cfg.inpaint.committed_topic,
                    self._on_committed,
                    reliable_qos(10),
                    callback_group=self._sensor_group,
                )
            )

    def _image_callback(self, camera: str, spec: CameraSpec):
        def callback(msg) -> None:
            self._on_image(camera, spec, msg)

        return callback

    def _on_image(self, camera: str, spec: CameraSpec, msg: Image | CompressedImage) -> None:
        """Decode, check the size, buffer. Bad frames are counted and reported, never raised."""
        self.diag.count(f"frames_received.{camera}")
        compressed = isinstance(msg, CompressedImage)
        encoding = msg.format if compressed else msg.encoding
        try:
            rgb = compressed_to_rgb(msg) if compressed else image_to_rgb(msg)
        except (ImageFormatError, ValueError) as exc:
            self.diag.count(f"frames_rejected.{camera}.encoding")
            self.diag.problem(f"camera {camera}", "error", f"dropped frame with encoding {encoding!r}: {exc}")
            return
        if (spec.height and rgb.shape[0] != spec.height) or (spec.width and rgb.shape[1] != spec.width):
            self.diag.count(f"frames_rejected.{camera}.size")
            self.diag.problem(
                f"camera {camera}",
                "error",
                f"dropped {rgb.shape[1]}x{rgb.shape[0]} frame, expected {spec.width}x{spec.height}",
            )
            return
        if not compressed and encoding != spec.encoding:
            self.diag.count(f"frames_converted.{camera}")
            self._converted.add(f"{camera}: {encoding}->rgb (expected {spec.encoding})")
        self.diag.clear(f"camera {camera}")
        now = self._now()
        with self._lock:
            if self._assembler is not None:
                try:
                    self._assembler.add_image(camera, stamp_to_sec(msg.header.stamp), rgb, now)
                except ValueError as exc:  # e.g. a non-finite stamp
                    self.diag.count(f"frames_rejected.{camera}.stamp")
                    self.diag.problem(f"camera {camera}", "error", str(exc))
                    return
        self._new_frame.set()

    def _on_joint_state(self, msg: JointState) -> None:
        try:
            stamp, names, positions = joint_state_fields(msg)
        except ValueError as exc:
            self.diag.count("joint_states_rejected")
            self.diag.problem("joint_states", "error", str(exc))
            return
        with self._lock:
            if self._assembler is not None:
                self._assembler.add_joint_state(stamp, names, positions)

    def _on_committed(self, msg: JointTrajectory) -> None:
        """Keep the executor's latest committed steps (an empty message: nothing committed)."""
        try:
            times, actions = committed_fields(msg, list(self.cfg.action_names))
        except ValueError as exc:
            self.diag.count("committed_rejected")
            self.diag.problem("committed", "error", str(exc))
            return
        self.diag.clear("committed")
        self._committed = (self._now(), times, actions) if len(times) else None

    def _prefix(self, obs_stamp: float, now: float) -> tuple[np.ndarray, np.ndarray] | None:
        """Committed prefix (k, A) + weights (T,) for a chunk observed at ``obs_stamp``, or None."""
        spec, committed = self.cfg.inpaint, self._committed
        if not spec.enabled or committed is None or now - committed[0] > spec.max_committed_age:
            return None
        dt = self.cfg.action_dt
        hard_until = now + self._delay.value + spec.margin_steps * dt
        chunk_len = int(self._engine.config.chunk_len)
        return inpaint_prefix(
            committed[1], committed[2], obs_stamp, dt, chunk_len, hard_until, spec.soft_decay_steps
        )

    def _on_instruction(self, msg: String) -> None:
        self._instruction = msg.data
        self.get_logger().info(f"instruction: {msg.data!r}")

    def _on_set_parameters(self, params) -> SetParametersResult:
        """Only ``instruction`` may change at run time; the rest is read once at start-up."""
        declared = set(PolicyNodeConfig.__dataclass_fields__)
        for p in params:
            if p.name == "instruction":
                if not isinstance(p.value, str):
                    return SetParametersResult(
                        successful=False, reason=f"instruction must be a string: {p.value!r}"
                    )
            elif p.name in declared or p.name.startswith(("cameras.", "inpaint.")):
                if self.has_parameter(p.name):
                    return SetParametersResult(
                        successful=False, reason=f"{p.name} is read once: restart the node"
                    )
        for p in params:
            if p.name == "instruction":
                self._instruction = p.value
        return SetParametersResult(successful=True)

    # --- inference worker -----------------------------------------------------------------

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _run(self) -> None:
        """Worker loop: infer on each fresh observation, at most ``inference_rate`` per second."""
        period = 1.0 / self.cfg.inference_rate
        next_start = time.monotonic()
        while not self._stop.is_set():
            wait = next_start - time.monotonic()
            if wait > 0.0 and self._stop.wait(wait):
                break
            self._new_frame.clear()  # a frame arriving from here on wakes the next wait
            started = time.monotonic()
            try:
                produced = self._infer_once()
            except Exception as exc:  # noqa: BLE001 - the worker reports any failure and keeps running
                if not self.context.ok():
                    break  # shutting down: the publisher is gone
                produced = False
                self.diag.count("inference_errors")
                self.diag.problem("inference", "error", f"{type(exc).__name__}: {exc}")
                self.get_logger().error(f"inference failed: {type(exc).__name__}: {exc}")
            if produced:
                next_start = started + period
            else:  # nothing fresh to infer from: sleep until the next frame (or _IDLE_S)
                self._new_frame.wait(_IDLE_S)
                next_start = time.monotonic()

    def _infer_once(self) -> bool:
        """Assemble one observation and publish its chunk; False when nothing was published."""
        instruction = self._instruction
        if not instruction:
            self.diag.problem("instruction", "warn", "no instruction yet (parameter or topic)")
            return False
        self.diag.clear("instruction")
        with self._lock:
            result = self._assembler.assemble(self._now())
        if isinstance(result, Rejection):
            self.diag.count(f"observations_rejected.{result.code}")
            if result.code != "already_used":  # waiting for the next frame is normal, not a problem
                self.diag.problem("observation", "warn", f"{result.code}: {result.reason}")
            return False
        self.diag.clear("observation")
        if 0.0 < self.cfg.max_start_age < result.age:
            result = self._fresher(result)
        self.start_age.add(result.age)
        self._last_skew = float(result.skew)
        self._max_skew = max(self._max_skew, self._last_skew)
        seed = self.cfg.seed if self.cfg.seed >= 0 else None
        prefix = self._prefix(result.stamp, self._now())
        kwargs = {} if prefix is None else {"prefix": prefix[0], "prefix_weight": prefix[1]}
        start = time.perf_counter()
        chunk = self._engine.predict_chunk(result.images, instruction, result.state, seed=seed, **kwargs)
        elapsed = time.perf_counter() - start
        self.latency.add(elapsed)
        if self._delay is not None:
            self._delay.update(elapsed)
        if self.cfg.inpaint.enabled:
            self.diag.count("chunks_inpainted" if prefix is not None else "chunks_free")
            self._last_hard_steps = int(np.count_nonzero(prefix[1] >= 1.0)) if prefix is not None else 0
        if not np.all(np.isfinite(chunk)):
            self.diag.count("chunks_dropped.non_finite")
            self.diag.problem("inference", "error", "model produced a non-finite chunk: dropped")
            return True
        msg = chunk_to_trajectory(chunk, self.cfg.action_names, result.stamp, self.cfg.action_dt)
        self._chunk_pub.publish(msg)
        self.diag.count("chunks_published")
        self.diag.clear("inference")
        return True

    def _fresher(self, old: Observation) -> Observation:
        """``old`` aged while the worker was busy: wait up to ``max_start_age`` (wall time) for a
        newer synchronised observation and take it, else infer from ``old`` (never starve: under
        lockstep sim time no frame comes while the fake waits for this chunk)."""
        deadline = time.monotonic() + self.cfg.max_start_age
        while (left := deadline - time.monotonic()) > 0.0 and not self._stop.is_set():
            self._new_frame.wait(left)
            self._new_frame.clear()
            with self._lock:
                newer = self._assembler.assemble(self._now())
            if not isinstance(newer, Rejection):
                self.diag.count("late_start.replaced")  # the old frames are skipped
                return newer
        self.diag.count("late_start.kept")
        return old

    # --- diagnostics ----------------------------------------------------------------------

    def report(self) -> tuple[str, str, dict]:
        """(level, message, values) for /diagnostics."""
        counters, problems = self.diag.snapshot()
        level, message = summarize(
            problems, f"{self._state_label}, {counters.get('chunks_published', 0)} chunks"
        )
        latency, start_age = self.latency.summary(1e3), self.start_age.summary(1e3)
        values = {
            "state": self._state_label,
            "checkpoint": self.cfg.checkpoint,
            "instruction": self._instruction,
            "inference_latency_p50_ms": latency["p50"],
            "inference_latency_p99_ms": latency["p99"],
            "inference_latency_max_ms": latency["max"],
            "observation_age_at_start_p50_ms": start_age["p50"],
            "observation_age_at_start_p99_ms": start_age["p99"],
            "camera_skew_last_s": self._last_skew,
            "camera_skew_max_s": self._max_skew,
            "converted_streams": ", ".join(sorted(self._converted)),
            "inpaint_enabled": self.cfg.inpaint.enabled,
            "inference_delay_ema_ms": 1e3 * self._delay.value if self._delay is not None else float("nan"),
            "inpaint_last_hard_steps": self._last_hard_steps,
        }
        values.update(sorted(counters.items()))
        return level, message, values


def _renice(node: PolicyNode) -> None:
    if node.cfg.nice > 0:
        # every thread below the executor, whose late tick is a stall and a jump at the arm
        value = renice_process(node.cfg.nice)
        node.get_logger().info(f"process niceness {value} (parameter nice {node.cfg.nice})")


def main(argv: list[str] | None = None) -> int:
    """Run the policy node (``python -m tinyvla_ros.ros.policy_node --ros-args ...``)."""
    return run_node(
        PolicyNode,
        argv,
        error_format=f"[{NODE_NAME}] configuration error: {{exc}}",  # a bad parameter: say which
        before_spin=_renice,
        on_shutdown=lambda node: node._stop_worker(),
    )


if __name__ == "__main__":
    sys.exit(main())
