"""Fixtures of the data tests: recorded demo bags, a converted dataset, an rclpy harness per test."""

from __future__ import annotations

from pathlib import Path

import pytest

DEMO_EPISODES = (("pick_red_cube", 0), ("pick_red_cube", 1), ("close_drawer", 0))


@pytest.fixture(scope="session")
def demo_bags(tmp_path_factory) -> list[Path]:
    """Three scripted Franka episodes recorded as MCAP bags (64x48 cameras)."""
    pytest.importorskip("mujoco")
    from tinyvla_ros.data.demos import DemoConfig, record_demos

    out = tmp_path_factory.mktemp("demos")
    results = []
    for task, seed in DEMO_EPISODES:
        cfg = DemoConfig(setup="franka", tasks=[task], seeds=[seed], image_width=64, image_height=48)
        results += record_demos(cfg, out)
    assert all(r.success for r in results), [(r.path.name, r.error) for r in results]
    return [r.path for r in results]


@pytest.fixture(scope="session")
def demo_dataset(demo_bags, tmp_path_factory) -> Path:
    """The demo bags converted to an episode dataset."""
    from tinyvla_ros.data.convert import convert_bags

    root = tmp_path_factory.mktemp("dataset") / "franka"
    convert_bags(demo_bags, root)
    return root


@pytest.fixture
def one_thread():
    """torch on one thread for the test (the machine is shared), the previous count restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def ros():
    """A fresh RosHarness per test."""
    pytest.importorskip("rclpy")
    from data_helpers import RosHarness

    harness = RosHarness()
    try:
        yield harness
    finally:
        harness.close()
