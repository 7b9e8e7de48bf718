"""The fake-robot node over real DDS: the drivers' topics, the controllers' semantics, faults, lockstep.

One Franka fake (realtime) and one bimanual UR5 fake (lockstep) run as separate processes; this
test process publishes commands like the executor would and records what the fake publishes.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo
from sim_ros_support import start_fake, wait_until
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from tinyvla_ros.ros.conversions import sec_to_duration, stamp_to_sec
from tinyvla_ros.ros.fake_robot.monitor import GraphMonitor
from tinyvla_ros.ros.qos import reliable_qos

pytestmark = [pytest.mark.ros, pytest.mark.sim]

FR3 = [f"fr3_joint{i}" for i in range(1, 8)]
FR3_HOME = np.array([0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4])
FR3_UPPER_J7 = 3.0159
ZED = {
    "zed_left": "/zed_left/zed_node/rgb/color/rect/image",
    "zed_right": "/zed_right/zed_node/rgb/color/rect/image",
}


class Recorder:
    """Extra subscriptions on the monitor's node: every message of a topic, with receive times."""

    def __init__(self, monitor: GraphMonitor) -> None:
        self.monitor = monitor
        self.lock = threading.Lock()
        self.messages: dict[str, list] = {}

    def record(self, msg_type: type, topic: str, qos=None) -> list:
        out: list = []
        self.messages[topic] = out

        def callback(msg) -> None:
            with self.lock:
                out.append(msg)

        self.monitor.node.create_subscription(msg_type, topic, callback, qos or reliable_qos(50))
        return out


def publish(pub, msg, timeout: float = 10.0) -> None:
    """Publish once the fake's subscription is matched (DDS discovery done)."""
    wait_until(lambda: pub.get_subscription_count() > 0, timeout, f"a subscriber on {pub.topic_name}")
    pub.publish(msg)


def latest(monitor: GraphMonitor, joints: list[str]) -> np.ndarray:
    return np.array([monitor.measured[-1][1][j] for j in joints])


def trajectory(names, points, times, velocities=None) -> JointTrajectory:
    msg = JointTrajectory()
    msg.joint_names = list(names)
    for k, (q, t) in enumerate(zip(points, times, strict=True)):
        p = JointTrajectoryPoint(positions=[float(x) for x in q], time_from_start=sec_to_duration(t))
        if velocities is not None:
            p.velocities = [float(x) for x in velocities[k]]
        msg.points.append(p)
    return msg


@pytest.fixture(scope="module")
def franka(module_tmp):
    """A realtime Franka fake at 64x48, with a monitor and command publishers."""
    proc = start_fake(
        module_tmp,
        "fake_franka",
        setup="franka",
        image_width=64,
        image_height=48,
        camera_rate=10.0,
        diagnostics_period=0.3,
    )
    monitor = GraphMonitor(ZED, frame_every=0.0, name="fake_node_test")
    rec = Recorder(monitor)
    rec.record(CameraInfo, "/zed_left/zed_node/rgb/color/rect/camera_info")
    rec.record(Clock, "/clock")
    from sensor_msgs.msg import Image

    rec.record(Image, ZED["zed_left"], reliable_qos(10))
    pubs = {
        "forward": monitor.node.create_publisher(
            Float64MultiArray, "/forward_position_controller/commands", reliable_qos(10)
        ),
        "trajectory": monitor.node.create_publisher(
            JointTrajectory, "/fr3_arm_controller/joint_trajectory", reliable_qos(10)
        ),
        "gripper": monitor.node.create_publisher(
            Float64MultiArray, "/fr3_gripper/opening_command", reliable_qos(10)
        ),
    }
    try:
        wait_until(
            lambda: len(monitor.measured) > 5 and monitor.diag("tinyvla_fake_robot"),
            90.0,
            "the fake's joint states",
            proc,
        )
        yield proc, monitor, rec, pubs
    finally:
        monitor.close()
        code = proc.stop()
    assert code == 0, proc.log()


def fresh(franka) -> tuple:
    """Reset the fake (arm home, controllers cleared) and return the fixture pieces."""
    proc, monitor, rec, pubs = franka
    monitor.reset_fake()
    wait_until(lambda: np.allclose(latest(monitor, FR3), FR3_HOME, atol=0.01), 10.0, "the arm at home", proc)
    return proc, monitor, rec, pubs


