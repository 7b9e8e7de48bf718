"""Node configuration: validated dataclasses, declared as typed ROS parameters and read once.

Every node declares its parameters from one dataclass (``declare_dataclass``): the field's
default gives the parameter's default and type; the dataclass's ``__post_init__`` validates and
raises ValueError naming the field and the bad value. Parameters accept ints where a float is
expected (``control_rate: 100`` in YAML), and nothing else silently.

Per-camera settings live under ``cameras.<camera_name>.<field>`` (nested maps in a params
file), one CameraSpec per name listed in ``camera_names``; the policy's inpainting settings
under ``inpaint.<field>`` (InpaintSpec).
"""

from __future__ import annotations

import math
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor

from tinyvla_ros.core.control import ControlConfig

OUTPUTS = ("forward_position", "joint_trajectory", "ee_pose")
GRIPPER_OUTPUTS = ("auto", "topic", "franka_action", "none")
CAMERA_DRIVER_KINDS = ("zed", "realsense", "other")
TRANSPORTS = ("raw", "compressed")
RELIABILITIES = ("reliable", "best_effort", "best_available")


def _doc(text: str, **kw: Any) -> Any:
    """A dataclass field carrying the parameter's description."""
    return field(metadata={"doc": text}, **kw)


def _check(cond: bool, name: str, value: object, need: str) -> None:
    if not cond:
        raise ValueError(f"parameter {name!r} {need}, got {value!r}")


def _positive(name: str, value: float) -> None:
    _check(math.isfinite(value) and value > 0.0, name, value, "must be a finite number > 0")


def _one_of(name: str, value: str, options: tuple[str, ...]) -> None:
    _check(value in options, name, value, f"must be one of {list(options)}")


def _unique_nonempty(name: str, values: list[str]) -> None:
    _check(len(values) > 0 and all(values), name, values, "must be a non-empty list of non-empty names")
    _check(len(set(values)) == len(values), name, values, "must not repeat a name")


@dataclass
class CameraSpec:
    """One camera the policy listens to (``cameras.<name>.*``)."""

    topic: str = _doc("image topic, e.g. /zed_left/zed_node/rgb/color/rect/image", default="")
    encoding: str = _doc("encoding the driver is expected to publish (others are converted)", default="rgb8")
    transport: str = _doc(
        "raw (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage)", default="raw"
    )
    width: int = _doc("expected image width in pixels, 0 = accept any", default=0)
    height: int = _doc("expected image height in pixels, 0 = accept any", default=0)
    driver: str = _doc("who publishes it: zed | realsense | other (camera_driver:=direct)", default="other")
    serial: str = _doc("camera serial number / ZED id for camera_driver:=direct", default="")

    def __post_init__(self) -> None:
        _check(bool(self.topic), "cameras.*.topic", self.topic, "must be a topic name")
        _one_of("cameras.*.transport", self.transport, TRANSPORTS)
        _check(
            self.width >= 0 and self.height >= 0, "cameras.*.width/height", (self.width, self.height), ">= 0"
        )
        _one_of("cameras.*.driver", self.driver, CAMERA_DRIVER_KINDS)


@dataclass
class InpaintSpec:
    """Inpainting of committed steps into new chunks (``inpaint.*`` of the policy node).

    The prefix of a chunk predicted from an observation at s: the executor's committed steps
    mapped onto s + i * action_dt; weight 1 up to the expected arrival (now + inference delay EMA)
    plus ``margin_steps``, then a linear decay over ``soft_decay_steps``, 0 after.
    """

    enabled: bool = _doc("inpaint the executor's committed steps into each new chunk", default=False)
    committed_topic: str = _doc(
        "JointTrajectory of the executor's committed steps", default="tinyvla_executor/committed"
    )
    soft_decay_steps: int = _doc("steps after the committed ones whose weight decays to 0", default=4)
    margin_steps: int = _doc("extra steps held exactly beyond the expected arrival (jitter)", default=1)
    delay_alpha: float = _doc("weight of the newest inference time in the delay EMA, (0, 1]", default=0.3)
    max_committed_age: float = _doc("ignore a committed plan received longer ago than this (s)", default=0.5)

    def __post_init__(self) -> None:
        _check(
            bool(self.committed_topic),
            "inpaint.committed_topic",
            self.committed_topic,
            "must be a topic name",
        )
        _check(self.soft_decay_steps >= 0, "inpaint.soft_decay_steps", self.soft_decay_steps, "must be >= 0")
        _check(self.margin_steps >= 0, "inpaint.margin_steps", self.margin_steps, "must be >= 0")
        _check(
            math.isfinite(self.delay_alpha) and 0.0 < self.delay_alpha <= 1.0,
            "inpaint.delay_alpha",
            self.delay_alpha,
            "must be in (0, 1]",
        )
        _positive("inpaint.max_committed_age", self.max_committed_age)


