"""The bimanual UR5 fake over real DDS in lockstep: RealSense topics, per-arm trajectories, the gate.

This test process plays the executor: it answers every /clock with a ~/preview stamped at that
time, then stalls, and checks that the fake never runs more than one control period ahead of
the executor's last tick until the lockstep timeout.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from sim_ros_support import start_fake, wait_until
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from tinyvla_ros.ros.conversions import sec_to_duration, stamp_to_sec
from tinyvla_ros.ros.fake_robot.monitor import GraphMonitor
from tinyvla_ros.ros.qos import reliable_qos

pytestmark = [pytest.mark.ros, pytest.mark.sim]

UR5_CAMERAS = {n: f"/camera/{n}/color/image_raw" for n in ("wrist_left", "wrist_right", "top")}


class PreviewResponder:
    """Plays the executor's part in lockstep: answers every /clock with a ~/preview at that time."""

    def __init__(self, monitor: GraphMonitor) -> None:
        self.lock = threading.Lock()
        self.enabled = False
        self.last = -1.0
        self.clocks: list[tuple[float, float]] = []  # (wall, clock)
        self._pub = monitor.node.create_publisher(JointState, "/tinyvla_executor/preview", reliable_qos(10))
        monitor.node.create_subscription(Clock, "/clock", self._on_clock, reliable_qos(10))

    def _on_clock(self, msg: Clock) -> None:
        with self.lock:
            self.clocks.append((time.monotonic(), stamp_to_sec(msg.clock)))
            if not self.enabled:
                return
            preview = JointState()
            preview.header.stamp = msg.clock
            self._pub.publish(preview)
            self.last = max(self.last, stamp_to_sec(msg.clock))


def trajectory(names, point, duration) -> JointTrajectory:
    """A one-point trajectory (positions + zero velocities) reached after ``duration`` s."""
    msg = JointTrajectory(joint_names=list(names))
    msg.points.append(
        JointTrajectoryPoint(
            positions=[float(x) for x in point],
            velocities=[0.0] * len(names),
            time_from_start=sec_to_duration(duration),
        )
    )
    return msg


def publish(pub, msg, timeout: float = 10.0) -> None:
    wait_until(lambda: pub.get_subscription_count() > 0, timeout, f"a subscriber on {pub.topic_name}")
    pub.publish(msg)


def test_ur5_fake_topics_and_lockstep_waits_for_the_executor(module_tmp):
    proc = start_fake(
        module_tmp,
        "fake_ur5",
        setup="ur5_bimanual",
        time_mode="lockstep",
        lockstep_timeout=1.0,
        image_width=48,
        image_height=48,
        camera_rate=5.0,
        diagnostics_period=0.3,
    )
    monitor = GraphMonitor(UR5_CAMERAS, name="fake_ur5_test")
    responder = PreviewResponder(monitor)
    left = monitor.node.create_publisher(
        JointTrajectory, "/left_scaled_joint_trajectory_controller/joint_trajectory", reliable_qos(10)
    )
    try:
        wait_until(lambda: len(monitor.measured) > 5, 90.0, "UR5 joint states", proc)
        wait_until(
            lambda: all(monitor.frame_counts[c] for c in UR5_CAMERAS), 20.0, "three RealSense streams", proc
        )
        names = list(monitor.measured[-1][1])
        assert len(names) == 14 and names[-2:] == [
            "left_robotiq_85_left_knuckle_joint",
            "right_robotiq_85_left_knuckle_joint",
        ]
        # The executor is silent: the sim runs on in real time (after the lockstep timeout).
        wait_until(lambda: len(responder.clocks) > 50, 20.0, "/clock while no executor answers", proc)
        with responder.lock:
            responder.enabled = True
        wait_until(
            lambda: monitor.diag("tinyvla_fake_robot").get("lockstep_following.executor") is True,
            10.0,
            "following",
            proc,
        )
        # A left-arm trajectory moves the left arm only.
        right_before = np.array(
            [monitor.measured[-1][1][n] for n in names if n.startswith("right_") and "knuckle" not in n]
        )
        left_names = [n for n in names if n.startswith("left_") and "knuckle" not in n]
        goal = np.array([monitor.measured[-1][1][n] for n in left_names]) + 0.3
        publish(left, trajectory(left_names, goal, 0.5))
        wait_until(
            lambda: np.allclose([monitor.measured[-1][1][n] for n in left_names], goal, atol=0.02),
            20.0,
            "left arm",
            proc,
        )
        right_after = np.array(
            [monitor.measured[-1][1][n] for n in names if n.startswith("right_") and "knuckle" not in n]
        )
        np.testing.assert_allclose(right_after, right_before, atol=0.01)
        # The executor stalls: the sim may not run more than one control period (0.02 s) past its last tick.
        with responder.lock:
            responder.enabled = False
            stalled_at, stall_wall, last_tick = time.monotonic(), len(responder.clocks), responder.last
        time.sleep(0.7)  # < lockstep_timeout
        with responder.lock:
            during = [c for w, c in responder.clocks[stall_wall:] if w < stalled_at + 0.7]
        assert during and max(during) <= last_tick + 0.02 + 1e-6, (last_tick, max(during))
        wait_until(
            lambda: monitor.diag("tinyvla_fake_robot").get("lockstep_timeouts.executor", 0) >= 1,
            10.0,
            "a timeout",
            proc,
        )
        wait_until(
            lambda: responder.clocks[-1][1] > last_tick + 0.5,
            20.0,
            "the sim to run on after the timeout",
            proc,
        )
    finally:
        monitor.close()
        code = proc.stop()
    assert code == 0, proc.log()
