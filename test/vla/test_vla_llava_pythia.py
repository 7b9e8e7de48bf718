"""The Llava-Pythia initialiser loader on a small checkpoint written here in the official layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import camera_images
from safetensors.torch import save_file

from tinyvla_ros.vla.checkpoint import CheckpointMismatchError
from tinyvla_ros.vla.cli import main as cli_main
from tinyvla_ros.vla.config import get_config
from tinyvla_ros.vla.llava_pythia import load_llava_pythia
from tinyvla_ros.vla.normalize import Normalizer
from tinyvla_ros.vla.policy import TinyVLAPolicy


def _official_config(c) -> dict:
    """A config.json as the official Llava-Pythia code writes it (GPT-NeoX fields + vision_config)."""
    return {
        "architectures": ["LlavaPythiaForCausalLM"],
        "model_type": "llava_pythia",
        "hidden_size": c.llm.hidden_size,
        "intermediate_size": c.llm.intermediate_size,
        "num_hidden_layers": c.llm.num_layers,
        "num_attention_heads": c.llm.num_heads,
        "vocab_size": c.llm.vocab_size,
        "rotary_pct": 0.25,
        "rotary_emb_base": 10000,
        "max_position_embeddings": 2048,
        "layer_norm_eps": 1e-5,
        "use_parallel_residual": True,
        "hidden_act": "gelu",
        "torch_dtype": "float32",
        "vision_config": {
            "vision_tower": {
                "model_type": "llava_pythia_clip_vision_model",
                "hidden_size": c.vision.hidden_size,
                "intermediate_size": c.vision.intermediate_size,
                "projection_dim": 32,
                "num_hidden_layers": c.vision.num_layers,
                "num_attention_heads": c.vision.num_heads,
                "num_channels": 3,
                "image_size": c.image_size,
                "patch_size": c.vision.patch_size,
                "hidden_act": "quick_gelu",
                "layer_norm_eps": 1e-5,
                "mm_vision_select_feature": "patch",
                "mm_vision_select_layer": -2,
            },
            "mm_projector": {
                "model_type": "llava_pythia_projector",
                "mm_projector_type": "mlp2x_gelu",
                "mm_hidden_size": c.vision.hidden_size,
                "hidden_size": c.llm.hidden_size,
            },
        },
    }


def _official_state(source: TinyVLAPolicy) -> dict[str, torch.Tensor]:
    """``source``'s backbone under transformers-4.x Llava-Pythia names, plus old buffers and embed_out."""
    state: dict[str, torch.Tensor] = {}
    for key, value in source.state_dict().items():
        if key.startswith("backbone.llm."):
            state["gpt_neox." + key[len("backbone.llm.") :]] = value.clone()
        elif key.startswith("backbone.vision."):
            state["gpt_neox.vision_tower.vision_model." + key[len("backbone.vision.") :]] = value.clone()
        elif key.startswith("backbone.projector."):
            state["gpt_neox.mm_projector." + key[len("backbone.projector.") :]] = value.clone()
    c = source.config
    state["embed_out.weight"] = torch.randn(c.llm.vocab_size, c.llm.hidden_size)
    for i in range(c.llm.num_layers):
        state[f"gpt_neox.layers.{i}.attention.rotary_emb.inv_freq"] = torch.rand(8)
        state[f"gpt_neox.layers.{i}.attention.bias"] = torch.ones(1, 1, 16, 16, dtype=torch.bool)
        state[f"gpt_neox.layers.{i}.attention.masked_bias"] = torch.tensor(-1e9)
    state["gpt_neox.vision_tower.vision_model.embeddings.position_ids"] = torch.arange(65)[None]
    return state


def _write_official(path: Path, source: TinyVLAPolicy, state: dict | None = None, shards: int = 1) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(_official_config(source.config), indent=2))
    state = _official_state(source) if state is None else state
    keys = sorted(state)
    for i in range(shards):
        part = {k: state[k].contiguous() for k in keys[i::shards]}
        save_file(
            part, str(path / f"model-{i + 1:05d}-of-{shards:05d}.safetensors"), metadata={"format": "pt"}
        )
    source.tokenizer.save_pretrained(str(path))
    return path