@dataclass
class PolicyNodeConfig:
    """Parameters of the ``tinyvla_policy`` lifecycle node."""

    checkpoint: str = _doc("checkpoint directory (config.json, model.safetensors, stats.json)", default="")
    engine: str = _doc(
        "inference engine (tinyvla_ros.vla.engines.base.ENGINES): torch, onnx, ...", default="torch"
    )
    device: str = _doc("torch device: cpu, cuda, cuda:0 ...", default="cpu")
    precision: str = _doc("fp32 | bf16 | fp16 | int8 (int8: engine onnx on cpu)", default="fp32")
    num_threads: int = _doc("torch intra-op threads, 0 = library default", default=0)
    nice: int = _doc(
        "niceness added to the policy process at start (0-19): the executor's ticks come first", default=10
    )
    warmup_runs: int = _doc("inference runs on blank inputs during configure", default=2)
    instruction: str = _doc("language instruction (the latched topic overrides it)", default="")
    instruction_topic: str = _doc("latched std_msgs/String instruction topic", default="instruction")
    camera_names: list[str] = _doc("cameras in the checkpoint's order", default_factory=list)
    state_joint_names: list[str] = _doc("joint names forming the state vector", default_factory=list)
    action_names: list[str] = _doc(
        "one name per action dimension (the chunk's joint_names)", default_factory=list
    )
    joint_states_topic: str = _doc("sensor_msgs/JointState topic", default="/joint_states")
    chunk_topic: str = _doc("output JointTrajectory chunk topic", default="~/chunk")
    inference_rate: float = _doc("maximum inferences per second", default=10.0)
    action_dt: float = _doc("seconds between consecutive steps of a chunk", default=0.05)
    max_age: float = _doc("reject an observation whose frames are older than this (s)", default=0.25)
    max_start_age: float = _doc(
        "frames older than this (s) when the worker is free: wait up to this long for newer ones; 0 = off",
        default=0.0,
    )
    max_skew: float = _doc("reject when the cameras' frames are further apart than this (s)", default=0.05)
    frozen_timeout: float = _doc("a camera whose stamp stops advancing this long is frozen (s)", default=0.5)
    buffer_len: int = _doc("frames kept per camera", default=8)
    seed: int = _doc("diffusion noise seed, -1 = fresh noise per chunk", default=-1)
    qos_reliability: str = _doc(
        "camera/joint-state QoS: reliable | best_effort | best_available", default="reliable"
    )
    qos_depth: int = _doc("camera/joint-state QoS history depth", default=5)
    diagnostics_period: float = _doc("seconds between /diagnostics messages", default=1.0)
    cameras: dict[str, CameraSpec] = field(default_factory=dict, metadata={"ros": False})
    inpaint: InpaintSpec = field(default_factory=InpaintSpec, metadata={"ros": False})

    def __post_init__(self) -> None:
        if isinstance(self.inpaint, dict):  # a params file's nested ``inpaint:`` map
            self.inpaint = InpaintSpec(**self.inpaint)
        # the engine name is checked by tinyvla_ros.vla.engines at configure (the list grows there)
        _check(bool(self.engine), "engine", self.engine, "must name an inference engine (e.g. torch, onnx)")
        _one_of("precision", self.precision, ("fp32", "bf16", "fp16", "int8"))
        _check(self.num_threads >= 0, "num_threads", self.num_threads, "must be >= 0")
        _check(0 <= self.nice <= 19, "nice", self.nice, "must be 0-19")
        _check(self.warmup_runs >= 0, "warmup_runs", self.warmup_runs, "must be >= 0")
        _unique_nonempty("camera_names", self.camera_names)
        _unique_nonempty("state_joint_names", self.state_joint_names)
        _unique_nonempty("action_names", self.action_names)
        for name in (
            "inference_rate",
            "action_dt",
            "max_age",
            "max_skew",
            "frozen_timeout",
            "diagnostics_period",
        ):
            _positive(name, getattr(self, name))
        _check(
            math.isfinite(self.max_start_age) and self.max_start_age >= 0.0,
            "max_start_age",
            self.max_start_age,
            "must be a finite number >= 0 (0 = off)",
        )
        _check(self.buffer_len >= 1, "buffer_len", self.buffer_len, "must be >= 1")
        _check(self.seed >= -1, "seed", self.seed, "must be >= -1")
        _one_of("qos_reliability", self.qos_reliability, RELIABILITIES)
        _check(self.qos_depth >= 1, "qos_depth", self.qos_depth, "must be >= 1")
        if self.cameras:
            missing = [n for n in self.camera_names if n not in self.cameras]
            _check(
                not missing, "cameras", missing, "must give a CameraSpec (cameras.<name>.topic) per camera"
            )


