"""SimEnv behaviour: rendering, joint limits, tracking, grippers, input checks, determinism, IK."""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys

import numpy as np
import pytest

from tinyvla_ros.sim.env import make_env
from tinyvla_ros.sim.perf import measure_lockstep

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module", params=["franka", "ur5_bimanual"])
def env(request):
    env = make_env(request.param, image_width=160, image_height=120)
    yield env
    env.close()


def _project(env, camera: str, point: np.ndarray) -> tuple[int, int]:
    """Pixel (row, col) of a world point, from camera_intrinsics and the camera's pose."""
    fx, fy, cx, cy, _, _ = env.camera_intrinsics(camera)
    cam = env.data.camera(camera)
    p = cam.xmat.reshape(3, 3).T @ (point - cam.xpos)  # camera frame: x right, y up, looks along -z
    assert p[2] < 0, "point behind the camera"
    return round(cy - fy * p[1] / -p[2]), round(cx + fx * p[0] / -p[2])


def test_render_shapes_content_and_orientation(env):
    env.reset(env.tasks[0], seed=3)
    images = {camera: env.render(camera) for camera in env.camera_names}
    for camera, image in images.items():
        assert image.shape == (120, 160, 3) and image.dtype == np.uint8, camera
        assert image.std() > 15, f"{camera} is nearly uniform"
        assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50, camera
    first, *others = images.values()
    assert all(np.abs(first.astype(int) - o.astype(int)).mean() > 5 for o in others)
    # The red cube is where the pinhole model says it is: intrinsics right, image not flipped.
    camera = "zed_left" if env.setup == "franka" else "top"
    row, col = _project(env, camera, env.body_pose("red_cube")[0])
    r, g, b = images[camera][row, col].astype(int)
    assert r > 120 and r > 2 * g and r > 2 * b, (row, col, (r, g, b))
    flipped = images[camera][119 - row, col].astype(int)
    assert not (flipped[0] > 2 * flipped[1] and flipped[0] > 2 * flipped[2])


def test_intrinsics_follow_resolution(env):
    fx, fy, cx, cy, w, h = env.camera_intrinsics(env.camera_names[0])
    assert (w, h) == (160, 120) and (cx, cy) == (79.5, 59.5) and fx == fy > 0


def test_render_disabled_raises():
    env = make_env("franka", render_cameras=False)
    env.reset("close_drawer", seed=0)
    with pytest.raises(RuntimeError, match="render_cameras=False"):
        env.render("zed_left")


def test_joint_limits_hold_under_extreme_targets(env):
    env.reset(env.tasks[0], seed=0)
    lower, upper = env.lower_limits, env.upper_limits
    n = lower.size
    worst = 0.0
    for target in (upper + 1.0, lower - 1.0):
        env.set_joint_position_targets(target)
        assert np.all(env.arm_targets() <= upper) and np.all(env.arm_targets() >= lower)
        for _ in range(60):
            env.step()
            q = env.joint_positions()[:n]
            worst = max(worst, float(np.max(q - upper)), float(np.max(lower - q)))
    assert worst < 0.01, f"a joint went {worst:.4f} rad past its limit"


def test_tracks_a_joint_target(env):
    env.reset(env.tasks[0], seed=0)
    offsets = np.tile([0.2, -0.15, 0.2, 0.25, -0.3, 0.3, 0.3], 2)[: env.home.size]
    target = np.clip(env.home + offsets, env.lower_limits, env.upper_limits)
    env.set_joint_position_targets(target)
    env.step(1.5)
    q = env.joint_positions()[: target.size]
    assert np.max(np.abs(q - target)) < 0.01
    assert np.max(np.abs(env.joint_velocities()[: target.size])) < 0.05


def test_grippers_open_close_and_report(env):
    env.reset(env.tasks[0], seed=0)
    n = env.home.size
    open_q = env.joint_positions()[n:]
    for arm in env.arms:
        env.set_gripper(arm, 0.0)
    env.step(0.6)
    closed_q = env.joint_positions()[n:]
    if env.setup == "franka":
        np.testing.assert_allclose(open_q, [0.04, 0.04], atol=1e-3)
        np.testing.assert_allclose(closed_q, [0.0, 0.0], atol=2e-3)
    else:  # Robotiq driver convention: knuckle 0 = open .. 0.8 rad = closed
        np.testing.assert_allclose(open_q, [0.0, 0.0], atol=0.02)
        np.testing.assert_allclose(closed_q, [0.8, 0.8], atol=0.04)
    assert env.joint_velocities().shape == env.joint_efforts().shape == (len(env.joint_names),)
    assert all(env.gripper_opening(arm) < 0.05 for arm in env.arms)


