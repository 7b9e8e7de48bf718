"""Rotation conversions in plain NumPy, batched over any leading dimensions.

Conventions (written down once, used everywhere in tinyvla_ros):

- Rotation matrices ``R`` are (..., 3, 3), acting on column vectors: ``v_base = R @ v_local``.
- 6-D rotation (Zhou et al., "On the Continuity of Rotation Representations in Neural
  Networks", CVPR 2019): the FIRST TWO COLUMNS of ``R`` stacked, ``r6 = [R[:, 0], R[:, 1]]``
  (..., 6). Decoding applies Gram-Schmidt to the two 3-vectors and takes their cross product
  as the third column, so any non-degenerate 6-vector maps to a proper rotation.
- Quaternions are (..., 4) in ``(x, y, z, w)`` order, as geometry_msgs/Quaternion stores them.
  ``matrix_to_quaternion`` returns the representative with ``w >= 0``.
- Euler angles follow SciPy's naming: a lowercase order (``"xyz"``) means extrinsic rotations
  about the fixed base axes, applied in the order written; an uppercase order (``"XYZ"``)
  means intrinsic rotations about the moving axes. ``"xyz"`` is roll-pitch-yaw as ROS tf
  uses it: ``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``. Only Tait-Bryan orders (three distinct
  axes) are supported.
- Rotation vectors (axis * angle, (..., 3)) with the angle in [0, pi].
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "rot6d_to_matrix",
    "matrix_to_rot6d",
    "matrix_to_quaternion",
    "quaternion_to_matrix",
    "euler_to_matrix",
    "matrix_to_euler",
    "rotvec_to_matrix",
    "matrix_to_rotvec",
    "axis_rotation",
    "is_rotation_matrix",
]

_EPS = 1e-9
_AXES = {"x": 0, "y": 1, "z": 2}


def _as_float(x: np.ndarray | list | tuple, last: tuple[int, ...], name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.shape[arr.ndim - len(last) :] != last or arr.ndim < len(last):
        raise ValueError(f"{name}: expected shape (..., {', '.join(map(str, last))}), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or inf")
    return arr


def rot6d_to_matrix(r6: np.ndarray) -> np.ndarray:
    """6-D rotation (..., 6) -> rotation matrix (..., 3, 3) by Gram-Schmidt.

    Raises ValueError when either 3-vector is (near) zero or the two are (near) parallel:
    such an action has no rotation and must not be executed.
    """
    r6 = _as_float(r6, (6,), "rot6d")
    a1, a2 = r6[..., 0:3], r6[..., 3:6]
    n1 = np.linalg.norm(a1, axis=-1, keepdims=True)
    if np.any(n1 < _EPS):
        raise ValueError("rot6d: first column is (near) zero; no rotation can be recovered")
    b1 = a1 / n1
    u2 = a2 - np.sum(b1 * a2, axis=-1, keepdims=True) * b1
    n2 = np.linalg.norm(u2, axis=-1, keepdims=True)
    if np.any(n2 < _EPS * np.maximum(1.0, np.linalg.norm(a2, axis=-1, keepdims=True))):
        raise ValueError("rot6d: second column is (near) zero or parallel to the first")
    b2 = u2 / n2
    b3 = np.cross(b1, b2)
    return np.stack([b1, b2, b3], axis=-1)  # columns


def matrix_to_rot6d(rot: np.ndarray) -> np.ndarray:
    """Rotation matrix (..., 3, 3) -> 6-D rotation (..., 6): first column then second column."""
    rot = _as_float(rot, (3, 3), "rotation")
    return np.concatenate([rot[..., :, 0], rot[..., :, 1]], axis=-1)


def quaternion_to_matrix(quat: np.ndarray) -> np.ndarray:
    """Quaternion (..., 4) as (x, y, z, w), normalised first -> rotation matrix (..., 3, 3)."""
    q = _as_float(quat, (4,), "quaternion")
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(norm < _EPS):
        raise ValueError("quaternion: zero norm")
    x, y, z, w = np.moveaxis(q / norm, -1, 0)
    rot = np.empty(q.shape[:-1] + (3, 3))
    rot[..., 0, 0] = 1 - 2 * (y * y + z * z)
    rot[..., 0, 1] = 2 * (x * y - z * w)
    rot[..., 0, 2] = 2 * (x * z + y * w)
    rot[..., 1, 0] = 2 * (x * y + z * w)
    rot[..., 1, 1] = 1 - 2 * (x * x + z * z)
    rot[..., 1, 2] = 2 * (y * z - x * w)
    rot[..., 2, 0] = 2 * (x * z - y * w)
    rot[..., 2, 1] = 2 * (y * z + x * w)
    rot[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return rot


def matrix_to_quaternion(rot: np.ndarray) -> np.ndarray:
    """Rotation matrix (..., 3, 3) -> unit quaternion (..., 4) as (x, y, z, w) with w >= 0.

    Uses the largest of the four squared components (Shepperd's method), so it is accurate
    for every rotation including 180-degree turns.
    """
    rot = _as_float(rot, (3, 3), "rotation")
    m = rot.reshape(-1, 3, 3)
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    # 4*|component|^2 for w, x, y, z
    sq = np.stack(
        [
            1 + tr,
            1 + 2 * m[:, 0, 0] - tr,
            1 + 2 * m[:, 1, 1] - tr,
            1 + 2 * m[:, 2, 2] - tr,
        ],
        axis=-1,
    )
    best = np.argmax(sq, axis=-1)
    out = np.empty((m.shape[0], 4))  # (x, y, z, w)
    for i in range(m.shape[0]):
        r = m[i]
        s = 2.0 * np.sqrt(max(sq[i, best[i]], 0.0))
        if best[i] == 0:
            out[i] = [(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, s / 4]
        elif best[i] == 1:
            out[i] = [s / 4, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s, (r[2, 1] - r[1, 2]) / s]
        elif best[i] == 2:
            out[i] = [(r[0, 1] + r[1, 0]) / s, s / 4, (r[1, 2] + r[2, 1]) / s, (r[0, 2] - r[2, 0]) / s]
        else:
            out[i] = [(r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, s / 4, (r[1, 0] - r[0, 1]) / s]
    out /= np.linalg.norm(out, axis=-1, keepdims=True)
    out[out[:, 3] < 0] *= -1.0
    return out.reshape(rot.shape[:-2] + (4,))


def axis_rotation(axis: str, angle: np.ndarray | float) -> np.ndarray:
    """Elementary rotation about base axis ``axis`` ('x', 'y' or 'z') by ``angle`` (...) -> (..., 3, 3)."""
    if axis not in _AXES:
        raise ValueError(f"axis must be 'x', 'y' or 'z', got {axis!r}")
    a = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    i = _AXES[axis]
    j, k = (i + 1) % 3, (i + 2) % 3
    rot = np.zeros(a.shape + (3, 3))
    rot[..., i, i] = 1.0
    rot[..., j, j] = c
    rot[..., k, k] = c
    rot[..., j, k] = -s
    rot[..., k, j] = s
    return rot


def _check_order(order: str) -> tuple[bool, str]:
    if not isinstance(order, str) or len(order) != 3 or not (order.islower() or order.isupper()):
        raise ValueError(
            f"Euler order must be 3 letters, all lower (extrinsic) or all upper (intrinsic): {order!r}"
        )
    low = order.lower()
    if set(low) != {"x", "y", "z"}:
        raise ValueError(f"Euler order must use three distinct axes (Tait-Bryan), got {order!r}")
    return order.isupper(), low


def euler_to_matrix(angles: np.ndarray, order: str = "xyz") -> np.ndarray:
    """Euler angles (..., 3) in radians, in the order written -> rotation matrix (..., 3, 3)."""
    intrinsic, low = _check_order(order)
    ang = _as_float(angles, (3,), "euler angles")
    mats = [axis_rotation(ax, ang[..., n]) for n, ax in enumerate(low)]
    if intrinsic:  # R = R_a1 @ R_a2 @ R_a3 (moving axes)
        return mats[0] @ mats[1] @ mats[2]
    return mats[2] @ mats[1] @ mats[0]  # extrinsic: first rotation applied first


def matrix_to_euler(rot: np.ndarray, order: str = "xyz") -> np.ndarray:
    """Rotation matrix (..., 3, 3) -> Euler angles (..., 3) for ``order``.

    The middle angle is in [-pi/2, pi/2]; the others in (-pi, pi]. At gimbal lock (middle angle
    +-pi/2) the third angle is set to 0 and the first absorbs the whole remaining rotation.
    """
    intrinsic, low = _check_order(order)
    rot = _as_float(rot, (3, 3), "rotation")
    # Extrinsic a-b-c equals intrinsic C-B-A with the angles reversed.
    axes = low if intrinsic else low[::-1]
    i, j, k = (_AXES[a] for a in axes)
    sign = 1.0 if (j - i) % 3 == 1 else -1.0  # +1 for cyclic orders (xyz, yzx, zxy)
    sb = np.clip(sign * rot[..., i, k], -1.0, 1.0)
    b = np.arcsin(sb)
    a = np.arctan2(-sign * rot[..., j, k], rot[..., k, k])
    c = np.arctan2(-sign * rot[..., i, j], rot[..., i, i])
    lock = np.abs(sb) > 1.0 - 1e-10
    if np.any(lock):
        # With c = 0: R[k, j] = sign*sin(a)*... ; solve a from the 2x2 block not touched by b.
        a_lock = np.arctan2(sign * rot[..., k, j], rot[..., j, j])
        a = np.where(lock, a_lock, a)
        c = np.where(lock, 0.0, c)
    out = np.stack([a, b, c], axis=-1)
    return out if intrinsic else out[..., ::-1]


def rotvec_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rotation vector (..., 3) (axis * angle) -> rotation matrix (..., 3, 3) (Rodrigues)."""
    v = _as_float(rotvec, (3,), "rotation vector")
    theta = np.linalg.norm(v, axis=-1)[..., None, None]
    k = np.zeros(v.shape[:-1] + (3, 3))
    k[..., 0, 1], k[..., 0, 2] = -v[..., 2], v[..., 1]
    k[..., 1, 0], k[..., 1, 2] = v[..., 2], -v[..., 0]
    k[..., 2, 0], k[..., 2, 1] = -v[..., 1], v[..., 0]
    small = theta < 1e-8
    safe = np.where(small, 1.0, theta)
    s = np.where(small, 1.0 - theta**2 / 6.0, np.sin(safe) / safe)
    c = np.where(small, 0.5 - theta**2 / 24.0, (1.0 - np.cos(safe)) / safe**2)
    return np.eye(3) + s * k + c * (k @ k)


def matrix_to_rotvec(rot: np.ndarray) -> np.ndarray:
    """Rotation matrix (..., 3, 3) -> rotation vector (..., 3), angle in [0, pi]."""
    q = matrix_to_quaternion(rot)  # w >= 0 -> angle in [0, pi]
    xyz, w = q[..., :3], q[..., 3]
    n = np.linalg.norm(xyz, axis=-1)
    angle = 2.0 * np.arctan2(n, w)
    small = n < 1e-12
    scale = np.where(small, 2.0, angle / np.where(small, 1.0, n))
    return xyz * scale[..., None]


def is_rotation_matrix(rot: np.ndarray, tol: float = 1e-6) -> bool:
    """True when every (3, 3) block is orthonormal with determinant +1 (within ``tol``)."""
    r = np.asarray(rot, dtype=np.float64)
    if r.shape[-2:] != (3, 3) or not np.all(np.isfinite(r)):
        return False
    eye = np.swapaxes(r, -1, -2) @ r
    return bool(np.all(np.abs(eye - np.eye(3)) < tol) and np.all(np.abs(np.linalg.det(r) - 1.0) < tol))
