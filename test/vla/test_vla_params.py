"""Parameter counts of the paper presets (meta device) and LoRA trainable fractions."""

from __future__ import annotations

import pytest
import torch

from tinyvla_ros.vla.config import PAPER_PARAMETERS, get_config
from tinyvla_ros.vla.policy import TinyVLAPolicy


def meta_policy(name: str, lora: str | None = None, **overrides) -> TinyVLAPolicy:
    with torch.device("meta"):
        policy = TinyVLAPolicy(get_config(name, **overrides))
        if lora:
            policy.apply_lora(lora)
    return policy


@pytest.mark.parametrize("name", ["tinyvla-s", "tinyvla-b", "tinyvla-h"])
def test_paper_parameter_counts_within_3_percent(name):
    summary = meta_policy(name).parameter_summary()
    paper = PAPER_PARAMETERS[name]
    assert abs(summary["total"] - paper) / paper < 0.03, (summary, paper)
    parts = summary["parts"]
    assert sum(parts.values()) == summary["total"]
    # CLIP ViT-L/14-336 vision tower (all 24 layers, as LLaVA keeps them) is ~303.5M.
    assert abs(parts["vision"] - 303.5e6) < 0.5e6
    # The head is ~73M (S) to ~99M (H) (tinyvla.md).
    assert 70e6 < parts["head"] < 101e6


def test_head_grows_with_llm_width_only_through_the_condition():
    s, h = (meta_policy(n).parameter_summary()["parts"]["head"] for n in ("tinyvla-s", "tinyvla-h"))
    assert abs(s - 73e6) / 73e6 < 0.03 and abs(h - 99e6) / 99e6 < 0.03


def test_action_dim_changes_only_the_head():
    franka = meta_policy("tinyvla-h").parameter_summary()["parts"]
    ur5 = meta_policy(
        "tinyvla-h", action_dim=14, state_dim=14, camera_names=("l", "r", "top")
    ).parameter_summary()
    for part in ("vision", "projector", "llm"):
        assert ur5["parts"][part] == franka[part]
    assert ur5["parts"]["head"] != franka["head"]


def test_lora_trainable_fractions_for_tinyvla_s():
    base = meta_policy("tinyvla-s").parameter_summary()
    official = meta_policy("tinyvla-s", lora="official").parameter_summary()
    paper = meta_policy("tinyvla-s", lora="paper").parameter_summary()
    head_and_projector = base["parts"]["head"] + base["parts"]["projector"]
    for s in (official, paper):
        assert s["total"] == base["total"] + s["lora"]
        assert s["trainable"] == s["lora"] + head_and_projector  # LLM and vision base weights frozen
    assert 0 < paper["lora"] < official["lora"]
    # official: r=64 on every Linear of 6 Pythia-70M layers and 24 CLIP-L layers
    per_llm_layer = 64 * ((512 + 1536) + (512 + 512) + (512 + 2048) + (2048 + 512))
    per_clip_layer = 64 * (4 * (1024 + 1024) + 2 * (1024 + 4096))
    assert official["lora"] == 6 * per_llm_layer + 24 * per_clip_layer
