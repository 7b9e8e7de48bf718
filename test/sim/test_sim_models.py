"""The robot models match the manufacturers' published kinematics and limits; scenes build."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tinyvla_ros.sim.env import SimConfig, make_env, mujoco

pytestmark = pytest.mark.sim

FRANKA_JOINTS = [f"fr3_joint{i}" for i in range(1, 8)]
UR_JOINTS = [
    "shoulder_pan_joint",
    "shoulder_lift_joint",
    "elbow_joint",
    "wrist_1_joint",
    "wrist_2_joint",
    "wrist_3_joint",
]


def _rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1.0]])


def _rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])


def _trans(x: float, y: float, z: float) -> np.ndarray:
    t = np.eye(4)
    t[:3, 3] = (x, y, z)
    return t


def franka_flange_fk(q: np.ndarray) -> np.ndarray:
    """Craig-convention FK from Franka's published table (a, d, alpha), flange d = 0.107."""
    table = [(0, 0.333, 0), (0, 0, -math.pi / 2), (0, 0.316, math.pi / 2), (0.0825, 0, math.pi / 2),
             (-0.0825, 0.384, -math.pi / 2), (0, 0, math.pi / 2), (0.088, 0, math.pi / 2)]  # fmt: skip
    t = np.eye(4)
    for (a, d, alpha), theta in zip(table, q, strict=True):
        t = t @ _rot_x(alpha) @ _trans(a, 0, 0) @ _rot_z(theta) @ _trans(0, 0, d)
    return (t @ _trans(0, 0, 0.107))[:3, 3]


def ur5_flange_fk(q: np.ndarray) -> np.ndarray:
    """Standard-DH FK from Universal Robots' published UR5 parameters."""
    d = [0.089159, 0, 0, 0.10915, 0.09465, 0.0823]
    a = [0, -0.425, -0.39225, 0, 0, 0]
    alpha = [math.pi / 2, 0, 0, math.pi / 2, -math.pi / 2, 0]
    t = np.eye(4)
    for i in range(6):
        t = t @ _rot_z(q[i]) @ _trans(0, 0, d[i]) @ _trans(a[i], 0, 0) @ _rot_x(alpha[i])
    return t[:3, 3]


@pytest.fixture(scope="module")
def franka():
    env = make_env("franka", render_cameras=False)
    yield env
    env.close()


@pytest.fixture(scope="module")
def ur5():
    env = make_env("ur5_bimanual", render_cameras=False)
    yield env
    env.close()


def test_franka_names_limits_and_home(franka):
    assert franka.joint_names == (*FRANKA_JOINTS, "fr3_finger_joint1", "fr3_finger_joint2")
    assert franka.arm_joint_names == {"fr3": tuple(FRANKA_JOINTS)}
    assert franka.camera_names == ("zed_left", "zed_right")
    assert {c.encoding for c in franka.camera_specs.values()} == {"bgra8"}
    assert franka.tasks == ["pick_red_cube", "green_cube_in_bowl", "close_drawer"]
    np.testing.assert_allclose(franka.upper_limits, [2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159])
    np.testing.assert_allclose(
        franka.lower_limits, [-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159]
    )
    franka.reset("pick_red_cube", seed=0)
    np.testing.assert_allclose(franka.joint_positions()[:7], franka.home, atol=2e-3)
    # libfranka reports O_T_EE = (0.307, 0, 0.487), pointing down, in the "ready" pose with the Franka Hand.
    pos, rot = franka.ee_pose("fr3")
    np.testing.assert_allclose(pos, [0.3069, 0.0, 0.4869], atol=2e-3)
    np.testing.assert_allclose(rot[:, 2], [0, 0, -1], atol=1e-2)


def test_ur5_names_and_cameras(ur5):
    expected = [f"left_{j}" for j in UR_JOINTS] + [f"right_{j}" for j in UR_JOINTS]
    assert ur5.joint_names == (
        *expected,
        "left_robotiq_85_left_knuckle_joint",
        "right_robotiq_85_left_knuckle_joint",
    )
    assert ur5.arms == ("left", "right")
    assert ur5.camera_names == ("wrist_left", "wrist_right", "top")
    assert {c.encoding for c in ur5.camera_specs.values()} == {"rgb8"}
    assert ur5.tasks == ["lift_box", "handover_cube", "blue_cube_in_bin"]
    assert all(spec.velocity_limits == (math.pi,) * 6 for spec in ur5.arm_specs.values())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_franka_flange_matches_published_dh(franka, seed):
    rng = np.random.default_rng(seed)
    q = rng.uniform(franka.lower_limits, franka.upper_limits)
    franka.data.qpos[:7] = q
    mujoco.mj_kinematics(franka.model, franka.data)
    np.testing.assert_allclose(franka.data.body("fr3_link8").xpos, franka_flange_fk(q), atol=1e-6)


@pytest.mark.parametrize("arm,base_y", [("left", 0.35), ("right", -0.35)])
def test_ur5_flange_matches_published_dh(ur5, arm, base_y):
    rng = np.random.default_rng(7)
    q = rng.uniform(-math.pi, math.pi, size=6)
    for name, value in zip(ur5.arm_joint_names[arm], q, strict=True):
        ur5.data.joint(name).qpos[0] = value
    mujoco.mj_kinematics(ur5.model, ur5.data)
    # Mounted at (0, base_y, 0), turned by 180 deg about z.
    expected = (_trans(0, base_y, 0) @ _rot_z(math.pi) @ np.append(ur5_flange_fk(q), 1.0))[:3]
    np.testing.assert_allclose(ur5.data.body(f"{arm}_flange").xpos, expected, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"setup": "kuka"}, "setup"),
        ({"image_width": 0}, "image_width"),
        ({"image_height": 96.5}, "image_height"),
        ({"physics_dt": 0.0}, "physics_dt"),
        ({"control_dt": 0.021}, "control_dt"),
        ({"control_dt": 0.001}, "control_dt"),
        ({"camera_hz": -1.0}, "camera_hz"),
    ],
)
def test_config_rejects_bad_values(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SimConfig(**kwargs)


def test_unknown_names_raise(franka):
    with pytest.raises(ValueError, match="unknown task"):
        franka.reset("stack the cubes", seed=0)
    with pytest.raises(ValueError, match="seed"):
        franka.reset("pick_red_cube", seed=-1)
    with pytest.raises(ValueError, match="unknown arm"):
        franka.set_gripper("left", 1.0)
    with pytest.raises(ValueError, match="unknown camera"):
        franka.camera_intrinsics("top")
    with pytest.raises(ValueError, match="setup"):
        make_env("ur10")
