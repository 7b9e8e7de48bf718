"""Round trips and known values of the rotation conversions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tinyvla_ros.core.rotations import (
    axis_rotation,
    euler_to_matrix,
    is_rotation_matrix,
    matrix_to_euler,
    matrix_to_quaternion,
    matrix_to_rot6d,
    matrix_to_rotvec,
    quaternion_to_matrix,
    rot6d_to_matrix,
    rotvec_to_matrix,
)

ORDERS = ["xyz", "xzy", "yxz", "yzx", "zxy", "zyx", "XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX"]


def random_rotations(n: int, seed: int = 0) -> np.ndarray:
    q = np.random.default_rng(seed).normal(size=(n, 4))
    return quaternion_to_matrix(q)


def test_random_rotations_are_proper() -> None:
    assert is_rotation_matrix(random_rotations(50))
    assert not is_rotation_matrix(np.diag([1.0, 1.0, -1.0]))


def test_rot6d_round_trip_is_exact_for_rotations() -> None:
    rots = random_rotations(100)
    r6 = matrix_to_rot6d(rots)
    assert r6.shape == (100, 6)
    np.testing.assert_allclose(r6[:, :3], rots[:, :, 0])  # first column first (Zhou et al.)
    np.testing.assert_allclose(rot6d_to_matrix(r6), rots, atol=1e-12)


def test_rot6d_gram_schmidt_of_unnormalised_input() -> None:
    r6 = np.array([2.0, 0.0, 0.0, 1.0, 3.0, 0.0])  # scaled x, y with an x component
    np.testing.assert_allclose(rot6d_to_matrix(r6), np.eye(3), atol=1e-12)
    noisy = matrix_to_rot6d(random_rotations(20, 1)) + np.random.default_rng(2).normal(0, 0.05, (20, 6))
    assert is_rotation_matrix(rot6d_to_matrix(noisy))


@pytest.mark.parametrize(
    "bad",
    [np.zeros(6), np.array([1.0, 0, 0, 2.0, 0, 0]), np.array([np.nan, 0, 0, 0, 1, 0])],
)
def test_rot6d_degenerate_or_nonfinite_raises(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        rot6d_to_matrix(bad)


def test_quaternion_round_trip_and_sign_convention() -> None:
    rots = random_rotations(200, 3)
    q = matrix_to_quaternion(rots)
    assert np.all(q[:, 3] >= 0)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0)
    np.testing.assert_allclose(quaternion_to_matrix(q), rots, atol=1e-12)


def test_quaternion_known_values_xyzw() -> None:
    # 90 degrees about z: (x, y, z, w) = (0, 0, sin 45, cos 45)
    np.testing.assert_allclose(
        matrix_to_quaternion(axis_rotation("z", math.pi / 2)), [0, 0, math.sqrt(0.5), math.sqrt(0.5)]
    )
    # 180-degree turns are handled (trace = -1)
    q = matrix_to_quaternion(axis_rotation("x", math.pi))
    np.testing.assert_allclose(np.abs(q), [1, 0, 0, 0], atol=1e-12)
    with pytest.raises(ValueError):
        quaternion_to_matrix(np.zeros(4))


@pytest.mark.parametrize("order", ORDERS)
def test_euler_round_trip_all_orders(order: str) -> None:
    rng = np.random.default_rng(4)
    angles = rng.uniform(-math.pi, math.pi, size=(100, 3))
    angles[:, 1] = rng.uniform(-1.5, 1.5, size=100)  # away from gimbal lock
    rots = euler_to_matrix(angles, order)
    back = matrix_to_euler(rots, order)
    np.testing.assert_allclose(euler_to_matrix(back, order), rots, atol=1e-10)
    np.testing.assert_allclose(back, angles, atol=1e-9)


@pytest.mark.parametrize("order", ORDERS)
def test_euler_gimbal_lock_still_reproduces_matrix(order: str) -> None:
    for middle in (math.pi / 2, -math.pi / 2):
        rot = euler_to_matrix(np.array([0.3, middle, -0.7]), order)
        np.testing.assert_allclose(euler_to_matrix(matrix_to_euler(rot, order), order), rot, atol=1e-9)


def test_extrinsic_xyz_is_ros_rpy() -> None:
    roll, pitch, yaw = 0.1, -0.4, 1.2
    expected = axis_rotation("z", yaw) @ axis_rotation("y", pitch) @ axis_rotation("x", roll)
    np.testing.assert_allclose(euler_to_matrix(np.array([roll, pitch, yaw]), "xyz"), expected)
    # extrinsic xyz == intrinsic ZYX with the angles reversed
    np.testing.assert_allclose(euler_to_matrix(np.array([yaw, pitch, roll]), "ZYX"), expected)


@pytest.mark.parametrize("order", ["xyx", "xy", "xYz", 3])
def test_bad_euler_order_raises(order: object) -> None:
    with pytest.raises(ValueError):
        euler_to_matrix(np.zeros(3), order)  # type: ignore[arg-type]


def test_rotvec_round_trip_including_small_and_pi() -> None:
    rng = np.random.default_rng(5)
    axes = rng.normal(size=(50, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.concatenate([[0.0, 1e-10, 1e-5, math.pi - 1e-6], rng.uniform(0, math.pi, 46)])
    rv = axes * angles[:, None]
    rots = rotvec_to_matrix(rv)
    assert is_rotation_matrix(rots)
    np.testing.assert_allclose(rotvec_to_matrix(matrix_to_rotvec(rots)), rots, atol=1e-9)
    np.testing.assert_allclose(
        rotvec_to_matrix(np.array([0, 0, math.pi / 2])), axis_rotation("z", math.pi / 2), atol=1e-12
    )
