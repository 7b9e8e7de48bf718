"""Closed loop over real DDS and real physics: policy + executor + MuJoCo Franka fake, sim time, lockstep.

A random-init nano checkpoint whose actions lie in home + [0.1, 0.3] rad for joints 1-6 (so any
output moves the arm) and in [2.9, 3.3] rad for joint 7 (beyond its 3.0159 limit: the safety
filter must clamp it). The fake runs in lockstep: the executor ticks once per control period of
sim time and inference takes at most the chunk budget of sim time, whatever the machine's load.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sim_ros_support import poll, rate_between, running_graph

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]

HOME = np.array([0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4])
LOWER = np.array([-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159])
UPPER = np.array([2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159])
JOINTS = [f"fr3_joint{i}" for i in range(1, 8)]
CONTROL_RATE = 100.0
FAKE = "tinyvla_fake_robot"
EXECUTOR = "tinyvla_executor"
POLICY = "tinyvla_policy"


def make_checkpoint(directory):
    import torch

    from tinyvla_ros.vla.testing import make_tiny_checkpoint

    torch.set_num_threads(1)
    low = np.concatenate([HOME[:6] + 0.1, [2.9], [0.0]])
    high = np.concatenate([HOME[:6] + 0.3, [3.3], [1.0]])
    return make_tiny_checkpoint(
        directory,
        ["zed_left", "zed_right"],
        8,
        8,
        seed=0,
        action_low=low,
        action_high=high,
        state_mean=np.concatenate([HOME, [0.04]]),
        state_std=np.full(8, 0.5),
    )


@pytest.fixture(scope="module")
def franka_graph(module_tmp):
    checkpoint = make_checkpoint(module_tmp / "ckpt_franka")
    extra = {
        FAKE: {
            "time_mode": "lockstep",
            "lockstep_timeout": 5.0,
            "image_width": 64,
            "image_height": 48,
            "camera_rate": 10.0,
            "diagnostics_period": 0.5,
        },
        POLICY: {"warmup_runs": 1, "num_threads": 1},
        # the chunks aim joint 7 at 2.9-3.3 rad from home at 0.79 (the position clamp under test): the
        # shipped max_start_distance would refuse them as a jump
        EXECUTOR: {"diagnostics_period": 0.5, "faults.max_start_distance": 0.0},
    }
    with running_graph(
        "franka", checkpoint, module_tmp / "logs_franka", extra, "closed_loop_franka_test"
    ) as running:
        yield running


def test_franka_commands_flow_at_the_control_rate_the_arm_moves_within_limits(franka_graph):
    graph, monitor = franka_graph
    poll(lambda: monitor.mode() == "run", 120.0, "the executor to run the policy's chunks", graph)
    rate, _, last = rate_between(monitor, FAKE, "commands.fr3.forward.accepted", 2.0, graph)
    assert 0.85 * CONTROL_RATE <= rate <= 1.05 * CONTROL_RATE, f"{rate:.1f} commands per sim second"
    assert last["instruction"] == "pick up the red cube"
    poll(
        lambda: monitor.measured and monitor.measured[-1][1]["fr3_joint1"] > HOME[0] + 0.05,
        60.0,
        "the simulated arm to move towards the policy's actions",
        graph,
    )
    poll(
        lambda: monitor.diag(EXECUTOR).get("safety_clamps_total", 0) > 0,
        30.0,
        "safety clamps (joint 7)",
        graph,
    )
    measured = np.array([[q[j] for j in JOINTS] for _, q in monitor.measured])
    assert np.all(measured >= LOWER - 1e-3) and np.all(measured <= UPPER + 1e-3)
    assert measured[:, 6].max() < UPPER[6]  # the policy asked for up to 3.3 rad
    fake = monitor.diag(FAKE)
    assert monitor.limit_violations == 0 and fake["limit_violations"] == 0
    assert fake["measured_limit_steps"] == 0
    assert monitor.diag(POLICY)["chunks_published"] > 0


def test_franka_executor_holds_when_a_camera_stops_and_resumes(franka_graph):
    graph, monitor = franka_graph
    poll(lambda: monitor.mode() == "run", 60.0, "run mode", graph)
    monitor.set_fake_parameters(cameras_paused=["zed_left"])
    poll(lambda: monitor.mode() == "hold", 30.0, "a hold after zed_left stopped", graph)
    start = len(monitor.commanded)
    _, hold_since = monitor.diag_with_stamp(FAKE)
    poll(
        lambda: monitor.diag_with_stamp(FAKE)[1]["sim_time_s"] >= hold_since["sim_time_s"] + 1.5,
        60.0,
        "1.5 s of sim time with the camera stopped",
        graph,
    )
    assert monitor.mode() == "hold", monitor.statuses[-3:]
    assert "newest observation is" in monitor.statuses[-1][1]["reason"]  # the shipped max_observation_age
    policy = monitor.diag(POLICY)
    assert sum(v for k, v in policy.items() if k.startswith("observations_rejected.")) > 0
    late = np.array([[q[j] for j in JOINTS] for _, q in monitor.commanded[start:]][-50:])
    assert np.ptp(late, axis=0).max() < 1e-6, "commands kept moving while holding"
    monitor.set_fake_parameters(cameras_paused=[])
    poll(lambda: monitor.mode() == "run", 60.0, "run mode again once zed_left is back", graph)
