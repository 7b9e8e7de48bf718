"""Closed loop with end-effector actions over real DDS: policy (franka_ee, 10-D) + executor
(ee_pose output: PoseStamped equilibrium poses) + the MuJoCo Franka fake's Cartesian impedance
equilibrium-pose input (IK to a joint target).

A random-init nano checkpoint whose actions are TCP positions in a box 3-13 cm in front of and
below the home TCP (z under the workspace floor of config/robots/fr3.yaml: the pose filter must
clamp it), the home orientation (6-D rotation, +-0.01) and a gripper opening. The fake
runs in realtime: its lockstep gate reads the executor's joint-space preview, which an ee_pose
executor does not publish.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sim_ros_support import poll, rate_between, running_graph

from tinyvla_ros.core.robots import load_robot_spec
from tinyvla_ros.core.rotations import matrix_to_rot6d

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]

HOME = np.array([0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4])
JOINTS = [f"fr3_joint{i}" for i in range(1, 8)]
FAKE, EXECUTOR, POLICY = "tinyvla_fake_robot", "tinyvla_executor", "tinyvla_policy"
SPEC = load_robot_spec("fr3")
HOME_TCP = SPEC.kinematics.fk(HOME)
WORKSPACE_MIN = np.array([0.15, -0.6, 0.02])
BOX_LOW = np.array([HOME_TCP[0, 3] + 0.03, HOME_TCP[1, 3] - 0.05, -0.2])  # z under the floor (0.02 m)
BOX_HIGH = np.array([HOME_TCP[0, 3] + 0.13, HOME_TCP[1, 3] + 0.05, -0.05])


@pytest.fixture(scope="module")
def ee_graph(module_tmp):
    import torch

    from tinyvla_ros.vla.testing import make_tiny_checkpoint

    torch.set_num_threads(1)
    r6 = matrix_to_rot6d(HOME_TCP[:3, :3])
    checkpoint = make_tiny_checkpoint(
        module_tmp / "ckpt_ee",
        ["zed_left", "zed_right"],
        8,
        10,
        seed=0,
        action_low=np.concatenate([BOX_LOW, r6 - 0.01, [0.0]]),
        action_high=np.concatenate([BOX_HIGH, r6 + 0.01, [1.0]]),
        state_mean=np.concatenate([HOME, [0.04]]),
        state_std=np.full(8, 0.5),
    )
    extra = {
        FAKE: {"image_width": 64, "image_height": 48, "camera_rate": 10.0, "diagnostics_period": 0.5},
        POLICY: {"warmup_runs": 1, "num_threads": 1},
        EXECUTOR: {"diagnostics_period": 0.5},
    }
    with running_graph(
        "franka", checkpoint, module_tmp / "logs_ee", extra, "closed_loop_franka_ee_test", output="ee_pose"
    ) as running:
        yield running


def test_ee_poses_move_the_tcp_into_the_action_box_clamped_to_the_workspace(ee_graph):
    graph, monitor = ee_graph
    poll(lambda: monitor.mode() == "run", 150.0, "the executor to run the policy's chunks", graph)
    rate, _, _ = rate_between(monitor, FAKE, "commands.fr3.pose.accepted", 2.0, graph)
    assert rate >= 0.5 * 100.0, f"{rate:.1f} equilibrium poses per s (control rate 100 Hz)"

    def tcp() -> np.ndarray:
        return SPEC.kinematics.fk_xyz(np.array([monitor.measured[-1][1][j] for j in JOINTS]))

    # the policy's x/y lie in the box; z is clamped up to the workspace floor by the pose filter
    poll(
        lambda: np.all(tcp()[:2] >= BOX_LOW[:2] - 0.01) and np.all(tcp()[:2] <= BOX_HIGH[:2] + 0.01),
        60.0,
        "the TCP in the action box (x, y)",
        graph,
    )
    poll(lambda: tcp()[2] < WORKSPACE_MIN[2] + 0.03, 60.0, "the TCP down at the workspace floor", graph)
    # the pose filter's position limits are the workspace box: its clamps count the floor
    poll(lambda: monitor.diag(EXECUTOR).get("clamps.position", 0) > 0, 30.0, "workspace clamps", graph)
    zs = [SPEC.kinematics.fk_xyz(np.array([q[j] for j in JOINTS]))[2] for _, q in monitor.measured]
    assert min(zs) >= WORKSPACE_MIN[2] - 0.005, f"TCP went {WORKSPACE_MIN[2] - min(zs):.3f} m under the floor"
    fake = monitor.diag(FAKE)
    assert fake["active_controller.fr3"] == "pose"
    assert fake.get("commands.fr3.pose.rejected", 0) == 0
    assert fake["limit_violations"] == 0 and fake["measured_limit_steps"] == 0
