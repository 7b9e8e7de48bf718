"""The ZED node's topics, encodings and CameraInfo on real DDS, without the ZED SDK.

The SDK camera is replaced by a frame source that hands over BGRA arrays and calibration values
shaped as pyzed.sl returns them, through the same pure conversion functions ZedSource uses.
"""

from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
from cameras_harness import params, wait_until
from sensor_msgs.msg import CameraInfo, Image

from tinyvla_ros.core.camera_calib import (
    zed_camera_info,
    zed_frame_to_encoding,
    zed_optical_frame,
    zed_parameters_from_sdk,
)
from tinyvla_ros.ros.cameras.frames import CapturedFrame, SourceInfo
from tinyvla_ros.ros.cameras.zed_node import ZedNode

pytestmark = pytest.mark.ros
W, H = 24, 16


class BgraArraySource:
    """A FrameSource replaying BGRA frames with SDK-shaped calibration (sl.CameraParameters fields)."""

    def __init__(self, frames: list[np.ndarray], encoding: str, generation: str, name: str) -> None:
        self.frames, self.encoding, self.generation, self.name = frames, encoding, generation, name
        self.sent = 0
        self.capture_ns: list[int] = []

    def open(self) -> SourceInfo:
        left_cam = SimpleNamespace(
            fx=20.5,
            fy=20.75,
            cx=12.1,
            cy=7.9,
            disto=np.zeros(12),
            image_size=SimpleNamespace(width=W, height=H),
        )
        info = zed_camera_info(
            zed_parameters_from_sdk(left_cam), "ZED2", zed_optical_frame(self.name, self.generation)
        )
        return SourceInfo(hardware_id="38123456", model="ZED2", calibration={"color": info})

    def read(self, timeout_s: float) -> list[CapturedFrame]:
        if self.sent >= len(self.frames):
            time.sleep(timeout_s)
            return []
        time.sleep(0.02)
        capture = time.time_ns() - 5_000_000  # the SDK's image capture time (host clock), 5 ms ago
        self.capture_ns.append(capture)
        image = zed_frame_to_encoding(self.frames[self.sent], self.encoding)
        self.sent += 1
        return [
            CapturedFrame("color", image, self.encoding, self.sent, capture, "system_time", time.time_ns())
        ]

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("generation", "encoding", "image_topic", "info_topic", "frame_id"),
    [
        (
            "current",
            "bgra8",
            "/zed_left/zed_node/rgb/color/rect/image",
            "/zed_left/zed_node/rgb/color/rect/camera_info",
            "zed_left_left_camera_frame_optical",
        ),
        (
            "legacy",
            "rgb8",
            "/zed_left/zed_node/rgb/image_rect_color",
            "/zed_left/zed_node/rgb/camera_info",
            "zed_left_left_camera_optical_frame",
        ),
    ],
)
def test_zed_node_publishes_wrapper_topics(
    ros, generation, encoding, image_topic, info_topic, frame_id
) -> None:
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (H, W, 4), dtype=np.uint8) for _ in range(4)]
    images, infos = ros.collect(Image, image_topic), ros.collect(CameraInfo, info_topic)
    source = BgraArraySource(frames, encoding, generation, "zed_left")
    node = ZedNode(
        source=source,
        namespace="zed_left",  # as zed_camera.launch.py starts it: camera_name is the namespace
        context=ros.context,
        parameter_overrides=params(topic_generation=generation, encoding=encoding),
    )
    ros.add(node)
    ros.wait_for_subscribers(node, image_topic)
    node.start()
    wait_until(lambda: len(images) >= 4 and len(infos) >= 4, 10.0, "4 ZED images")
    channels = 4 if encoding == "bgra8" else 3
    for (msg, _), frame, capture in zip(images, frames, source.capture_ns, strict=True):
        assert (msg.encoding, msg.width, msg.height, msg.step) == (encoding, W, H, channels * W)
        pixels = np.frombuffer(bytes(msg.data), np.uint8).reshape(H, W, channels)
        expected = frame if encoding == "bgra8" else frame[:, :, 2::-1]
        assert np.array_equal(pixels, expected)
        assert msg.header.frame_id == frame_id
        assert msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec == capture  # capture time
    info = infos[0][0]
    assert info.distortion_model == "rational_polynomial" and list(info.d) == [0.0] * 8
    assert np.allclose(info.k, [20.5, 0, 12.1, 0, 20.75, 7.9, 0, 0, 1])
    assert info.header.stamp == images[0][0].header.stamp


def sdk_missing() -> bool:
    try:
        import pyzed.sl  # noqa: F401
    except ImportError:
        return True
    return False


@pytest.mark.skipif(not sdk_missing(), reason="the ZED SDK is installed: the missing-SDK path cannot run")
def test_zed_node_without_sdk_exits_naming_the_installer() -> None:
    cmd = [
        sys.executable,
        "-m",
        "tinyvla_ros.ros.cameras.zed_node",
        "--ros-args",
        "-p",
        "camera_name:=zed_left",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "ZED SDK" in done.stderr and "pyzed.sl" in done.stderr and "camera_driver:=wrapper" in done.stderr
