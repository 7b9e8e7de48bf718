"""The Llava-Pythia backbone: CLIP vision tower + projector + GPT-NeoX LLM (transformers classes).

Shapes (glossary): B batch, N cameras, S image side, P image tokens per camera, H LLM hidden
size, Hv vision hidden size, L text tokens (with the placeholder), L' = L - 1 + N * P.

    pixel_values (B, N, 3, S, S) in [0, 1]
      -> CLIP mean/std normalisation -> CLIPVisionModel, each camera on its own
      -> hidden state ``select_layer`` (default -2), CLS dropped        (B, N, P, Hv)
      -> projector (mlp2x_gelu: Linear, GELU, Linear)                    (B, N * P, H)
    input_ids (B, L) with IMAGE_TOKEN_INDEX at ``image_position``
      -> embed_in; the N * P image tokens replace the placeholder        (B, L', H)
      -> GPTNeoXModel (last hidden state, after final LayerNorm)         (B, L', H)
"""

from __future__ import annotations

import re

import torch
from torch import nn

from tinyvla_ros.vla.config import TinyVLAConfig
from tinyvla_ros.vla.preprocess import CLIP_MEAN, CLIP_STD
from tinyvla_ros.vla.tokenizer import IMAGE_TOKEN_INDEX


def _transformers():
    try:
        from transformers import CLIPVisionConfig, CLIPVisionModel, GPTNeoXConfig, GPTNeoXModel
    except ImportError as exc:  # pragma: no cover - transformers is in requirements/ml.txt
        raise ImportError(
            "the TinyVLA backbone needs transformers: pip install -r requirements/ml.txt"
        ) from exc
    return CLIPVisionConfig, CLIPVisionModel, GPTNeoXConfig, GPTNeoXModel


def build_projector(projector_type: str, vision_hidden: int, llm_hidden: int) -> nn.Sequential:
    """'linear' -> Sequential(Linear); 'mlp<N>x_gelu' -> Linear, (GELU, Linear) x (N - 1).

    Module indices match LLaVA's ``mm_projector`` (mlp2x_gelu: Linear at 0 and 2).
    """
    match = re.match(r"^mlp(\d+)x_gelu$", projector_type)
    depth = int(match.group(1)) if match else 1
    layers: list[nn.Module] = [nn.Linear(vision_hidden, llm_hidden)]
    for _ in range(depth - 1):
        layers += [nn.GELU(), nn.Linear(llm_hidden, llm_hidden)]
    return nn.Sequential(*layers)


def vision_model_config(config: TinyVLAConfig):
    """transformers CLIPVisionConfig of ``config``."""
    clip_config_cls = _transformers()[0]
    v = config.vision
    return clip_config_cls(
        hidden_size=v.hidden_size,
        intermediate_size=v.intermediate_size,
        num_hidden_layers=v.num_layers,
        num_attention_heads=v.num_heads,
        image_size=config.image_size,
        patch_size=v.patch_size,
        hidden_act=v.hidden_act,
        layer_norm_eps=v.layer_norm_eps,
        num_channels=3,
    )


def llm_model_config(config: TinyVLAConfig):
    """transformers GPTNeoXConfig of ``config`` (no LM head is built)."""
    neox_config_cls = _transformers()[2]
    m = config.llm
    return neox_config_cls(
        vocab_size=m.vocab_size,
        hidden_size=m.hidden_size,
        num_hidden_layers=m.num_layers,
        num_attention_heads=m.num_heads,
        intermediate_size=m.intermediate_size,
        hidden_act=m.hidden_act,
        rotary_pct=m.rotary_pct,
        rotary_emb_base=m.rotary_base,
        max_position_embeddings=m.max_position_embeddings,
        layer_norm_eps=m.layer_norm_eps,
        use_parallel_residual=m.use_parallel_residual,
        use_cache=False,
        tie_word_embeddings=False,
    )


class TinyVLABackbone(nn.Module):
    """CLIP vision tower (``vision``), projector (``projector``), GPT-NeoX (``llm``)."""

    def __init__(self, config: TinyVLAConfig) -> None:
        super().__init__()
        _, clip_model_cls, _, neox_model_cls = _transformers()
        self.config = config
        self.vision = clip_model_cls(vision_model_config(config))
        self.projector = build_projector(
            config.projector_type, config.vision.hidden_size, config.llm.hidden_size
        )
        self.llm = neox_model_cls(llm_model_config(config))
        self.register_buffer("pixel_mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def _vision_layers(self) -> nn.ModuleList:
        return self.vision.encoder.layers

    def vision_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B*N, 3, S, S) CLIP-normalised -> selected hidden state (B*N, 1 + P, Hv).

        Runs only the encoder layers the selected hidden state depends on (the last one is
        skipped with select_layer -2): same result as output_hidden_states[select_layer].
        """
        tower = self.vision
        hidden = tower.pre_layrnorm(tower.embeddings(pixels))  # hidden_states[0]
        for layer in list(self._vision_layers())[: self.config.vision.layers_used]:
            out = layer(hidden, None)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, N, 3, S, S) in [0, 1] -> image tokens (B, N * P, H), cameras in order."""
        b, n, c, s, _ = pixel_values.shape
        dtype = self.vision.embeddings.patch_embedding.weight.dtype
        pixels = pixel_values.reshape(b * n, c, s, s).to(dtype)
        pixels = (pixels - self.pixel_mean.to(dtype)) / self.pixel_std.to(dtype)  # CLIP normalisation
        features = self.vision_features(pixels)  # (B*N, 1 + P, Hv)
        if self.config.vision.select_feature == "patch":
            features = features[:, 1:]  # drop CLS: (B*N, P, Hv)
        tokens = self.projector(features)  # (B*N, P, H)
        return tokens.reshape(b, n * tokens.shape[1], tokens.shape[2])  # (B, N*P, H)

    def splice(
        self, image_tokens: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor, position: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Replace the placeholder at ``position`` with the image tokens.

        image_tokens (B, N*P, H), input_ids (B, L), attention_mask (B, L)
        -> inputs_embeds (B, L', H), token_mask (B, L') with image tokens always valid.
        """
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()):
            if not bool((input_ids[:, position] == IMAGE_TOKEN_INDEX).all()):
                raise ValueError(
                    f"input_ids must hold IMAGE_TOKEN_INDEX ({IMAGE_TOKEN_INDEX}) at position {position} of every "
                    "row: build them with TinyVLAPolicy.tokenize / PromptTokenizer"
                )
        embed = self.llm.get_input_embeddings()
        text = embed(input_ids.clamp_min(0))  # (B, L, H); the placeholder row is discarded below
        embeds = torch.cat([text[:, :position], image_tokens.to(text.dtype), text[:, position + 1 :]], dim=1)
        image_mask = torch.ones(
            image_tokens.shape[:2], dtype=attention_mask.dtype, device=attention_mask.device
        )
        mask = torch.cat([attention_mask[:, :position], image_mask, attention_mask[:, position + 1 :]], dim=1)
        return embeds, mask

    def forward(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor, position: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> last hidden state (B, L', H) and token mask (B, L') (1 = real token)."""
        embeds, mask = self.splice(self.encode_images(pixel_values), input_ids, attention_mask, position)
        out = self.llm(inputs_embeds=embeds, attention_mask=mask, use_cache=False)
        return out.last_hidden_state, mask
