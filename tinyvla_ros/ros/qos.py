"""QoS profiles used by the tinyvla_ros nodes, built from plain parameters.

Reliability is a parameter on purpose: measured on a 2-core machine with Fast DDS, a
best-effort (sensor-data) subscriber lost ~36% of 640x480 frames that a reliable one
received in full. ``best_available`` (Jazzy and newer) matches whatever the publisher offers.

Profiles:
- sensor streams (camera images, joint states): depth ``depth``, reliability from config;
- chunks and controller commands: reliable, keep last ``depth``;
- the instruction topic: reliable + transient local (latched), depth 1;
- diagnostics: reliable, depth 10;
- a bag's topics (recording and playing): the profile stored in the bag (``bag_qos``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

if TYPE_CHECKING:  # the bag layer (rosbags) is not loaded by every node
    from tinyvla_ros.data.bag import TopicQos

RELIABILITY = {
    "reliable": ReliabilityPolicy.RELIABLE,
    "best_effort": ReliabilityPolicy.BEST_EFFORT,
    "best_available": ReliabilityPolicy.BEST_AVAILABLE,
}


@dataclass(frozen=True)
class QosConfig:
    """How a subscription to a sensor stream is configured.

    reliability: "reliable" (default; what the ZED and RealSense wrappers offer),
        "best_effort" (the sensor-data profile: frames may be lost) or "best_available".
    depth: history depth (keep last N), >= 1.
    """

    reliability: str = "reliable"
    depth: int = 5

    def __post_init__(self) -> None:
        if self.reliability not in RELIABILITY:
            raise ValueError(
                f"qos reliability must be one of {sorted(RELIABILITY)}, got {self.reliability!r}"
            )
        if int(self.depth) < 1:
            raise ValueError(f"qos depth must be >= 1, got {self.depth!r}")


def sensor_qos(cfg: QosConfig) -> QoSProfile:
    """Profile for camera images and joint states (keep last ``cfg.depth``, volatile)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(cfg.depth),
        reliability=RELIABILITY[cfg.reliability],
        durability=DurabilityPolicy.VOLATILE,
    )


def reliable_qos(depth: int = 10) -> QoSProfile:
    """Reliable, volatile, keep last ``depth``: chunks, commands, previews, diagnostics."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def latched_qos() -> QoSProfile:
    """Reliable + transient local, depth 1: a late subscriber still gets the last message."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )


def bag_qos(qos: TopicQos) -> QoSProfile:
    """The QoS a bag stores for a topic (tinyvla_ros.data.bag.TopicQos) as an rclpy profile."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(qos.depth),
        reliability=ReliabilityPolicy.BEST_EFFORT
        if qos.reliability == "best_effort"
        else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL
        if qos.durability == "transient_local"
        else DurabilityPolicy.VOLATILE,
    )
