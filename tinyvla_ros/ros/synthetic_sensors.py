"""Synthetic camera streams and joint states on the real drivers' topic names and encodings.

For tests, benchmarks and dry runs without hardware: one publisher per camera (ZED 2 style:
bgra8 on /<name>/zed_node/rgb/color/rect/image; RealSense D435i style: rgb8 on
/<ns>/<name>/color/image_raw) and /joint_states, stamped with the node's clock. Every frame
changes (a moving pattern), so a frozen-camera check does not fire on healthy streams.

Faults a test can inject at run time (``SyntheticSensors`` methods): stop/restart a camera,
switch its encoding (also to one no decoder knows), freeze its stamp, NaN joint states.

``python -m tinyvla_ros.ros.synthetic_sensors --ros-args -p robot:=franka`` publishes the
cameras and joints of config/<robot>.yaml (with ``image_width``/``image_height``/``camera_rate``
parameters).
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import yaml
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState

from tinyvla_ros.core.images import SUPPORTED_ENCODINGS
from tinyvla_ros.ros.conversions import joint_state, rgb_to_image, sec_to_stamp
from tinyvla_ros.ros.entry import run_node
from tinyvla_ros.ros.qos import QosConfig, sensor_qos


@dataclass
class SyntheticCamera:
    """One synthetic camera: topic, encoding as the driver publishes it, size, rate (Hz)."""

    name: str
    topic: str
    encoding: str = "rgb8"
    width: int = 64
    height: int = 48
    rate: float = 15.0
    frame_id: str = ""

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"camera {self.name}: size must be >= 1x1, got {self.width}x{self.height}")
        if not self.rate > 0:
            raise ValueError(f"camera {self.name}: rate must be > 0 Hz, got {self.rate!r}")


@dataclass
class SyntheticSensorsConfig:
    """Cameras, joints (names, initial positions) and the joint-state rate (Hz)."""

    cameras: list[SyntheticCamera]
    joint_names: list[str]
    joint_positions: list[float] = field(default_factory=list)
    joint_rate: float = 100.0
    joint_topic: str = "/joint_states"
    reliability: str = "reliable"

    def __post_init__(self) -> None:
        if not self.joint_positions:
            self.joint_positions = [0.0] * len(self.joint_names)
        if len(self.joint_positions) != len(self.joint_names):
            raise ValueError(
                f"joint_positions has {len(self.joint_positions)} values for {len(self.joint_names)} joint_names"
            )
        if not self.joint_rate > 0:
            raise ValueError(f"joint_rate must be > 0 Hz, got {self.joint_rate!r}")


def pattern(width: int, height: int, frame: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 RGB test pattern that moves one pixel per frame (never two frames alike)."""
    y, x = np.mgrid[0:height, 0:width]
    r = (x * 255 // max(width - 1, 1) + frame) % 256
    g = (y * 255 // max(height - 1, 1) + 3 * frame) % 256
    b = np.full_like(x, (seed * 67 + 7 * frame) % 256)
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def raw_image(camera: SyntheticCamera, encoding: str, stamp: float, data: bytes, step: int) -> Image:
    """A sensor_msgs/Image with arbitrary (even undecodable) encoding and payload."""
    msg = Image()
    msg.header.stamp = sec_to_stamp(stamp)
    msg.header.frame_id = camera.frame_id or f"{camera.name}_optical_frame"
    msg.height, msg.width, msg.encoding, msg.step = camera.height, camera.width, encoding, step
    msg.data = data
    return msg


class SyntheticSensors:
    """Publishers + timers for the cameras and joint states of ``cfg`` on ``node``.

    Thread-safe fault injection: stop_camera / start_camera / set_encoding / freeze_camera /
    set_joint_positions (NaN allowed) / set_joint_rate_enabled.
    """

    # Bytes per pixel of encodings the runtime cannot decode (published as zero bytes).
    UNDECODABLE_BPP = {"bayer_rggb8": 1, "bayer_bggr8": 1, "16UC1": 2, "32FC1": 4, "nv21": 1}

    def __init__(self, node, cfg: SyntheticSensorsConfig) -> None:
        self.node = node
        self.cfg = cfg
        self._lock = threading.Lock()
        self._running = {c.name: True for c in cfg.cameras}
        self._encoding = {c.name: c.encoding for c in cfg.cameras}
        self._frozen_stamp: dict[str, float | None] = {c.name: None for c in cfg.cameras}
        self._frames = {c.name: 0 for c in cfg.cameras}
        self._q = np.asarray(cfg.joint_positions, dtype=np.float64)
        self._joints_on = True
        self.published = {c.name: 0 for c in cfg.cameras}
        self.stamps: dict[str, deque[float]] = {c.name: deque(maxlen=500) for c in cfg.cameras}
        qos = sensor_qos(QosConfig(cfg.reliability, 5))
        group = MutuallyExclusiveCallbackGroup()
        self._pubs = {c.name: node.create_publisher(Image, c.topic, qos) for c in cfg.cameras}
        self._timers = [
            node.create_timer(1.0 / c.rate, self._camera_tick(c), callback_group=group) for c in cfg.cameras
        ]
        self._joint_pub = node.create_publisher(JointState, cfg.joint_topic, qos)
        self._timers.append(node.create_timer(1.0 / cfg.joint_rate, self._joint_tick, callback_group=group))

    # --- fault injection ------------------------------------------------------------------

    def stop_camera(self, name: str) -> None:
        with self._lock:
            self._running[self._known(name)] = False

    def start_camera(self, name: str) -> None:
        with self._lock:
            self._running[self._known(name)] = True

    def set_encoding(self, name: str, encoding: str) -> None:
        with self._lock:
            self._encoding[self._known(name)] = encoding

    def freeze_camera(self, name: str, frozen: bool = True) -> None:
        """Keep publishing, but with the last stamp repeated (a stuck driver)."""
        with self._lock:
            self._frozen_stamp[self._known(name)] = self._now() if frozen else None

    def set_joint_positions(self, q) -> None:
        q = np.asarray(q, dtype=np.float64)
        if q.shape != self._q.shape:
            raise ValueError(f"joint positions must have shape {self._q.shape}, got {q.shape}")
        with self._lock:
            self._q = q.copy()

    def joint_positions(self) -> np.ndarray:
        """Copy of the joint positions being published."""
        with self._lock:
            return self._q.copy()

    def set_joints_enabled(self, enabled: bool) -> None:
        with self._lock:
            self._joints_on = bool(enabled)

    def _known(self, name: str) -> str:
        if name not in self._running:
            raise ValueError(f"unknown camera {name!r}; known: {sorted(self._running)}")
        return name

    # --- publishing -----------------------------------------------------------------------

    def _now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def _camera_tick(self, camera: SyntheticCamera):
        def tick() -> None:
            with self._lock:
                if not self._running[camera.name]:
                    return
                encoding = self._encoding[camera.name]
                frozen = self._frozen_stamp[camera.name]
                frame = self._frames[camera.name] = self._frames[camera.name] + 1
            stamp = frozen if frozen is not None else self._now()
            self._pubs[camera.name].publish(self._frame(camera, encoding, stamp, frame))
            self.published[camera.name] += 1
            self.stamps[camera.name].append(stamp)

        return tick

    def _frame(self, camera: SyntheticCamera, encoding: str, stamp: float, frame: int) -> Image:
        rgb = pattern(camera.width, camera.height, frame, seed=sum(map(ord, camera.name)) % 97)
        if encoding not in SUPPORTED_ENCODINGS:  # what no decoder here knows: raw zero bytes
            step = camera.width * self.UNDECODABLE_BPP.get(encoding, 1)
            return raw_image(camera, encoding, stamp, bytes(step * camera.height), step)
        msg = rgb_to_image(rgb, encoding, stamp, camera.frame_id or f"{camera.name}_optical_frame")
        return msg

    def _joint_tick(self) -> None:
        with self._lock:
            if not self._joints_on:
                return
            q = self._q.copy()
        self._joint_pub.publish(
            joint_state(self.cfg.joint_names, q, self._now(), velocities=np.zeros_like(q))
        )

    def destroy(self) -> None:
        for timer in self._timers:
            self.node.destroy_timer(timer)
        for pub in [*self._pubs.values(), self._joint_pub]:
            self.node.destroy_publisher(pub)


def config_from_params_file(
    path: str, width: int = 64, height: int = 48, camera_rate: float = 15.0, joint_rate: float = 100.0
) -> SyntheticSensorsConfig:
    """Cameras (topic + driver encoding) and state joints of a tinyvla params file."""
    from tinyvla_ros.ros.graph import POLICY, node_section

    with open(path, encoding="utf-8") as f:
        policy = node_section(yaml.safe_load(f), POLICY)
    cameras = [
        SyntheticCamera(
            name=name,
            topic=policy["cameras"][name]["topic"],
            encoding=policy["cameras"][name].get("encoding", "rgb8"),
            width=width,
            height=height,
            rate=camera_rate,
        )
        for name in policy["camera_names"]
    ]
    joints = list(policy["state_joint_names"])
    return SyntheticSensorsConfig(
        cameras, joints, [0.0] * len(joints), joint_rate, policy["joint_states_topic"]
    )


class SyntheticSensorsNode(Node):
    """``tinyvla_synthetic_sensors``: the sensors of one robot set-up's params file (``robot`` parameter)."""

    def __init__(self) -> None:
        super().__init__("tinyvla_synthetic_sensors")
        from tinyvla_ros.ros.graph import default_params_file

        robot = self.declare_parameter("robot", "franka").value
        params_file = self.declare_parameter("params_file", "").value or str(default_params_file(robot))
        cfg = config_from_params_file(
            params_file,
            self.declare_parameter("image_width", 64).value,
            self.declare_parameter("image_height", 48).value,
            float(self.declare_parameter("camera_rate", 15.0).value),
            float(self.declare_parameter("joint_rate", 100.0).value),
        )
        self.sensors = SyntheticSensors(self, cfg)


def main(argv: list[str] | None = None) -> int:
    """Publish the synthetic sensors of one robot set-up until interrupted."""
    # errors=(): a bad params file ends the process with its traceback
    return run_node(SyntheticSensorsNode, argv, errors=(), on_shutdown=lambda node: node.sensors.destroy())


if __name__ == "__main__":
    sys.exit(main())