def test_fake_speaks_the_drivers_topics(franka):
    proc, monitor, rec, _ = franka
    wait_until(
        lambda: rec.messages["/zed_left/zed_node/rgb/color/rect/camera_info"] and monitor.instruction,
        20.0,
        "camera_info",
        proc,
    )
    names = list(monitor.measured[-1][1])
    assert names == [*FR3, "fr3_finger_joint1", "fr3_finger_joint2"]
    wait_until(lambda: len(rec.messages[ZED["zed_left"]]) > 2, 20.0, "zed_left images", proc)
    with rec.lock:
        images = list(rec.messages[ZED["zed_left"]])
        infos = {
            (i.header.stamp.sec, i.header.stamp.nanosec): i
            for i in rec.messages["/zed_left/zed_node/rgb/color/rect/camera_info"]
        }
    msg = images[-3]
    assert (msg.encoding, msg.width, msg.height, msg.step) == ("bgra8", 64, 48, 256)
    assert msg.header.frame_id == "zed_left_left_camera_frame_optical"
    assert abs(stamp_to_sec(msg.header.stamp) - time.time()) < 5.0  # realtime: stamps ~ wall time
    info = infos[(msg.header.stamp.sec, msg.header.stamp.nanosec)]  # the image's own calibration, same stamp
    from tinyvla_ros.sim.env import make_env

    fx, fy, cx, cy, w, h = make_env(
        "franka", image_width=64, image_height=48, render_cameras=False
    ).camera_intrinsics("zed_left")
    assert (info.width, info.height, info.header.frame_id) == (64, 48, msg.header.frame_id)
    np.testing.assert_allclose(info.k, [fx, 0, cx, 0, fy, cy, 0, 0, 1])
    np.testing.assert_allclose(info.p, [fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0])
    assert info.distortion_model == "rational_polynomial" and list(info.d) == [0.0] * 8
    assert monitor.instruction == "pick up the red cube"
    assert monitor.success == [False] and monitor.limit_violations == 0
    with rec.lock:
        clocks = [stamp_to_sec(c.clock) for c in rec.messages["/clock"][-20:]]
    assert len(clocks) >= 2 and all(b > a for a, b in zip(clocks, clocks[1:], strict=False))


def test_forward_controller_checks_the_length_and_holds_forever(franka):
    proc, monitor, _, pubs = fresh(franka)
    before = monitor.diag("tinyvla_fake_robot").get("commands.fr3.forward.rejected", 0)
    publish(pubs["forward"], Float64MultiArray(data=[0.3] * 6))  # 6 values for 7 joints
    wait_until(
        lambda: monitor.diag("tinyvla_fake_robot").get("commands.fr3.forward.rejected", 0) == before + 1,
        10.0,
        "the 6-value command to be rejected",
        proc,
    )
    np.testing.assert_allclose(latest(monitor, FR3), FR3_HOME, atol=0.01)  # it did not move
    target = FR3_HOME + np.array([0.3, 0.1, 0.0, 0.2, 0.0, 0.0, 0.3])
    publish(pubs["forward"], Float64MultiArray(data=target.tolist()))  # one message, then silence
    wait_until(
        lambda: np.allclose(latest(monitor, FR3), target, atol=0.02), 15.0, "the arm at the command", proc
    )
    time.sleep(1.0)
    np.testing.assert_allclose(latest(monitor, FR3), target, atol=0.02)  # still held: no timeout


def test_trajectory_controller_replaces_on_arrival_and_holds_the_end(franka):
    proc, monitor, _, pubs = fresh(franka)
    order = [FR3[i] for i in (6, 0, 1, 2, 3, 4, 5)]  # any joint order is accepted

    def to_msg_order(q):
        return [q[FR3.index(n)] for n in order]

    far = FR3_HOME + np.array([0.8, 0, 0, 0, 0, 0, 0])
    near = FR3_HOME + np.array([-0.2, 0, 0, 0, 0, 0, 0.2])
    t0 = len(monitor.measured)
    publish(pubs["trajectory"], trajectory(order, [to_msg_order(far)], [4.0], [[0.0] * 7]))
    time.sleep(0.5)
    publish(pubs["trajectory"], trajectory(order, [to_msg_order(near)], [0.6], [[0.0] * 7]))
    wait_until(
        lambda: np.allclose(latest(monitor, FR3), near, atol=0.02), 15.0, "the replacement's end point", proc
    )
    time.sleep(0.8)
    np.testing.assert_allclose(latest(monitor, FR3), near, atol=0.02)  # held at the end
    joint1 = [q["fr3_joint1"] for _, q in monitor.measured[t0:]]
    assert max(joint1) < 0.3, "the first trajectory was not replaced on arrival"
    assert monitor.diag("tinyvla_fake_robot")["active_controller.fr3"] == "trajectory"


def test_out_of_limit_commands_are_counted_and_clamped(franka):
    proc, monitor, _, pubs = fresh(franka)
    before = monitor.limit_violations
    target = FR3_HOME.copy()
    target[6] = 3.5  # fr3_joint7 upper limit 3.0159
    publish(pubs["forward"], Float64MultiArray(data=target.tolist()))
    wait_until(lambda: monitor.limit_violations == before + 1, 10.0, "~/limit_violations to count it", proc)
    wait_until(lambda: latest(monitor, FR3)[6] > FR3_UPPER_J7 - 0.02, 15.0, "joint 7 at its limit", proc)
    time.sleep(0.5)
    assert max(q["fr3_joint7"] for _, q in monitor.measured) <= FR3_UPPER_J7 + 1e-3
    wait_until(
        lambda: monitor.diag("tinyvla_fake_robot").get("limit_violations.fr3_joint7", 0) >= 1,
        5.0,
        "diag",
        proc,
    )
    assert proc.alive()


