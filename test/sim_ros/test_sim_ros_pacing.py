"""Pacing of the fake robot (realtime slips, fast factor, lockstep gate) and its config, without ROS."""

from __future__ import annotations

import pytest

from tinyvla_ros.ros.fake_robot.config import FakeRobotConfig, camera_output
from tinyvla_ros.ros.fake_robot.pacing import NS, LockstepGate, Pacer, PacingConfig


def test_realtime_deadlines_follow_the_wall_clock_and_slip_when_late():
    pacer = Pacer(PacingConfig("realtime", real_time_factor=5.0, max_lag=0.1), sim_s=0.0, wall_now=100.0)
    assert pacer.deadline(0.5) == pytest.approx(100.5)  # realtime ignores real_time_factor
    assert pacer.late(0.5, 100.55) == 0.0  # 50 ms late: within max_lag
    lag = pacer.late(1.0, 101.3)  # 300 ms late: slip
    assert lag == pytest.approx(0.3) and pacer.slips == 1
    assert pacer.deadline(1.1) == pytest.approx(101.4)  # re-based at the slip


def test_fast_mode_factor_and_unlimited():
    pacer = Pacer(PacingConfig("fast", real_time_factor=4.0), 2.0, 10.0)
    assert pacer.deadline(4.0) == pytest.approx(10.5)
    assert pacer.late(40.0, 1000.0) == 0.0  # no slips outside realtime
    assert Pacer(PacingConfig("fast", real_time_factor=0.0), 0.0, 0.0).deadline(100.0) is None


def test_lockstep_gate_needs_a_message_within_its_budget():
    gate = LockstepGate("executor", 0.01)
    assert not gate.following and not gate.ready(0) and not gate.blocking(0)  # never heard of: no wait
    gate.on_message(1 * NS)
    assert gate.following
    assert gate.ready(1 * NS) and gate.ready(1 * NS + 8_999_999)
    assert not gate.ready(1 * NS + 10_000_000)  # a whole period passed without a tick
    gate.on_message(1 * NS + 200)  # the same tick, rounded through float seconds
    assert not gate.ready(1 * NS + 10_000_000)
    assert gate.blocking(1 * NS + 10_000_000)
    gate.on_message(1 * NS - 5)  # an older message never moves it back
    assert gate.last_ns == 1 * NS + 200
    gate.timed_out()
    assert not gate.following and gate.timeouts == 1 and not gate.blocking(5 * NS)
    with pytest.raises(ValueError, match="budget"):
        LockstepGate("policy", 0.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"time_mode": "turbo"}, "time_mode"),
        ({"real_time_factor": -1.0}, "real_time_factor"),
        ({"step_dt": 0.005}, "whole multiple"),
        ({"camera_rate": 500.0}, "camera_rate"),
        ({"forward_command_topics": ["/a", "/b"]}, "forward_command_topics"),
        ({"setup": "kuka"}, "setup"),
        ({"image_width": 4}, "image_width"),
        ({"lockstep_chunk_budget": -0.1}, "lockstep_chunk_budget"),
        # below one camera period (15 Hz: 0.067 s) the sim stops before the frame the policy waits for
        ({"time_mode": "lockstep", "lockstep_chunk_budget": 0.05}, "camera period"),
        ({"image_noise": 100.0}, "image_noise"),
    ],
)
def test_config_rejects_bad_values_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FakeRobotConfig(**kwargs)


def test_config_fills_the_setups_topics_and_lockstep_period():
    franka = FakeRobotConfig()
    assert franka.topics("forward") == ["/forward_position_controller/commands"]
    assert franka.topics("trajectory") == ["/fr3_arm_controller/joint_trajectory"]
    assert franka.pacing().lockstep_period == 0.01
    ur5 = FakeRobotConfig(setup="ur5_bimanual", gripper_command_topics=["/l", "/r"])
    assert ur5.topics("trajectory")[1] == "/right_scaled_joint_trajectory_controller/joint_trajectory"
    assert ur5.topics("gripper") == ["/l", "/r"]
    assert ur5.pacing().lockstep_period == 0.02


def test_camera_outputs_use_the_real_drivers_names():
    zed = camera_output("zed_left", "zed2", "bgra8")
    assert zed.image_topic == "/zed_left/zed_node/rgb/color/rect/image"
    assert zed.info_topic == "/zed_left/zed_node/rgb/color/rect/camera_info"
    assert zed.frame_id == "zed_left_left_camera_frame_optical"
    legacy = camera_output("zed_left", "zed2", "bgra8", "legacy")
    assert legacy.image_topic == "/zed_left/zed_node/rgb/image_rect_color"
    rs = camera_output("top", "d435i", "rgb8")
    assert (rs.image_topic, rs.info_topic, rs.frame_id) == (
        "/camera/top/color/image_raw",
        "/camera/top/color/camera_info",
        "top_color_optical_frame",
    )
    with pytest.raises(ValueError, match="unknown camera model"):
        camera_output("x", "kinect", "rgb8")
