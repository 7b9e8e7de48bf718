"""Normalizer: min-max actions with margin, z-score states with std floor, JSON, torch + NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tinyvla_ros.vla.normalize import Normalizer


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-3, 5, size=(40, 16, 4))
    actions[..., 3] = 0.04  # a gripper that never moved: constant dimension
    states = rng.normal(2.0, 0.5, size=(200, 3))
    states[:, 2] = 1.0  # constant state dimension: std floored
    return actions, states


def test_actions_map_into_minus_one_one_with_margin():
    actions, states = _data()
    norm = Normalizer.from_data(actions, states, margin=0.01)
    out = norm.normalize_action(actions)
    assert out.shape == actions.shape
    assert np.all(out > -1.0) and np.all(out < 1.0)
    assert out[..., :3].min() < -0.97 and out[..., :3].max() > 0.97  # margin is small
    np.testing.assert_allclose(norm.normalize_action(np.full(4, 0.04))[3], 0.0, atol=1e-9)
    np.testing.assert_allclose(norm.unnormalize_action(out), actions, atol=1e-9)


def test_unnormalize_clips_to_the_range():
    norm = Normalizer.from_data(*_data())
    wild = np.array([[-7.0, 0.0, 7.0, 3.0]])
    out = norm.unnormalize_action(wild)
    np.testing.assert_allclose(
        out[0, [0, 2, 3]], [norm.action_low[0], norm.action_high[2], norm.action_high[3]]
    )


def test_state_z_score_and_std_floor():
    actions, states = _data()
    norm = Normalizer.from_data(actions, states, std_floor=0.01)
    z = norm.normalize_state(states)
    np.testing.assert_allclose(z[:, :2].mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(z[:, :2].std(axis=0), 1.0, atol=1e-9)
    assert norm.state_std[2] == pytest.approx(0.01)
    assert np.all(np.isfinite(norm.normalize_state(states + 1.0)))


def test_torch_tensors_keep_device_and_dtype():
    norm = Normalizer.from_data(*_data())
    x = torch.zeros(2, 16, 4, dtype=torch.float32)
    y = norm.normalize_action(x)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    np.testing.assert_allclose(y.numpy(), norm.normalize_action(np.zeros((2, 16, 4))), atol=1e-6)
    back = norm.unnormalize_action(torch.full((16, 4), 3.0))
    np.testing.assert_allclose(back.numpy()[0], norm.action_high, rtol=1e-6)
    assert norm.normalize_state(torch.ones(3, dtype=torch.float64)).dtype == torch.float64


def test_json_round_trip(tmp_path):
    norm = Normalizer.from_data(*_data())
    path = norm.save(tmp_path / "stats.json")
    again = Normalizer.load(path)
    assert again.to_dict() == norm.to_dict()
    for name in ("action_low", "action_high", "state_mean", "state_std"):
        assert np.array_equal(getattr(again, name), getattr(norm, name))
    (tmp_path / "bad.json").write_text('{"format": "pickle"}')
    with pytest.raises(ValueError, match=r"bad.json: not a normaliser dict: format is 'pickle'"):
        Normalizer.load(tmp_path / "bad.json")


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"action_low": [0.0, 1.0], "action_high": [1.0, 1.0]}, r"not in dims \[1\]"),
        ({"action_low": [0.0], "action_high": [1.0, 2.0]}, "differ in shape"),
        ({"state_mean": [np.nan]}, "state_mean must be finite"),
        ({"state_std": [[1.0]]}, "state_std must be a non-empty 1-D vector"),
    ],
)
def test_invalid_stats_are_rejected(kwargs, pattern):
    base = {"action_low": [-1.0], "action_high": [1.0], "state_mean": [0.0], "state_std": [1.0], **kwargs}
    with pytest.raises(ValueError, match=pattern):
        Normalizer(**base)


def test_wrong_dimension_and_bad_data():
    norm = Normalizer.identity(4, 3)
    with pytest.raises(ValueError, match="actions has last dimension 5, the normaliser expects 4"):
        norm.normalize_action(np.zeros((16, 5)))
    with pytest.raises(ValueError, match="state has last dimension 2"):
        norm.normalize_state(np.zeros(2))
    with pytest.raises(ValueError, match="actions and states contain NaN|contain NaN"):
        Normalizer.from_data(np.full((3, 2), np.nan), np.zeros((3, 2)))


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, (30, 3), elements=st.floats(-1e3, 1e3, allow_nan=False)))
def test_round_trip_property(actions):
    norm = Normalizer.from_data(actions, np.zeros((2, 1)))
    z = norm.normalize_action(actions)
    assert np.all(np.abs(z) <= 1.0)
    np.testing.assert_allclose(norm.unnormalize_action(z), actions, rtol=1e-9, atol=1e-6)
