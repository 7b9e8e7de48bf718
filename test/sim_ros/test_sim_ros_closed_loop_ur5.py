"""Closed loop with 14-D actions: policy + executor (joint trajectory output) + MuJoCo bimanual UR5 fake.

A random-init nano checkpoint (3 RealSense cameras, state 14, action 14) whose joint actions lie
in home + [0.1, 0.3] rad (every output moves both arms), except wrist 3 in [6.2, 6.6] rad (past
its 2 pi limit: the safety filter must clamp it). Lockstep sim time, as in the Franka test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sim_ros_support import poll, rate_between, running_graph, tiny_checkpoint

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]

HOME = np.array([0.0, -math.pi / 2, math.pi / 2, -math.pi / 2, -math.pi / 2, 0.0])
UPPER = np.array([2 * math.pi, 2 * math.pi, math.pi, 2 * math.pi, 2 * math.pi, 2 * math.pi])
ARM = [
    "shoulder_pan_joint",
    "shoulder_lift_joint",
    "elbow_joint",
    "wrist_1_joint",
    "wrist_2_joint",
    "wrist_3_joint",
]
JOINTS = [f"{side}_{j}" for side in ("left", "right") for j in ARM]
CONTROL_RATE = 50.0
FAKE, EXECUTOR, POLICY = "tinyvla_fake_robot", "tinyvla_executor", "tinyvla_policy"


@pytest.fixture(scope="module")
def ur5_graph(module_tmp):
    arm_low = np.concatenate([HOME[:5] + 0.1, [6.2], [0.0]])
    arm_high = np.concatenate([HOME[:5] + 0.3, [6.6], [1.0]])
    checkpoint = tiny_checkpoint(
        module_tmp / "ckpt_ur5",
        ["wrist_left", "wrist_right", "top"],
        np.tile(arm_low, 2),
        np.tile(arm_high, 2),
        np.tile(np.concatenate([HOME, [0.4]]), 2),
        np.full(14, 0.5),
    )
    extra = {
        FAKE: {
            "time_mode": "lockstep",
            "lockstep_timeout": 5.0,
            "image_width": 48,
            "image_height": 48,
            "camera_rate": 10.0,
            "diagnostics_period": 0.5,
        },
        POLICY: {"warmup_runs": 1, "num_threads": 1},
        # the chunks aim wrist 3 at 6.2-6.6 rad from home at 0 (the position clamp under test): the
        # shipped max_start_distance would refuse them as a jump
        EXECUTOR: {"diagnostics_period": 0.5, "faults.max_start_distance": 0.0},
    }
    with running_graph(
        "ur5_bimanual", checkpoint, module_tmp / "logs_ur5", extra, "closed_loop_ur5_test"
    ) as running:
        yield running


def test_ur5_trajectories_flow_at_the_control_rate_both_arms_move_within_limits(ur5_graph):
    graph, monitor = ur5_graph
    poll(lambda: monitor.mode() == "run", 150.0, "the executor to run the policy's chunks", graph)
    for side in ("left", "right"):
        rate, _, _ = rate_between(monitor, FAKE, f"commands.{side}.trajectory.accepted", 2.0, graph)
        assert 0.85 * CONTROL_RATE <= rate <= 1.05 * CONTROL_RATE, (
            f"{side}: {rate:.1f} trajectories per sim s"
        )
    for side in ("left", "right"):
        poll(
            lambda side=side: monitor.measured[-1][1][f"{side}_shoulder_pan_joint"] > 0.05,
            60.0,
            f"the {side} arm to move",
            graph,
        )
    poll(
        lambda: monitor.diag(EXECUTOR).get("clamps.position", 0) > 0, 30.0, "position clamps (wrist 3)", graph
    )
    measured = np.array([[q[j] for j in JOINTS] for _, q in monitor.measured])
    upper = np.tile(UPPER, 2)
    assert np.all(np.abs(measured) <= upper + 1e-3)
    fake = monitor.diag(FAKE)
    assert fake["active_controller.left"] == fake["active_controller.right"] == "trajectory"
    assert (
        monitor.limit_violations == 0 and fake["limit_violations"] == 0 and fake["measured_limit_steps"] == 0
    )
    assert fake["instruction"] == "lift the box with both arms"


def test_ur5_executor_holds_when_the_top_camera_stops_and_resumes(ur5_graph):
    graph, monitor = ur5_graph
    poll(lambda: monitor.mode() == "run", 60.0, "run mode", graph)
    monitor.set_fake_parameters(cameras_paused=["top"])
    poll(lambda: monitor.mode() == "hold", 30.0, "a hold after the top camera stopped", graph)
    _, since = monitor.diag_with_stamp(FAKE)
    poll(
        lambda: monitor.diag_with_stamp(FAKE)[1]["sim_time_s"] >= since["sim_time_s"] + 1.5,
        60.0,
        "1.5 s of sim time with the camera stopped",
        graph,
    )
    assert monitor.mode() == "hold", monitor.statuses[-3:]
    count = monitor.diag(FAKE)["commands.left.trajectory.accepted"]
    poll(
        lambda: monitor.diag_with_stamp(FAKE)[1]["sim_time_s"] >= since["sim_time_s"] + 2.5,
        60.0,
        "1 s more",
        graph,
    )
    # A held trajectory controller needs no stream: the executor sent its stop trajectory and went quiet.
    assert monitor.diag(FAKE)["commands.left.trajectory.accepted"] == count
    monitor.set_fake_parameters(cameras_paused=[])
    poll(lambda: monitor.mode() == "run", 60.0, "run mode again once the top camera is back", graph)
