"""The bimanual UR5 policy graph end to end on images from our RealSense node.

Three software D435i devices feed one RealSense node in this process, on the realsense2_camera
topics the ur5_bimanual config expects (/camera/<wrist_left|wrist_right|top>/color/image_raw);
the policy (lifecycle: configure, activate) and executor nodes of the ur5_bimanual params file run
in this process too (one process keeps the test short on a shared machine; every message still
crosses DDS), on a small random checkpoint. Chunks must come back stamped with the cameras' frame
time, and the executor must turn them into previews.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from cameras_harness import params, wait_until
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory

rs = pytest.importorskip(
    "pyrealsense2",
    reason="pyrealsense2 missing: pip install pyrealsense2==2.59.1.11053, apt-get install libusb-1.0-0",
)
from tinyvla_ros.ros.cameras.realsense_node import RealSenseNode, RealSenseNodeConfig  # noqa: E402
from tinyvla_ros.ros.cameras.realsense_software import SoftwareCamera, SoftwareCameraConfig  # noqa: E402
from tinyvla_ros.ros.cameras.realsense_source import SensorSource  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

CAMERAS = ["wrist_left", "wrist_right", "top"]
UR5_JOINTS = ["shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint", "wrist_1_joint", "wrist_2_joint"]
UR5_JOINTS += ["wrist_3_joint"]
UR5_HOME = [0.0, -1.5707963267948966, 1.5707963267948966, -1.5707963267948966, -1.5707963267948966, 0.0]
STATE = [f"{arm}_{j}" for arm in ("left", "right") for j in [*UR5_JOINTS, "robotiq_85_left_knuckle_joint"]]
ACTIONS = [f"{arm}_{j}" for arm in ("left", "right") for j in [*UR5_JOINTS, "gripper"]]
W, H = 64, 48


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from tinyvla_ros.vla.testing import make_tiny_checkpoint

    torch.set_num_threads(1)
    low = np.tile(np.concatenate([np.asarray(UR5_HOME) - 0.2, [0.0]]), 2)
    high = np.tile(np.concatenate([np.asarray(UR5_HOME) + 0.2, [1.0]]), 2)
    directory = tmp_path_factory.mktemp("ckpt") / "ur5"
    return make_tiny_checkpoint(
        directory, CAMERAS, 14, 14, seed=2, action_low=low, action_high=high, action_names=ACTIONS
    )


def graph_parameters(node_name: str, **overrides) -> list:
    """The ur5_bimanual params file's section of ``node_name`` as flat rclpy parameter overrides."""
    import yaml

    from tinyvla_ros.paths import config_dir
    from tinyvla_ros.ros.graph import node_section

    def flatten(values: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in values.items():
            out.update(
                flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}
            )
        return out

    with open(config_dir() / "ur5_bimanual.yaml", encoding="utf-8") as f:
        section = flatten(node_section(yaml.safe_load(f), node_name))
    return params(**(section | overrides))


def test_policy_graph_runs_on_realsense_node_images(ros, checkpoint) -> None:
    from rclpy.lifecycle import TransitionCallbackReturn

    from tinyvla_ros.ros.executor_node import ExecutorNode
    from tinyvla_ros.ros.policy_node import PolicyNode

    cams = {
        name: SoftwareCamera(SoftwareCameraConfig(serial=f"90000000000{i}", width=W, height=H))
        for i, name in enumerate(CAMERAS)
    }
    values = dict(
        camera_names=CAMERAS,
        serial_nos=[c.config.serial for c in cams.values()],
        width=W,
        height=H,
        queue_size=8,
    )
    cfg = RealSenseNodeConfig(**values)
    sources = {f"camera/{n}": SensorSource(cams[n].device, cfg.stream_config(n)) for n in CAMERAS}
    camera_node = ros.add(
        RealSenseNode(sources=sources, context=ros.context, parameter_overrides=params(**values))
    )
    chunks = ros.collect(JointTrajectory, "/tinyvla_policy/chunk")
    previews = ros.collect(JointState, "/tinyvla_executor/preview")
    joint_pub = ros.listener.create_publisher(JointState, "/joint_states", 10)
    policy = PolicyNode(
        context=ros.context,
        parameter_overrides=graph_parameters(
            "tinyvla_policy",
            checkpoint=str(checkpoint),
            instruction="hand over the cube",
            num_threads=1,
            warmup_runs=1,
            inference_rate=2.0,
        ),
    )
    assert policy.trigger_configure() == TransitionCallbackReturn.SUCCESS, policy.report()
    ros.add(ExecutorNode(context=ros.context, parameter_overrides=graph_parameters("tinyvla_executor")))
    ros.add(policy)
    camera_node.start()

    pushed: list[int] = []
    stop = threading.Event()

    def drive() -> None:
        """15 Hz: one frame per camera (same time, distinct content) and a joint state."""
        rng = np.random.default_rng(5)
        n = 0
        while not stop.is_set():
            ts_ms = time.time() * 1000.0
            for cam in cams.values():
                cam.push_color(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), ts_ms, n)
            pushed.append(round(ts_ms * 1e6))
            msg = JointState(name=STATE, position=[*UR5_HOME, 0.0, *UR5_HOME, 0.0])
            msg.header.stamp = ros.listener.get_clock().now().to_msg()
            joint_pub.publish(msg)
            n += 1
            stop.wait(1 / 15)

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    try:
        assert policy.trigger_activate() == TransitionCallbackReturn.SUCCESS, policy.report()
        wait_until(lambda: len(chunks) >= 2, 60.0, "2 chunks from the policy")
        wait_until(lambda: len(previews) >= 1, 30.0, "an executor preview")
    finally:
        stop.set()
        driver.join(timeout=5.0)
        policy.trigger_deactivate()
        policy.trigger_cleanup()
    chunk = chunks[-1][0]
    assert list(chunk.joint_names) == ACTIONS and len(chunk.points) == 16
    positions = np.array([p.positions for p in chunk.points])
    assert np.all(np.isfinite(positions))
    # the observation stamp is a camera frame time: the RealSense node's stamp travelled through
    stamp = chunk.header.stamp.sec * 1_000_000_000 + chunk.header.stamp.nanosec
    assert min(abs(stamp - p) for p in pushed) < 2_000, "chunk stamp must be one of the cameras' frame times"
    assert set(STATE[:6]) <= set(previews[-1][0].name)
