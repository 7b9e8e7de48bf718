"""MJCF for the project's own robot models, built from the manufacturers' published kinematics.

Geometry is primitives (capsules, cylinders, boxes) so that software rendering stays fast; the
kinematic chain, joint limits, velocity/effort limits and home poses come from published data:

* Franka FR3: Craig (modified) DH parameters d1=0.333, d3=0.316, a4=0.0825, a5=-0.0825, d5=0.384,
  a7=0.088, flange d=0.107; joint position/velocity/torque limits from Franka's FR3 datasheet;
  home = franka_ros2's "ready" pose. Franka Hand: 0.04 m stroke per finger, TCP 0.1034 m below
  the flange, rotated -45 deg about the flange z axis.
* UR5 (CB3): standard DH parameters d1=0.089159, a2=-0.425, a3=-0.39225, d4=0.10915, d5=0.09465,
  d6=0.0823; +-360 deg on every joint except the elbow (+-180 deg, as ur_description limits it);
  180 deg/s on every joint; torques 150/150/150/28/28/28 Nm. A Robotiq 2F-85-like parallel gripper
  (0.085 m stroke) sits on the flange; its state is reported as the driver's knuckle angle
  (0 = open .. 0.8 rad = closed).

Collision bits: robot geoms use contype=2/conaffinity=0 (they touch the world and objects, never
each other); see scenes.py for the world and object bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

ROBOT_COLLISION = 'contype="2" conaffinity="0"'
NO_COLLISION = 'contype="0" conaffinity="0"'


@dataclass(frozen=True)
class GripperSpec:
    """A parallel gripper: two coupled slide fingers driven by one position actuator.

    ``reported_joints`` are the names the real driver publishes on /joint_states;
    ``kind`` says how the finger opening (metres per finger) is reported:
    ``"franka"`` -> both finger positions in metres; ``"robotiq"`` -> knuckle angle in radians.
    """

    kind: str
    finger_joints: tuple[str, str]
    reported_joints: tuple[str, ...]
    actuator: str
    stroke: float  # maximum opening per finger [m]
    left_finger_body: str
    right_finger_body: str
    knuckle_closed: float = 0.8  # robotiq only: knuckle angle when fully closed [rad]


@dataclass(frozen=True)
class ArmSpec:
    """One arm: joint names (real-driver spelling), limits, home pose, TCP site, gripper."""

    name: str
    joint_names: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    velocity_limits: tuple[float, ...]
    effort_limits: tuple[float, ...]
    home: tuple[float, ...]
    tcp_site: str
    gripper: GripperSpec
    actuators: tuple[str, ...] = field(default=())

    @property
    def dof(self) -> int:
        return len(self.joint_names)


# ----------------------------------------------------------------------------- small helpers


def fmt(values: np.ndarray | tuple[float, ...] | list[float]) -> str:
    """Format numbers for MJCF attributes."""
    return " ".join(f"{float(v):.6g}" for v in values)


def quat_x(angle: float) -> np.ndarray:
    """Quaternion (w, x, y, z) of a rotation by ``angle`` about x."""
    return np.array([math.cos(angle / 2), math.sin(angle / 2), 0.0, 0.0])


def quat_z(angle: float) -> np.ndarray:
    """Quaternion (w, x, y, z) of a rotation by ``angle`` about z."""
    return np.array([math.cos(angle / 2), 0.0, 0.0, math.sin(angle / 2)])


def dh_modified_child(a: float, d: float, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Pose (pos (3,), quat (4,)) of joint i's body in joint i-1's body, Craig DH (a_{i-1}, d_i, alpha_{i-1}).

    Frame_i = Frame_{i-1} RotX(alpha) TransX(a) TransZ(d) RotZ(theta); the hinge is the body's z axis.
    """
    pos = np.array([a, -d * math.sin(alpha), d * math.cos(alpha)])
    return pos, quat_x(alpha)