def test_equilibrium_pose_pulls_the_tcp_to_the_pose_and_holds_it(franka):
    """Cartesian impedance equilibrium pose (PoseStamped in fr3_link0), as a Franka set-up takes it."""
    from geometry_msgs.msg import PoseStamped

    from tinyvla_ros.core.robots import load_robot_spec
    from tinyvla_ros.core.rotations import matrix_to_quaternion

    proc, monitor, _, _ = fresh(franka)
    spec = load_robot_spec("fr3")
    home = spec.kinematics.fk(FR3_HOME)
    target = home[:3, 3] + np.array([0.06, -0.08, -0.05])
    quat = matrix_to_quaternion(home[:3, :3])
    pub = monitor.node.create_publisher(
        PoseStamped, "/cartesian_impedance_controller/equilibrium_pose", reliable_qos(10)
    )

    def pose(frame: str, xyz, q=quat) -> PoseStamped:
        msg = PoseStamped()
        msg.header.frame_id = frame
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in xyz)
        o = msg.pose.orientation
        o.x, o.y, o.z, o.w = (float(v) for v in q)
        return msg

    diag = lambda: monitor.diag("tinyvla_fake_robot")  # noqa: E731
    rejected = diag().get("commands.fr3.pose.rejected", 0)
    publish(pub, pose("world", target))  # another frame: refused, the arm stays home
    wait_until(lambda: diag().get("commands.fr3.pose.rejected", 0) == rejected + 1, 10.0, "rejection", proc)
    np.testing.assert_allclose(latest(monitor, FR3), FR3_HOME, atol=0.01)
    publish(pub, pose("fr3_link0", target))  # one message, then silence
    tcp = lambda: spec.kinematics.fk(latest(monitor, FR3))  # noqa: E731
    wait_until(
        lambda: np.linalg.norm(tcp()[:3, 3] - target) < 0.005, 15.0, "the TCP within 5 mm of the pose", proc
    )
    time.sleep(1.0)
    reached = tcp()
    assert np.linalg.norm(reached[:3, 3] - target) < 0.005  # held: no timeout
    angle = np.arccos(np.clip((np.trace(reached[:3, :3].T @ home[:3, :3]) - 1) / 2, -1, 1))
    assert angle < 0.02, f"orientation off by {angle:.3f} rad"
    assert diag()["active_controller.fr3"] == "pose" and diag().get("commands.fr3.pose.unreachable", 0) == 0
    q = latest(monitor, FR3)
    assert np.all(q >= spec.position_lower - 1e-3) and np.all(q <= spec.position_upper + 1e-3)


def test_gripper_opening_command(franka):
    proc, monitor, _, pubs = fresh(franka)
    publish(pubs["gripper"], Float64MultiArray(data=[0.0]))
    wait_until(lambda: monitor.measured[-1][1]["fr3_finger_joint1"] < 0.003, 10.0, "closed fingers", proc)
    publish(pubs["gripper"], Float64MultiArray(data=[0.1, 0.2]))  # malformed: rejected
    wait_until(
        lambda: monitor.diag("tinyvla_fake_robot").get("commands.fr3.gripper.rejected", 0) >= 1,
        10.0,
        "rejection",
        proc,
    )
    publish(pubs["gripper"], Float64MultiArray(data=[1.0]))
    wait_until(lambda: monitor.measured[-1][1]["fr3_finger_joint1"] > 0.035, 10.0, "open fingers", proc)


def test_camera_pause_parameter_and_reset_service(franka):
    proc, monitor, _, _ = fresh(franka)
    monitor.set_fake_parameters(cameras_paused=["zed_left"])
    time.sleep(0.3)  # frames already in flight
    left, right = monitor.frame_counts["zed_left"], monitor.frame_counts["zed_right"]
    time.sleep(1.0)
    assert monitor.frame_counts["zed_left"] == left, "a paused camera still publishes"
    assert monitor.frame_counts["zed_right"] >= right + 3
    monitor.set_fake_parameters(cameras_paused=[])
    wait_until(lambda: monitor.frame_counts["zed_left"] > left + 2, 10.0, "zed_left to resume", proc)
    with pytest.raises(RuntimeError, match="unknown cameras"):
        monitor.set_fake_parameters(cameras_paused=["zed_middle"])
    with pytest.raises(RuntimeError, match="read once"):
        monitor.set_fake_parameters(time_mode="fast")
    with pytest.raises(RuntimeError, match="unknown task"):
        monitor.set_fake_parameters(task="juggle")
    episode = monitor.diag("tinyvla_fake_robot")["episode"]
    monitor.set_fake_parameters(task="close_drawer", seed=3)
    assert "close the drawer" in monitor.reset_fake()
    wait_until(lambda: monitor.instruction == "close the drawer", 10.0, "the new instruction", proc)
    wait_until(
        lambda: monitor.diag("tinyvla_fake_robot").get("episode") == episode + 1
        and monitor.diag("tinyvla_fake_robot").get("seed") == 3,
        10.0,
        "diagnostics of the new episode",
        proc,
    )
    monitor.set_fake_parameters(task="pick_red_cube", seed=0)
