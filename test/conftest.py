"""Test-wide isolation: every pytest run gets its own ROS 2 domain and localhost-only discovery.

Set before any test imports rclpy, and inherited by every child process the tests start, so
parallel runs on one machine (CI, developers, helpers) never see each other's DDS traffic.
Override with TINYVLA_TEST_DOMAIN_ID to pin the domain (e.g. to watch a test with `ros2 topic`).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

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


_SESSION_DOMAIN = int(os.environ["ROS_DOMAIN_ID"])
_module_counter = 0


@pytest.fixture(scope="module", autouse=True)
def _module_ros_domain() -> Iterator[None]:
    """Each test module runs in its own domain (session id + module index, within 1..101).

    A node that an earlier module left behind (a process still shutting down, an in-process node
    not yet destroyed) then cannot answer another module's service calls or publish on its topics.
    Contexts and processes created during the module read the variable when they start.
    """
    global _module_counter
    if os.environ.get("TINYVLA_TEST_DOMAIN_ID"):
        yield
        return
    domain = (_SESSION_DOMAIN - 1 + _module_counter) % 101 + 1
    _module_counter += 1
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    yield


@pytest.fixture
def ros_domain_id() -> int:
    """The ROS_DOMAIN_ID the current test module runs in."""
    return int(os.environ["ROS_DOMAIN_ID"])
