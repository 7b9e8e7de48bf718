"""Configuration of the fake-robot node and each set-up's default topic names.

``FakeRobotConfig`` is declared field by field as ROS parameters of ``tinyvla_fake_robot``
(``tinyvla_ros.ros.params.declare_dataclass``). Empty topic lists and zero periods mean "the
set-up's default", which are the topics config/franka.yaml and config/ur5_bimanual.yaml name:

franka        /joint_states (fr3_joint1..7, fr3_finger_joint1/2);
              /forward_position_controller/commands, /fr3_arm_controller/joint_trajectory,
              /fr3_gripper/opening_command; ZED 2 cameras zed_left, zed_right (bgra8) on
              /<cam>/zed_node/rgb/color/rect/image + .../rect/camera_info (legacy naming:
              /<cam>/zed_node/rgb/image_rect_color + .../rgb/camera_info).
ur5_bimanual  /joint_states (left_/right_ UR5 joints, <arm>_robotiq_85_left_knuckle_joint);
              /<arm>_forward_position_controller/commands,
              /<arm>_scaled_joint_trajectory_controller/joint_trajectory,
              /<arm>_gripper/opening_command; RealSense D435i cameras wrist_left, wrist_right, top
              (rgb8) on /camera/<cam>/color/image_raw + .../color/camera_info.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tinyvla_ros.core.camera_calib import (
    pinhole_camera_info,
    realsense_optical_frame,
    zed_optical_frame,
    zed_rgb_topics,
)
from tinyvla_ros.core.robots import SETUPS
from tinyvla_ros.ros.fake_robot.pacing import TIME_MODES, PacingConfig

CLOCK_ORIGINS = ("wall", "zero")
RELIABILITIES = ("reliable", "best_effort")
ZED_NAMINGS = ("current", "legacy")


def _doc(text: str, **kw: Any) -> Any:
    return field(metadata={"doc": text}, **kw)


@dataclass(frozen=True)
class SetupDefaults:
    """Per set-up topics (one per arm, in the simulator's arm order) and rates."""

    arms: tuple[str, ...]
    forward_topics: tuple[str, ...]
    trajectory_topics: tuple[str, ...]
    gripper_topics: tuple[str, ...]
    lockstep_period: float  # the executor's control period in config/<setup>.yaml
    pose_topics: tuple[str, ...] = ()  # Cartesian equilibrium-pose input per arm (none: not offered)
    pose_frame: str = ""  # the frame those poses must be in (the arm's base)


SETUP_DEFAULTS = {
    "franka": SetupDefaults(
        arms=("fr3",),
        forward_topics=("/forward_position_controller/commands",),
        trajectory_topics=("/fr3_arm_controller/joint_trajectory",),
        gripper_topics=("/fr3_gripper/opening_command",),
        lockstep_period=0.01,
        pose_topics=("/cartesian_impedance_controller/equilibrium_pose",),
        pose_frame="fr3_link0",
    ),
    "ur5_bimanual": SetupDefaults(
        arms=("left", "right"),
        forward_topics=(
            "/left_forward_position_controller/commands",
            "/right_forward_position_controller/commands",
        ),
        trajectory_topics=(
            "/left_scaled_joint_trajectory_controller/joint_trajectory",
            "/right_scaled_joint_trajectory_controller/joint_trajectory",
        ),
        gripper_topics=("/left_gripper/opening_command", "/right_gripper/opening_command"),
        lockstep_period=0.02,
    ),
}


def _check(cond: bool, name: str, value: object, need: str) -> None:
    if not cond:
        raise ValueError(f"parameter {name!r} {need}, got {value!r}")


@dataclass
class FakeRobotConfig:
    """Parameters of the ``tinyvla_fake_robot`` node (empty/0 = the set-up's default)."""

    setup: str = _doc("franka | ur5_bimanual", default="franka")
    task: str = _doc("task name or instruction ('' = the set-up's first task)", default="")
    seed: int = _doc("seed of the object poses (>= 0); ~/reset applies a new one", default=0)
    time_mode: str = _doc(
        "realtime | fast | lockstep (see tinyvla_ros.ros.fake_robot.pacing)", default="realtime"
    )
    real_time_factor: float = _doc("fast: speed-up (0 = unlimited); lockstep: cap (0 = none)", default=0.0)
    clock_origin: str = _doc(
        "wall: sim clock starts at the wall time (stamps ~ wall time); zero", default="wall"
    )
    max_lag: float = _doc("realtime: wall seconds behind before the clock slips forward", default=0.1)
    lockstep_topic: str = _doc(
        "executor tick topic (sensor_msgs/JointState)", default="/tinyvla_executor/preview"
    )
    lockstep_period: float = _doc("executor control period in s (0 = the set-up's)", default=0.0)
    lockstep_chunk_topic: str = _doc(
        "policy chunk topic (trajectory_msgs/JointTrajectory)", default="/tinyvla_policy/chunk"
    )
    lockstep_chunk_budget: float = _doc(
        "sim s the sim may run past the newest chunk's observation (0 = off)", default=0.25
    )
    lockstep_timeout: float = _doc(
        "wall seconds to wait for a node before running on in real time", default=2.0
    )
    image_noise: float = _doc(
        "std of the sensor noise added to images (intensity levels, 0 = none)", default=2.0
    )
    step_dt: float = _doc("sim seconds per loop step (/clock period)", default=0.01)
    physics_dt: float = _doc("MuJoCo time step (s)", default=0.002)
    joint_state_rate: float = _doc("/joint_states rate in sim Hz (<= 1/step_dt)", default=100.0)
    camera_rate: float = _doc("camera frame rate in sim Hz (<= 1/step_dt)", default=15.0)
    image_width: int = _doc("camera image width (px)", default=128)
    image_height: int = _doc("camera image height (px)", default=96)
    cameras_paused: list[str] = _doc(
        "cameras that publish nothing (runtime: fault injection)", default_factory=list
    )
    zed_topic_naming: str = _doc("ZED topics: current (wrapper >= 5.1) | legacy", default="current")
    camera_qos_reliability: str = _doc(
        "image QoS: reliable (the drivers' default) | best_effort", default="reliable"
    )
    joint_states_topic: str = _doc("sensor_msgs/JointState output", default="/joint_states")
    instruction_topic: str = _doc("latched std_msgs/String instruction output", default="instruction")
    forward_command_topics: list[str] = _doc("Float64MultiArray command topic per arm", default_factory=list)
    trajectory_command_topics: list[str] = _doc("JointTrajectory topic per arm", default_factory=list)
    gripper_command_topics: list[str] = _doc(
        "Float64MultiArray [opening] topic per arm", default_factory=list
    )
    pose_command_topics: list[str] = _doc(
        "PoseStamped equilibrium-pose topic per arm (Franka only; empty: the set-up's)", default_factory=list
    )
    success_period: float = _doc("sim seconds between success checks", default=0.1)
    diagnostics_period: float = _doc("wall seconds between /diagnostics messages", default=1.0)

    def __post_init__(self) -> None:
        _check(self.setup in SETUPS, "setup", self.setup, f"must be one of {list(SETUPS)}")
        _check(self.seed >= 0, "seed", self.seed, "must be >= 0")
        _check(
            self.time_mode in TIME_MODES, "time_mode", self.time_mode, f"must be one of {list(TIME_MODES)}"
        )
        _check(
            self.clock_origin in CLOCK_ORIGINS, "clock_origin", self.clock_origin, f"one of {CLOCK_ORIGINS}"
        )
        _check(
            self.zed_topic_naming in ZED_NAMINGS,
            "zed_topic_naming",
            self.zed_topic_naming,
            f"one of {ZED_NAMINGS}",
        )
        _check(
            self.camera_qos_reliability in RELIABILITIES,
            "camera_qos_reliability",
            self.camera_qos_reliability,
            f"must be one of {list(RELIABILITIES)}",
        )
        for name in (
            "max_lag",
            "lockstep_timeout",
            "step_dt",
            "physics_dt",
            "joint_state_rate",
            "camera_rate",
        ):
            value = getattr(self, name)
            _check(math.isfinite(value) and value > 0, name, value, "must be a finite number > 0")
        for name in ("success_period", "diagnostics_period"):
            value = getattr(self, name)
            _check(math.isfinite(value) and value > 0, name, value, "must be a finite number > 0")
        _check(0 <= self.image_noise <= 50, "image_noise", self.image_noise, "must be in [0, 50] levels")
        _check(
            self.lockstep_period >= 0, "lockstep_period", self.lockstep_period, "must be >= 0 (0 = default)"
        )
        _check(
            self.physics_dt <= self.step_dt and _whole(self.step_dt, self.physics_dt),
            "step_dt",
            self.step_dt,
            f"must be a whole multiple of physics_dt={self.physics_dt}",
        )
        for name in ("joint_state_rate", "camera_rate"):
            value = getattr(self, name)
            _check(
                value * self.step_dt <= 1.0 + 1e-9,
                name,
                value,
                f"must be <= 1/step_dt = {1 / self.step_dt:g} Hz",
            )
        for name in ("image_width", "image_height"):
            value = getattr(self, name)
            _check(8 <= value <= 4096, name, value, "must be in [8, 4096] px")
        arms = len(SETUP_DEFAULTS[self.setup].arms)
        for name in ("forward_command_topics", "trajectory_command_topics", "gripper_command_topics"):
            topics = getattr(self, name)
            _check(not topics or len(topics) == arms, name, topics, f"must be empty or name {arms} topic(s)")
        poses = self.pose_command_topics
        offered = len(SETUP_DEFAULTS[self.setup].pose_topics)
        _check(
            not poses or len(poses) == offered,
            "pose_command_topics",
            poses,
            f"must be empty or name {offered} topic(s) ({self.setup} fake offers {offered} pose input(s))",
        )
        self.pacing()  # validates real_time_factor and the lockstep values
        # lockstep waits for a chunk from an observation newer than the last one: a budget that stops
        # the sim before the next camera frame deadlocks the graph (the policy waits for a frame)
        budget = self.lockstep_chunk_budget
        _check(
            self.time_mode != "lockstep" or budget == 0 or budget * self.camera_rate > 1.0 + 1e-9,
            "lockstep_chunk_budget",
            budget,
            f"must exceed one camera period (1/camera_rate = {1 / self.camera_rate:.3f} s), or be 0 (off): "
            "the sim would stop before the frame the policy waits for",
        )

    @property
    def defaults(self) -> SetupDefaults:
        return SETUP_DEFAULTS[self.setup]

    def topics(self, kind: str) -> list[str]:
        """Command topics per arm for ``kind`` forward | trajectory | gripper | pose (defaults filled in;
        pose: only the arms that offer one)."""
        given = getattr(self, f"{kind}_command_topics")
        default = getattr(self.defaults, f"{kind}_topics")
        return list(given) if given else list(default)

    def pacing(self) -> PacingConfig:
        """The PacingConfig of these parameters (the set-up's lockstep period if 0)."""
        period = self.lockstep_period or self.defaults.lockstep_period
        return PacingConfig(
            self.time_mode,
            self.real_time_factor,
            self.max_lag,
            period,
            self.lockstep_timeout,
            self.lockstep_chunk_budget,
        )


def _whole(a: float, b: float) -> bool:
    ratio = a / b
    return abs(ratio - round(ratio)) < 1e-6


@dataclass(frozen=True)
class CameraOutput:
    """Where and how one simulated camera is published, as its real driver would."""

    name: str
    image_topic: str
    info_topic: str
    encoding: str
    frame_id: str
    distortion_model: str


def camera_output(name: str, model: str, encoding: str, zed_naming: str = "current") -> CameraOutput:
    """The real driver's topics/frame for sim camera ``name`` of ``model`` (zed2 | d435i)."""
    if model == "zed2":
        image, info = zed_rgb_topics(name, zed_naming)
        # zed_wrapper's rectified image: no distortion, rational_polynomial for the ZED 2 family.
        return CameraOutput(
            name, image, info, encoding, zed_optical_frame(name, zed_naming), "rational_polynomial"
        )
    if model == "d435i":
        root = f"/camera/{name}/color"  # rs_launch.py camera_namespace:=camera camera_name:=<name>
        return CameraOutput(
            name,
            f"{root}/image_raw",
            f"{root}/camera_info",
            encoding,
            realsense_optical_frame(name),
            "plumb_bob",
        )
    raise ValueError(f"camera {name!r}: unknown camera model {model!r} (expected zed2 | d435i)")


def camera_info_fields(output: CameraOutput, intrinsics: tuple[float, float, float, float, int, int]):
    """CameraInfoFields from the simulator's (fx, fy, cx, cy, width, height) (zero distortion)."""
    fx, fy, cx, cy, width, height = intrinsics
    return pinhole_camera_info(
        width, height, fx, fy, cx, cy, distortion_model=output.distortion_model, frame_id=output.frame_id
    )
