"""Start a TinyVLA policy from an official Llava-Pythia VLM initialiser (e.g. lesjie/Llava-Pythia-400M).

The user downloads the checkpoint on their own machine; this loader reads it offline:
    config.json   GPT-NeoX fields + ``model_type: "llava_pythia"`` + nested ``vision_config``:
                  {"vision_tower": CLIP vision fields + mm_vision_select_layer/feature,
                   "mm_projector": {"mm_projector_type", "mm_hidden_size", "hidden_size"}}
    weights       model.safetensors (or sharded *.safetensors + index), else pytorch_model*.bin
                  read with torch.load(weights_only=True) (no code is unpickled)
    tokenizer     tokenizer.json (the Pythia tokenizer), stored again with every checkpoint we save;
                  its files name no pad token: the unk token pads, the official choice (logged)
Key mapping (transformers 4.x names -> ours):
    gpt_neox.embed_in / layers / final_layer_norm   -> backbone.llm.*
    gpt_neox.vision_tower.vision_model.*            -> backbone.vision.*   (no ``vision_model.``)
    gpt_neox.mm_projector.{0,2}.*                   -> backbone.projector.{0,2}.*
    embed_out.*                                     dropped (LM head; the action head is new)
Old buffers (rotary inv_freq, attention.bias / masked_bias, embeddings.position_ids) are skipped;
any other unknown or missing key raises CheckpointMismatchError. The head starts from random init.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from tinyvla_ros.vla.checkpoint import CheckpointMismatchError, skip_weight_init
from tinyvla_ros.vla.config import LLMConfig, TinyVLAConfig, VisionConfig
from tinyvla_ros.vla.normalize import Normalizer
from tinyvla_ros.vla.tokenizer import ensure_pad_token, load_tokenizer

LLM_PREFIX = "gpt_neox."
VISION_PREFIX = "gpt_neox.vision_tower.vision_model."
PROJECTOR_PREFIX = "gpt_neox.mm_projector."
DROPPED_PREFIXES = ("embed_out.", "lm_head.")
_SKIPPED_BUFFERS = re.compile(
    r"(\.rotary_emb\.inv_freq|\.attention\.bias|\.attention\.masked_bias|embeddings\.position_ids)$"
)


def _field(data: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    for name in names:
        if name in data:
            return data[name]
    if default is None:
        raise ValueError(f"Llava-Pythia config lacks {names[0]!r}")
    return default


def read_hf_config(path: str | Path) -> dict[str, Any]:
    """The ``config.json`` dict of a Llava-Pythia directory (checked to be one)."""
    cfg_path = Path(path) / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"no config.json in {path}")
    data = json.loads(cfg_path.read_text())
    if data.get("model_type") != "llava_pythia":
        raise ValueError(f"{cfg_path}: model_type is {data.get('model_type')!r}, expected 'llava_pythia'")
    if "vision_config" not in data or "vision_tower" not in data["vision_config"]:
        raise ValueError(f"{cfg_path}: lacks vision_config.vision_tower")
    return data


def config_from_llava_pythia(hf: Mapping[str, Any], **overrides: Any) -> TinyVLAConfig:
    """TinyVLAConfig with the VLM sizes of a Llava-Pythia ``config.json`` dict and robot ``overrides``
    (camera_names, state_dim, action_dim, chunk_len, head, ...)."""
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    llm = LLMConfig(
        hidden_size=int(_field(hf, "hidden_size")),
        intermediate_size=int(_field(hf, "intermediate_size")),
        num_layers=int(_field(hf, "num_hidden_layers")),
        num_heads=int(_field(hf, "num_attention_heads")),
        vocab_size=int(_field(hf, "vocab_size")),
        rotary_pct=float(_field(hf, "rotary_pct", default=rope.get("partial_rotary_factor", 0.25))),
        rotary_base=float(_field(hf, "rotary_emb_base", default=rope.get("rope_theta", 10000.0))),
        max_position_embeddings=int(_field(hf, "max_position_embeddings", default=2048)),
        layer_norm_eps=float(_field(hf, "layer_norm_eps", default=1e-5)),
        use_parallel_residual=bool(_field(hf, "use_parallel_residual", default=True)),
        hidden_act=str(_field(hf, "hidden_act", default="gelu")),
    )
    tower = hf["vision_config"]["vision_tower"]
    vision = VisionConfig(
        hidden_size=int(_field(tower, "hidden_size")),
        intermediate_size=int(_field(tower, "intermediate_size")),
        num_layers=int(_field(tower, "num_hidden_layers")),
        num_heads=int(_field(tower, "num_attention_heads")),
        patch_size=int(_field(tower, "patch_size")),
        select_layer=int(_field(tower, "mm_vision_select_layer", default=-2)),
        select_feature=str(_field(tower, "mm_vision_select_feature", default="patch")),
        hidden_act=str(_field(tower, "hidden_act", default="quick_gelu")),
        layer_norm_eps=float(_field(tower, "layer_norm_eps", default=1e-5)),
    )
    projector = hf["vision_config"].get("mm_projector", {})
    projector_type = str(projector.get("mm_projector_type", "mlp2x_gelu"))
    for key, want in (("mm_hidden_size", vision.hidden_size), ("hidden_size", llm.hidden_size)):
        if key in projector and int(projector[key]) != want:
            raise CheckpointMismatchError(f"vision_config.mm_projector.{key}", int(projector[key]), want)
    base = dict(
        name="llava-pythia",
        image_size=int(_field(tower, "image_size")),
        tokenizer="external",
        projector_type=projector_type,
        vision=vision,
        llm=llm,
    )
    return TinyVLAConfig(**base).replace(**overrides) if overrides else TinyVLAConfig(**base)


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a HF checkpoint directory (safetensors preferred, then weights-only torch.load)."""
    from safetensors.torch import load_file

    shards = sorted(path.glob("*.safetensors"))
    if shards:
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_file(str(shard), device="cpu"))
        return state
    bins = sorted(path.glob("pytorch_model*.bin"))
    if not bins:
        raise FileNotFoundError(f"no *.safetensors or pytorch_model*.bin weights in {path}")
    state = {}
    for shard in bins:
        state.update(torch.load(shard, map_location="cpu", weights_only=True))
    return state


