"""Typestore messages <-> NumPy, without ROS: what the bag tools write and read.

Mirrors ``tinyvla_ros.ros.conversions`` (which works on rclpy message classes) for the rosbags
typestore classes, so that bags written here carry byte-for-byte the same message layout the real
drivers and our nodes publish:

- camera frames: sensor_msgs/Image (header.stamp = capture time) or sensor_msgs/CompressedImage;
- joint states: sensor_msgs/JointState (names + positions [+ velocities]);
- action chunks: trajectory_msgs/JointTrajectory, header.stamp = observation time,
  points[i].positions = row i, points[i].time_from_start = i * dt;
- instruction: std_msgs/String; sim time: rosgraph_msgs/Clock.

Times are float seconds in the public API and int nanoseconds on the wire.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tinyvla_ros.data.bag import msg_class

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
JOINT_STATE = "sensor_msgs/msg/JointState"
TRAJECTORY = "trajectory_msgs/msg/JointTrajectory"
STRING = "std_msgs/msg/String"
FLOAT_ARRAY = "std_msgs/msg/Float64MultiArray"
CLOCK = "rosgraph_msgs/msg/Clock"


def sec_to_ns(t: float) -> int:
    """Float seconds (finite, >= 0) -> int nanoseconds (rounded)."""
    if not math.isfinite(t) or t < 0.0:
        raise ValueError(f"time must be finite and >= 0 s, got {t!r}")
    return int(round(t * 1e9))


def time_msg(t: float) -> Any:
    """Float seconds -> builtin_interfaces/Time."""
    ns = sec_to_ns(t)
    return msg_class("builtin_interfaces/msg/Time")(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def duration_msg(t: float) -> Any:
    """Float seconds -> builtin_interfaces/Duration."""
    ns = sec_to_ns(t)
    return msg_class("builtin_interfaces/msg/Duration")(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def stamp_sec(stamp: Any) -> float:
    """builtin_interfaces/Time or Duration -> float seconds."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def stamp_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> int nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def header(t: float, frame_id: str = "") -> Any:
    return msg_class("std_msgs/msg/Header")(stamp=time_msg(t), frame_id=frame_id)


# --- images ---------------------------------------------------------------------------------


def image_msg(rgb: np.ndarray, encoding: str, t: float, frame_id: str) -> Any:
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image in ``encoding`` (rgb8, bgr8, bgra8, rgba8, mono8...)."""
    from tinyvla_ros.core.images import encode_image

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got shape {rgb.shape} dtype {rgb.dtype}")
    step, data = encode_image(rgb, encoding)
    return msg_class(IMAGE)(
        header=header(t, frame_id),
        height=int(rgb.shape[0]),
        width=int(rgb.shape[1]),
        encoding=encoding,
        is_bigendian=0,
        step=int(step),
        data=np.frombuffer(bytes(data), dtype=np.uint8),
    )


def image_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/Image or CompressedImage (typestore object) -> (H, W, 3) uint8 RGB.

    Raises tinyvla_ros.core.images.ImageFormatError (a ValueError) naming an unsupported encoding
    or a buffer that does not fit its height/step.
    """
    from tinyvla_ros.core.images import decode_compressed, decode_image

    if msg.__msgtype__ == COMPRESSED_IMAGE:
        return decode_compressed(msg.format, bytes(msg.data))
    return decode_image(
        msg.encoding, int(msg.height), int(msg.width), int(msg.step), bytes(msg.data), int(msg.is_bigendian)
    )


# --- joint states ---------------------------------------------------------------------------


def joint_state_msg(
    names: Sequence[str], positions: np.ndarray, t: float, velocities: np.ndarray | None = None
) -> Any:
    """Names + (N,) positions (+ (N,) velocities) -> sensor_msgs/JointState at time t."""
    positions = np.asarray(positions, dtype=np.float64).reshape(-1)
    if positions.shape[0] != len(names):
        raise ValueError(f"JointState: {len(names)} names but {positions.shape[0]} positions")
    vel = np.zeros(0) if velocities is None else np.asarray(velocities, dtype=np.float64).reshape(-1)
    return msg_class(JOINT_STATE)(
        header=header(t),
        name=list(names),
        position=positions,
        velocity=vel,
        effort=np.zeros(0, dtype=np.float64),
    )


def joint_state_fields(msg: Any) -> tuple[float, list[str], np.ndarray]:
    """sensor_msgs/JointState -> (stamp s, names, (N,) float64 positions); ValueError on length mismatch."""
    names = list(msg.name)
    positions = np.asarray(msg.position, dtype=np.float64)
    if positions.shape != (len(names),):
        raise ValueError(f"JointState has {len(names)} names but {positions.shape[0]} positions")
    return stamp_sec(msg.header.stamp), names, positions


def select_joints(names: Sequence[str], values: np.ndarray, wanted: Sequence[str], what: str) -> np.ndarray:
    """Reorder ``values`` (N,) given ``names`` into ``wanted`` order -> (len(wanted),) float64.

    Raises ValueError naming the missing joints.
    """
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in wanted if n not in index]
    if missing:
        raise ValueError(f"{what}: joints {missing} are missing from the message names {list(names)}")
    return np.asarray([values[index[n]] for n in wanted], dtype=np.float64)


# --- chunks, strings, arrays, clock ---------------------------------------------------------


def chunk_msg(chunk: np.ndarray, names: Sequence[str], t: float, dt: float) -> Any:
    """(T, A) chunk -> trajectory_msgs/JointTrajectory (stamp = observation time, step i at i * dt)."""
    chunk = np.asarray(chunk, dtype=np.float64)
    if chunk.ndim != 2 or chunk.shape[1] != len(names):
        raise ValueError(f"chunk shape {chunk.shape} does not fit {len(names)} action names")
    if not dt > 0.0:
        raise ValueError(f"chunk dt must be > 0, got {dt!r}")
    point = msg_class("trajectory_msgs/msg/JointTrajectoryPoint")
    empty = np.zeros(0, dtype=np.float64)
    points = [
        point(
            positions=row,
            velocities=empty,
            accelerations=empty,
            effort=empty,
            time_from_start=duration_msg(i * dt),
        )
        for i, row in enumerate(chunk)
    ]
    return msg_class(TRAJECTORY)(header=header(t), joint_names=list(names), points=points)


def chunk_array(msg: Any, names: Sequence[str] | None = None) -> tuple[float, np.ndarray]:
    """JointTrajectory chunk -> (stamp s, (T, A) float64), columns reordered to ``names`` if given."""
    full = np.asarray(
        [np.asarray(p.positions, dtype=np.float64) for p in msg.points]
    )  # (T, len(joint_names))
    if names is not None:
        order = [list(msg.joint_names).index(n) for n in names]
        full = full[:, order]
    return stamp_sec(msg.header.stamp), full


def string_msg(text: str) -> Any:
    return msg_class(STRING)(data=str(text))


def float_array_msg(values: Sequence[float] | np.ndarray) -> Any:
    """(N,) -> std_msgs/Float64MultiArray with one dimension."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    dim = msg_class("std_msgs/msg/MultiArrayDimension")(label="", size=len(values), stride=len(values))
    layout = msg_class("std_msgs/msg/MultiArrayLayout")(dim=[dim], data_offset=0)
    return msg_class(FLOAT_ARRAY)(layout=layout, data=values)


def clock_msg(t: float) -> Any:
    return msg_class(CLOCK)(clock=time_msg(t))