@dataclass
class ExecutorNodeConfig:
    """Parameters of the ``tinyvla_executor`` node."""

    robot: str = _doc("robot spec (config/robots/<robot>.yaml): fr3 | ur5", default="fr3")
    action_layout: str = _doc("franka_joint | franka_ee | ur5_bimanual_joint", default="franka_joint")
    action_names: list[str] = _doc(
        "expected chunk joint_names (empty: the layout's names)", default_factory=list
    )
    arm_prefixes: list[str] = _doc(
        "joint-name prefix per arm ('' for one arm, left_/right_)", default_factory=list
    )
    joint_states_topic: str = _doc("sensor_msgs/JointState topic", default="/joint_states")
    chunk_topic: str = _doc(
        "JointTrajectory chunk topic from the policy node", default="tinyvla_policy/chunk"
    )
    control_rate: float = _doc("command rate in Hz", default=100.0)
    action_dt: float = _doc("seconds between chunk steps (must match the policy's)", default=0.05)
    chunk_len: int = _doc("steps per chunk (the checkpoint's chunk_len)", default=16)
    execution_mode: str = _doc(
        "open_loop | temporal_ensemble | overlap_blend | inpaint", default="temporal_ensemble"
    )
    open_loop_steps: int = _doc("open_loop: steps executed per chunk", default=8)
    ensemble_k: float = _doc("temporal_ensemble: weight exp(-k i), i = age index", default=0.01)
    blend_steps: int = _doc("overlap_blend: overlapping steps blended", default=4)
    hold_after: float = _doc("hold when no fresh chunk or joint state for this long (s)", default=0.5)
    committed_topic: str = _doc("JointTrajectory of the steps committed from now on", default="~/committed")
    committed_rate: float = _doc(
        "Hz of ~/committed besides each accepted chunk (0: only on chunks)", default=20.0
    )
    enable_actuation: bool = _doc("publish controller commands (false: only ~/preview)", default=False)
    output: str = _doc("forward_position | joint_trajectory | ee_pose", default="forward_position")
    forward_command_topics: list[str] = _doc("Float64MultiArray topic per arm", default_factory=list)
    trajectory_command_topics: list[str] = _doc("JointTrajectory topic per arm", default_factory=list)
    pose_command_topics: list[str] = _doc("PoseStamped target topic per arm", default_factory=list)
    trajectory_horizon: float = _doc("joint_trajectory: seconds until the sent point (short)", default=0.04)
    ee_frame_id: str = _doc("frame of ee_pose targets", default="fr3_link0")
    gripper_output: str = _doc(
        "auto (franka_action if franka_msgs imports, else topic) | topic | franka_action | none",
        default="topic",
    )
    gripper_topics: list[str] = _doc("Float64MultiArray [opening 0..1] topic per arm", default_factory=list)
    gripper_action_ns: list[str] = _doc("franka_msgs action namespace per arm", default_factory=list)
    gripper_open_width: float = _doc("franka_action: width to open to (m)", default=0.08)
    gripper_speed: float = _doc("franka_action: finger speed (m/s)", default=0.1)
    gripper_force: float = _doc("franka_action: grasp force (N)", default=40.0)
    gripper_epsilon: float = _doc("franka_action: grasp epsilon inner/outer (m)", default=0.08)
    qos_reliability: str = _doc(
        "joint-state QoS: reliable | best_effort | best_available", default="reliable"
    )
    diagnostics_period: float = _doc("seconds between /diagnostics messages", default=1.0)

    def __post_init__(self) -> None:
        self.control_config()  # validates the control loop's fields
        for name in ("trajectory_horizon", "diagnostics_period"):
            _positive(name, getattr(self, name))
        _check(bool(self.committed_topic), "committed_topic", self.committed_topic, "must be a topic name")
        _check(
            math.isfinite(self.committed_rate) and self.committed_rate >= 0.0,
            "committed_rate",
            self.committed_rate,
            "must be a finite number >= 0",
        )
        _one_of("output", self.output, OUTPUTS)
        _one_of("gripper_output", self.gripper_output, GRIPPER_OUTPUTS)
        _one_of("qos_reliability", self.qos_reliability, RELIABILITIES)
        arms = len(self.arm_prefixes)
        topics = self.command_topics()
        _check(len(topics) == arms, self._topic_field(), topics, f"must give one topic per arm ({arms})")
        if self.gripper_output in ("topic", "auto"):
            _check(
                len(self.gripper_topics) == arms,
                "gripper_topics",
                self.gripper_topics,
                f"needs {arms} topics",
            )
        if self.gripper_output in ("franka_action", "auto"):
            _check(
                len(self.gripper_action_ns) == arms,
                "gripper_action_ns",
                self.gripper_action_ns,
                f"needs {arms}",
            )
        if self.output == "ee_pose":
            _check(
                self.action_layout == "franka_ee",
                "output",
                self.output,
                "ee_pose needs action_layout franka_ee",
            )
        else:
            _check(
                self.action_layout != "franka_ee",
                "action_layout",
                self.action_layout,
                f"cannot drive {self.output}",
            )

    def _topic_field(self) -> str:
        return {"forward_position": "forward", "joint_trajectory": "trajectory", "ee_pose": "pose"}[
            self.output
        ] + "_command_topics"

    def control_config(self) -> ControlConfig:
        """The control loop's settings (core.control), validated."""
        return ControlConfig.from_params(dataclass_to_parameters(self))

    def command_topics(self) -> list[str]:
        """The controller topics (one per arm) of the selected ``output``."""
        return list(getattr(self, self._topic_field()))


