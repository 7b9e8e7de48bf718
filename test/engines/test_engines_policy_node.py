"""The ONNX Runtime engine behind the real policy lifecycle node (rclpy, DDS, synthetic ZED streams)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from trajectory_msgs.msg import JointTrajectory

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ros"))  # the ROS tests' DDS harness

from ros_harness import FR3_HOME, Rig, cameras, wait_for  # noqa: E402

from tinyvla_ros.paths import config_dir  # noqa: E402
from tinyvla_ros.ros.graph import POLICY, node_section  # noqa: E402
from tinyvla_ros.ros.policy_node import PolicyNode  # noqa: E402
from tinyvla_ros.ros.synthetic_sensors import SyntheticSensorsConfig  # noqa: E402
from tinyvla_ros.vla.normalize import Normalizer  # noqa: E402

pytestmark = pytest.mark.ros
ZED = [
    ("zed_left", "/zed_left/zed_node/rgb/color/rect/image", "bgra8"),
    ("zed_right", "/zed_right/zed_node/rgb/color/rect/image", "bgra8"),
]


def _flatten(params: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _node(rig: Rig, **overrides) -> PolicyNode:
    with open(config_dir() / "franka.yaml", encoding="utf-8") as f:
        params = _flatten(node_section(yaml.safe_load(f), POLICY))
    params.update(num_threads=1, warmup_runs=1, seed=0, max_skew=0.1, inference_rate=5.0, **overrides)
    return PolicyNode(
        context=rig.context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]
    )


@pytest.fixture
def rig():
    rig = Rig("tinyvla_engines_rig")
    yield rig
    rig.close()


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_onnx_engine_publishes_chunks_through_policy_node(rig, franka_copy, precision):
    node = _node(
        rig,
        checkpoint=str(franka_copy),
        engine="onnxruntime",
        precision=precision,
        instruction="pick up the red cube",
    )
    rec = rig.record(JointTrajectory, "/tinyvla_policy/chunk")
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS, node.report()[1]
        assert type(node._engine).__name__ == "OnnxEngine"
        assert node._engine.cfg.precision == precision
        assert (franka_copy / "encoder.int8.onnx").is_file() == (precision == "int8")
        rig.executor.add_node(node)
        rig.start_sensors(
            SyntheticSensorsConfig(
                cameras(ZED),
                [f"fr3_joint{i}" for i in range(1, 8)] + ["fr3_finger_joint1"],
                [*FR3_HOME, 0.04],
                joint_rate=50.0,
            )
        )
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        wait_for(lambda: rec.count() >= 2, 90.0, "two chunks from the onnx engine")
        stats = Normalizer.load(franka_copy / "stats.json")
        for msg in rec.messages()[:2]:
            chunk = np.array([p.positions for p in msg.points])  # (T, Da)
            assert chunk.shape == (16, 8) and np.all(np.isfinite(chunk))
            assert np.all(chunk >= stats.action_low - 1e-5) and np.all(chunk <= stats.action_high + 1e-5)
            assert msg.joint_names[-1] == "gripper"
        assert node.report()[2]["chunks_published"] >= 2
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    finally:
        rig.executor.remove_node(node)
        node.destroy_node()


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"engine": "onnxruntime", "device": "cuda"}, ("ExecutionProviderError", "CUDAExecutionProvider")),
        ({"engine": "torch", "precision": "int8"}, ("precision 'int8'", "engine 'torch'")),
    ],
    ids=["missing_provider", "int8_on_torch"],
)
def test_bad_engine_settings_fail_configure_naming_them(rig, franka_copy, overrides, named):
    node = _node(rig, checkpoint=str(franka_copy), **overrides)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        level, message, _ = node.report()
        assert level == "error" and all(n in message for n in named), message
    finally:
        node.destroy_node()
