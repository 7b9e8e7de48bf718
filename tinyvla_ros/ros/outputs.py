"""Controller command outputs of the executor node, one class per controller convention.

Arm outputs (one topic per arm, ``arm`` = index into the executor's arms):
- ForwardPositionOutput: std_msgs/Float64MultiArray on ``<controller>/commands`` with exactly the
  arm's joint count (ros2_controllers' forward controllers reject other lengths and apply the
  last command forever: the executor keeps sending the hold position while holding);
- JointTrajectoryOutput: trajectory_msgs/JointTrajectory on ``<controller>/joint_trajectory``
  with positions AND velocities (cubic interpolation) and a short horizon: a point one horizon
  ahead, then a stop point; if the executor dies the trajectory ends and the arm stops;
- PoseOutput: geometry_msgs/PoseStamped targets (Cartesian impedance equilibrium pose).

Gripper outputs (open/close decided by hysteresis upstream, sent only on change):
- GripperTopicOutput: std_msgs/Float64MultiArray [opening] (1.0 open, 0.0 closed);
- FrankaGripperOutput: franka_msgs ``move`` (open) / ``grasp`` (close) action goals, used where
  franka_msgs is importable.
"""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import PoseStamped
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from tinyvla_ros.ros.conversions import float_array, pose_stamped, trajectory_command
from tinyvla_ros.ros.qos import reliable_qos


def franka_msgs_available() -> bool:
    """True when franka_msgs (the Franka gripper actions) can be imported."""
    try:
        import franka_msgs.action  # noqa: F401
    except ImportError:
        return False
    return True


class ForwardPositionOutput:
    """Float64MultiArray position commands, one topic per arm."""

    kind = "forward_position"
    repeat_hold = True  # forward controllers have no timeout: keep sending the hold position

    def __init__(self, node, topics: list[str], joint_names: list[list[str]]) -> None:
        self._pubs = [node.create_publisher(Float64MultiArray, t, reliable_qos(10)) for t in topics]
        self._sizes = [len(n) for n in joint_names]

    def send(self, arm: int, positions: np.ndarray, velocities: np.ndarray) -> None:
        """positions (J,) -> one command message (J must match the controller's joint count)."""
        if positions.shape != (self._sizes[arm],):
            raise ValueError(
                f"arm {arm}: command has shape {positions.shape}, controller needs ({self._sizes[arm]},)"
            )
        self._pubs[arm].publish(float_array(positions, "joints"))

    def hold(self, arm: int, positions: np.ndarray) -> None:
        self.send(arm, positions, np.zeros_like(positions))


class JointTrajectoryOutput:
    """Short JointTrajectory commands (positions + velocities), one topic per arm."""

    kind = "joint_trajectory"
    repeat_hold = False  # one stop trajectory is enough: the controller holds its end point

    def __init__(
        self, node, topics: list[str], joint_names: list[list[str]], horizon: float, lower, upper
    ) -> None:
        self._pubs = [node.create_publisher(JointTrajectory, t, reliable_qos(10)) for t in topics]
        self._names = joint_names
        self._horizon = horizon
        self._lower = [np.asarray(x) for x in lower]
        self._upper = [np.asarray(x) for x in upper]

    def send(self, arm: int, positions: np.ndarray, velocities: np.ndarray) -> None:
        """Point at ``horizon`` with the commanded velocity, then a stop point (zero velocity).

        The stop point lies half a horizon further along the velocity (constant deceleration to
        rest), clipped to the joint limits; a new message replaces the trajectory long before.
        """
        stop = np.clip(positions + 0.5 * self._horizon * velocities, self._lower[arm], self._upper[arm])
        msg = trajectory_command(
            self._names[arm],
            [positions, stop],
            [velocities, np.zeros_like(velocities)],
            [self._horizon, 2.0 * self._horizon],
        )
        self._pubs[arm].publish(msg)

    def hold(self, arm: int, positions: np.ndarray) -> None:
        """Stop at ``positions`` (zero velocity)."""
        zeros = np.zeros_like(positions)
        self._pubs[arm].publish(trajectory_command(self._names[arm], [positions], [zeros], [self._horizon]))


class PoseOutput:
    """PoseStamped end-effector targets, one topic per arm."""

    kind = "ee_pose"
    repeat_hold = False  # an equilibrium pose stays where it was set

    def __init__(self, node, topics: list[str], frame_id: str, clock) -> None:
        self._pubs = [node.create_publisher(PoseStamped, t, reliable_qos(10)) for t in topics]
        self._frame = frame_id
        self._clock = clock

    def send_pose(self, arm: int, xyz: np.ndarray, rotation: np.ndarray) -> None:
        now = self._clock.now().nanoseconds * 1e-9
        self._pubs[arm].publish(pose_stamped(xyz, rotation, now, self._frame))


class GripperTopicOutput:
    """Float64MultiArray [opening] per gripper: 1.0 = open, 0.0 = closed."""

    def __init__(self, node, topics: list[str]) -> None:
        self._pubs = [node.create_publisher(Float64MultiArray, t, reliable_qos(10)) for t in topics]

    def command(self, arm: int, open_: bool) -> None:
        self._pubs[arm].publish(float_array([1.0 if open_ else 0.0], "opening"))


class FrankaGripperOutput:
    """franka_msgs ``move`` (open to ``open_width``) and ``grasp`` (close with ``force``) action goals."""

    def __init__(
        self, node, namespaces: list[str], open_width: float, speed: float, force: float, epsilon: float
    ) -> None:
        from franka_msgs.action import Grasp, Move
        from rclpy.action import ActionClient

        self._move_type, self._grasp_type = Move, Grasp
        ns = [n.rstrip("/") for n in namespaces]
        self._move = [ActionClient(node, Move, f"{n}/move") for n in ns]
        self._grasp = [ActionClient(node, Grasp, f"{n}/grasp") for n in ns]
        self._names = ns
        self._open_width, self._speed, self._force, self._epsilon = open_width, speed, force, epsilon
        self._logger = node.get_logger()

    def command(self, arm: int, open_: bool) -> None:
        """Send a goal without waiting (the control loop never blocks on the gripper)."""
        client = self._move[arm] if open_ else self._grasp[arm]
        if not client.server_is_ready():
            self._logger.warning(
                f"gripper action server {client._action_name} not available; command dropped"
            )
            return
        if open_:
            goal = self._move_type.Goal(width=self._open_width, speed=self._speed)
        else:
            goal = self._grasp_type.Goal(width=0.0, speed=self._speed, force=self._force)
            goal.epsilon.inner = goal.epsilon.outer = self._epsilon
        client.send_goal_async(goal)
