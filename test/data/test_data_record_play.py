"""Recorder and player nodes over real DDS (one process, own ROS context, own domain)."""

from __future__ import annotations

import numpy as np
import pytest
from data_helpers import wait_until, write_synthetic_bag

rclpy = pytest.importorskip("rclpy")
from rclpy.node import Node  # noqa: E402
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from tinyvla_ros.data.bag import BagReader  # noqa: E402
from tinyvla_ros.data.messages import image_rgb, stamp_ns  # noqa: E402
from tinyvla_ros.ros.bag_play import BagPlayer, PlayerConfig, parse_remaps  # noqa: E402
from tinyvla_ros.ros.bag_record import BagRecorder, RecorderConfig, setup_topics  # noqa: E402

pytestmark = pytest.mark.ros
LATCHED = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)  # fmt: skip
RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE)


def _image(k: int) -> Image:
    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 10 + k, 1000 * k
    msg.header.frame_id = "cam"
    msg.height, msg.width, msg.encoding, msg.step = 2, 3, "rgb8", 9
    msg.data = bytes([k] * 18)
    return msg


def test_recorder_writes_what_was_published(ros, tmp_path):
    pub_node = ros.add(Node("data_test_publisher", context=ros.context))
    image_pub = pub_node.create_publisher(Image, "/cam/image", RELIABLE)
    joint_pub = pub_node.create_publisher(JointState, "/joint_states", RELIABLE)
    instr_pub = pub_node.create_publisher(String, "/instruction", LATCHED)
    instr_pub.publish(String(data="pick up the cube"))  # before the recorder exists: latched
    cfg = RecorderConfig(
        str(tmp_path / "rec"), topics=["/cam/image", "/joint_states", "/instruction"], storage="mcap"
    )
    recorder = ros.add(BagRecorder(cfg, context=ros.context))
    wait_until(
        lambda: image_pub.get_subscription_count() and joint_pub.get_subscription_count(), 10, "recorder"
    )
    for k in range(12):
        image_pub.publish(_image(k))
        js = JointState(name=["a", "b"], position=[float(k), -float(k)])
        js.header.stamp.sec = 100 + k
        joint_pub.publish(js)
    wait_until(lambda: recorder.counts.get("/cam/image", 0) == 12 and recorder.counts.get("/joint_states", 0) == 12,
               10, "12 messages per topic")  # fmt: skip
    wait_until(lambda: recorder.counts.get("/instruction", 0) == 1, 10, "the latched instruction")
    counts = recorder.stop()
    assert counts == {"/cam/image": 12, "/joint_states": 12, "/instruction": 1}
    with BagReader(tmp_path / "rec") as bag:
        topics = bag.topics
        assert {t: (i.msgtype, i.count) for t, i in topics.items()} == {
            "/cam/image": ("sensor_msgs/msg/Image", 12),
            "/joint_states": ("sensor_msgs/msg/JointState", 12),
            "/instruction": ("std_msgs/msg/String", 1),
        }
        assert topics["/instruction"].qos.durability == "transient_local"
        images = [m.decode() for m in bag.messages(["/cam/image"])]
        assert [stamp_ns(m.header.stamp) for m in images] == [(10 + k) * 10**9 + 1000 * k for k in range(12)]
        assert [int(image_rgb(m)[0, 0, 0]) for m in images] == list(range(12))
        joints = [m.decode() for m in bag.messages(["/joint_states"])]
        assert [list(m.position) for m in joints] == [[float(k), -float(k)] for k in range(12)]
        assert next(bag.messages(["/instruction"])).decode().data == "pick up the cube"
    mcap_reader = pytest.importorskip("mcap.reader")
    with (tmp_path / "rec" / "rec.mcap").open("rb") as f:
        summary = mcap_reader.make_reader(f).get_summary()
    per_channel = {summary.channels[c].topic: n for c, n in summary.statistics.channel_message_counts.items()}
    assert per_channel == counts