def map_llava_pythia_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official key names -> TinyVLAPolicy ``backbone.*`` names (see module docstring).

    Raises CheckpointMismatchError naming the first key that belongs to no known part.
    """
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(DROPPED_PREFIXES) or _SKIPPED_BUFFERS.search(key):
            continue
        if key.startswith(VISION_PREFIX):
            mapped["backbone.vision." + key[len(VISION_PREFIX) :]] = value
        elif key.startswith(PROJECTOR_PREFIX):
            mapped["backbone.projector." + key[len(PROJECTOR_PREFIX) :]] = value
        elif key.startswith(LLM_PREFIX) and key[len(LLM_PREFIX) :].split(".")[0] in (
            "embed_in",
            "layers",
            "final_layer_norm",
        ):
            mapped["backbone.llm." + key[len(LLM_PREFIX) :]] = value
        else:
            raise CheckpointMismatchError(
                "weight key", key, "a gpt_neox / vision_tower / mm_projector / embed_out key"
            )
    return mapped


def load_llava_pythia(
    path: str | Path,
    normalizer: Normalizer | None = None,
    tokenizer: Any = None,
    **overrides: Any,
) -> Any:
    """TinyVLAPolicy with backbone weights from a Llava-Pythia directory and a new random head.

    overrides: robot and head fields, e.g. camera_names=("left", "right"), state_dim=7,
    action_dim=10. Every backbone weight must be present with the right shape (else
    CheckpointMismatchError naming the key); the loaded weights are copied exactly.
    """
    from tinyvla_ros.vla.policy import TinyVLAPolicy

    path = Path(path)
    hf = read_hf_config(path)
    config = config_from_llava_pythia(hf, **overrides)
    if tokenizer is None:
        tokenizer = load_tokenizer(path)  # no pad token named (as downloaded): the unk token pads
    else:
        tokenizer = ensure_pad_token(tokenizer, where=str(path))
    mapped = map_llava_pythia_keys(_load_tensors(path))
    with skip_weight_init():  # the backbone is overwritten below; only the head needs a random init
        policy = TinyVLAPolicy(config, tokenizer=tokenizer, normalizer=normalizer)
    for module in policy.head.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    own = {k: v for k, v in policy.state_dict().items() if k.startswith("backbone.")}
    missing = sorted(set(own) - set(mapped))
    unexpected = sorted(set(mapped) - set(own))
    if missing or unexpected:
        raise CheckpointMismatchError(
            "backbone weights",
            f"{len(unexpected)} unexpected {unexpected[:5]}",
            f"{len(missing)} missing {missing[:5]}",
            str(path),
        )
    for key, value in mapped.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointMismatchError(
                f"shape of {key}", tuple(value.shape), tuple(own[key].shape), str(path)
            )
    with torch.no_grad():
        for key, value in mapped.items():
            own[key].copy_(value)
    return policy
