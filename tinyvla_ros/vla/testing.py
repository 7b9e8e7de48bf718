"""Test helpers: complete, random-init checkpoints for the small presets (used by ROS and engine tests)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from tinyvla_ros.vla.config import get_config
from tinyvla_ros.vla.normalize import Normalizer


def make_tiny_checkpoint(
    directory: str | Path,
    camera_names: Sequence[str],
    state_dim: int,
    action_dim: int,
    seed: int = 0,
    preset: str = "nano",
    action_low: Sequence[float] | None = None,
    action_high: Sequence[float] | None = None,
    state_mean: Sequence[float] | None = None,
    state_std: Sequence[float] | None = None,
    action_names: Sequence[str] | None = None,
    chunk_len: int = 16,
    **overrides: object,
) -> Path:
    """Write a random-init TinyVLA checkpoint (config, weights, stats, tokenizer) to ``directory``.

    Weights depend only on ``seed`` (the global RNG is left untouched). Actions default to
    [-1, 1] per dimension, states to mean 0 / std 1; every predicted action lies within
    [action_low, action_high]. ``overrides``: further config fields (e.g. object_slots=True).
    Returns the directory path.
    """
    from tinyvla_ros.vla.policy import TinyVLAPolicy

    config = get_config(
        preset,
        camera_names=tuple(camera_names),
        state_dim=state_dim,
        action_dim=action_dim,
        chunk_len=chunk_len,
        action_names=tuple(action_names) if action_names is not None else None,
        **overrides,
    )
    normalizer = Normalizer(
        action_low=np.full(action_dim, -1.0) if action_low is None else action_low,
        action_high=np.full(action_dim, 1.0) if action_high is None else action_high,
        state_mean=np.zeros(state_dim) if state_mean is None else state_mean,
        state_std=np.ones(state_dim) if state_std is None else state_std,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        policy = TinyVLAPolicy(config, normalizer=normalizer)
    return policy.save_pretrained(directory)