def test_player_publishes_recorded_bytes_with_clock(ros, tmp_path):
    write_synthetic_bag(tmp_path / "bag", steps=10, dt=0.05)
    with BagReader(tmp_path / "bag") as bag:
        recorded = {t: [m.data for m in bag.messages([t])] for t in ("/cam_a", "/joint_states")}
        times = [m.t_ns for m in bag.messages()]
    cams = ros.collect(Image, "/cam_a", raw=True)
    joints = ros.collect(JointState, "/joint_states", raw=True)
    clock = ros.collect(Clock, "/clock")
    cfg = PlayerConfig(str(tmp_path / "bag"), rate=4.0, clock_hz=100.0, wait_for_subscribers=10.0,
                       wait_topics=["/cam_a", "/joint_states"])  # fmt: skip
    player = ros.add(BagPlayer(cfg, context=ros.context))
    wait_until(lambda: player.count_subscribers("/clock") > 0, 10, "a /clock subscriber")
    stats = player.play()
    wait_until(lambda: len(cams) == 10 and len(joints) == 10, 10, "all messages")
    assert [bytes(m) for m, _ in cams] == recorded["/cam_a"]  # byte for byte, never re-serialised
    assert [bytes(m) for m, _ in joints] == recorded["/joint_states"]
    assert stats.published["/cam_a"] == 10 and stats.loops == 1
    # a player never runs ahead of the bag: wall time >= bag time / rate
    assert stats.wall_seconds >= (times[-1] - times[0]) * 1e-9 / 4.0 - 1e-3
    wait_until(
        lambda: clock and clock[-1][0].clock.sec * 10**9 + clock[-1][0].clock.nanosec == times[-1],
        10,
        "clock",
    )
    clock_ns = [c.clock.sec * 10**9 + c.clock.nanosec for c, _ in clock]
    assert clock_ns == sorted(clock_ns) and clock_ns[0] == times[0]
    assert set(times) <= set(clock_ns)  # /clock reached every message's time before the message


def test_player_remap_offset_subset_loop_and_latched_instruction(ros, tmp_path):
    write_synthetic_bag(tmp_path / "bag", steps=20, dt=0.02)
    renamed = ros.collect(Image, "/camera/b")
    original = ros.collect(Image, "/cam_b")
    joints = ros.collect(JointState, "/joint_states")
    cfg = PlayerConfig(
        str(tmp_path / "bag"), rate=5.0, remap=parse_remaps(["/cam_b:=/camera/b"]), start_offset=0.2,
        topics=["/cam_b", "/joint_states", "/instruction"], loop=True, max_loops=2,
        wait_for_subscribers=10.0, wait_topics=["/cam_b", "/joint_states"],
    )  # fmt: skip
    player = ros.add(BagPlayer(cfg, context=ros.context))
    stats = player.play()
    assert stats.loops == 2
    # steps at t0 + k * 0.02 >= t0 + 0.2 -> k = 10..19, twice
    wait_until(lambda: len(joints) == 20 and len(renamed) == 20, 10, "two loops of 10 steps")
    assert [int(m.position[0]) for m, _ in joints] == list(range(10, 20)) * 2
    assert [m.data[0] for m, _ in renamed] == [100 + k for k in range(10, 20)] * 2
    assert original == []
    late = ros.collect(String, "/instruction", qos=LATCHED)  # subscribes after playback: latched
    wait_until(lambda: late, 10, "the latched instruction")
    assert late[0][0].data == "stack the blocks"


def test_player_and_recorder_reject_bad_options(tmp_path):
    write_synthetic_bag(tmp_path / "bag", steps=3)
    with pytest.raises(ValueError, match="rate"):
        PlayerConfig(str(tmp_path / "bag"), rate=0.0)
    with pytest.raises(ValueError, match="remap"):
        parse_remaps(["/a=/b"])
    with pytest.raises(ValueError, match="topics to record"):
        RecorderConfig(str(tmp_path / "out"))
    with pytest.raises(ValueError, match="absolute"):
        RecorderConfig(str(tmp_path / "out"), topics=["joint_states"])
    topics = setup_topics("franka")
    assert "/zed_left/zed_node/rgb/color/rect/image" in topics and "/joint_states" in topics
    assert "/instruction" in topics and "/tinyvla_policy/chunk" in topics
    assert np.all([t.startswith("/") for t in topics])


def test_player_rejects_unknown_topics(ros, tmp_path):
    write_synthetic_bag(tmp_path / "bag", steps=3)
    with pytest.raises(ValueError, match="not in bag"):
        BagPlayer(PlayerConfig(str(tmp_path / "bag"), topics=["/nope"]), context=ros.context)
    with pytest.raises(ValueError, match="past the end"):
        player = ros.add(
            BagPlayer(PlayerConfig(str(tmp_path / "bag"), start_offset=50.0), context=ros.context)
        )
        player.play()


def test_bag_play_command_exits_cleanly_after_playing(tmp_path):
    """The console script's process ends with 0 after the last message, run after run (its spinning
    thread used to be inside rcl at interpreter exit: 'terminate called...', exit 134, 7 of 8 runs)."""
    import subprocess
    import sys

    write_synthetic_bag(tmp_path / "bag", steps=10, dt=0.05)
    for _ in range(3):
        run = subprocess.run(
            [sys.executable, "-m", "tinyvla_ros.ros.bag_play", str(tmp_path / "bag"), "--rate", "8"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "played 41 messages" in run.stdout and "terminate called" not in run.stderr
