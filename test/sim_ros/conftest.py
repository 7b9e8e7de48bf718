"""Fixtures of the fake-robot tests (helpers live in sim_ros_support.py).

Every process inherits the session's isolated ROS_DOMAIN_ID (test/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("mujoco")


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("sim_ros")
