"""Robot specs from config/robots, DH forward kinematics against known poses, action layouts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from tinyvla_ros.core.robots import (
    FR3_JOINT_NAMES,
    ActionLayout,
    ArmAction,
    GripperSpec,
    available_robot_specs,
    load_robot_spec,
    make_action_layout,
)
from tinyvla_ros.core.rotations import is_rotation_matrix, matrix_to_rot6d, rotvec_to_matrix
from tinyvla_ros.paths import config_dir


@pytest.fixture(scope="module")
def fr3():
    return load_robot_spec("fr3")


@pytest.fixture(scope="module")
def ur5():
    return load_robot_spec("ur5")


def test_shipped_specs_load_with_manufacturer_values(fr3, ur5) -> None:
    assert {"fr3", "ur5"} <= set(available_robot_specs())
    assert fr3.joint_names == FR3_JOINT_NAMES and fr3.dof == 7
    np.testing.assert_allclose(fr3.position_upper[[0, 3, 5]], [2.7437, -0.1518, 4.5169])
    np.testing.assert_allclose(fr3.position_lower[[3, 5]], [-3.0421, 0.5445])
    np.testing.assert_allclose(fr3.velocity, [2.62] * 4 + [5.26, 4.18, 5.26])
    np.testing.assert_allclose(fr3.acceleration, 10.0)
    np.testing.assert_allclose(fr3.jerk, 5000.0)
    assert fr3.cartesian_limits.linear_velocity == 3.0
    assert ur5.dof == 6 and ur5.joint_names[0] == "shoulder_pan_joint"
    np.testing.assert_allclose(ur5.velocity, math.pi)  # 180 deg/s
    np.testing.assert_allclose(ur5.position_upper[[0, 2]], [2 * math.pi, math.pi])
    assert fr3.gripper.width_max == pytest.approx(0.08) and ur5.gripper.width_max == pytest.approx(0.085)


def test_fr3_fk_known_poses(fr3) -> None:
    flange = fr3.kinematics.fk(np.zeros(7), tcp=False)  # straight up
    np.testing.assert_allclose(flange[:3, 3], [0.088, 0.0, 0.926], atol=1e-12)
    np.testing.assert_allclose(flange[:3, :3], np.diag([1.0, -1.0, -1.0]), atol=1e-12)
    tcp = fr3.kinematics.fk(fr3.home)  # libfranka "ready" pose: O_T_EE ~ (0.307, 0, 0.487), pointing down
    np.testing.assert_allclose(tcp[:3, 3], [0.30689, 0.0, 0.48688], atol=1e-4)
    np.testing.assert_allclose(tcp[:3, :3], np.diag([1.0, -1.0, -1.0]), atol=1e-9)


def test_ur5_fk_zero_pose(ur5) -> None:
    pose = ur5.kinematics.fk(np.zeros(6))
    # x = a2 + a3, y = -(d4 + d6), z = d1 - d5 in UR's DH base frame
    np.testing.assert_allclose(pose[:3, 3], [-0.81725, -0.19145, 0.089159 - 0.09465], atol=1e-12)


def _ur5_product_of_exponentials(q: np.ndarray) -> np.ndarray:
    """Independent UR5 FK (screw axes from the physical dimensions), in UR's DH base frame."""
    l1, l2, w1, w2, h1, h2 = 0.425, 0.39225, 0.10915, 0.0823, 0.089159, 0.09465
    # space-frame screws (w, v) in a frame rotated 180 deg about z from the DH base frame
    screws = [
        ([0, 0, 1], [0, 0, 0]),
        ([0, 1, 0], [-h1, 0, 0]),
        ([0, 1, 0], [-h1, 0, l1]),
        ([0, 1, 0], [-h1, 0, l1 + l2]),
        ([0, 0, -1], [-w1, l1 + l2, 0]),
        ([0, 1, 0], [h2 - h1, 0, l1 + l2]),
    ]
    m = np.array([[-1, 0, 0, l1 + l2], [0, 0, 1, w1 + w2], [0, 1, 0, h1 - h2], [0, 0, 0, 1]], dtype=float)
    t = np.eye(4)
    for (w, v), theta in zip(screws, q, strict=True):
        w, v = np.array(w, float), np.array(v, float)
        r = rotvec_to_matrix(w * theta)
        wx = np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]])
        g = np.eye(3) * theta + (1 - math.cos(theta)) * wx + (theta - math.sin(theta)) * (wx @ wx)
        e = np.eye(4)
        e[:3, :3], e[:3, 3] = r, g @ v
        t = t @ e
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])  # rotate 180 deg about z into the DH base frame
    return flip @ (t @ m)


def test_ur5_fk_matches_independent_product_of_exponentials(ur5) -> None:
    rng = np.random.default_rng(0)
    for q in rng.uniform(-math.pi, math.pi, size=(20, 6)):
        np.testing.assert_allclose(
            ur5.kinematics.fk(q)[:3, 3], _ur5_product_of_exponentials(q)[:3, 3], atol=1e-9
        )


