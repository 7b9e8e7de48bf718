"""Test-wide isolation: every pytest run gets its own ROS 2 domain and localhost-only discovery.

Set before any test imports rclpy, and inherited by every child process the tests start, so
parallel runs on one machine (CI, developers, helpers) never see each other's DDS traffic.
Override with TINYVLA_TEST_DOMAIN_ID to pin the domain (e.g. to watch a test with `ros2 topic`).
"""

from __future__ import annotations

import os
import random

import pytest


def _pick_domain_id() -> int:
    pinned = os.environ.get("TINYVLA_TEST_DOMAIN_ID")
    if pinned:
        return int(pinned)
    # Domain ids 0..101 map to valid, non-overlapping UDP port ranges on Linux; 0 is the
    # default every ROS 2 user shares, so never use it in tests.
    return random.SystemRandom().randint(1, 101)


os.environ["ROS_DOMAIN_ID"] = str(_pick_domain_id())
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # Iron and newer
os.environ["ROS_LOCALHOST_ONLY"] = "1"  # Humble and older
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYTHONHASHSEED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def ros_domain_id() -> int:
    """The ROS_DOMAIN_ID this test session runs in."""
    return int(os.environ["ROS_DOMAIN_ID"])
