"""Message <-> NumPy conversion: the one place where ROS messages meet arrays.

Times are float seconds on the node's clock (``stamp_to_sec``); images are (H, W, 3) uint8 RGB;
an action chunk is a (T, A) float array whose row i is the action for time stamp + i * dt.

A chunk travels as trajectory_msgs/JointTrajectory so that bag and plotting tools read it:
header.stamp = observation stamp, joint_names = action names (A), points[i].positions = row i,
points[i].time_from_start = i * dt.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray, MultiArrayDimension
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from tinyvla_ros.core.images import decode_compressed, decode_image, encode_image
from tinyvla_ros.core.rotations import matrix_to_quaternion


class ChunkFormatError(ValueError):
    """A chunk message that cannot be executed (names, lengths, non-finite offsets...)."""


# --- time ---------------------------------------------------------------------------------


def stamp_to_sec(stamp: Time) -> float:
    """builtin_interfaces/Time -> float seconds."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def sec_to_stamp(t: float) -> Time:
    """Float seconds (>= 0) -> builtin_interfaces/Time (nanoseconds rounded)."""
    if not math.isfinite(t) or t < 0.0:
        raise ValueError(f"stamp must be a finite time >= 0 s, got {t!r}")
    total_ns = int(round(t * 1e9))
    return Time(sec=total_ns // 1_000_000_000, nanosec=total_ns % 1_000_000_000)


def sec_to_duration(t: float) -> Duration:
    """Float seconds (>= 0) -> builtin_interfaces/Duration."""
    stamp = sec_to_stamp(t)
    return Duration(sec=stamp.sec, nanosec=stamp.nanosec)


def duration_to_sec(d: Duration) -> float:
    """builtin_interfaces/Duration -> float seconds."""
    return float(d.sec) + float(d.nanosec) * 1e-9


# --- images -------------------------------------------------------------------------------


def image_to_rgb(msg: Image) -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB; honours ``step`` and the encoding.

    Raises tinyvla_ros.core.images.ImageFormatError (a ValueError) naming an unknown encoding
    or a buffer that does not fit height/step.
    """
    return decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png, image_transport ``format``) -> (H, W, 3) uint8 RGB."""
    return decode_compressed(msg.format, bytes(msg.data))


def rgb_to_image(rgb: np.ndarray, encoding: str, stamp: float, frame_id: str) -> Image:
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image in ``encoding`` (what a camera driver publishes)."""
    step, data = encode_image(rgb, encoding)
    msg = Image()
    msg.header.stamp = sec_to_stamp(stamp)
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(step)
    msg.data = data
    return msg


# --- joint states -------------------------------------------------------------------------


def joint_state_fields(msg: JointState) -> tuple[float, list[str], np.ndarray]:
    """sensor_msgs/JointState -> (stamp s, names, positions (N,) float64).

    Raises ValueError when names and positions differ in length.
    """
    names = list(msg.name)
    positions = np.asarray(msg.position, dtype=np.float64)
    if positions.shape != (len(names),):
        raise ValueError(f"JointState has {len(names)} names but {positions.shape[0]} positions")
    return stamp_to_sec(msg.header.stamp), names, positions


def joint_state(names: Sequence[str], positions: np.ndarray, stamp: float, velocities=None) -> JointState:
    """Names + (N,) positions (+ optional (N,) velocities) -> sensor_msgs/JointState."""
    msg = JointState()
    msg.header.stamp = sec_to_stamp(stamp)
    msg.name = list(names)
    msg.position = [float(x) for x in positions]
    if velocities is not None:
        msg.velocity = [float(x) for x in velocities]
    return msg


# --- action chunks ------------------------------------------------------------------------


def chunk_to_trajectory(chunk: np.ndarray, names: Sequence[str], stamp: float, dt: float) -> JointTrajectory:
    """(T, A) chunk -> JointTrajectory (stamp = observation time, step i at i * dt)."""
    chunk = np.asarray(chunk, dtype=np.float64)
    if chunk.ndim != 2 or chunk.shape[1] != len(names):
        raise ChunkFormatError(f"chunk shape {chunk.shape} does not fit {len(names)} action names")
    if not dt > 0.0:
        raise ChunkFormatError(f"chunk dt must be > 0, got {dt!r}")
    msg = JointTrajectory()
    msg.header.stamp = sec_to_stamp(stamp)
    msg.joint_names = list(names)
    for i, row in enumerate(chunk):
        point = JointTrajectoryPoint()
        point.positions = [float(x) for x in row]
        point.time_from_start = sec_to_duration(i * dt)
        msg.points.append(point)
    return msg


def trajectory_to_chunk(
    msg: JointTrajectory, expected_names: Sequence[str]
) -> tuple[float, np.ndarray, float]:
    """JointTrajectory chunk -> (stamp s, (T, A) float64 in expected_names order, dt s).

    Columns are reordered by name. Raises ChunkFormatError when names are missing, a point has
    the wrong length, there are fewer than 2 points, or the offsets are not evenly spaced.
    """
    names = list(msg.joint_names)
    missing = [n for n in expected_names if n not in names]
    if missing:
        raise ChunkFormatError(f"chunk joint_names {names} lack expected action names {missing}")
    if len(msg.points) < 2:
        raise ChunkFormatError(f"chunk needs >= 2 points, got {len(msg.points)}")
    rows = []
    for i, point in enumerate(msg.points):
        if len(point.positions) != len(names):
            raise ChunkFormatError(
                f"chunk point {i} has {len(point.positions)} positions, expected {len(names)}"
            )
        rows.append(point.positions)
    full = np.asarray(rows, dtype=np.float64)  # (T, len(names))
    chunk = full[:, [names.index(n) for n in expected_names]]  # (T, A)
    offsets = np.array([duration_to_sec(p.time_from_start) for p in msg.points])  # (T,)
    steps = np.diff(offsets)
    dt = float(steps[0])
    if not dt > 0.0 or not np.allclose(steps, dt, rtol=1e-3, atol=1e-6):
        raise ChunkFormatError(f"chunk time_from_start offsets are not evenly spaced: {offsets.tolist()}")
    if abs(offsets[0]) > 1e-6:
        raise ChunkFormatError(f"chunk first time_from_start must be 0, got {offsets[0]}")
    return stamp_to_sec(msg.header.stamp), chunk, dt


# --- controller commands ------------------------------------------------------------------


def float_array(values: Sequence[float] | np.ndarray, label: str = "") -> Float64MultiArray:
    """(N,) values -> std_msgs/Float64MultiArray (one labelled dimension)."""
    values = [float(x) for x in values]
    msg = Float64MultiArray()
    msg.layout.dim = [MultiArrayDimension(label=label, size=len(values), stride=len(values))]
    msg.data = values
    return msg


def trajectory_command(
    names: Sequence[str],
    positions: Sequence[np.ndarray],
    velocities: Sequence[np.ndarray],
    times: Sequence[float],
) -> JointTrajectory:
    """Points (positions (N,), velocities (N,), time_from_start s) -> JointTrajectory.

    header.stamp stays 0: the joint trajectory controller starts it on arrival, replacing the
    previous one. Positions + velocities make the controller interpolate with cubic splines.
    """
    msg = JointTrajectory()
    msg.joint_names = list(names)
    for pos, vel, t in zip(positions, velocities, times, strict=True):
        point = JointTrajectoryPoint()
        point.positions = [float(x) for x in pos]
        point.velocities = [float(x) for x in vel]
        point.time_from_start = sec_to_duration(t)
        msg.points.append(point)
    return msg


def pose_stamped(xyz: np.ndarray, rotation: np.ndarray, stamp: float, frame_id: str) -> PoseStamped:
    """xyz (3,) metres + rotation matrix (3, 3) -> geometry_msgs/PoseStamped (quaternion x, y, z, w)."""
    quat = np.asarray(matrix_to_quaternion(np.asarray(rotation, dtype=np.float64)), dtype=np.float64)
    msg = PoseStamped()
    msg.header.stamp = sec_to_stamp(stamp)
    msg.header.frame_id = frame_id
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in xyz)
    o = msg.pose.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in quat)
    return msg


# --- diagnostics --------------------------------------------------------------------------

LEVELS = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN, "error": DiagnosticStatus.ERROR}


def diagnostic_status(
    name: str, hardware_id: str, level: str, message: str, values: dict
) -> DiagnosticStatus:
    """One DiagnosticStatus: level "ok" | "warn" | "error", values rendered as strings."""
    status = DiagnosticStatus()
    status.level = LEVELS[level]
    status.name = name
    status.hardware_id = hardware_id
    status.message = message
    status.values = [KeyValue(key=str(k), value=_fmt(v)) for k, v in values.items()]
    return status


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
