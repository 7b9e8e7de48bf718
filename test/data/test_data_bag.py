"""Bag layer without ROS: rosbags writer/reader round trips (MCAP and sqlite3), the mcap reader, errors."""

from __future__ import annotations

import numpy as np
import pytest
from data_helpers import write_synthetic_bag

from tinyvla_ros.data.bag import (
    LATCHED,
    BagError,
    BagReader,
    BagWriter,
    BagWriterConfig,
    TopicQos,
    deserialize,
    ensure_type,
    serialize,
)
from tinyvla_ros.data.convert import header_stamp_ns
from tinyvla_ros.data.messages import (
    IMAGE,
    chunk_array,
    chunk_msg,
    float_array_msg,
    image_msg,
    image_rgb,
    joint_state_fields,
    joint_state_msg,
    sec_to_ns,
    stamp_ns,
)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_topics_counts_stamps_metadata(tmp_path, storage):
    written = write_synthetic_bag(tmp_path / "bag", steps=7, gap=(2, 4), storage=storage)
    with BagReader(tmp_path / "bag") as bag:
        topics = bag.topics
        assert {t: i.count for t, i in topics.items()} == {
            "/cam_a": 5, "/cam_b": 7, "/joint_states": 7, "/action": 7, "/instruction": 1,
        }  # fmt: skip
        assert topics["/instruction"].qos == LATCHED
        assert topics["/cam_a"].qos == TopicQos()
        assert topics["/cam_a"].type_hash.startswith("RIHS01_")
        assert bag.metadata == {"success": "true", "task": "stack"}
        stamps = [m.decode().header.stamp for m in bag.messages(["/joint_states"])]
        assert [stamp_ns(s) for s in stamps] == [sec_to_ns(t) for t in written["stamps"]]
        frames = [image_rgb(m.decode()) for m in bag.messages(["/cam_a"])]
        assert [int(f[0, 0, 0]) for f in frames] == [0, 1, 4, 5, 6]
        receive = [m.t_ns for m in bag.messages()]
        assert receive == sorted(receive)
        assert bag.start_ns == sec_to_ns(2.0) and bag.end_ns == sec_to_ns(2.6 + 0.003)


def test_mcap_reader_sees_the_same_messages(tmp_path):
    mcap_reader = pytest.importorskip("mcap.reader")
    decoder = pytest.importorskip("mcap_ros2.decoder")
    write_synthetic_bag(tmp_path / "bag", steps=5)
    with BagReader(tmp_path / "bag") as bag:
        ours = [(m.topic, m.t_ns, m.data) for m in bag.messages()]
    theirs = []
    with (tmp_path / "bag" / "bag.mcap").open("rb") as f:
        reader = mcap_reader.make_reader(f, decoder_factories=[decoder.DecoderFactory()])
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            theirs.append((channel.topic, message.log_time, bytes(message.data)))
            assert schema.encoding == "ros2msg"
            if channel.topic == "/joint_states":
                assert list(decoded.name) == ["j0", "j1", "j2"]
    assert sorted(ours) == sorted(theirs)


def test_typed_messages_round_trip_through_cdr():
    rgb = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    for encoding in ("rgb8", "bgr8", "bgra8", "rgba8"):
        msg = deserialize(serialize(image_msg(rgb, encoding, 3.25, "cam")), IMAGE)
        assert msg.encoding == encoding and msg.header.frame_id == "cam"
        np.testing.assert_array_equal(image_rgb(msg), rgb)
    js = deserialize(serialize(joint_state_msg(["a", "b"], [1.5, -2.0], 4.0)), "sensor_msgs/msg/JointState")
    t, names, pos = joint_state_fields(js)
    assert (t, names, pos.tolist()) == (4.0, ["a", "b"], [1.5, -2.0])
    chunk = np.arange(12, dtype=np.float64).reshape(4, 3)
    traj = deserialize(
        serialize(chunk_msg(chunk, ["x", "y", "z"], 5.0, 0.05)), "trajectory_msgs/msg/JointTrajectory"
    )
    stamp, back = chunk_array(traj, ["z", "x", "y"])
    assert stamp == 5.0
    np.testing.assert_array_equal(back, chunk[:, [2, 0, 1]])
    arr = deserialize(serialize(float_array_msg([1, 2, 3])), "std_msgs/msg/Float64MultiArray")
    assert arr.data.tolist() == [1.0, 2.0, 3.0] and arr.layout.dim[0].size == 3


def test_header_stamp_parsed_from_raw_cdr():
    data = serialize(image_msg(np.zeros((2, 2, 3), np.uint8), "rgb8", 12.000000007, "c"))
    assert header_stamp_ns(data) == 12_000_000_007


def test_writer_and_reader_errors(tmp_path):
    with pytest.raises(ValueError, match="storage"):
        BagWriterConfig(storage="rosbag1")
    with BagWriter(tmp_path / "a") as bag:
        with pytest.raises(BagError, match="was not added"):
            bag.write_raw("/nope", 1, b"\x00\x01\x00\x00")
        with pytest.raises(BagError, match="absolute"):
            bag.add_topic("relative", IMAGE)
        with pytest.raises(BagError, match="unknown to the typestore"):
            bag.add_topic("/x", "my_pkg/msg/Unknown")
        bag.add_topic("/x", IMAGE)
    with pytest.raises(BagError, match="exists already"):
        BagWriter(tmp_path / "a")
    with pytest.raises(BagError, match="does not exist"):
        BagReader(tmp_path / "missing")
    with BagReader(tmp_path / "a") as bag, pytest.raises(BagError, match="no topic"):
        list(bag.messages(["/y"]))


def test_installed_message_definitions_are_registered():
    assert ensure_type("lifecycle_msgs/msg/TransitionEvent")
    assert ensure_type("diagnostic_msgs/msg/DiagnosticArray")
    assert not ensure_type("no_such_pkg/msg/Thing")
