"""tinyvla_ros.core: the ROS-free, torch-free runtime (plain Python + NumPy).

- images:      sensor_msgs Image / CompressedImage payloads <-> RGB arrays
- observation: multi-camera ring buffers, anchor-time alignment, joint-state interpolation
- chunking:    timestamped action-chunk execution (open_loop, temporal_ensemble, overlap_blend, inpaint)
- safety:      joint / end-effector safety filters, gripper hysteresis
- robots:      robot specs from config/robots/*.yaml, DH forward kinematics, action layouts
- rotations:   6-D rotation, quaternion, Euler, rotation-vector conversions
- stats:       rolling latency percentiles and counters for diagnostics

Nothing here imports rclpy or torch.
"""

from tinyvla_ros.core.chunking import EXECUTION_MODES, ChunkExecutor, ChunkExecutorConfig
from tinyvla_ros.core.images import (
    SUPPORTED_ENCODINGS,
    ImageFormatError,
    check_image_shape,
    decode_compressed,
    decode_image,
    encode_compressed,
    encode_image,
)
from tinyvla_ros.core.observation import Observation, ObservationAssembler, ObservationConfig, Rejection
from tinyvla_ros.core.robots import ActionLayout, ArmAction, RobotSpec, load_robot_spec, make_action_layout
from tinyvla_ros.core.safety import (
    GripperHysteresis,
    PoseLimits,
    PoseSafetyFilter,
    SafetyFilter,
    SafetyLimits,
    SafetyResult,
)
from tinyvla_ros.core.stats import Counters, LatencyStats

__all__ = [
    "ActionLayout",
    "ArmAction",
    "ChunkExecutor",
    "ChunkExecutorConfig",
    "Counters",
    "EXECUTION_MODES",
    "GripperHysteresis",
    "ImageFormatError",
    "LatencyStats",
    "Observation",
    "ObservationAssembler",
    "ObservationConfig",
    "PoseLimits",
    "PoseSafetyFilter",
    "Rejection",
    "RobotSpec",
    "SUPPORTED_ENCODINGS",
    "SafetyFilter",
    "SafetyLimits",
    "SafetyResult",
    "check_image_shape",
    "decode_compressed",
    "decode_image",
    "encode_compressed",
    "encode_image",
    "load_robot_spec",
    "make_action_layout",
]
