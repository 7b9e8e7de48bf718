"""Fixtures of the camera tests (helpers live in cameras_harness.py, a uniquely named module)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # cameras_harness

from cameras_harness import RosHarness  # noqa: E402


@pytest.fixture
def ros() -> RosHarness:
    """An rclpy context with a spinning executor and a listener node; torn down after the test."""
    harness = RosHarness()
    yield harness
    harness.close()
