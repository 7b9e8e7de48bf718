"""RealSense sources on pyrealsense2's software device and recordings; ZED source without the SDK."""

from __future__ import annotations

import enum
import time
from types import SimpleNamespace

import numpy as np
import pytest

from tinyvla_ros.ros.cameras.frames import CameraUnavailable, PlaybackFinished
from tinyvla_ros.ros.cameras.realsense_source import PipelineSource, RealSenseStreamConfig, SensorSource
from tinyvla_ros.ros.cameras.zed_source import ZedSource, ZedSourceConfig, grab_outcome

rs = pytest.importorskip(
    "pyrealsense2",
    reason="pyrealsense2 missing: pip install pyrealsense2==2.59.1.11053, apt-get install libusb-1.0-0",
)
from tinyvla_ros.ros.cameras.realsense_software import SoftwareCamera, SoftwareCameraConfig  # noqa: E402

W, H = 32, 24


def software_camera(depth: bool = False) -> SoftwareCamera:
    return SoftwareCamera(
        SoftwareCameraConfig(
            serial="842412345678",
            width=W,
            height=H,
            fx=30.5,
            fy=31.5,
            cx=15.25,
            cy=11.75,
            model="brown_conrady",
            coeffs=[0.01, -0.02, 0.001, 0.002, 0.003],
            enable_depth=depth,
        )
    )


def stream_config(**kw) -> RealSenseStreamConfig:
    return RealSenseStreamConfig(camera_name="top", width=W, height=H, depth_width=W, depth_height=H, **kw)


def read_until(source, n: int, timeout_s: float = 5.0) -> list:
    frames, deadline = [], time.monotonic() + timeout_s
    while len(frames) < n and time.monotonic() < deadline:
        frames += source.read(0.1)
    return frames


def test_sensor_source_delivers_pixels_numbers_times_and_intrinsics() -> None:
    cam = software_camera()
    source = SensorSource(cam.device, stream_config())
    info = source.open()
    try:
        color = info.calibration["color"]
        assert info.hardware_id == "842412345678"
        assert color.frame_id == "top_color_optical_frame"
        assert np.allclose([color.k[0], color.k[4], color.k[2], color.k[5]], [30.5, 31.5, 15.25, 11.75])
        assert np.allclose(color.d, [0.01, -0.02, 0.001, 0.002, 0.003], atol=1e-7)
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(4)]
        got = []
        for i, image in enumerate(images):
            cam.push_color(image, 1_750_000_000_000.0 + 33.25 * i, frame_number=10 + i)
            got += read_until(source, 1)
        assert [f.frame_number for f in got] == [10, 11, 12, 13]
        for frame, image, i in zip(got, images, range(4), strict=True):
            assert frame.stream == "color" and frame.encoding == "rgb8" and frame.domain == "global_time"
            assert np.array_equal(frame.image, image)
            assert abs(frame.timestamp_ns - (1_750_000_000_000_000_000 + int(33.25e6) * i)) < 1_000
    finally:
        source.close()


def test_sensor_source_aligns_depth_to_colour() -> None:
    cam = software_camera(depth=True)
    source = SensorSource(cam.device, stream_config(enable_depth=True))
    info = source.open()
    try:
        assert info.calibration["aligned_depth_to_color"] == info.calibration["color"]
        depth = np.zeros((H, W), np.uint16)
        depth[8:16, 10:20] = 1234  # 1.234 m patch
        cam.push_color(np.zeros((H, W, 3), np.uint8), 1000.0, 0, domain="hardware_clock")
        cam.push_depth(depth, 1000.0, 0, domain="hardware_clock")
        frames = read_until(source, 2)
        aligned = next(f for f in frames if f.stream == "aligned_depth_to_color")
        assert aligned.encoding == "16UC1" and aligned.image.shape == (H, W)
        assert aligned.domain == "hardware_clock" and aligned.frame_number == 0
        # identity extrinsics and equal intrinsics: the patch stays where it was (edges may round)
        assert np.all(aligned.image[10:14, 12:18] == 1234)
        assert np.all(aligned.image[:6] == 0)
    finally:
        source.close()


def test_sensor_source_raw_depth_keeps_the_depth_camera_geometry() -> None:
    cam = software_camera(depth=True)
    source = SensorSource(cam.device, stream_config(enable_depth=True, align_depth=False))
    info = source.open()
    try:
        assert set(info.calibration) == {"color", "depth"}
        assert info.calibration["depth"].frame_id == "top_depth_optical_frame"
        depth = np.arange(H * W, dtype=np.uint16).reshape(H, W)
        cam.push_depth(depth, 1000.0, 4, domain="hardware_clock")
        frame = read_until(source, 1)[0]
        assert (frame.stream, frame.encoding, frame.frame_number) == ("depth", "16UC1", 4)
        assert np.array_equal(frame.image, depth)
    finally:
        source.close()


