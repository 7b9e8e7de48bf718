"""Checkpoints: bit-identical round trip, seeds, mismatch errors, no pickle, the test helper."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import camera_images

from tinyvla_ros.vla.checkpoint import CheckpointMismatchError as CheckpointMismatchFromModule
from tinyvla_ros.vla.normalize import Normalizer
from tinyvla_ros.vla.policy import CheckpointMismatchError, TinyVLAPolicy
from tinyvla_ros.vla.testing import make_tiny_checkpoint

PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04")  # raw pickle / torch zip


def _assert_same_state(a: TinyVLAPolicy, b: TinyVLAPolicy) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


def test_round_trip_is_bit_identical(make_policy, tmp_path):
    policy = make_policy(camera_names=("left", "right"), action_names=tuple(f"j{i}" for i in range(10)))
    policy.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.json",
        "model.safetensors",
        "stats.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    for path in tmp_path.iterdir():
        assert not path.read_bytes()[:4].startswith(PICKLE_MAGIC), path.name
    loaded = TinyVLAPolicy.from_pretrained(tmp_path)
    assert loaded.config == policy.config
    assert loaded.normalizer.to_dict() == policy.normalizer.to_dict()
    _assert_same_state(policy, loaded)
    images = camera_images(2, shape=(60, 90))
    state = np.linspace(-1, 1, 7)
    a = policy.predict_chunk(images, "pick up the red cube", state, seed=11)
    b = loaded.predict_chunk(images, "pick up the red cube", state, seed=11)
    assert np.array_equal(a, b)
    assert (
        loaded.tokenize("pick up the red cube")[0].tolist()
        == policy.tokenize("pick up the red cube")[0].tolist()
    )


def test_seed_determinism_independent_of_global_rng(make_policy):
    policy = make_policy()
    images, state = camera_images(2), np.zeros(7)
    torch.manual_seed(1)
    a = policy.predict_chunk(images, "go", state, seed=5)
    torch.manual_seed(2)
    torch.randn(100)
    b = policy.predict_chunk(images, "go", state, seed=5)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, policy.predict_chunk(images, "go", state, seed=6))
    assert not np.array_equal(
        policy.predict_chunk(images, "go", state), policy.predict_chunk(images, "go", state)
    )
    noise = np.random.default_rng(0).normal(size=(16, 10)).astype(np.float32)
    c = policy.predict_chunk(images, "go", state, initial_noise=noise)
    assert np.array_equal(c, policy.predict_chunk(images, "go", state, seed=99, initial_noise=noise))
    policy.train()
    assert np.array_equal(a, policy.predict_chunk(images, "go", state, seed=5)) and policy.training


def test_lora_checkpoint_round_trip(make_policy, tmp_path):
    policy = make_policy()
    policy.apply_lora("paper")
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    policy.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["lora_applied"] is True
    loaded = TinyVLAPolicy.from_pretrained(tmp_path)
    assert loaded.lora_applied and loaded.config.lora.variant == "paper"
    _assert_same_state(policy, loaded)


@pytest.mark.parametrize(
    ("expected", "field", "have", "want"),
    [
        ({"action_dim": 14}, "action_dim", 10, 14),
        ({"state_dim": 14, "action_dim": 10}, "state_dim", 7, 14),
        (
            {"camera_names": ["left_wrist", "right_wrist", "top"]},
            "camera_names",
            ("left", "right"),
            ("left_wrist", "right_wrist", "top"),
        ),
        ({"chunk_len": 32}, "chunk_len", 16, 32),
    ],
)
def test_expected_mismatch_is_named(make_policy, tmp_path, expected, field, have, want):
    make_policy(camera_names=("left", "right")).save_pretrained(tmp_path)
    with pytest.raises(CheckpointMismatchError) as info:
        TinyVLAPolicy.from_pretrained(tmp_path, expected=expected)
    err = info.value
    assert isinstance(err, ValueError) and CheckpointMismatchError is CheckpointMismatchFromModule
    assert (err.field, err.checkpoint_value, err.expected_value) == (field, have, want)
    assert field in str(err) and repr(have) in str(err) and repr(want) in str(err)
    ok = TinyVLAPolicy.from_pretrained(
        tmp_path, expected={"action_dim": 10, "state_dim": 7, "camera_names": ["left", "right"]}
    )
    assert ok.config.camera_names == ("left", "right")
    with pytest.raises(ValueError, match="unknown field"):
        TinyVLAPolicy.from_pretrained(tmp_path, expected={"robot": "ur5"})


def test_weights_that_do_not_fit_the_config_are_named(make_policy, tmp_path):
    make_policy().save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    data["action_dim"] = 14
    (tmp_path / "config.json").write_text(json.dumps(data))
    Normalizer.identity(14, 7).save(tmp_path / "stats.json")
    with pytest.raises(
        CheckpointMismatchError,
        match=r"shape of head\.unet\.\S+ is \(32, 10, 5\) in the checkpoint but \(32, 14, 5\) is expected",
    ):
        TinyVLAPolicy.from_pretrained(tmp_path)


def test_broken_checkpoints_raise_clear_errors(make_policy, tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint directory not found"):
        TinyVLAPolicy.from_pretrained(tmp_path / "missing")
    make_policy().save_pretrained(tmp_path)
    Normalizer.identity(8, 7).save(tmp_path / "stats.json")
    with pytest.raises(CheckpointMismatchError, match="stats.json"):
        TinyVLAPolicy.from_pretrained(tmp_path)
    (tmp_path / "stats.json").unlink()
    with pytest.raises(FileNotFoundError, match="lacks stats.json"):
        TinyVLAPolicy.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        TinyVLAPolicy.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava_pythia"}))
    with pytest.raises(ValueError, match="load_llava_pythia"):
        TinyVLAPolicy.from_pretrained(tmp_path)


def test_saving_needs_stats(make_policy, tmp_path):
    policy = make_policy()
    policy.normalizer = None
    with pytest.raises(RuntimeError, match="normalisation statistics"):
        policy.save_pretrained(tmp_path)


def test_make_tiny_checkpoint(tmp_path):
    low, high = (
        [-2.9, -1.8, -2.9, -3.1, -2.9, -0.0175, -2.9, 0.0],
        [2.9, 1.8, 2.9, -0.07, 2.9, 3.75, 2.9, 0.08],
    )
    path = make_tiny_checkpoint(
        tmp_path / "ck",
        ["left", "right"],
        state_dim=8,
        action_dim=8,
        seed=3,
        action_low=low,
        action_high=high,
    )
    policy = TinyVLAPolicy.from_pretrained(
        path, expected={"camera_names": ["left", "right"], "state_dim": 8, "action_dim": 8}
    )
    chunk = policy.predict_chunk(camera_images(2), "go", np.zeros(8), seed=0)
    assert chunk.shape == (16, 8)
    assert np.all(chunk >= np.array(low) - 1e-6) and np.all(chunk <= np.array(high) + 1e-6)
    again = make_tiny_checkpoint(
        tmp_path / "again", ["left", "right"], 8, 8, seed=3, action_low=low, action_high=high
    )
    assert (again / "model.safetensors").read_bytes() == (path / "model.safetensors").read_bytes()
    other = make_tiny_checkpoint(tmp_path / "other", ["left", "right"], 8, 8, seed=4)
    assert (other / "model.safetensors").read_bytes() != (path / "model.safetensors").read_bytes()