# --- declaring dataclasses as ROS parameters ----------------------------------------------


_SCALARS = {bool: "bool", int: "int", float: "float", str: "str"}


def _field_kind(tp: Any) -> str:
    """'bool' | 'int' | 'float' | 'str' | 'list[<scalar>]' for a dataclass field's type hint."""
    if tp in _SCALARS:
        return _SCALARS[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (list, tuple) and args and args[0] in _SCALARS:
        return f"list[{_SCALARS[args[0]]}]"
    raise TypeError(f"cannot declare a ROS parameter of type {tp!r}")


def coerce(name: str, kind: str, value: Any) -> Any:
    """Convert a parameter value to the field's kind; ValueError naming the field otherwise."""
    if kind.startswith("list["):
        if value is None:  # an empty list in a params file arrives as "not set"
            return []
        if not isinstance(value, list | tuple):
            raise ValueError(f"parameter {name!r} must be a list, got {value!r}")
        return [coerce(name, kind[5:-1], v) for v in value]
    if kind == "float" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    expected = {"bool": bool, "int": int, "str": str, "float": float}[kind]
    if not isinstance(value, expected) or (kind == "int" and isinstance(value, bool)):
        raise ValueError(f"parameter {name!r} must be of type {kind}, got {value!r}")
    return value


def _default(f: Any) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    raise TypeError(f"field {f.name} needs a default to be a ROS parameter")


def declare_dataclass(node: Any, cls: type, prefix: str = "", **extra: Any) -> Any:
    """Declare ``cls``'s fields as parameters ``<prefix><field>`` on ``node``, read them, build ``cls``.

    Fields with metadata ``{"ros": False}`` are not declared; pass them in ``extra``.
    Raises ValueError (naming the parameter and the value) on a wrong type or a failed check.
    """
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):
        if not f.metadata.get("ros", True):
            continue
        name = prefix + f.name
        kind = _field_kind(hints[f.name])
        descriptor = ParameterDescriptor(description=f.metadata.get("doc", ""), dynamic_typing=True)
        if not node.has_parameter(name):
            node.declare_parameter(name, _default(f), descriptor)
        values[f.name] = coerce(name, kind, node.get_parameter(name).value)
    try:
        return cls(**values, **extra)
    except ValueError as exc:
        if prefix:
            raise ValueError(f"{prefix.rstrip('.')}: {exc}") from exc
        raise


def dataclass_to_parameters(obj: Any) -> dict[str, Any]:
    """The ROS-declared fields of a config instance as a flat parameter dict."""
    return {f.name: getattr(obj, f.name) for f in fields(obj) if f.metadata.get("ros", True)}


def declare_policy_config(node: Any) -> PolicyNodeConfig:
    """Declare and read the policy node's parameters, cameras included."""
    base = declare_dataclass(node, PolicyNodeConfig)
    cameras = {n: declare_dataclass(node, CameraSpec, prefix=f"cameras.{n}.") for n in base.camera_names}
    inpaint = declare_dataclass(node, InpaintSpec, prefix="inpaint.")
    return PolicyNodeConfig(**dataclass_to_parameters(base), cameras=cameras, inpaint=inpaint)