def test_fk_is_batched_and_proper(fr3) -> None:
    qs = np.random.default_rng(1).uniform(fr3.position_lower, fr3.position_upper, size=(5, 3, 7))
    poses = fr3.kinematics.fk(qs)
    assert poses.shape == (5, 3, 4, 4)
    assert is_rotation_matrix(poses[..., :3, :3])
    np.testing.assert_allclose(fr3.fk_xyz(qs)[2, 1], fr3.kinematics.fk(qs[2, 1])[:3, 3])
    with pytest.raises(ValueError, match=r"\(\.\.\., 7\)"):
        fr3.kinematics.fk(np.zeros(6))


def test_with_prefix(ur5) -> None:
    left = ur5.with_prefix("left_")
    assert left.joint_names[0] == "left_shoulder_pan_joint" and left.name == "left_ur5"
    np.testing.assert_array_equal(left.velocity, ur5.velocity)


def test_unknown_name_lists_available() -> None:
    with pytest.raises(FileNotFoundError, match="fr3"):
        load_robot_spec("kuka_iiwa")


def _write(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load((config_dir() / "robots" / "fr3.yaml").read_text())
    mutate(data)
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_custom_yaml_path_and_validation(tmp_path: Path) -> None:
    spec = load_robot_spec(_write(tmp_path, lambda d: d.update(name="my_fr3")))
    assert spec.name == "my_fr3"
    with pytest.raises(ValueError, match="missing key 'velocity'"):
        load_robot_spec(_write(tmp_path, lambda d: d["joints"].pop("velocity")))
    with pytest.raises(ValueError, match="home"):
        load_robot_spec(_write(tmp_path, lambda d: d.update(home=[3.0] * 7)))
    with pytest.raises(ValueError, match="velocity must have 7 entries"):
        load_robot_spec(_write(tmp_path, lambda d: d["joints"].update(velocity=[1.0] * 6)))
    with pytest.raises(ValueError, match="velocity_scale"):
        load_robot_spec(_write(tmp_path, lambda d: d["safety"].update(velocity_scale=1.5)))


def test_gripper_mapping_and_validation(fr3) -> None:
    g = fr3.gripper
    assert g.action_to_width(1.0) == pytest.approx(0.08) and g.action_to_width(0.0) == 0.0
    assert g.action_to_width(0.5) == pytest.approx(0.04)
    assert g.action_to_width(7.0) == pytest.approx(0.08) and math.isnan(g.action_to_width(math.nan))
    assert g.width_to_action(0.02) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="action_closed"):
        GripperSpec("x", 0, 0.08, 0, 0.1, 0.05, 0, 70, 20, action_closed=1.0, action_open=0.0)
    with pytest.raises(ValueError, match="default_force"):
        GripperSpec("x", 0, 0.08, 0, 0.1, 0.05, 0, 70, 80)


def test_layout_dims_and_names() -> None:
    joint, ee, bi = (make_action_layout(k) for k in ("franka_joint", "franka_ee", "ur5_bimanual_joint"))
    assert (joint.dim, ee.dim, bi.dim) == (8, 10, 14)
    assert joint.names == (*FR3_JOINT_NAMES, "gripper")
    assert ee.names[:3] == ("x", "y", "z") and ee.names[-1] == "gripper"
    assert (
        bi.names[6] == "left_gripper"
        and bi.names[7] == "right_shoulder_pan_joint"
        and len(set(bi.names)) == 14
    )
    with pytest.raises(ValueError, match="unknown action layout"):
        make_action_layout("aloha")


def test_bimanual_split_join_round_trip() -> None:
    layout = ActionLayout.ur5_bimanual_joint()
    action = np.arange(14, dtype=float)
    parts = layout.split(action)
    np.testing.assert_array_equal(parts["left"].joints, np.arange(6))
    assert parts["left"].gripper == 6.0 and parts["right"].gripper == 13.0
    np.testing.assert_array_equal(parts["right"].joints, np.arange(7, 13))
    np.testing.assert_array_equal(layout.join(parts), action)
    with pytest.raises(ValueError, match="14 entries"):
        layout.split(np.zeros(13))


def test_ee_split_decodes_rotation_and_marks_bad_rotation_nan() -> None:
    layout = ActionLayout.franka_ee()
    rot = rotvec_to_matrix(np.array([0.1, -0.2, 0.3]))
    action = np.concatenate([[0.4, 0.0, 0.3], matrix_to_rot6d(rot), [0.7]])
    part = layout.split(action)["arm"]
    np.testing.assert_allclose(part.rotation, rot, atol=1e-12)
    np.testing.assert_allclose(part.position, [0.4, 0.0, 0.3])
    np.testing.assert_allclose(layout.join({"arm": part}), action, atol=1e-12)
    action[3:9] = 0.0  # degenerate 6-D rotation
    assert np.all(np.isnan(layout.split(action)["arm"].rotation))
    with pytest.raises(ValueError, match="gripper"):
        ActionLayout.franka_joint().join({"arm": ArmAction(joints=np.zeros(7))})