def dh_standard_child(a: float, d: float, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Pose of joint i+1's body in joint i's body, standard DH (a_i, d_i, alpha_i).

    Frame_i = Frame_{i-1} RotZ(theta_i) TransZ(d_i) TransX(a_i) RotX(alpha_i); joint i+1 turns about z_i.
    """
    return np.array([a, 0.0, d]), quat_x(alpha)


def capsule_between(p0: np.ndarray, p1: np.ndarray, radius: float, rgba: str, extra: str = "") -> str:
    """A capsule geom from p0 to p1 (body frame); empty when the points coincide."""
    if float(np.linalg.norm(np.asarray(p1) - np.asarray(p0))) < 1e-6:
        return ""
    return (
        f'<geom type="capsule" fromto="{fmt(p0)} {fmt(p1)}" size="{radius:.4g}" rgba="{rgba}" '
        f'mass="0" {extra}/>'
    )


def housing(radius: float, half_length: float, rgba: str, extra: str = "", z: float = 0.0) -> str:
    """A cylinder along the body's z axis (the joint axis), centred at height ``z``: a joint housing."""
    return (
        f'<geom type="cylinder" pos="0 0 {z:.4g}" size="{radius:.4g} {half_length:.4g}" rgba="{rgba}" '
        f'mass="0" {extra}/>'
    )


def lookat_xyaxes(pos: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """MJCF camera ``xyaxes`` (6,) for a camera at ``pos`` looking at ``target``, image-up ~ ``up``.

    A MuJoCo camera looks along its -z axis, with +x to the image right and +y to the image top.
    """
    forward = np.asarray(target, float) - np.asarray(pos, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    top = np.cross(right, forward)
    return np.concatenate([right, top])


# ----------------------------------------------------------------------------- Franka FR3

FR3_DH = (  # (a_{i-1}, d_i, alpha_{i-1}) per joint, then the flange
    (0.0, 0.333, 0.0),
    (0.0, 0.0, -math.pi / 2),
    (0.0, 0.316, math.pi / 2),
    (0.0825, 0.0, math.pi / 2),
    (-0.0825, 0.384, -math.pi / 2),
    (0.0, 0.0, math.pi / 2),
    (0.088, 0.0, math.pi / 2),
    (0.0, 0.107, 0.0),
)
FR3_LOWER = (-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159)
FR3_UPPER = (2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159)
FR3_VELOCITY = (2.62, 2.62, 2.62, 2.62, 5.26, 4.18, 5.26)
FR3_EFFORT = (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)
FR3_HOME = (0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4)
FR3_MASSES = (2.92, 2.74, 2.24, 2.40, 2.62, 1.50, 0.54)  # approximate link masses [kg]
FR3_KP = (3000.0, 3000.0, 2500.0, 2500.0, 800.0, 600.0, 400.0)
FR3_RADII = (0.06, 0.06, 0.055, 0.055, 0.05, 0.045, 0.04)
FR3_HAND_TCP = 0.1034
FR3_FINGER_STROKE = 0.04
WHITE = "0.92 0.92 0.92 1"
DARK = "0.2 0.2 0.22 1"


def franka_arm(prefix: str = "fr3") -> tuple[str, str, str, ArmSpec]:
    """Return (body xml to place under a mounting body, actuator xml, equality xml, ArmSpec)."""
    joints = tuple(f"{prefix}_joint{i}" for i in range(1, 8))
    gripper = GripperSpec(
        kind="franka",
        finger_joints=(f"{prefix}_finger_joint1", f"{prefix}_finger_joint2"),
        reported_joints=(f"{prefix}_finger_joint1", f"{prefix}_finger_joint2"),
        actuator=f"{prefix}_gripper",
        stroke=FR3_FINGER_STROKE,
        left_finger_body=f"{prefix}_leftfinger",
        right_finger_body=f"{prefix}_rightfinger",
    )
    body = _franka_chain(prefix, joints)
    actuators = "\n".join(
        f'<position name="{j}_pos" joint="{j}" kp="{kp:g}" dampratio="1" ctrlrange="{lo:g} {hi:g}" '
        f'forcerange="{-f:g} {f:g}"/>'
        for j, kp, lo, hi, f in zip(joints, FR3_KP, FR3_LOWER, FR3_UPPER, FR3_EFFORT, strict=True)
    )
    actuators += (
        f'\n<position name="{gripper.actuator}" joint="{gripper.finger_joints[0]}" kp="2000" dampratio="1" '
        f'ctrlrange="0 {FR3_FINGER_STROKE}" forcerange="-70 70"/>'
    )
    equality = (
        f'<joint joint1="{gripper.finger_joints[1]}" joint2="{gripper.finger_joints[0]}" polycoef="0 1 0 0 0" '
        'solref="0.005 1"/>'
    )
    spec = ArmSpec(
        name=prefix,
        joint_names=joints,
        lower=FR3_LOWER,
        upper=FR3_UPPER,
        velocity_limits=FR3_VELOCITY,
        effort_limits=FR3_EFFORT,
        home=FR3_HOME,
        tcp_site=f"{prefix}_tcp",
        gripper=gripper,
        actuators=tuple(f"{j}_pos" for j in joints),
    )
    return body, actuators, equality, spec


def _franka_chain(prefix: str, joints: tuple[str, ...]) -> str:
    """Nested bodies link1..link7, flange and hand (modified DH)."""
    parts = [
        f'<body name="{prefix}_link0">',
        '<inertial pos="0 0 0.1" mass="2.4" diaginertia="0.02 0.02 0.01"/>',
        housing(0.08, 0.05, DARK, NO_COLLISION, z=0.05),
        capsule_between(np.zeros(3), np.array([0, 0, 0.2]), 0.065, WHITE, NO_COLLISION),
    ]
    closing = ["</body>"]
    for i, (a, d, alpha) in enumerate(FR3_DH[:7]):
        pos, quat = dh_modified_child(a, d, alpha)
        nxt_pos, _ = dh_modified_child(*FR3_DH[i + 1])
        lo, hi = FR3_LOWER[i], FR3_UPPER[i]
        colour = DARK if i in (3, 6) else WHITE
        parts += [
            f'<body name="{prefix}_link{i + 1}" pos="{fmt(pos)}" quat="{fmt(quat)}" gravcomp="1">',
            f'<inertial pos="{fmt(nxt_pos / 2)}" mass="{FR3_MASSES[i]}" diaginertia="0.02 0.02 0.01"/>',
            f'<joint name="{joints[i]}" type="hinge" axis="0 0 1" range="{lo} {hi}" damping="2" armature="0.1" solreflimit="0.004 1"/>',
            housing(FR3_RADII[i], FR3_RADII[i] * 1.05, colour, ROBOT_COLLISION),
            capsule_between(np.zeros(3), nxt_pos, FR3_RADII[i] * 0.9, WHITE, ROBOT_COLLISION),
        ]
        closing.append("</body>")
    flange_pos, flange_quat = dh_modified_child(*FR3_DH[7])
    parts += [
        f'<body name="{prefix}_link8" pos="{fmt(flange_pos)}" quat="{fmt(flange_quat)}" gravcomp="1">',
        _franka_hand(prefix),
        "</body>",
    ]
    return "\n".join(parts + closing[::-1])


def _franka_hand(prefix: str) -> str:
    """Franka Hand on the flange: rotated -45 deg about z, fingers slide along the hand's y axis."""
    finger = (
        '<geom type="box" pos="0 {y} 0.027" size="0.0095 0.006 0.027" rgba="0.25 0.25 0.27 1" '
        f'friction="1.5 0.01 0.0002" condim="4" mass="0.02" {ROBOT_COLLISION}/>'
    )
    return "\n".join(
        [
            f'<body name="{prefix}_hand" quat="{fmt(quat_z(-math.pi / 4))}" gravcomp="1">',
            '<inertial pos="0 0 0.03" mass="0.73" diaginertia="0.002 0.0005 0.002"/>',
            f'<geom type="cylinder" pos="0 0 0.006" size="0.035 0.006" rgba="{DARK}" mass="0" {ROBOT_COLLISION}/>',
            f'<geom type="box" pos="0 0 0.035" size="0.023 0.1 0.023" rgba="{WHITE}" mass="0" {ROBOT_COLLISION}/>',
            f'<site name="{prefix}_tcp" pos="0 0 {FR3_HAND_TCP}" size="0.005" rgba="1 0 0 0"/>',
            f'<body name="{prefix}_leftfinger" pos="0 0 0.0584" gravcomp="1">',
            f'<joint name="{prefix}_finger_joint1" type="slide" axis="0 1 0" range="0 {FR3_FINGER_STROKE}" '
            'damping="5" armature="0.1"/>',
            finger.format(y="0.006"),
            "</body>",
            f'<body name="{prefix}_rightfinger" pos="0 0 0.0584" gravcomp="1">',
            f'<joint name="{prefix}_finger_joint2" type="slide" axis="0 -1 0" range="0 {FR3_FINGER_STROKE}" '
            'damping="5" armature="0.1"/>',
            finger.format(y="-0.006"),
            "</body>",
            "</body>",
        ]
    )


# ----------------------------------------------------------------------------- UR5

UR5_DH = (  # (a_i, d_i, alpha_i), standard DH
    (0.0, 0.089159, math.pi / 2),
    (-0.425, 0.0, 0.0),
    (-0.39225, 0.0, 0.0),
    (0.0, 0.10915, math.pi / 2),
    (0.0, 0.09465, -math.pi / 2),
    (0.0, 0.0823, 0.0),
)
UR5_JOINTS = (
    "shoulder_pan_joint",
    "shoulder_lift_joint",
    "elbow_joint",
    "wrist_1_joint",
    "wrist_2_joint",
    "wrist_3_joint",
)
TWO_PI = 2 * math.pi
UR5_LOWER = (-TWO_PI, -TWO_PI, -math.pi, -TWO_PI, -TWO_PI, -TWO_PI)
UR5_UPPER = (TWO_PI, TWO_PI, math.pi, TWO_PI, TWO_PI, TWO_PI)
UR5_VELOCITY = (math.pi,) * 6
UR5_EFFORT = (150.0, 150.0, 150.0, 28.0, 28.0, 28.0)
UR5_MASSES = (3.7, 8.393, 2.275, 1.219, 1.219, 0.1879)  # ur_description link masses [kg]
UR5_KP = (4000.0, 4000.0, 3000.0, 800.0, 800.0, 600.0)
UR5_RADII = (0.06, 0.055, 0.045, 0.04, 0.04, 0.035)
# Tool pointing down in front of the base (base mounted with the DH x axis pointing backwards).
# The shoulder offset (d4) puts the tool 0.11 m to the left of the base at pan 0; the left arm's
# home pan turns it inwards so that both tools start 0.1 m inside their bases.
UR5_HOME = {
    "left": (-0.6, -1.9, 1.9, -1.5708, -1.5708, 0.0),
    "right": (0.0, -1.9, 1.9, -1.5708, -1.5708, 0.0),
}
ROBOTIQ_STROKE = 0.0425
ROBOTIQ_TCP = 0.14
UR_BLUE = "0.55 0.68 0.78 1"
UR_GREY = "0.75 0.76 0.78 1"


def ur5_arm(prefix: str) -> tuple[str, str, str, ArmSpec]:
    """Return (body xml, actuator xml, equality xml, ArmSpec) for one UR5 + 2F-85-like gripper."""
    joints = tuple(f"{prefix}_{j}" for j in UR5_JOINTS)
    gripper = GripperSpec(
        kind="robotiq",
        finger_joints=(f"{prefix}_finger_joint1", f"{prefix}_finger_joint2"),
        reported_joints=(f"{prefix}_robotiq_85_left_knuckle_joint",),
        actuator=f"{prefix}_gripper",
        stroke=ROBOTIQ_STROKE,
        left_finger_body=f"{prefix}_leftfinger",
        right_finger_body=f"{prefix}_rightfinger",
    )
    actuators = "\n".join(
        f'<position name="{j}_pos" joint="{j}" kp="{kp:g}" dampratio="1" ctrlrange="{lo:g} {hi:g}" '
        f'forcerange="{-f:g} {f:g}"/>'
        for j, kp, lo, hi, f in zip(joints, UR5_KP, UR5_LOWER, UR5_UPPER, UR5_EFFORT, strict=True)
    )
    actuators += (
        f'\n<position name="{gripper.actuator}" joint="{gripper.finger_joints[0]}" kp="2000" dampratio="1" '
        f'ctrlrange="0 {ROBOTIQ_STROKE}" forcerange="-100 100"/>'
    )
    equality = (
        f'<joint joint1="{gripper.finger_joints[1]}" joint2="{gripper.finger_joints[0]}" polycoef="0 1 0 0 0" '
        'solref="0.005 1"/>'
    )
    spec = ArmSpec(
        name=prefix,
        joint_names=joints,
        lower=UR5_LOWER,
        upper=UR5_UPPER,
        velocity_limits=UR5_VELOCITY,
        effort_limits=UR5_EFFORT,
        home=UR5_HOME.get(prefix, UR5_HOME["right"]),
        tcp_site=f"{prefix}_tcp",
        gripper=gripper,
        actuators=tuple(f"{j}_pos" for j in joints),
    )
    return _ur5_chain(prefix, joints), actuators, equality, spec


def _ur5_chain(prefix: str, joints: tuple[str, ...]) -> str:
    """Nested bodies shoulder..wrist3, then the gripper (standard DH)."""
    names = (
        "shoulder_link",
        "upper_arm_link",
        "forearm_link",
        "wrist_1_link",
        "wrist_2_link",
        "wrist_3_link",
    )
    parts = [
        f'<body name="{prefix}_base_link">',
        '<inertial pos="0 0 0.03" mass="4.0" diaginertia="0.01 0.01 0.01"/>',
        housing(0.075, 0.03, UR_GREY, NO_COLLISION, z=0.03),
    ]
    closing = ["</body>"]
    pos, quat = np.zeros(3), np.array([1.0, 0, 0, 0])
    for i in range(6):
        nxt_pos, nxt_quat = dh_standard_child(*UR5_DH[i])
        colour = UR_BLUE if i in (0, 3, 4, 5) else UR_GREY
        # The link runs from this joint to the next one in this body's (rotating) frame.
        parts += [
            f'<body name="{prefix}_{names[i]}" pos="{fmt(pos)}" quat="{fmt(quat)}" gravcomp="1">',
            f'<inertial pos="{fmt(nxt_pos / 2)}" mass="{UR5_MASSES[i]}" diaginertia="0.02 0.02 0.01"/>',
            f'<joint name="{joints[i]}" type="hinge" axis="0 0 1" range="{UR5_LOWER[i]:.6g} {UR5_UPPER[i]:.6g}" '
            'damping="2" armature="0.1" solreflimit="0.004 1"/>',
            # the shoulder's joint sits on the mounting plate: its housing stands on top of it
            housing(UR5_RADII[i], UR5_RADII[i] * 1.1, colour, ROBOT_COLLISION, z=0.07 if i == 0 else 0.0),
            capsule_between(
                np.array([0, 0, 0.07 if i == 0 else 0.0]),
                nxt_pos,
                UR5_RADII[i] * 0.85,
                UR_GREY,
                ROBOT_COLLISION,
            ),
        ]
        closing.append("</body>")
        pos, quat = nxt_pos, nxt_quat
    parts += [
        f'<body name="{prefix}_flange" pos="{fmt(pos)}" quat="{fmt(quat)}" gravcomp="1">',
        _robotiq_like(prefix),
        "</body>",
    ]
    return "\n".join(parts + closing[::-1])


def _robotiq_like(prefix: str) -> str:
    """A 2F-85-like gripper with a wrist camera; fingers slide along the gripper's y axis."""
    finger = (
        '<geom type="box" pos="0 {y} 0.022" size="0.011 0.0065 0.022" rgba="0.15 0.15 0.15 1" '
        f'friction="1.5 0.01 0.0002" condim="4" mass="0.03" {ROBOT_COLLISION}/>'
    )
    cam_pos = np.array([-0.085, 0.0, 0.06])
    cam_axes = lookat_xyaxes(cam_pos, np.array([0.0, 0.0, ROBOTIQ_TCP + 0.12]), np.array([-1.0, 0.0, 0.0]))
    return "\n".join(
        [
            f'<body name="{prefix}_gripper_base" gravcomp="1">',
            '<inertial pos="0 0 0.06" mass="0.9" diaginertia="0.002 0.002 0.001"/>',
            f'<geom type="cylinder" pos="0 0 0.03" size="0.038 0.03" rgba="{DARK}" mass="0" {ROBOT_COLLISION}/>',
            f'<geom type="box" pos="0 0 0.085" size="0.03 0.047 0.025" rgba="{DARK}" mass="0" {ROBOT_COLLISION}/>',
            f'<geom type="box" pos="-0.06 0 0.06" size="0.013 0.045 0.013" rgba="0.3 0.3 0.32 1" mass="0" '
            f"{NO_COLLISION}/>",
            f'<camera name="wrist_{prefix}" pos="{fmt(cam_pos)}" xyaxes="{fmt(cam_axes)}" fovy="58"/>',
            f'<site name="{prefix}_tcp" pos="0 0 {ROBOTIQ_TCP}" size="0.005" rgba="1 0 0 0"/>',
            f'<body name="{prefix}_leftfinger" pos="0 0 0.11" gravcomp="1">',
            f'<joint name="{prefix}_finger_joint1" type="slide" axis="0 1 0" range="0 {ROBOTIQ_STROKE}" '
            'damping="5" armature="0.1"/>',
            finger.format(y="0.0065"),
            "</body>",
            f'<body name="{prefix}_rightfinger" pos="0 0 0.11" gravcomp="1">',
            f'<joint name="{prefix}_finger_joint2" type="slide" axis="0 -1 0" range="0 {ROBOTIQ_STROKE}" '
            'damping="5" armature="0.1"/>',
            finger.format(y="-0.0065"),
            "</body>",
            "</body>",
        ]
    )
