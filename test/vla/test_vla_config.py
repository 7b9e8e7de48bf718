"""Configuration: presets, overrides, validation messages, JSON round trip."""

from __future__ import annotations

import json

import pytest

from tinyvla_ros.vla.config import PRESETS, HeadConfig, TinyVLAConfig, VisionConfig, get_config


def test_presets_listed_and_built():
    assert set(PRESETS) == {"tinyvla-s", "tinyvla-b", "tinyvla-h", "nano", "micro", "cpu-lite0", "cpu-conv"}
    for name in PRESETS:
        c = get_config(name)
        assert c.name == name
        assert c.chunk_len == 16 and c.num_inference_steps == 10 and c.num_train_steps == 100
        assert c.beta_schedule == "squaredcos_cap_v2" and c.projector_type == "mlp2x_gelu"
        assert c.vision.select_layer == -2 and c.vision.select_feature == "patch"
        assert c.head.kernel_size == 5 and c.head.n_groups == 8 and len(c.head.down_dims) == 3


def test_paper_presets_match_the_paper():
    s, b, h = (get_config(n) for n in ("tinyvla-s", "tinyvla-b", "tinyvla-h"))
    assert (s.llm.hidden_size, s.llm.num_layers) == (512, 6)  # Pythia-70M
    assert (b.llm.hidden_size, b.llm.num_layers) == (1024, 24)  # Pythia-410M
    assert (h.llm.hidden_size, h.llm.num_layers) == (2048, 16)  # Pythia-1B
    for c in (s, b, h):
        assert c.image_size == 336 and c.vision.patch_size == 14 and c.image_tokens_per_camera == 576
        assert c.head.down_dims == (256, 512, 1024) and c.head.step_embed_dim == 256
        assert (c.lora.r, c.lora.alpha, c.lora.dropout) == (64, 256, 0.05)


def test_overrides_top_level_and_nested():
    c = get_config("nano", action_dim=14, camera_names=["l", "r", "top"], head={"kernel_size": 3})
    assert c.action_dim == 14 and c.camera_names == ("l", "r", "top") and c.head.kernel_size == 3
    assert c.head.down_dims == get_config("nano").head.down_dims  # untouched nested fields kept
    with pytest.raises(ValueError, match="unknown config field"):
        get_config("nano", action_dims=14)
    with pytest.raises(ValueError, match="unknown head field"):
        get_config("nano", head={"kernel": 3})
    with pytest.raises(ValueError, match="unknown preset 'tiny'"):
        get_config("tiny")


def test_json_round_trip_is_exact():
    for name in PRESETS:
        c = get_config(name, action_names=tuple(f"a{i}" for i in range(10)))
        again = TinyVLAConfig.from_dict(json.loads(json.dumps(c.to_dict())))
        assert again == c


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"chunk_len": 18}, r"chunk_len \(18\) must be divisible by 4"),
        ({"camera_names": ("a", "a")}, r"camera_names must be unique, got \('a', 'a'\)"),
        ({"camera_names": ()}, "camera_names must be a non-empty tuple"),
        ({"action_dim": 0}, r"config.action_dim must be an integer >= 1, got 0"),
        ({"state_dim": 7.5}, r"config.state_dim must be an integer >= 1, got 7.5"),
        ({"action_names": ("x", "y")}, "action_names has 2 entries but action_dim is 10"),
        ({"image_size": 60}, r"image_size \(60\) must be divisible by vision.patch_size \(16\)"),
        ({"num_inference_steps": 200}, r"num_inference_steps \(200\) must be <= num_train_steps \(100\)"),
        ({"beta_schedule": "cosine"}, "beta_schedule must be one of"),
        ({"pooling": "max"}, "pooling must be one of"),
        ({"prompt_template": "USER: {instruction}"}, "must contain '<image>'"),
        ({"prompt_template": "{instruction} <image>"}, "must put '<image>' before"),
        ({"projector_type": "mlp2x_relu"}, "projector_type must be"),
        ({"lora": {"variant": "all"}}, "lora.variant must be one of"),
        ({"head": {"down_dims": (30, 64)}}, "divisible by head.n_groups"),
        ({"head": {"kernel_size": 4}}, "head.kernel_size must be odd"),
        ({"vision": {"select_layer": -9}}, "vision.select_layer must be an integer in"),
        ({"llm": {"num_heads": 3}}, r"llm.hidden_size \(128\) must be divisible by llm.num_heads \(3\)"),
        ({"max_text_tokens": 3000}, "exceeds llm.max_position_embeddings"),
    ],
)
def test_validation_names_field_and_value(overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        get_config("nano", **overrides)


def test_derived_sizes():
    c = get_config("nano", camera_names=("a", "b", "c"))
    assert c.image_tokens_per_camera == (c.image_size // c.vision.patch_size) ** 2
    assert c.sequence_length == 3 * c.image_tokens_per_camera + c.max_text_tokens
    assert c.cond_dim == c.llm.hidden_size
    assert VisionConfig(num_layers=24, select_layer=-2).layers_used == 23
    assert VisionConfig(num_layers=24, select_layer=5).layers_used == 5
    assert HeadConfig(down_dims=(8, 16, 32, 64)).chunk_multiple == 8
    with pytest.raises(ValueError, match=r"chunk_len \(12\) must be divisible by 8"):
        get_config("nano", chunk_len=12, head={"down_dims": (32, 32, 64, 64)})


def test_from_dict_rejects_unknown_fields():
    data = get_config("nano").to_dict()
    data["vision"]["colour"] = 1
    with pytest.raises(ValueError, match=r"unknown vision field\(s\) \['colour'\]"):
        TinyVLAConfig.from_dict(data)
