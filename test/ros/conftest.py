"""Fixtures of the ROS tests: small real checkpoints that fit the Franka and bimanual UR5 configs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # ros_harness

from ros_harness import FR3_HOME, UR5_HOME  # noqa: E402

FRANKA_CAMERAS = ["zed_left", "zed_right"]
FRANKA_STATE = [f"fr3_joint{i}" for i in range(1, 8)] + ["fr3_finger_joint1"]
FRANKA_ACTIONS = [f"fr3_joint{i}" for i in range(1, 8)] + ["gripper"]
UR5_JOINTS = [
    "shoulder_pan_joint",
    "shoulder_lift_joint",
    "elbow_joint",
    "wrist_1_joint",
    "wrist_2_joint",
    "wrist_3_joint",
]
UR5_CAMERAS = ["wrist_left", "wrist_right", "top"]
UR5_STATE = [
    *(f"left_{j}" for j in UR5_JOINTS),
    "left_robotiq_85_left_knuckle_joint",
    *(f"right_{j}" for j in UR5_JOINTS),
    "right_robotiq_85_left_knuckle_joint",
]
UR5_ACTIONS = [
    *(f"left_{j}" for j in UR5_JOINTS),
    "left_gripper",
    *(f"right_{j}" for j in UR5_JOINTS),
    "right_gripper",
]


def _checkpoint(directory: Path, cameras, state_dim, names, home, seed) -> Path:
    import torch

    from tinyvla_ros.vla.testing import make_tiny_checkpoint

    torch.set_num_threads(1)
    low = np.concatenate([np.asarray(home) - 0.2, [0.0]])
    high = np.concatenate([np.asarray(home) + 0.2, [1.0]])
    if len(names) == 14:  # two arms: joints + gripper each
        low, high = np.tile(low, 2), np.tile(high, 2)
    return make_tiny_checkpoint(
        directory,
        cameras,
        state_dim,
        len(names),
        seed=seed,
        action_low=low,
        action_high=high,
        action_names=names,
    )


@pytest.fixture(scope="session")
def franka_checkpoint(tmp_path_factory) -> Path:
    """nano checkpoint: 2 ZED cameras, 8-D state (7 joints + finger), 8-D actions around the FR3 home."""
    return _checkpoint(
        tmp_path_factory.mktemp("ckpt") / "franka", FRANKA_CAMERAS, 8, FRANKA_ACTIONS, FR3_HOME, 0
    )


@pytest.fixture(scope="session")
def ur5_checkpoint(tmp_path_factory) -> Path:
    """nano checkpoint: 3 RealSense cameras, 14-D state and actions around the UR5 home."""
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "ur5", UR5_CAMERAS, 14, UR5_ACTIONS, UR5_HOME, 1)
