"""Speed measurements of the fakes: lockstep real-time factor and camera render rate.

Used by ``benchmarks/bench_sim.py`` (which reports the numbers) and by a smoke test (which only
checks that the loop runs). Both wall-clock and process CPU time are reported: on a shared
machine the CPU-time figure is the one that does not depend on the neighbours' load.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from tinyvla_ros.sim.env import make_env


@dataclass(frozen=True)
class LockstepStats:
    """Result of :func:`measure_lockstep`: real-time factors = simulated seconds / spent seconds."""

    setup: str
    image_width: int
    image_height: int
    camera_hz: float
    control_hz: float
    sim_seconds: float
    wall_seconds: float
    cpu_seconds: float
    frames_rendered: int
    realtime_factor: float
    realtime_factor_cpu: float

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def wave_targets(home: np.ndarray, lower: np.ndarray, upper: np.ndarray, t: float) -> np.ndarray:
    """(Na,) smooth joint targets: home + 0.25 rad sine waves (different phase per joint), clamped."""
    phases = np.arange(home.size) * 0.7
    return np.clip(home + 0.25 * np.sin(2 * math.pi * 0.2 * t + phases), lower, upper)


def measure_lockstep(
    setup: str = "franka",
    sim_seconds: float = 10.0,
    image_width: int = 96,
    image_height: int = 96,
    camera_hz: float = 15.0,
    control_dt: float = 0.02,
) -> LockstepStats:
    """Run physics at control_dt with moving joint targets and render every camera at camera_hz.

    This is the fake-robot loop without ROS: a new set of joint targets every control step,
    physics, and all cameras rendered on their schedule; as fast as the machine allows.
    """
    env = make_env(
        setup, image_width=image_width, image_height=image_height, camera_hz=camera_hz, control_dt=control_dt
    )
    try:
        env.reset(env.tasks[0], seed=0)
        home, lower, upper = env.home, env.lower_limits, env.upper_limits
        for camera in env.camera_names:  # warm-up, not timed: GL context and buffers are created once
            env.render(camera)
        frame_period, next_frame, frames = 1.0 / camera_hz, 0.0, 0
        wall0, cpu0 = time.perf_counter(), time.process_time()
        while env.time < sim_seconds - 1e-9:
            if env.time + 1e-9 >= next_frame:
                for camera in env.camera_names:
                    env.render(camera)
                    frames += 1
                next_frame += frame_period
            env.set_joint_position_targets(wave_targets(home, lower, upper, env.time))
            for arm in env.arms:
                env.set_gripper(arm, 1.0 if int(env.time) % 4 < 2 else 0.0)
            env.step()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        simulated = env.time
    finally:
        env.close()
    return LockstepStats(
        setup=setup,
        image_width=image_width,
        image_height=image_height,
        camera_hz=camera_hz,
        control_hz=1.0 / control_dt,
        sim_seconds=simulated,
        wall_seconds=wall,
        cpu_seconds=cpu,
        frames_rendered=frames,
        realtime_factor=simulated / max(wall, 1e-9),
        realtime_factor_cpu=simulated / max(cpu, 1e-9),
    )


def measure_render_rate(
    setup: str, image_width: int, image_height: int, frames: int = 60
) -> dict[str, float]:
    """Renders per second (wall and CPU) of one camera image, cycling over the set-up's cameras."""
    env = make_env(setup, image_width=image_width, image_height=image_height)
    try:
        env.reset(env.tasks[0], seed=0)
        cameras = env.camera_names
        env.render(cameras[0])  # warm-up: GL context creation
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for i in range(frames):
            env.render(cameras[i % len(cameras)])
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    finally:
        env.close()
    return {"renders_per_s": frames / max(wall, 1e-9), "renders_per_cpu_s": frames / max(cpu, 1e-9)}
