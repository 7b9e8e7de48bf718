"""tinyvla_ros.vla.engines: the torch engine the policy node runs (real nano checkpoints)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FRANKA_ACTIONS

from tinyvla_ros.vla.checkpoint import CheckpointMismatchError
from tinyvla_ros.vla.engines import load_engine
from tinyvla_ros.vla.engines.base import Engine, EngineConfig

EXPECTED = {"action_dim": 8, "camera_names": ["zed_left", "zed_right"], "state_dim": 8}


def test_torch_engine_predicts_seeded_chunks_within_action_bounds(franka_checkpoint):
    engine = load_engine(franka_checkpoint, expected=EXPECTED, num_threads=1)
    assert isinstance(engine, Engine) and engine.name == "torch"
    assert list(engine.config.action_names) == FRANKA_ACTIONS
    assert engine.warmup(1) > 0.0
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(2)]
    state = np.zeros(8, np.float32)
    a = engine.predict_chunk(images, "pick up the red cube", state, seed=3)
    b = engine.predict_chunk(images, "pick up the red cube", state, seed=3)
    assert a.shape == (16, 8) and a.dtype == np.float32 and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    assert np.all(a[:, 7] >= -1e-5) and np.all(a[:, 7] <= 1.0 + 1e-5)  # gripper range of the stats


def test_engine_rejects_wrong_inputs(franka_checkpoint):
    engine = load_engine(franka_checkpoint, expected=EXPECTED, num_threads=1)
    images = [np.zeros((8, 8, 3), np.uint8)] * 2
    with pytest.raises(ValueError, match="expected 2 images"):
        engine.predict_chunk(images[:1], "x", np.zeros(8))
    with pytest.raises(ValueError, match=r"state must have shape \(8,\)"):
        engine.predict_chunk(images, "x", np.zeros(7))


def test_mismatch_and_missing_checkpoint_are_clear(ur5_checkpoint, tmp_path):
    with pytest.raises(CheckpointMismatchError, match="action_dim is 14 in the checkpoint but 8 is expected"):
        load_engine(ur5_checkpoint, expected=EXPECTED)
    with pytest.raises(FileNotFoundError, match="checkpoint directory not found"):
        load_engine(tmp_path / "missing")


def test_engine_config_validation():
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        EngineConfig(precision="fp16", device="cpu")
    with pytest.raises(ValueError, match="engine must be one of"):
        EngineConfig(engine="tensorrt")
    with pytest.raises(ValueError, match="device"):
        EngineConfig(device="tpu")
