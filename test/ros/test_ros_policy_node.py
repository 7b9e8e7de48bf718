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
