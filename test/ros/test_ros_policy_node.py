"""The policy lifecycle node in this process (real rclpy, own context): configure success and failure."""

from __future__ import annotations

import pytest
import rclpy
import yaml
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from tinyvla_ros.paths import config_dir
from tinyvla_ros.ros.graph import POLICY, node_section
from tinyvla_ros.ros.policy_node import PolicyNode


def flatten(params: dict, prefix: str = "") -> dict:
    """Nested params-file maps -> dotted parameter names."""
    out = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)


def make_node(context, **overrides) -> PolicyNode:
    with open(config_dir() / "franka.yaml", encoding="utf-8") as f:
        params = flatten(node_section(yaml.safe_load(f), POLICY))
    params.update(overrides)
    return PolicyNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])


def test_mismatched_checkpoint_fails_configure_and_reports_why(context, ur5_checkpoint):
    node = make_node(context, checkpoint=str(ur5_checkpoint), warmup_runs=0)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        level, message, values = node.report()
        assert level == "error"
        assert "CheckpointMismatchError" in message and "action_dim is 14 in the checkpoint but 8" in message
        assert values["state"] == "unconfigured"
    finally:
        node.destroy_node()


def test_missing_checkpoint_fails_configure(context, tmp_path):
    node = make_node(context, checkpoint=str(tmp_path / "nowhere"))
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert "checkpoint directory not found" in node.report()[1]
    finally:
        node.destroy_node()


def test_fitting_checkpoint_configures_and_cleans_up(context, franka_checkpoint):
    node = make_node(context, checkpoint=str(franka_checkpoint), warmup_runs=1, num_threads=1)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.report()[2]["state"] == "inactive"
        topics = {sub.topic_name for sub in node.subscriptions}
        assert {"/zed_left/zed_node/rgb/color/rect/image", "/joint_states", "/instruction"} <= topics
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert node.report()[2]["state"] == "unconfigured"
    finally:
        node.destroy_node()


def test_bad_parameter_is_a_clear_error(context):
    with pytest.raises(ValueError, match="inference_rate.*-1"):
        make_node(context, inference_rate=-1.0)
    with pytest.raises(ValueError, match="cameras.zed_left.*transport.*ftp"):
        make_node(context, **{"cameras.zed_left.transport": "ftp"})


def test_unknown_engine_fails_configure_naming_it(context, franka_checkpoint):
    node = make_node(context, checkpoint=str(franka_checkpoint), engine="warp_drive")
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert "warp_drive" in node.report()[1]
    finally:
        node.destroy_node()


def _spin_policy_with_frames(context, franka_checkpoint, frame_age: float, seconds: float):
    """The policy node (max_start_age 0.05 s) fed 15 Hz frames stamped ``frame_age`` s in the
    past; returns (chunks published, the node's diagnostics counters)."""
    import threading
    import time

    import numpy as np
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image, JointState
    from trajectory_msgs.msg import JointTrajectory

    from tinyvla_ros.ros.conversions import joint_state, rgb_to_image

    node = make_node(context, checkpoint=str(franka_checkpoint), warmup_runs=0, num_threads=1,
                     max_start_age=0.05, instruction="pick up the red cube", seed=0)  # fmt: skip
    rig = rclpy.create_node("late_start_rig", context=context)
    cams = {
        c: rig.create_publisher(Image, f"/{c}/zed_node/rgb/color/rect/image", 5)
        for c in ("zed_left", "zed_right")
    }
    joints = rig.create_publisher(JointState, "/joint_states", 5)
    chunks = []
    rig.create_subscription(JointTrajectory, "/tinyvla_policy/chunk", chunks.append, 10)
    names = list(node.cfg.state_joint_names)
    rng = np.random.default_rng(0)

    def publish() -> None:
        now = rig.get_clock().now().nanoseconds * 1e-9
        joints.publish(joint_state(names, np.zeros(len(names)), now))
        for cam, pub in cams.items():
            rgb = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            pub.publish(rgb_to_image(rgb, "bgra8", now - frame_age, cam))

    rig.create_timer(1.0 / 15.0, publish)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(rig)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        spinner.start()
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        time.sleep(seconds)
        node.trigger_deactivate()
        counters = node.report()[2]
    finally:
        executor.shutdown(timeout_sec=2.0)
        if spinner.is_alive():
            spinner.join(timeout=5.0)
        node.destroy_node()
        rig.destroy_node()
    return chunks, counters


@pytest.mark.parametrize("frame_age", [0.0, 0.1])
def test_worker_waits_briefly_for_fresher_frames_and_never_starves(context, franka_checkpoint, frame_age):
    chunks, counters = _spin_policy_with_frames(context, franka_checkpoint, frame_age, seconds=2.0)
    replaced, kept = int(counters.get("late_start.replaced", 0)), int(counters.get("late_start.kept", 0))
    assert len(chunks) >= 5, (len(chunks), counters)  # old frames or not, chunks keep coming
    if frame_age == 0.0:  # fresh frames: a late one (the worker was busy) is replaced by the next
        assert kept <= len(chunks) // 4, counters
    else:  # always 0.1 s old (inside max_age 0.15, beyond max_start_age 0.05): every start waited,
        # for a newer (still old) frame when one came within 0.05 s, else in vain
        assert replaced + kept >= len(chunks) - 1 and kept >= 1, counters
