"""The Llava-Pythia backbone: vision tower + projector + GPT-NeoX LLM (transformers classes).

Shapes (glossary): B batch, N cameras, S image side, P image tokens per camera, H LLM hidden
size, Hv vision hidden size, L text tokens (with the placeholder), L' = L - 1 + N * P.

    pixel_values (B, N, 3, S, S) in [0, 1]
      -> CLIP mean/std normalisation -> CLIPVisionModel, each camera on its own
      -> hidden state ``select_layer`` (default -2), CLS dropped        (B, N, P, Hv)
      -> projector (mlp2x_gelu: Linear, GELU, Linear)                    (B, N * P, H)
    input_ids (B, L) with IMAGE_TOKEN_INDEX at ``image_position``
      -> embed_in; the N * P image tokens replace the placeholder        (B, L', H)
      -> GPTNeoXModel (last hidden state, after final LayerNorm)         (B, L', H)

With a conv tower (config.vision.tower "efficientnet_lite0" or "conv", vla/vision.py) the tower
gives a feature map (B, N, C, h, w); it is average-pooled to token_grid x token_grid cells, which
the projector turns into the image tokens. Either way ``forward`` also returns the feature maps
(B, N, C, h, w) (CLIP: the patch tokens on their grid) for the condition's spatial keypoints.
A frozen tower's maps can be computed once (``tower_features``) and passed instead of pixels.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from tinyvla_ros.vla.config import TinyVLAConfig
from tinyvla_ros.vla.preprocess import CLIP_MEAN, CLIP_STD
from tinyvla_ros.vla.tokenizer import IMAGE_TOKEN_INDEX
from tinyvla_ros.vla.vision import IMAGENET_MEAN, IMAGENET_STD, ConvFeatures, EfficientNetLite0Features


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


def build_tower(config: TinyVLAConfig, pretrained: bool) -> tuple[nn.Module, tuple, tuple]:
    """(vision tower, pixel mean, pixel std) of ``config.vision.tower``; ``pretrained`` loads the
    EfficientNet-Lite0 ImageNet weights (a checkpoint load skips it: its weights follow)."""
    v = config.vision
    if v.tower == "efficientnet_lite0":
        tower = EfficientNetLite0Features(v.feature_stride)
        if pretrained and not tower._conv_stem.weight.is_meta:  # meta: sizes only (tinyvla-model info)
            tower.load_imagenet()
        return tower, IMAGENET_MEAN, IMAGENET_STD
    if v.tower == "conv":
        return ConvFeatures(v.conv_channels), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # [-1, 1]
    clip_model_cls = _transformers()[1]
    return clip_model_cls(vision_model_config(config)), CLIP_MEAN, CLIP_STD


class TinyVLABackbone(nn.Module):
    """Vision tower (``vision``), projector (``projector``), GPT-NeoX (``llm``)."""

    def __init__(self, config: TinyVLAConfig, pretrained_tower: bool = True) -> None:
        super().__init__()
        neox_model_cls = _transformers()[3]
        self.config = config
        self.vision, mean, std = build_tower(config, pretrained_tower)
        self.projector = build_projector(
            config.projector_type, config.vision.feature_channels, config.llm.hidden_size
        )
        self.llm = neox_model_cls(llm_model_config(config))
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        if config.vision.frozen:
            self.vision.requires_grad_(False)
            self.vision.eval()

    def train(self, mode: bool = True) -> TinyVLABackbone:
        """As nn.Module.train, but a frozen tower stays in eval mode (BatchNorm statistics fixed)."""
        super().train(mode)
        if self.config.vision.frozen:
            self.vision.eval()
        return self

    @property
    def is_clip(self) -> bool:
        return self.config.vision.tower == "clip"

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

    def _normalised(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, N, 3, S, S) in [0, 1] -> (B*N, 3, S, S) normalised for the tower, in its dtype."""
        b, n, c, s, _ = pixel_values.shape
        dtype = self.projector[0].weight.dtype
        pixels = pixel_values.reshape(b * n, c, s, s).to(dtype)
        return (pixels - self.pixel_mean.to(dtype)) / self.pixel_std.to(dtype)

    def tower_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Conv towers: (B, N, 3, S, S) in [0, 1] -> feature maps (B, N, C, h, w) (what training caches)."""
        if self.is_clip:
            raise ValueError(
                "tower_features is for conv towers; the CLIP tower's tokens come from encode_images"
            )
        b, n = pixel_values.shape[:2]
        maps = self.vision(self._normalised(pixel_values))  # (B*N, C, h, w)
        return maps.reshape(b, n, *maps.shape[1:])

    def encode_features(self, maps: torch.Tensor) -> torch.Tensor:
        """Conv towers: feature maps (B, N, C, h, w) -> image tokens (B, N * g * g, H), g = token_grid."""
        b, n, c, h, w = maps.shape
        g = self.config.vision.token_grid
        k = self.config.feature_map_side // g  # static (shape-derived sizes do not trace into ONNX)
        cells = nn.functional.avg_pool2d(maps.reshape(b * n, c, h, w), k)  # (B*N, C, g, g)
        tokens = self.projector(cells.flatten(2).transpose(1, 2).to(self.projector[0].weight.dtype))
        return tokens.reshape(b, n * g * g, tokens.shape[-1])  # (B, N*g*g, H)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, N, 3, S, S) in [0, 1] -> image tokens (B, N * P, H), cameras in order."""
        return self.encode_images_and_maps(pixel_values)[0]

    def encode_images_and_maps(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, N, 3, S, S) in [0, 1] -> image tokens (B, N * P, H) and feature maps (B, N, C, h, w)
        (None for CLIP without spatial keypoints)."""
        if not self.is_clip:
            maps = self.tower_features(pixel_values)
            return self.encode_features(maps), maps
        b, n = pixel_values.shape[:2]
        features = self.vision_features(self._normalised(pixel_values))  # (B*N, 1 + P, Hv)
        patches = features[:, 1:]  # (B*N, P, Hv) without CLS
        if self.config.vision.select_feature == "patch":
            features = patches
        tokens = self.projector(features)  # (B*N, P, H)
        maps = None
        if self.config.spatial_keypoints:
            g = self.config.feature_map_side
            maps = patches.transpose(1, 2).reshape(b, n, patches.shape[-1], g, g)  # (B, N, Hv, g, g)
        return tokens.reshape(b, n * tokens.shape[1], tokens.shape[2]), maps  # (B, N*P, H)

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
        self,
        pixel_values: torch.Tensor | None,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position: int,
        maps: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """-> last hidden state (B, L', H), token mask (B, L') (1 = real token), feature maps
        (B, N, C, h, w). ``maps`` (a frozen conv tower's cached features) replaces ``pixel_values``."""
        if maps is None:
            tokens, maps = self.encode_images_and_maps(pixel_values)
        else:
            tokens = self.encode_features(maps)
        embeds, mask = self.splice(tokens, input_ids, attention_mask, position)
        out = self.llm(inputs_embeds=embeds, attention_mask=mask, use_cache=False)
        return out.last_hidden_state, mask, maps
