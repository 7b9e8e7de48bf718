"""Fixtures of the engine tests: small real (random-init) checkpoints, exported once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

FRANKA_CAMERAS = ("zed_left", "zed_right")
UR5_CAMERAS = ("wrist_left", "wrist_right", "top")


def _make(directory: Path, cameras, state_dim: int, action_dim: int, seed: int) -> Path:
    from tinyvla_ros.vla.testing import make_tiny_checkpoint

    rng = np.random.default_rng(seed)
    low = rng.uniform(-2.0, 0.0, action_dim)
    return make_tiny_checkpoint(
        directory,
        cameras,
        state_dim,
        action_dim,
        seed=seed,
        action_low=low,
        action_high=low + rng.uniform(0.5, 2.0, action_dim),
        state_mean=rng.normal(0.0, 1.0, state_dim),
        state_std=rng.uniform(0.2, 2.0, state_dim),
    )


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """The machine is shared: keep torch and ORT to one thread in tests."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def franka_ckpt(tmp_path_factory) -> Path:
    """Franka-like nano checkpoint (2 cameras, state 8, action 8) with encoder + denoiser exported."""
    from tinyvla_ros.vla.export import ExportConfig, export_checkpoint

    directory = _make(tmp_path_factory.mktemp("franka") / "ckpt", FRANKA_CAMERAS, 8, 8, seed=1)
    export_checkpoint(directory, ExportConfig(graphs=("encoder", "denoiser", "denoise_step")))
    return directory


@pytest.fixture(scope="session")
def ur5_ckpt(tmp_path_factory) -> Path:
    """Bimanual-UR5-like nano checkpoint (3 cameras, state 14, action 14), not exported."""
    return _make(tmp_path_factory.mktemp("ur5") / "ckpt", UR5_CAMERAS, 14, 14, seed=2)


@pytest.fixture
def franka_copy(franka_ckpt, tmp_path) -> Path:
    """A private copy of the exported Franka checkpoint (for tests that change files)."""
    return Path(shutil.copytree(franka_ckpt, tmp_path / "ckpt"))


def _observation(cameras: int, state_dim: int, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = [(48, 64), (60, 60), (90, 40)]
    images = [rng.integers(0, 256, (*sizes[i % 3], 3), dtype=np.uint8) for i in range(cameras)]
    return images, rng.normal(0.0, 1.0, state_dim).astype(np.float32)


@pytest.fixture
def observation():
    """observation(cameras, state_dim, seed) -> (seeded images of different sizes, state vector)."""
    return _observation