@pytest.fixture
def source(make_policy) -> TinyVLAPolicy:
    return make_policy(seed=42, tokenizer="tiny")


@pytest.mark.parametrize("shards", [1, 3])
def test_loader_reproduces_the_weights_exactly(source, tmp_path, shards):
    path = _write_official(tmp_path / "llava-pythia", source, shards=shards)
    policy = load_llava_pythia(path, camera_names=("left", "right", "top"), state_dim=14, action_dim=14)
    c = policy.config
    assert (c.llm.hidden_size, c.llm.num_layers, c.vision.hidden_size, c.image_size) == (128, 2, 64, 64)
    assert c.camera_names == ("left", "right", "top") and c.action_dim == 14 and c.tokenizer == "external"
    ours = policy.state_dict()
    backbone_keys = [k for k in source.state_dict() if k.startswith("backbone.")]
    assert backbone_keys
    for key in backbone_keys:
        assert torch.equal(ours[key], source.state_dict()[key]), key
    assert ours["head.unet.final.1.weight"].shape == (14, c.head.down_dims[0], 1)  # new head for 14-D actions
    for key, value in ours.items():  # the new head is randomly initialised, not left as raw memory
        if key.startswith("head.") and value.ndim > 1:
            assert torch.isfinite(value).all() and 0.0 < float(value.std()) < 1.0, key
    policy.normalizer = Normalizer.identity(14, 14)
    chunk = policy.predict_chunk(camera_images(3), "pick up the bread", np.zeros(14), seed=0)
    assert chunk.shape == (16, 14) and np.all(np.isfinite(chunk))
    out = tmp_path / "tinyvla"
    policy.save_pretrained(out)  # the Pythia tokenizer travels with the checkpoint
    assert TinyVLAPolicy.from_pretrained(out).tokenize("go")[0].tolist() == policy.tokenize("go")[0].tolist()


def test_unknown_missing_and_misshaped_keys_are_errors(source, tmp_path):
    state = _official_state(source)
    state["gpt_neox.extra_adapter.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointMismatchError, match="gpt_neox.extra_adapter.weight"):
        load_llava_pythia(_write_official(tmp_path / "a", source, state), action_dim=10)
    state = _official_state(source)
    del state["gpt_neox.mm_projector.2.bias"]
    with pytest.raises(CheckpointMismatchError, match=r"missing \['backbone.projector.2.bias'\]"):
        load_llava_pythia(_write_official(tmp_path / "b", source, state), action_dim=10)
    state = _official_state(source)
    state["gpt_neox.embed_in.weight"] = torch.zeros(1024, 96)
    with pytest.raises(
        CheckpointMismatchError, match=r"shape of backbone.llm.embed_in.weight is \(1024, 96\)"
    ):
        load_llava_pythia(_write_official(tmp_path / "c", source, state), action_dim=10)


def test_projector_size_mismatch_in_config(source, tmp_path):
    path = _write_official(tmp_path / "d", source)
    data = json.loads((path / "config.json").read_text())
    data["vision_config"]["mm_projector"]["mm_hidden_size"] = 1024
    (path / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointMismatchError, match="mm_hidden_size is 1024 in the checkpoint but 64"):
        load_llava_pythia(path)
    data["model_type"] = "gpt_neox"
    (path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="expected 'llava_pythia'"):
        load_llava_pythia(path)


def test_cli_reads_a_llava_pythia_directory(source, tmp_path, capsys):
    path = _write_official(tmp_path / "e", source)
    assert cli_main(["info", str(path), "--set", "action_dim=14"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["source"] == "llava-pythia" and summary["action_dim"] == 14
    # VLM sizes from the checkpoint, the paper's head (256, 512, 1024) by default
    expected = get_config(
        "nano",
        action_dim=14,
        tokenizer="external",
        head={"down_dims": (256, 512, 1024), "step_embed_dim": 256},
    )
    with torch.device("meta"):
        total = TinyVLAPolicy(expected).parameter_summary()["total"]
    assert summary["parameters"]["total"] == total
