"""Fixtures of the vla tests: small seeded policies, one torch thread (shared CPU)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from tinyvla_ros.vla.config import get_config
from tinyvla_ros.vla.normalize import Normalizer
from tinyvla_ros.vla.policy import TinyVLAPolicy

torch.set_num_threads(1)


def random_normalizer(action_dim: int, state_dim: int, seed: int = 0) -> Normalizer:
    """Statistics of random 'robot units' data (non-trivial scales and offsets)."""
    rng = np.random.default_rng(seed)
    actions = rng.normal(
        loc=rng.uniform(-2, 2, action_dim), scale=rng.uniform(0.1, 1.5, action_dim), size=(500, action_dim)
    )
    states = rng.normal(
        loc=rng.uniform(-1, 1, state_dim), scale=rng.uniform(0.05, 2.0, state_dim), size=(500, state_dim)
    )
    return Normalizer.from_data(actions, states)


@pytest.fixture
def make_policy() -> Callable[..., TinyVLAPolicy]:
    """make_policy(preset="nano", seed=0, **overrides) -> seeded TinyVLAPolicy with random stats."""

    def _make(preset: str = "nano", seed: int = 0, **overrides) -> TinyVLAPolicy:
        config = get_config(preset, **overrides)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            policy = TinyVLAPolicy(
                config, normalizer=random_normalizer(config.action_dim, config.state_dim, seed)
            )
        return policy.eval()

    return _make


def camera_images(n_cams: int, seed: int = 0, shape: tuple[int, int] = (48, 80)) -> list[np.ndarray]:
    """n_cams random (H, W, 3) uint8 RGB images."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8) for _ in range(n_cams)]


def train_batch(policy: TinyVLAPolicy, batch_size: int = 3, seed: int = 0) -> dict:
    """A random training batch in robot units for ``policy``'s config."""
    c = policy.config
    g = torch.Generator().manual_seed(seed)
    norm = policy.normalizer
    low, high = torch.as_tensor(norm.action_low).float(), torch.as_tensor(norm.action_high).float()
    actions = low + (high - low) * torch.rand(batch_size, c.chunk_len, c.action_dim, generator=g)
    return {
        "images": torch.randint(
            0, 256, (batch_size, c.num_cameras, 3, c.image_size, c.image_size), generator=g, dtype=torch.uint8
        ),
        "instruction": [
            "pick up the red cube",
            "open the top drawer slowly",
            "stack the blue block on the green one",
        ][:batch_size]
        + ["go"] * max(0, batch_size - 3),
        "state": torch.as_tensor(norm.state_mean).float() + torch.randn(batch_size, c.state_dim, generator=g),
        "actions": actions,
        "action_pad": torch.zeros(batch_size, c.chunk_len, dtype=torch.bool),
    }