def test_bad_commands_raise_and_keep_targets(env):
    env.reset(env.tasks[0], seed=0)
    before = env.arm_targets()
    with pytest.raises(ValueError, match="shape"):
        env.set_joint_position_targets(np.zeros(before.size + 1))
    bad = before.copy()
    bad[1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        env.set_joint_position_targets(bad)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        env.set_gripper(env.arms[0], 1.5)
    with pytest.raises(ValueError, match="dt"):
        env.step(-0.1)
    np.testing.assert_array_equal(env.arm_targets(), before)


def test_reset_is_deterministic_per_seed(env):
    def poses(seed: int) -> dict[str, np.ndarray]:
        env.reset(env.tasks[-1], seed=seed)
        return {k: v for k, v in env.task_state().items() if k.endswith("_pos")}

    first = poses(11)
    env.step(0.5)
    other = poses(12)
    again = poses(11)
    assert first.keys() == again.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert any(not np.allclose(first[k], other[k]) for k in first if "tcp" not in k)
    assert env.time == 0.0


def test_no_task_is_solved_at_reset(env):
    for task in env.tasks:
        for seed in range(3):
            env.reset(task, seed)
            assert not env.success(), (task, seed)
            assert env.instruction and env.task == task
    env.reset(env.tasks[0], 0)
    assert env.task == env.tasks[0]


def test_ik_reaches_a_reachable_pose_within_limits(env):
    env.reset(env.tasks[0], seed=0)
    rng = np.random.default_rng(5)
    for arm, spec in env.arm_specs.items():
        q_goal = np.asarray(spec.home) + rng.uniform(-0.3, 0.3, spec.dof)
        q_goal = np.clip(q_goal, spec.lower, spec.upper)
        saved = env.data.qpos.copy()
        for name, value in zip(spec.joint_names, q_goal, strict=True):
            env.data.joint(name).qpos[0] = value
        from tinyvla_ros.sim.env import mujoco

        mujoco.mj_forward(env.model, env.data)
        pos, rot = env.ee_pose(arm)
        env.data.qpos[:] = saved
        mujoco.mj_forward(env.model, env.data)
        result = env.ik_solve(arm, pos, rot)
        assert result.converged and result.position_error < 1e-3 and result.rotation_error < 1e-2
        assert np.all(result.q >= spec.lower) and np.all(result.q <= spec.upper)
        q_pos_only = env.ik(arm, pos + np.array([0.0, 0.0, 0.05]))
        assert q_pos_only.shape == (spec.dof,)


def test_lockstep_loop_runs():
    stats = measure_lockstep("franka", sim_seconds=1.0, image_width=64, image_height=64, camera_hz=15.0)
    assert stats.sim_seconds == pytest.approx(1.0, abs=0.021)
    assert stats.frames_rendered == 2 * 15
    assert stats.realtime_factor > 0


def _run_python(code: str, **env_overrides: str | None) -> str:
    env = dict(os.environ)
    for key, value in env_overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_gl_backend_is_chosen_when_unset():
    code = "from tinyvla_ros.sim._mujoco import select_gl_backend; print(select_gl_backend())"
    assert _run_python(code, MUJOCO_GL=None, PYOPENGL_PLATFORM=None) in ("egl", "osmesa")


@pytest.mark.skipif(ctypes.util.find_library("OSMesa") is None, reason="libosmesa6 not installed")
def test_osmesa_fallback_renders():
    code = (
        "from tinyvla_ros.sim.env import make_env\n"
        "env = make_env('franka', image_width=48, image_height=32)\n"
        "env.reset('close_drawer', 0)\n"
        "image = env.render('zed_left')\n"
        "env.close()\n"
        "print(image.shape, image.dtype, int(image.std() > 10))\n"
    )
    assert _run_python(code, MUJOCO_GL="osmesa", PYOPENGL_PLATFORM=None) == "(32, 48, 3) uint8 1"
