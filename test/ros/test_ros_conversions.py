"""Message <-> array conversion with real ROS message classes."""

from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from tinyvla_ros.core.images import ImageFormatError, encode_compressed
from tinyvla_ros.core.rotations import quaternion_to_matrix, rot6d_to_matrix
from tinyvla_ros.ros.conversions import (
    ChunkFormatError,
    chunk_to_trajectory,
    compressed_to_rgb,
    diagnostic_status,
    float_array,
    image_to_rgb,
    joint_state,
    joint_state_fields,
    pose_stamped,
    rgb_to_image,
    sec_to_stamp,
    stamp_to_sec,
    trajectory_command,
    trajectory_to_chunk,
)
from tinyvla_ros.ros.synthetic_sensors import pattern

RNG = np.random.default_rng(7)


def test_stamp_round_trip_and_rejects_negative():
    for t in (0.0, 1.5, 1795313680.375087421):
        assert stamp_to_sec(sec_to_stamp(t)) == pytest.approx(t, abs=1e-9 * max(1.0, t) * 1e-3 + 1e-9)
    with pytest.raises(ValueError, match="stamp"):
        sec_to_stamp(-1.0)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "bgra8", "rgba8"])
def test_image_round_trip_per_encoding(encoding):
    rgb = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    msg = rgb_to_image(rgb, encoding, 3.25, "cam")
    assert msg.encoding == encoding and stamp_to_sec(msg.header.stamp) == 3.25
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


def test_image_honours_row_padding_and_mono():
    rgb = RNG.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    msg = Image(height=4, width=6, encoding="bgra8", step=6 * 4 + 8)
    rows = np.zeros((4, 32), np.uint8)
    rows[:, :24] = np.concatenate([rgb[..., ::-1], np.full((4, 6, 1), 255, np.uint8)], axis=-1).reshape(4, 24)
    msg.data = rows.tobytes()
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)
    mono = Image(height=2, width=3, encoding="mono8", step=3, data=bytes([0, 100, 200, 1, 2, 3]))
    assert image_to_rgb(mono)[0, 1].tolist() == [100, 100, 100]


def test_unknown_encoding_raises_naming_it():
    msg = Image(height=2, width=2, encoding="bayer_rggb8", step=2, data=bytes(4))
    with pytest.raises(ImageFormatError, match="bayer_rggb8"):
        image_to_rgb(msg)


def test_compressed_png_decodes_exactly():
    rgb = pattern(16, 8, frame=3)
    fmt, data = encode_compressed(rgb, "png")
    msg = CompressedImage(format=fmt)
    msg.data = data
    np.testing.assert_array_equal(compressed_to_rgb(msg), rgb)


def test_chunk_round_trip_reorders_by_name():
    names = ["a", "b", "c"]
    chunk = RNG.normal(size=(16, 3))
    msg = chunk_to_trajectory(chunk, names, 12.5, 0.05)
    stamp, back, dt = trajectory_to_chunk(msg, ["c", "a", "b"])
    assert stamp == 12.5 and dt == pytest.approx(0.05)
    np.testing.assert_allclose(back, chunk[:, [2, 0, 1]])


def test_bad_chunks_raise_chunk_format_error():
    msg = chunk_to_trajectory(np.zeros((4, 2)), ["a", "b"], 1.0, 0.1)
    with pytest.raises(ChunkFormatError, match="lack expected"):
        trajectory_to_chunk(msg, ["a", "z"])
    msg.points[2].positions = [0.0]
    with pytest.raises(ChunkFormatError, match="point 2"):
        trajectory_to_chunk(msg, ["a", "b"])
    uneven = chunk_to_trajectory(np.zeros((4, 2)), ["a", "b"], 1.0, 0.1)
    uneven.points[3].time_from_start.sec = 5
    with pytest.raises(ChunkFormatError, match="evenly"):
        trajectory_to_chunk(uneven, ["a", "b"])
    with pytest.raises(ChunkFormatError, match="does not fit"):
        chunk_to_trajectory(np.zeros((4, 3)), ["a", "b"], 1.0, 0.1)


def test_joint_state_fields_checks_lengths():
    msg = joint_state(["j1", "j2"], np.array([0.5, -1.0]), 2.0)
    stamp, names, pos = joint_state_fields(msg)
    assert (stamp, names, pos.tolist()) == (2.0, ["j1", "j2"], [0.5, -1.0])
    msg.position = [1.0]
    with pytest.raises(ValueError, match="2 names but 1 positions"):
        joint_state_fields(msg)


def test_pose_from_rot6d_and_commands():
    rot = rot6d_to_matrix(np.array([0.0, 1.0, 0.0, -1.0, 0.0, 0.0]))
    msg = pose_stamped(np.array([0.4, 0.0, 0.3]), rot, 1.0, "fr3_link0")
    q = msg.pose.orientation
    np.testing.assert_allclose(quaternion_to_matrix(np.array([q.x, q.y, q.z, q.w])), rot, atol=1e-12)
    assert msg.header.frame_id == "fr3_link0"
    cmd = float_array(np.arange(7.0))
    assert list(cmd.data) == list(range(7)) and cmd.layout.dim[0].size == 7
    traj = trajectory_command(["a"], [np.array([1.0])], [np.array([0.5])], [0.04])
    assert traj.header.stamp.sec == 0 and traj.points[0].velocities[0] == 0.5


def test_diagnostic_status_levels():
    status = diagnostic_status("n", "hw", "error", "bad", {"x": 0.123456789, "y": 3})
    assert status.level == b"\x02" and [(kv.key, kv.value) for kv in status.values] == [
        ("x", "0.123457"),
        ("y", "3"),
    ]
