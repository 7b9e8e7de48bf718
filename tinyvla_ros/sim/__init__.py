"""tinyvla_ros.sim: MuJoCo fake robots (Franka FR3, bimanual UR5), cameras, tasks, scripted experts.

ROS-free (no rclpy). Heavy names are imported lazily so that ``import tinyvla_ros.sim`` stays
cheap; MuJoCo is imported (and a headless GL back-end chosen) on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "SimConfig": "tinyvla_ros.sim.env",
    "SimEnv": "tinyvla_ros.sim.env",
    "make_env": "tinyvla_ros.sim.env",
    "Expert": "tinyvla_ros.sim.experts",
    "make_expert": "tinyvla_ros.sim.experts",
    "run_expert_episode": "tinyvla_ros.sim.experts",
    "task_names": "tinyvla_ros.sim.tasks",
    "SETUPS": "tinyvla_ros.sim.scenes",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tinyvla_ros.sim' has no attribute {name!r}")
