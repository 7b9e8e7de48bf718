"""sensor_msgs / diagnostic_msgs construction for the camera nodes, and the wrappers' topic names."""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from tinyvla_ros.core.camera_calib import CameraInfoFields, ns_to_stamp
from tinyvla_ros.ros.cameras.health import HealthReport

RELIABILITIES = ("reliable", "best_effort")
_LEVEL_BYTES = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN, "error": DiagnosticStatus.ERROR}


def stamp_msg(ns: int) -> Time:
    """builtin_interfaces/Time from nanoseconds since the epoch."""
    sec, nanosec = ns_to_stamp(ns)
    return Time(sec=sec, nanosec=nanosec)


def image_msg(image: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Image:
    """sensor_msgs/Image from a (H, W, C) uint8 or (H, W) uint16 array (little-endian, tight rows)."""
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    data = np.ascontiguousarray(image)
    if data.dtype.byteorder == ">":
        data = data.astype(data.dtype.newbyteorder("<"))
    msg = Image()
    msg.header.stamp = stamp_msg(stamp_ns)
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(data.shape[0]), int(data.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(data.strides[0])
    msg.data = data.tobytes()
    return msg


def camera_info_msg(fields: CameraInfoFields, stamp_ns: int) -> CameraInfo:
    """sensor_msgs/CameraInfo from plain calibration fields."""
    msg = CameraInfo()
    msg.header.stamp = stamp_msg(stamp_ns)
    msg.header.frame_id = fields.frame_id
    msg.width, msg.height = int(fields.width), int(fields.height)
    msg.distortion_model = fields.distortion_model
    msg.d = [float(v) for v in fields.d]
    msg.k = [float(v) for v in fields.k]
    msg.r = [float(v) for v in fields.r]
    msg.p = [float(v) for v in fields.p]
    return msg


def diagnostic_status(name: str, hardware_id: str, report: HealthReport) -> DiagnosticStatus:
    """diagnostic_msgs/DiagnosticStatus from a camera's HealthReport."""
    return DiagnosticStatus(
        level=_LEVEL_BYTES[report.level],
        name=name,
        message=report.message,
        hardware_id=hardware_id,
        values=[KeyValue(key=k, value=v) for k, v in report.values.items()],
    )


def image_qos(reliability: str, depth: int) -> QoSProfile:
    """Image publisher QoS: keep-last ``depth``, reliable (the wrappers' default) or best effort."""
    if reliability not in RELIABILITIES:
        raise ValueError(f"qos_reliability must be one of {list(RELIABILITIES)}, got {reliability!r}")
    if depth < 1:
        raise ValueError(f"qos_depth must be >= 1, got {depth!r}")
    policy = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=policy)


def info_qos() -> QoSProfile:
    """CameraInfo publisher QoS: reliable, keep-last 10 (rmw default, as the wrappers use)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)


def realsense_topics(camera_namespace: str, camera_name: str, stream: str) -> tuple[str, str]:
    """(image, camera_info) topics of realsense2_camera for ``stream``.

    color -> /<ns>/<name>/color/image_raw; depth -> .../depth/image_rect_raw;
    aligned_depth_to_color -> .../aligned_depth_to_color/image_raw; camera_info beside each.
    """
    parts = [p for p in (camera_namespace.strip("/"), camera_name.strip("/")) if p]
    root = "/" + "/".join(parts)
    image = {"color": "image_raw", "depth": "image_rect_raw", "aligned_depth_to_color": "image_raw"}
    if stream not in image:
        raise ValueError(f"RealSense stream must be one of {list(image)}, got {stream!r}")
    return f"{root}/{stream}/{image[stream]}", f"{root}/{stream}/camera_info"
