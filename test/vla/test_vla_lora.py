"""LoRA through peft: targets, freezing, trainable accounting, merge equality."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import camera_images
from peft.tuners.lora import LoraLayer

from tinyvla_ros.vla.config import LORA_TARGETS


def _randomise_lora_b(policy, seed: int = 0) -> None:
    """LoRA B starts at zero (a no-op); give it weights so the merge has something to fold."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=g) * 0.05)


def _adapted(policy, part: str) -> set[str]:
    module = getattr(policy.backbone, part)
    return {name.rsplit(".", 1)[-1] for name, m in module.named_modules() if isinstance(m, LoraLayer)}


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_lora_targets_and_freezing(make_policy, variant):
    policy = make_policy()
    counts = policy.apply_lora(variant)
    assert policy.lora_applied and policy.config.lora.variant == variant
    assert _adapted(policy, "llm") == set(LORA_TARGETS[variant]["llm"])
    assert _adapted(policy, "vision") == set(LORA_TARGETS[variant]["vision"])
    c = policy.config
    per_llm = len(LORA_TARGETS[variant]["llm"])
    assert counts == {
        "llm": per_llm * c.llm.num_layers,
        "vision": len(LORA_TARGETS[variant]["vision"]) * c.vision.num_layers,
    }
    for name, param in policy.named_parameters():
        in_backbone_base = name.startswith(("backbone.llm.", "backbone.vision.")) and "lora_" not in name
        assert param.requires_grad == (not in_backbone_base), name
    lora_a = policy.backbone.llm.layers[0].attention.query_key_value.lora_A["default"].weight
    assert lora_a.shape == (c.lora.r, c.llm.hidden_size)


def test_official_lora_settings_on_paper_presets():
    from tinyvla_ros.vla.config import get_config

    s = get_config("tinyvla-s").lora
    assert (s.r, s.alpha, s.dropout, s.variant, s.lr, s.base_lr) == (64, 256, 0.05, "official", 2e-4, 2e-5)


def test_trainable_fraction_reported(make_policy):
    policy = make_policy()
    base = policy.parameter_summary()
    assert base["trainable_percent"] == 100.0 and base["lora"] == 0
    policy.apply_lora("official")
    s = policy.parameter_summary()
    expected = base["parts"]["projector"] + base["parts"]["head"] + s["lora"]
    assert s["trainable"] == expected
    assert s["trainable_percent"] == pytest.approx(100 * expected / s["total"], abs=1e-3)
    groups = policy.optimizer_param_groups()
    assert [g["lr"] for g in groups] == [2e-4, 2e-5]
    assert sum(p.numel() for p in groups[0]["params"]) == s["lora"]


def test_merge_gives_a_plain_model_with_equal_outputs(make_policy):
    policy = make_policy(camera_names=("a", "b"))
    plain_keys = set(policy.state_dict())
    policy.apply_lora("official")
    _randomise_lora_b(policy)
    merged = copy.deepcopy(policy).merge_lora()
    assert not merged.lora_applied and set(merged.state_dict()) == plain_keys
    assert all(p.requires_grad for p in merged.parameters())

    pixels = torch.rand(2, 2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    ids, mask = policy.tokenize_batch(["pick up the red cube", "open the drawer"])
    state = torch.randn(2, policy.config.state_dim, generator=torch.Generator().manual_seed(6))
    noisy = torch.randn(2, 16, policy.config.action_dim, generator=torch.Generator().manual_seed(7))
    steps = torch.tensor([3, 77])
    with torch.no_grad():
        cond_lora = policy.encode_observation(pixels, ids, mask, state)
        cond_merged = merged.encode_observation(pixels, ids, mask, state)
        eps_lora = policy.denoise(noisy, steps, cond_lora)
        eps_merged = merged.denoise(noisy, steps, cond_merged)
        plain = make_policy(camera_names=("a", "b"))
        cond_plain = plain.encode_observation(pixels, ids, mask, state)
    assert float((cond_lora - cond_merged).abs().max()) <= 1e-5
    assert float((eps_lora - eps_merged).abs().max()) <= 1e-5
    assert float((cond_lora - cond_plain).abs().max()) > 1e-3  # the adapters did change the model
    images = camera_images(2)
    a = policy.predict_chunk(images, "pick up the red cube", np.zeros(7), seed=1)
    b = merged.predict_chunk(images, "pick up the red cube", np.zeros(7), seed=1)
    assert np.abs(a - b).max() <= 1e-4


def test_lora_misuse_raises(make_policy):
    policy = make_policy()
    with pytest.raises(RuntimeError, match="no LoRA adapters to merge"):
        policy.merge_lora()
    policy.apply_lora()
    with pytest.raises(RuntimeError, match="already applied"):
        policy.apply_lora()
    with pytest.raises(ValueError, match="variant must be one of"):
        make_policy().apply_lora("qkv")
    with pytest.raises(ValueError, match="match no Linear layer"):
        make_policy(lora={"llm_targets": ("nonexistent",)}).apply_lora()