def test_sensor_source_reopens_and_checks_the_requested_stream() -> None:
    cam = software_camera()
    source = SensorSource(cam.device, stream_config())
    source.open()
    source.close()
    source.open()  # reconnection path: close + open again works
    cam.push_color(np.full((H, W, 3), 7, np.uint8), 5.0, 1)
    assert read_until(source, 1)[0].image[0, 0, 0] == 7
    source.close()
    wrong = SensorSource(cam.device, RealSenseStreamConfig(width=640, height=480))
    with pytest.raises(CameraUnavailable, match="640x480"):
        wrong.open()


def test_sync_mode_and_global_time_are_set_on_the_device() -> None:
    cam = software_camera(depth=True)  # D4xx-shaped: the depth sensor has inter_cam_sync_mode
    source = SensorSource(
        cam.device, stream_config(enable_depth=True, inter_cam_sync_mode=2, global_time_enabled=False)
    )
    info = source.open()
    source.close()
    assert info.warnings == []
    assert cam.depth_sensor.get_option(rs.option.inter_cam_sync_mode) == 2.0  # slave
    assert cam.color_sensor.get_option(rs.option.global_time_enabled) == 0.0


def test_sync_mode_unsupported_is_a_warning() -> None:
    source = SensorSource(software_camera().device, stream_config(inter_cam_sync_mode=1))  # no depth sensor
    info = source.open()
    source.close()
    assert any("inter_cam_sync_mode=1 (master) not supported" in w for w in info.warnings)


def test_pipeline_without_a_camera_is_unavailable() -> None:
    with pytest.raises(CameraUnavailable, match="no RealSense camera"):
        PipelineSource(stream_config(), serial="_000000000000").open()


def test_recording_plays_back_through_the_pipeline(tmp_path) -> None:
    cam = software_camera(depth=True)
    path = str(tmp_path / "software_d435i.db3")
    images = [np.full((H, W, 3), 20 + i, np.uint8) for i in range(8)]
    with cam.record(path):
        for i, image in enumerate(images):
            cam.push_color(image, 2000.0 + 33.0 * i, i, domain="hardware_clock")
            cam.push_depth(np.full((H, W), 500 + i, np.uint16), 2000.0 + 33.0 * i, i, domain="hardware_clock")
            time.sleep(0.005)
    source = PipelineSource(stream_config(enable_depth=True), rosbag_filename=path, realtime=False)
    info = source.open()
    assert info.is_playback and info.hardware_id == "842412345678"
    assert np.allclose(info.calibration["color"].k[0], 30.5)
    frames = []
    with pytest.raises(PlaybackFinished):
        for _ in range(200):
            frames += source.read(0.5)
    source.close()
    colors = [f for f in frames if f.stream == "color"]
    depths = [f for f in frames if f.stream == "aligned_depth_to_color"]
    # in order, no repeats, nothing lost once streaming (the pipeline's syncer may drop the first
    # colour+depth pairs while it learns the streams)
    first = colors[0].frame_number
    assert first <= 2 and [f.frame_number for f in colors] == list(range(first, 8))
    assert [f.frame_number for f in depths] == list(range(depths[0].frame_number, 8)) and len(depths) >= 6
    for f in colors:
        assert np.array_equal(f.image, images[f.frame_number])
        assert f.timestamp_ns == int(round((2000.0 + 33.0 * f.frame_number) * 1e6))
    assert all(f.image[H // 2, W // 2] == 500 + f.frame_number for f in depths)


class ErrorCode(enum.Enum):
    """Values as pyzed.sl.ERROR_CODE orders them: warnings below SUCCESS, errors above."""

    CORRUPTED_FRAME = -2
    CAMERA_REBOOTING = -1
    SUCCESS = 0
    FAILURE = 1
    CAMERA_NOT_DETECTED = 3
    END_OF_SVOFILE_REACHED = 20


def test_zed_grab_outcomes() -> None:
    sl = SimpleNamespace(ERROR_CODE=ErrorCode)
    assert grab_outcome(sl, ErrorCode.SUCCESS) == "frame"
    assert grab_outcome(sl, ErrorCode.CAMERA_REBOOTING) == "frame"  # a warning: the frame is usable
    assert grab_outcome(sl, ErrorCode.CORRUPTED_FRAME) == "skip"
    assert grab_outcome(sl, ErrorCode.END_OF_SVOFILE_REACHED) == "end"
    assert grab_outcome(sl, ErrorCode.CAMERA_NOT_DETECTED) == "lost"


def test_zed_source_without_the_sdk_names_the_installer() -> None:
    try:
        import pyzed.sl  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="ZED SDK"):
            ZedSource(ZedSourceConfig()).open()
    else:
        pytest.skip("the ZED SDK is installed here: the missing-SDK message cannot be checked")
    with pytest.raises(ValueError, match="grab_resolution"):
        ZedSourceConfig(resolution="4K")
    with pytest.raises(ValueError, match="encoding"):
        ZedSourceConfig(encoding="bgr8")
