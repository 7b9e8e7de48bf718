"""Rotation helpers and damped-least-squares inverse kinematics on the MuJoCo site Jacobian.

Quaternions are (w, x, y, z); rotation matrices are (3, 3) with the frame's axes as columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinyvla_ros.sim._mujoco import import_mujoco

mujoco = import_mujoco()


def mat_to_quat(rot: np.ndarray) -> np.ndarray:
    """(3, 3) rotation matrix -> (4,) unit quaternion (w, x, y, z)."""
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(rot, dtype=np.float64).reshape(9))
    return quat


def quat_to_mat(quat: np.ndarray) -> np.ndarray:
    """(4,) quaternion (w, x, y, z) -> (3, 3) rotation matrix."""
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, np.asarray(quat, dtype=np.float64) / np.linalg.norm(quat))
    return mat.reshape(3, 3)


def rotation_error(target_rot: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """World-frame rotation vector (3,) that turns ``rot`` into ``target_rot`` (both (3, 3))."""
    q_cur, q_tgt, q_inv, q_err = mat_to_quat(rot), mat_to_quat(target_rot), np.zeros(4), np.zeros(4)
    mujoco.mju_negQuat(q_inv, q_cur)
    mujoco.mju_mulQuat(q_err, q_tgt, q_inv)
    if q_err[0] < 0:  # shortest way round
        q_err = -q_err
    vel = np.zeros(3)
    mujoco.mju_quat2Vel(vel, q_err, 1.0)
    return vel


def slerp(q0: np.ndarray, q1: np.ndarray, s: float) -> np.ndarray:
    """Spherical interpolation between unit quaternions (4,) at fraction ``s`` in [0, 1]."""
    dot = float(np.dot(q0, q1))
    if dot < 0.0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        out = q0 + s * (q1 - q0)
        return out / np.linalg.norm(out)
    theta = math.acos(min(dot, 1.0))
    return (math.sin((1 - s) * theta) * q0 + math.sin(s * theta) * q1) / math.sin(theta)


def top_down_rot(yaw: float) -> np.ndarray:
    """(3, 3) gripper orientation pointing straight down (tool z = -world z), tool x at ``yaw``.

    The fingers close along the tool y axis = (sin yaw, -cos yaw, 0).
    """
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, s, 0.0], [s, -c, 0.0], [0.0, 0.0, -1.0]])


def nearest_symmetric_yaw(object_yaw: float, reference_yaw: float, period: float) -> float:
    """The yaw object_yaw + k * period closest to ``reference_yaw`` (grasp symmetry)."""
    k = round((reference_yaw - object_yaw) / period)
    return object_yaw + k * period


@dataclass(frozen=True)
class IkResult:
    """Solution of :func:`solve_ik`: joint vector (n,), residual errors, convergence flag."""

    q: np.ndarray
    position_error: float  # [m]
    rotation_error: float  # [rad]
    converged: bool
    iterations: int


@dataclass(frozen=True)
class IkChain:
    """What IK needs to know about one arm inside a compiled model."""

    site_id: int
    qpos_adr: np.ndarray  # (n,) int
    dof_adr: np.ndarray  # (n,) int
    lower: np.ndarray  # (n,)
    upper: np.ndarray  # (n,)
    rest: np.ndarray  # (n,) posture the null space is pulled towards


def solve_ik(
    model: Any,
    scratch: Any,
    chain: IkChain,
    target_pos: np.ndarray,
    target_rot: np.ndarray | None,
    q_init: np.ndarray,
    max_iters: int = 60,
    damping: float = 0.03,
    tol_pos: float = 2e-4,
    tol_rot: float = 2e-3,
    rot_weight: float = 0.5,
    max_step: float = 0.25,
    null_gain: float = 0.05,
) -> IkResult:
    """Damped least squares: dq = J^T (J J^T + lambda^2 I)^-1 e, clamped to joint limits each step.

    ``scratch`` is an MjData whose other joints already hold the configuration to solve in;
    only the chain's joints are written. Returns the best iterate. Shapes: target_pos (3,),
    target_rot (3, 3) or None (position only), q_init (n,).
    """
    n = len(chain.qpos_adr)
    q = np.clip(np.asarray(q_init, dtype=np.float64).copy(), chain.lower, chain.upper)
    jacp, jacr = np.zeros((3, model.nv)), np.zeros((3, model.nv))
    rows = 6 if target_rot is not None else 3
    pos_err, rot_err, it = np.inf, 0.0, 0
    for it in range(max_iters + 1):
        scratch.qpos[chain.qpos_adr] = q
        mujoco.mj_kinematics(model, scratch)
        err_p = target_pos - scratch.site_xpos[chain.site_id]
        err = err_p
        pos_err = float(np.linalg.norm(err_p))
        if target_rot is not None:
            err_r = rotation_error(target_rot, scratch.site_xmat[chain.site_id].reshape(3, 3))
            rot_err = float(np.linalg.norm(err_r))
            err = np.concatenate([err_p, rot_weight * err_r])
        if (pos_err < tol_pos and rot_err < tol_rot) or it == max_iters:
            break
        mujoco.mj_comPos(model, scratch)
        mujoco.mj_jacSite(model, scratch, jacp, jacr, chain.site_id)
        jac = jacp[:, chain.dof_adr]
        if rows == 6:
            jac = np.vstack([jac, rot_weight * jacr[:, chain.dof_adr]])
        jjt = jac @ jac.T + damping**2 * np.eye(rows)
        pinv = jac.T @ np.linalg.solve(jjt, np.eye(rows))  # (n, rows)
        dq = pinv @ err + null_gain * (np.eye(n) - pinv @ jac) @ (chain.rest - q)
        norm = float(np.linalg.norm(dq))
        if norm > max_step:
            dq *= max_step / norm
        q = np.clip(q + dq, chain.lower, chain.upper)
    converged = pos_err < 10 * tol_pos and rot_err < 10 * tol_rot
    return IkResult(q, pos_err, rot_err, converged, it)
