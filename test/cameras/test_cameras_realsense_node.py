"""The RealSense node on real DDS, fed by pyrealsense2's software device and by a recording."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from cameras_harness import params, wait_until
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from sensor_msgs.msg import CameraInfo, Image

rs = pytest.importorskip(
    "pyrealsense2",
    reason="pyrealsense2 missing: pip install pyrealsense2==2.59.1.11053, apt-get install libusb-1.0-0",
)
from tinyvla_ros.ros.cameras.realsense_node import RealSenseNode, RealSenseNodeConfig  # noqa: E402
from tinyvla_ros.ros.cameras.realsense_software import SoftwareCamera, SoftwareCameraConfig  # noqa: E402
from tinyvla_ros.ros.cameras.realsense_source import SensorSource  # noqa: E402

pytestmark = pytest.mark.ros

W, H = 32, 24
TOPIC = "/camera/camera/color/image_raw"
INFO = "/camera/camera/color/camera_info"
FAST = dict(width=W, height=H, depth_width=W, depth_height=H, frame_timeout_s=1.0, reconnect_timeout_s=3.0)
FAST |= dict(reconnect_period_s=0.2, diagnostics_period_s=0.2)
FAST |= dict(queue_size=16)  # a loaded test machine may stall the capture thread: keep every frame
OUTAGE = dict(frame_timeout_s=0.4, reconnect_timeout_s=0.8)  # quick unplug detection


def software_camera(serial: str = "000000000001", depth: bool = False) -> SoftwareCamera:
    return SoftwareCamera(
        SoftwareCameraConfig(
            serial=serial, width=W, height=H, fx=28.0, fy=29.0, cx=16.5, cy=11.5, enable_depth=depth
        )
    )


def start_node(ros, cams: dict[str, SoftwareCamera], wait=(TOPIC,), **overrides) -> RealSenseNode:
    """A RealSenseNode whose cameras (by '<ns>/<name>') read the given software devices.

    Capture starts once the test's listeners on ``wait`` are matched (DDS discovery done); returns
    once every camera is open (frames pushed before that are lost, as with a real camera).
    """
    values = FAST | overrides
    cfg = RealSenseNodeConfig(
        **{k: v for k, v in values.items() if k in RealSenseNodeConfig.__dataclass_fields__}
    )
    sources = {
        key: SensorSource(cam.device, cfg.stream_config(key.split("/")[-1])) for key, cam in cams.items()
    }
    node = ros.add(RealSenseNode(sources=sources, context=ros.context, parameter_overrides=params(**values)))
    for topic in wait:
        ros.wait_for_subscribers(node, topic)
    node.start()
    wait_until(lambda: all(w.health.hardware_id for w in node.workers.values()), 10.0, "the cameras to open")
    return node


def push_frames(
    cam: SoftwareCamera, images: list, first: int = 0, domain: str = "global_time", t0_ms=None, period_s=0.03
) -> list[float]:
    """Push ``images`` every ``period_s`` with frame numbers first.. and timestamps now (or t0_ms + period)."""
    times = []
    for i, image in enumerate(images):
        ts = time.time() * 1000.0 if t0_ms is None else t0_ms + 1000.0 * period_s * i
        cam.push_color(image, ts, first + i, domain=domain)
        times.append(ts)
        time.sleep(period_s)
    return times


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def statuses(diags: list, name_part: str = "") -> list[DiagnosticStatus]:
    return [s for m, _ in diags for s in m.status if name_part in s.name]


def value(status: DiagnosticStatus, key: str) -> str:
    return next(kv.value for kv in status.values if kv.key == key)


def test_software_frames_come_out_with_same_pixels_stamps_and_intrinsics(ros) -> None:
    cam = software_camera()
    images_out, infos = ros.collect(Image, TOPIC), ros.collect(CameraInfo, INFO)
    start_node(ros, {"camera/camera": cam})
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(10)]
    pushed_ms = push_frames(cam, images)
    wait_until(lambda: len(images_out) >= 10 and len(infos) >= 10, 5.0, "10 images and camera infos")
    msgs = [m for m, _ in images_out]
    for msg, image in zip(msgs, images, strict=True):
        assert (msg.encoding, msg.width, msg.height, msg.step) == ("rgb8", W, H, 3 * W)
        assert msg.header.frame_id == "camera_color_optical_frame"
        assert np.array_equal(np.frombuffer(bytes(msg.data), np.uint8).reshape(H, W, 3), image)
    stamps = np.array([stamp_ns(m) for m in msgs])
    assert np.all(np.diff(stamps) > 0)
    assert np.all(
        np.abs(stamps - np.round(np.array(pushed_ms) * 1e6)) < 1_000
    )  # global time: the frame's time
    received = np.array([t for _, t in images_out])
    assert np.all(received - stamps >= 0) and np.all(received - stamps < 1_000_000_000)  # close to now
    info = infos[0][0]
    assert (info.width, info.height, info.distortion_model) == (W, H, "plumb_bob")
    assert np.allclose(info.k, [28.0, 0, 16.5, 0, 29.0, 11.5, 0, 0, 1])
    assert np.allclose(info.p, [28.0, 0, 16.5, 0, 0, 29.0, 11.5, 0, 0, 0, 1, 0])
    assert [stamp_ns(i) for i, _ in infos[:10]] == list(stamps)


def test_hardware_clock_frames_get_monotonic_stamps_near_now(ros) -> None:
    cam = software_camera()
    images_out = ros.collect(Image, TOPIC)
    start_node(ros, {"camera/camera": cam})
    frames = [np.full((H, W, 3), i, np.uint8) for i in range(12)]
    push_frames(cam, frames, domain="hardware_clock", t0_ms=5_000.0)  # device clock: 5 s since power-up
    wait_until(lambda: len(images_out) >= 12, 5.0, "12 images")
    stamps = np.array([stamp_ns(m) for m, _ in images_out])
    received = np.array([t for _, t in images_out])
    assert np.all(np.diff(stamps) > 0)
    assert np.all(received >= stamps) and np.all(received - stamps < 500_000_000)


def test_unplugged_camera_reports_error_keeps_running_and_recovers(ros) -> None:
    cam = software_camera()
    images_out, diags = ros.collect(Image, TOPIC), ros.collect(DiagnosticArray, "/diagnostics")
    node = start_node(ros, {"camera/camera": cam}, **OUTAGE)
    push_frames(cam, [np.full((H, W, 3), 1, np.uint8)] * 10)
    wait_until(lambda: any(s.level == DiagnosticStatus.OK for s in statuses(diags)), 3.0, "diagnostics OK")
    # unplugged: the device's sensor stops streaming; frames pushed now go nowhere
    cam.color_sensor.stop()
    seen = len(diags)
    wait_until(
        lambda: any(s.level == DiagnosticStatus.ERROR for s in statuses(diags[seen:])),
        3.0,
        "diagnostics ERROR",
    )
    error = next(s for s in statuses(diags[seen:]) if s.level == DiagnosticStatus.ERROR)
    assert value(error, "state") == "no_frames" and "no frames" in error.message
    wait_until(lambda: node.workers["camera/camera"].health.reconnects >= 1, 3.0, "a reconnection attempt")
    assert node.workers["camera/camera"].running
    # plugged back: only a node that reopened (and restarted) the sensor receives these frames
    before, seen = len(images_out), len(diags)
    deadline = time.monotonic() + 5.0
    while len(images_out) == before and time.monotonic() < deadline:
        push_frames(cam, [np.full((H, W, 3), 2, np.uint8)] * 3, first=100 + len(images_out))
    assert len(images_out) > before, "no image after the camera came back"
    wait_until(lambda: any(s.level == DiagnosticStatus.OK for s in statuses(diags[seen:])), 3.0, "OK again")
    ok = next(s for s in statuses(diags[seen:]) if s.level == DiagnosticStatus.OK)
    assert int(value(ok, "reconnects")) >= 1 and value(ok, "state") == "streaming"
    assert images_out[-1][0].data[0] == 2


def test_frame_gaps_are_reported_as_drops(ros) -> None:
    cam = software_camera()
    images_out, diags = ros.collect(Image, TOPIC), ros.collect(DiagnosticArray, "/diagnostics")
    start_node(ros, {"camera/camera": cam}, diagnostics_period_s=0.5)
    frame = np.zeros((H, W, 3), np.uint8)
    for number in (0, 1, 2, 6, 7, 8):  # the camera produced 3, 4, 5 but they never arrived
        cam.push_color(frame, time.time() * 1000.0, number)
        time.sleep(0.03)
    wait_until(lambda: len(images_out) >= 6, 3.0, "6 images")
    wait_until(
        lambda: any(value(s, "frames_dropped") == "3" for s in statuses(diags)), 3.0, "3 drops reported"
    )
    assert any(s.level == DiagnosticStatus.WARN and "dropped" in s.message for s in statuses(diags))


def test_aligned_depth_and_two_cameras_in_one_node(ros) -> None:
    left, right = software_camera("111111111111", depth=True), software_camera("222222222222", depth=True)
    names = ("wrist_left", "wrist_right")
    outs = {n: ros.collect(Image, f"/camera/{n}/color/image_raw") for n in names}
    depth_outs = {n: ros.collect(Image, f"/camera/{n}/aligned_depth_to_color/image_raw") for n in names}
    depth_info = ros.collect(CameraInfo, "/camera/wrist_left/aligned_depth_to_color/camera_info")
    diags = ros.collect(DiagnosticArray, "/diagnostics")
    start_node(
        ros,
        {"camera/wrist_left": left, "camera/wrist_right": right},
        camera_names=list(names),
        serial_nos=["111111111111", "222222222222"],
        enable_depth=True,
        wait=[f"/camera/{n}/{s}/image_raw" for n in names for s in ("color", "aligned_depth_to_color")],
    )
    for i in range(5):
        for cam, shade in ((left, 10), (right, 200)):
            ts = time.time() * 1000.0
            cam.push_color(np.full((H, W, 3), shade, np.uint8), ts, i)
            cam.push_depth(np.full((H, W), 700 + shade, np.uint16), ts, i)
        time.sleep(0.03)
    wait_until(lambda: all(len(outs[n]) >= 5 and len(depth_outs[n]) >= 4 for n in names), 5.0, "both cameras")
    assert outs["wrist_left"][0][0].data[0] == 10 and outs["wrist_right"][0][0].data[0] == 200
    assert outs["wrist_right"][0][0].header.frame_id == "wrist_right_color_optical_frame"
    depth = depth_outs["wrist_right"][-1][0]
    assert (depth.encoding, depth.step) == ("16UC1", 2 * W)
    assert np.frombuffer(bytes(depth.data), np.uint16).reshape(H, W)[H // 2, W // 2] == 900
    assert np.allclose(depth_info[0][0].k, [28.0, 0, 16.5, 0, 29.0, 11.5, 0, 0, 1])
    wait_until(
        lambda: {s.hardware_id for s in statuses(diags)} >= {"111111111111", "222222222222"},
        3.0,
        "2 statuses",
    )


def test_config_checks_camera_lists() -> None:
    with pytest.raises(ValueError, match="serial_nos"):
        RealSenseNodeConfig(camera_names=["a", "b"], serial_nos=["1"])
    with pytest.raises(ValueError, match="camera_names"):
        RealSenseNodeConfig(camera_names=["a", "a"], serial_nos=["1", "2"])
    with pytest.raises(ValueError, match="inter_cam_sync_mode"):
        RealSenseNodeConfig(inter_cam_sync_mode=7)
    spec = RealSenseNodeConfig(serial_no="_0123").cameras("/camera", "top")[0]
    assert (spec.key, spec.serial) == ("camera/top", "0123")
    assert RealSenseNodeConfig().cameras("/", "camera")[0].key == "camera/camera"  # rs_launch.py defaults


def record(path: str, images: list[np.ndarray]) -> None:
    cam = software_camera("333333333333")
    with cam.record(path):
        # recorded long ago, 8 frames over ~1.2 s (playback keeps the recorded pace)
        push_frames(cam, images, domain="global_time", t0_ms=1_600_000_000_000.0, period_s=0.15)


def node_process(*ros_args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tinyvla_ros.ros.cameras.realsense_node", "--ros-args", *ros_args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ))


def test_recording_played_back_drives_the_node_process(ros, tmp_path) -> None:
    shades_recorded = [30 + 10 * i for i in range(8)]
    path = str(tmp_path / "d435i.db3")
    record(path, [np.full((H, W, 3), v, np.uint8) for v in shades_recorded])
    topic = "/camera/top/color/image_raw"
    images_out, infos = ros.collect(Image, topic), ros.collect(CameraInfo, "/camera/top/color/camera_info")
    # looped, so the frames played before DDS discovery completes come round again
    args = [
        "-r",
        "__ns:=/camera",
        "-r",
        "__node:=top",
        "-p",
        f"rosbag_filename:={path}",
        "-p",
        "rosbag_loop:=true",
    ]
    proc = node_process(*args)
    try:
        wait_until(
            lambda: {int(m.data[0]) for m, _ in images_out} >= set(shades_recorded),
            30.0,
            "every recorded frame played back (the recording loops)",
        )
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out.decode(errors="replace")
    shades = [int(m.data[0]) for m, _ in images_out]
    assert set(shades) == set(shades_recorded), f"every recorded frame must come through, got {shades}"
    for a, b in zip(shades, shades[1:], strict=False):  # recorded order, wrapping at the end of the file
        assert shades_recorded.index(b) == (shades_recorded.index(a) + 1) % 8, shades
    stamps = np.array([stamp_ns(m) for m, _ in images_out])
    received = np.array([t for _, t in images_out])
    assert np.all(np.diff(stamps) > 0), "stamps increase, also across the loop"
    assert np.all(np.abs(received - stamps) < 1_000_000_000), "a recording from 2020 is re-stamped to now"
    assert np.allclose(infos[0][0].k, [28.0, 0, 16.5, 0, 29.0, 11.5, 0, 0, 1])
    assert infos[0][0].header.frame_id == "top_color_optical_frame"


def test_end_of_recording_is_reported_and_the_node_stays_up(ros, tmp_path) -> None:
    path = str(tmp_path / "short.db3")
    record(path, [np.full((H, W, 3), 5, np.uint8)] * 3)
    diags = ros.collect(DiagnosticArray, "/diagnostics")
    node = ros.add(
        RealSenseNode(
            context=ros.context,
            parameter_overrides=params(rosbag_filename=path, diagnostics_period_s=0.2, rosbag_realtime=False),
        )
    )
    node.start()
    wait_until(lambda: any(value(s, "state") == "finished" for s in statuses(diags)), 10.0, "state finished")
    finished = next(s for s in statuses(diags) if value(s, "state") == "finished")
    assert finished.level == DiagnosticStatus.WARN and int(value(finished, "frames_published")) >= 2
    assert node.workers["camera/camera"].running


def test_bad_parameter_exits_with_a_clear_message() -> None:
    proc = node_process("-p", "timestamp_mode:=device")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "timestamp_mode" in out.decode() and "device" in out.decode()
