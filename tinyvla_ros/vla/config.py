"""Validated configuration of the TinyVLA model and its named presets.

One frozen dataclass per component (vision tower, LLM, action head, LoRA) nested in
``TinyVLAConfig``; every ``__post_init__`` raises ``ValueError`` naming the bad field and value.
Robot-facing fields (cameras, image size, state/action dimensions, chunk length) and the noise
schedule live at the top level, so that a policy for another robot is ``get_config("tinyvla-h",
action_dim=14, camera_names=("left_wrist", "right_wrist", "top"))`` with no code change.

Presets
    tinyvla-s / -b / -h   Pythia-70M / -410M / -1B + CLIP ViT-L/14-336 + mlp2x_gelu + UNet head
                          (the paper's models: ~422M / ~740M / ~1.3B parameters)
    micro, nano           the same structure at CPU sizes (tiny ViT, tiny GPT-NeoX, small UNet,
                          64-96 px images) with the project's tiny tokenizer
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

IMAGE_PLACEHOLDER = "<image>"
DEFAULT_PROMPT = "USER: <image>\n{instruction} ASSISTANT:"
BETA_SCHEDULES = ("squaredcos_cap_v2", "linear", "scaled_linear")
POOLINGS = ("masked", "all")
VISION_TOWERS = ("clip", "efficientnet_lite0", "conv")
# EfficientNet-Lite0 feature channels at each output stride offered (vla/vision.py).
EFFICIENTNET_CHANNELS = {8: 40, 16: 112}
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
SLOT_TEACHER = ("before_grasp", "episode")
OBJECT_TARGETS = ("scene", "instructed", "selected")
# object_targets instructed / selected: the head reads the instructed object's and its destination's xy
INSTRUCTED_DIM = 4
TOKENIZERS = ("tiny", "external")
LORA_VARIANTS = ("official", "paper")
# LoRA targets (module-name suffixes) of the two variants (see tinyvla.md "LoRA").
LORA_TARGETS: dict[str, dict[str, tuple[str, ...]]] = {
    "official": {
        "llm": ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
        "vision": ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"),
    },
    "paper": {"llm": ("query_key_value",), "vision": ("q_proj", "k_proj", "v_proj")},
}
_PROJECTOR_RE = re.compile(r"^(linear|mlp(\d+)x_gelu)$")


def _check_int(owner: str, name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{owner}.{name} must be an integer >= {minimum}, got {value!r}")


def _check_float(owner: str, name: str, value: Any, low: float, high: float) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not low <= value <= high:
        raise ValueError(f"{owner}.{name} must be a number in [{low}, {high}], got {value!r}")


def _check_choice(owner: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{owner}.{name} must be one of {list(choices)}, got {value!r}")


@dataclass(frozen=True)
class VisionConfig:
    """The vision tower: CLIP ViT (transformers ``CLIPVisionModel``, the paper's) or a conv tower.

    tower "clip": features are taken from hidden state ``select_layer`` (-2: second-to-last layer)
    and, with ``select_feature="patch"``, the CLS token is dropped: (image_size/patch_size)^2 tokens.
    tower "efficientnet_lite0": ImageNet EfficientNet-Lite0 cut at output ``feature_stride`` (8: 40
    channels, 16: 112), ``frozen`` (its features can be computed once per frame in training);
    tower "conv": a small GroupNorm conv net from scratch (``conv_channels``, output stride 2).
    With a conv tower the feature map is average-pooled to ``token_grid`` x ``token_grid`` cells,
    which the projector turns into the LLM's image tokens; the CLIP fields are then unused.
    frozen: no gradient into the tower (BatchNorm statistics stay as loaded).
    """

    tower: str = "clip"
    feature_stride: int = 8
    conv_channels: tuple[int, ...] = (16, 32, 32)
    token_grid: int = 4
    frozen: bool = False
    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_layers: int = 24
    num_heads: int = 16
    patch_size: int = 14
    select_layer: int = -2
    select_feature: str = "patch"
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        _check_choice("vision", "tower", self.tower, VISION_TOWERS)
        _check_choice("vision", "feature_stride", self.feature_stride, tuple(EFFICIENTNET_CHANNELS))
        _check_int("vision", "token_grid", self.token_grid)
        chans = self.conv_channels
        if not isinstance(chans, tuple) or not 1 <= len(chans) <= 8:
            raise ValueError(f"vision.conv_channels must be a tuple of 1 to 8 channel counts, got {chans!r}")
        for ch in chans:
            _check_int("vision", "conv_channels[i]", ch)
        if not isinstance(self.frozen, bool):
            raise ValueError(f"vision.frozen must be a bool, got {self.frozen!r}")
        for name in ("hidden_size", "intermediate_size", "num_layers", "num_heads", "patch_size"):
            _check_int("vision", name, getattr(self, name))
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"vision.hidden_size ({self.hidden_size}) must be divisible by vision.num_heads "
                f"({self.num_heads})"
            )
        layer = self.select_layer
        if (
            isinstance(layer, bool)
            or not isinstance(layer, int)
            or not -self.num_layers <= layer <= self.num_layers
        ):
            raise ValueError(
                f"vision.select_layer must be an integer in [-{self.num_layers}, {self.num_layers}] "
                f"(hidden-state index, -2 = second-to-last layer), got {layer!r}"
            )
        _check_choice("vision", "select_feature", self.select_feature, ("patch", "cls_patch"))
        _check_choice("vision", "hidden_act", self.hidden_act, ("quick_gelu", "gelu"))
        _check_float("vision", "layer_norm_eps", self.layer_norm_eps, 1e-12, 1e-2)

    @property
    def feature_channels(self) -> int:
        """C: channels of the tower's feature map (the projector's input size)."""
        if self.tower == "efficientnet_lite0":
            return EFFICIENTNET_CHANNELS[self.feature_stride]
        if self.tower == "conv":
            return self.conv_channels[-1]
        return self.hidden_size

    @property
    def stride(self) -> int:
        """Pixels per feature-map cell (the ViT's patch size for CLIP)."""
        return {"clip": self.patch_size, "efficientnet_lite0": self.feature_stride, "conv": 2}[self.tower]

    @property
    def layers_used(self) -> int:
        """Encoder layers whose output reaches the selected hidden state."""
        return self.select_layer if self.select_layer >= 0 else self.num_layers + 1 + self.select_layer


@dataclass(frozen=True)
class LLMConfig:
    """Pythia / GPT-NeoX language model (transformers ``GPTNeoXModel``, no LM head)."""

    hidden_size: int = 512
    intermediate_size: int = 2048
    num_layers: int = 6
    num_heads: int = 8
    vocab_size: int = 50304
    rotary_pct: float = 0.25
    rotary_base: float = 10000.0
    max_position_embeddings: int = 2048
    layer_norm_eps: float = 1e-5
    use_parallel_residual: bool = True
    hidden_act: str = "gelu"

    def __post_init__(self) -> None:
        for name in ("hidden_size", "intermediate_size", "num_layers", "num_heads", "vocab_size"):
            _check_int("llm", name, getattr(self, name))
        _check_int("llm", "max_position_embeddings", self.max_position_embeddings, 16)
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"llm.hidden_size ({self.hidden_size}) must be divisible by llm.num_heads ({self.num_heads})"
            )
        _check_float("llm", "rotary_pct", self.rotary_pct, 0.0, 1.0)
        _check_float("llm", "rotary_base", self.rotary_base, 1.0, 1e9)
        _check_float("llm", "layer_norm_eps", self.layer_norm_eps, 1e-12, 1e-2)
        if not isinstance(self.use_parallel_residual, bool):
            raise ValueError(f"llm.use_parallel_residual must be a bool, got {self.use_parallel_residual!r}")
        _check_choice("llm", "hidden_act", self.hidden_act, ("gelu", "gelu_new", "gelu_fast", "relu"))


@dataclass(frozen=True)
class HeadConfig:
    """Conditional 1-D UNet diffusion head (Diffusion-Policy style, FiLM in every residual block).

    ``len(down_dims)`` levels; the chunk is halved ``len(down_dims) - 1`` times, so
    chunk_len must be divisible by 2 ** (len(down_dims) - 1) (4 for the paper's 3 levels).
    """

    down_dims: tuple[int, ...] = (256, 512, 1024)
    kernel_size: int = 5
    n_groups: int = 8
    step_embed_dim: int = 256

    def __post_init__(self) -> None:
        dims = self.down_dims
        if not isinstance(dims, tuple) or not dims or len(dims) > 6:
            raise ValueError(f"head.down_dims must be a tuple of 1 to 6 channel counts, got {dims!r}")
        for dim in dims:
            _check_int("head", "down_dims[i]", dim)
            if dim % self.n_groups:
                raise ValueError(
                    f"head.down_dims {list(dims)}: every entry must be divisible by head.n_groups "
                    f"({self.n_groups}) for GroupNorm"
                )
        _check_int("head", "kernel_size", self.kernel_size)
        if self.kernel_size % 2 == 0:
            raise ValueError(
                f"head.kernel_size must be odd (same-length convolution), got {self.kernel_size}"
            )
        _check_int("head", "n_groups", self.n_groups)
        _check_int("head", "step_embed_dim", self.step_embed_dim, 4)
        if self.step_embed_dim % 2:
            raise ValueError(f"head.step_embed_dim must be even (sin/cos halves), got {self.step_embed_dim}")

    @property
    def chunk_multiple(self) -> int:
        """chunk_len must be a multiple of this."""
        return 2 ** (len(self.down_dims) - 1)


@dataclass(frozen=True)
class LoraSettings:
    """LoRA (peft) on the LLM and the vision tower; projector and head stay fully trainable.

    variant "official": r=64, alpha=256, dropout 0.05 on every Linear of LLM and vision tower;
    variant "paper": attention Q, K, V only. ``llm_targets`` / ``vision_targets`` (module-name
    suffixes) override the variant's lists; an empty tuple leaves that part frozen without LoRA.
    lr / base_lr: learning rates of LoRA weights and of projector + head (official 2e-4 / 2e-5).
    """

    variant: str = "official"
    r: int = 64
    alpha: int = 256
    dropout: float = 0.05
    llm_targets: tuple[str, ...] | None = None
    vision_targets: tuple[str, ...] | None = None
    lr: float = 2e-4
    base_lr: float = 2e-5

    def __post_init__(self) -> None:
        _check_choice("lora", "variant", self.variant, LORA_VARIANTS)
        _check_int("lora", "r", self.r)
        _check_int("lora", "alpha", self.alpha)
        _check_float("lora", "dropout", self.dropout, 0.0, 0.9)
        _check_float("lora", "lr", self.lr, 0.0, 1.0)
        _check_float("lora", "base_lr", self.base_lr, 0.0, 1.0)
        for name in ("llm_targets", "vision_targets"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, tuple) or not all(isinstance(v, str) and v for v in value)
            ):
                raise ValueError(f"lora.{name} must be None or a tuple of module names, got {value!r}")

    def targets(self, part: str) -> tuple[str, ...]:
        """Module-name suffixes to adapt in ``part`` ("llm" or "vision")."""
        override = self.llm_targets if part == "llm" else self.vision_targets
        return override if override is not None else LORA_TARGETS[self.variant][part]


_NESTED: dict[str, type] = {
    "vision": VisionConfig,
    "llm": LLMConfig,
    "head": HeadConfig,
    "lora": LoraSettings,
}


@dataclass(frozen=True)
class TinyVLAConfig:
    """Complete description of one TinyVLA model (architecture + robot interface + schedule).

    Robot interface
        camera_names   one name per camera, in the order images are given; each is encoded alone
        image_size     S: square side of the vision tower input (pad-to-square + resize inside)
        center_crop    side fraction of each camera image kept (centred) before pad + resize, at
                       deployment and in evaluation; training with random crops of r sets it to r,
                       the official evaluation transform (1.0: the whole image)
        state_dim      Ds: robot state entering the condition (not the LLM)
        action_dim     Da: action vector; the only thing that changes between robots
        chunk_len      T: action steps predicted at once (multiple of head.chunk_multiple)
        action_names   optional names of the Da action entries (documentation / checks)
    Diffusion: num_train_steps DDPM steps for training noise, num_inference_steps DDIM steps.
    Condition: pooling "masked" pools valid tokens only; "all" is the official unmasked mean.
    spatial_keypoints: K > 0 adds, per camera, K spatial-softmax keypoints of the vision tower's
    feature map (2K numbers) to the condition beside the pooled LLM embedding and the state;
    0 is the paper's pooled-only condition (the S/B/H presets and Llava-Pythia checkpoints).
    aux_dim, aux_weight: a sim-only auxiliary loss (data/aux_targets.py): a Linear from the condition
    to aux_dim object coordinates, its MSE added to the diffusion loss with aux_weight (0: none).
    object_slots: the readout's aux_dim coordinates also enter the head: the condition becomes
    (its C numbers, the readout of them), so the head reads object positions the images gave.
    Training feeds the head the simulator's positions plus Gaussian noise of std
    object_slot_noise (normalised units, 0.15 m each) on the steps that have them (teacher
    forcing), the readout elsewhere; inference always the readout (sim-only supervision).
    slot_bottleneck (with object_slots): the head reads only the pooled LLM embedding (the
    instruction), the state and the object readout: (H + Ds + aux_dim) numbers. The keypoints
    reach it through the readout alone, which learns from the auxiliary loss (the pooled embedding
    still sees the images, and runs 13-15 of models/README measured the head leaning on it).
    pooled_detach (with slot_bottleneck): the pooled embedding enters the head detached, so the
    action loss trains the head alone and cannot shape the vision-language pathway into a second
    channel beside the readout (runs 13-14 had it attached: the head leaned on it, models/README).
    object_slot_teacher: which training steps give the head the simulator's positions (+ noise)
    instead of the readout: "before_grasp" (the auxiliary loss's steps, before the first grasp and
    at most 40% of an episode) or "episode" (every step: the positions the scene started with, as a
    head trained on known poses; the auxiliary loss keeps its steps).
    object_targets: what the auxiliary readout is trained to give (data/aux_targets.py): "scene"
    (every object of the scene, aux_dim 10) or "instructed" (the object the instruction names and
    where it goes, aux_dim 4: the readout has to read the words to know which object, and the head
    gets 4 numbers the words already selected; runs 16-17 of models/README) or "selected" (the
    readout gives every object, aux_dim 10, as "scene"; a softmax over the objects, its logits a
    Linear of the part of the condition the readout reads (so the selection's error trains the
    language model to carry the instruction), picks the instructed object and its destination, and
    the head gets those 4 numbers: the readout keeps the precision of a Linear readout of every
    object, the words only choose; needs slot_bottleneck; training adds the selection's error
    against the instructed targets to the auxiliary loss).
    readout_hidden: 0, the readout is one Linear; > 0, a hidden layer of that width (Mish) before
    it, so the readout can select an object by the instruction (a Linear cannot gate on words).
    timestep_spacing: DDIM's inference steps ("leading": diffusers' default, sampling starts at
    t = 90 of 100 with 10 steps; "trailing" starts at t = 99, the fully noised end).
    """

    name: str = "custom"
    camera_names: tuple[str, ...] = ("left", "right")
    image_size: int = 336
    center_crop: float = 1.0
    state_dim: int = 7
    action_dim: int = 10
    chunk_len: int = 16
    action_names: tuple[str, ...] | None = None
    num_train_steps: int = 100
    num_inference_steps: int = 10
    beta_schedule: str = "squaredcos_cap_v2"
    clip_sample: bool = True
    pooling: str = "masked"
    spatial_keypoints: int = 0
    timestep_spacing: str = "leading"
    aux_dim: int = 0
    aux_weight: float = 0.0
    object_slots: bool = False
    object_slot_noise: float = 0.1
    slot_bottleneck: bool = False
    object_slot_teacher: str = "before_grasp"
    pooled_detach: bool = False
    object_targets: str = "scene"
    readout_hidden: int = 0
    prompt_template: str = DEFAULT_PROMPT
    max_text_tokens: int = 64
    tokenizer: str = "external"
    projector_type: str = "mlp2x_gelu"
    vision: VisionConfig = field(default_factory=VisionConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)

    def __post_init__(self) -> None:
        for name, cls in _NESTED.items():
            if not isinstance(getattr(self, name), cls):
                raise ValueError(f"{name} must be a {cls.__name__}, got {type(getattr(self, name)).__name__}")
        self._check_robot()
        self._check_schedule()
        self._check_prompt()
        _check_choice("config", "pooling", self.pooling, POOLINGS)
        _check_int("config", "spatial_keypoints", self.spatial_keypoints, 0)
        _check_choice("config", "timestep_spacing", self.timestep_spacing, TIMESTEP_SPACINGS)
        _check_int("config", "aux_dim", self.aux_dim, 0)
        _check_float("config", "aux_weight", self.aux_weight, 0.0, 100.0)
        if not isinstance(self.object_slots, bool):
            raise ValueError(f"config.object_slots must be true or false, got {self.object_slots!r}")
        _check_float("config", "object_slot_noise", self.object_slot_noise, 0.0, 10.0)
        if self.object_slots and not self.aux_dim:
            raise ValueError("config.object_slots needs aux_dim > 0 (the readout it feeds the head)")
        _check_choice("config", "object_slot_teacher", self.object_slot_teacher, SLOT_TEACHER)
        _check_choice("config", "object_targets", self.object_targets, OBJECT_TARGETS)
        _check_int("config", "readout_hidden", self.readout_hidden, 0)
        if self.readout_hidden and not self.aux_dim:
            raise ValueError("config.readout_hidden needs aux_dim > 0 (it shapes the object readout)")
        if self.object_targets == "instructed" and self.aux_dim not in (0, INSTRUCTED_DIM):
            raise ValueError(
                f"config.object_targets=instructed needs aux_dim 4 (the object's and its destination's "
                f"xy), got {self.aux_dim}"
            )
        if self.object_targets == "selected" and (self.aux_dim % 2 or self.aux_dim < 4):
            raise ValueError(
                f"config.object_targets=selected needs aux_dim of at least 2 objects' xy (even, >= 4), "
                f"got {self.aux_dim}"
            )
        if not isinstance(self.slot_bottleneck, bool):
            raise ValueError(f"config.slot_bottleneck must be true or false, got {self.slot_bottleneck!r}")
        if not isinstance(self.pooled_detach, bool):
            raise ValueError(f"config.pooled_detach must be true or false, got {self.pooled_detach!r}")
        if self.pooled_detach and not self.slot_bottleneck:
            raise ValueError(
                "config.pooled_detach needs slot_bottleneck (it detaches the head's pooled input)"
            )
        if self.slot_bottleneck and not (self.object_slots and self.spatial_keypoints):
            raise ValueError(
                "config.slot_bottleneck needs object_slots and spatial_keypoints > 0 (the readout of the "
                "keypoints is what the head reads)"
            )
        if self.object_targets == "selected" and not self.slot_bottleneck:
            raise ValueError(
                "config.object_targets=selected needs slot_bottleneck (the head reads the selection, "
                "not the condition it is made from)"
            )
        _check_choice("config", "tokenizer", self.tokenizer, TOKENIZERS)
        if not isinstance(self.projector_type, str) or not _PROJECTOR_RE.match(self.projector_type):
            raise ValueError(
                f"projector_type must be 'linear' or 'mlp<N>x_gelu' (e.g. 'mlp2x_gelu'), got {self.projector_type!r}"
            )
        seq = self.sequence_length
        if seq > self.llm.max_position_embeddings:
            raise ValueError(
                f"sequence of {seq} tokens ({len(self.camera_names)} cameras x {self.image_tokens_per_camera} "
                f"image tokens + max_text_tokens {self.max_text_tokens}) exceeds llm.max_position_embeddings "
                f"({self.llm.max_position_embeddings})"
            )

    def _check_robot(self) -> None:
        cams = self.camera_names
        if not isinstance(cams, tuple) or not cams or not all(isinstance(c, str) and c.strip() for c in cams):
            raise ValueError(f"camera_names must be a non-empty tuple of non-empty strings, got {cams!r}")
        if len(set(cams)) != len(cams):
            raise ValueError(f"camera_names must be unique, got {cams!r}")
        _check_int("config", "image_size", self.image_size, 8)
        v = self.vision
        if self.image_size % v.stride:
            what = "vision.patch_size" if v.tower == "clip" else f"the {v.tower} tower's output stride"
            raise ValueError(f"image_size ({self.image_size}) must be divisible by {what} ({v.stride})")
        if v.tower != "clip" and (self.image_size // v.stride) % v.token_grid:
            raise ValueError(
                f"the {v.tower} feature map ({self.image_size // v.stride} cells a side at image_size "
                f"{self.image_size}) must be divisible by vision.token_grid ({v.token_grid})"
            )
        crop = self.center_crop
        if isinstance(crop, bool) or not isinstance(crop, int | float) or not 0.5 <= crop <= 1.0:
            raise ValueError(f"center_crop must be a number in [0.5, 1.0] (1.0: no crop), got {crop!r}")
        _check_int("config", "state_dim", self.state_dim)
        _check_int("config", "action_dim", self.action_dim)
        _check_int("config", "chunk_len", self.chunk_len)
        multiple = self.head.chunk_multiple
        if self.chunk_len % multiple:
            raise ValueError(
                f"chunk_len ({self.chunk_len}) must be divisible by {multiple} "
                f"(the UNet halves it {len(self.head.down_dims) - 1} times)"
            )
        names = self.action_names
        if names is not None:
            if not isinstance(names, tuple) or not all(isinstance(n, str) and n for n in names):
                raise ValueError(f"action_names must be None or a tuple of strings, got {names!r}")
            if len(names) != self.action_dim:
                raise ValueError(
                    f"action_names has {len(names)} entries but action_dim is {self.action_dim}: {names!r}"
                )

    def _check_schedule(self) -> None:
        _check_int("config", "num_train_steps", self.num_train_steps, 2)
        _check_int("config", "num_inference_steps", self.num_inference_steps)
        if self.num_inference_steps > self.num_train_steps:
            raise ValueError(
                f"num_inference_steps ({self.num_inference_steps}) must be <= num_train_steps "
                f"({self.num_train_steps})"
            )
        _check_choice("config", "beta_schedule", self.beta_schedule, BETA_SCHEDULES)
        if not isinstance(self.clip_sample, bool):
            raise ValueError(f"clip_sample must be a bool, got {self.clip_sample!r}")

    def _check_prompt(self) -> None:
        tpl = self.prompt_template
        if not isinstance(tpl, str) or tpl.count(IMAGE_PLACEHOLDER) != 1 or tpl.count("{instruction}") != 1:
            raise ValueError(
                f"prompt_template must contain '{IMAGE_PLACEHOLDER}' and '{{instruction}}' exactly once, got {tpl!r}"
            )
        if tpl.index(IMAGE_PLACEHOLDER) > tpl.index("{instruction}"):
            raise ValueError(
                f"prompt_template must put '{IMAGE_PLACEHOLDER}' before '{{instruction}}' (the image tokens sit "
                f"at a fixed position), got {tpl!r}"
            )
        _check_int("config", "max_text_tokens", self.max_text_tokens, 4)

    # ----------------------------------------------------------------- derived sizes
    @property
    def num_cameras(self) -> int:
        return len(self.camera_names)

    @property
    def image_tokens_per_camera(self) -> int:
        """P: (S / patch)^2 patch tokens (+1 with select_feature 'cls_patch'); token_grid^2 for conv towers."""
        if self.vision.tower != "clip":
            return self.vision.token_grid**2
        patches = (self.image_size // self.vision.patch_size) ** 2
        return patches + (1 if self.vision.select_feature == "cls_patch" else 0)

    @property
    def sequence_length(self) -> int:
        """Longest LLM sequence: n_cams * P image tokens + max_text_tokens text tokens."""
        return self.num_cameras * self.image_tokens_per_camera + self.max_text_tokens

    @property
    def feature_map_side(self) -> int:
        """h = w: cells a side of the tower's feature map (the keypoints' grid)."""
        return self.image_size // self.vision.stride

    @property
    def spatial_dim(self) -> int:
        """Numbers the keypoints add to the condition's input: N cameras x K x (x, y)."""
        return self.num_cameras * self.spatial_keypoints * 2

    @property
    def cond_dim(self) -> int:
        """Size of the condition vector handed to the head: the LLM hidden size, plus slot_dim object
        coordinates with object_slots; with slot_bottleneck the pooled embedding, the state and the
        object coordinates (H + Ds + slot_dim)."""
        if self.slot_bottleneck:
            return self.llm.hidden_size + self.state_dim + self.slot_dim
        return self.llm.hidden_size + (self.slot_dim if self.object_slots else 0)

    @property
    def slot_dim(self) -> int:
        """Object coordinates the head reads with object_slots: the readout's aux_dim, or with
        object_targets=selected the 4 the selection picks out of it."""
        return INSTRUCTED_DIM if self.object_targets == "selected" else self.aux_dim

    # ----------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples become lists)."""
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TinyVLAConfig:
        """Inverse of ``to_dict``; unknown keys raise ValueError (catches typos and foreign files)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a TinyVLAConfig dict must be a mapping, got {type(data).__name__}")
        return _build(cls, data, "config")

    def replace(self, **overrides: Any) -> TinyVLAConfig:
        """A copy with ``overrides``; nested parts accept a dict of their own fields."""
        return _apply_overrides(self, overrides)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _coerce(cls: type, name: str, value: Any) -> Any:
    """Lists from JSON back to tuples for tuple-typed fields."""
    if isinstance(value, list):
        return tuple(value)
    return value


def _build(cls: type, data: Mapping[str, Any], owner: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {owner} field(s) {unknown}; valid fields: {sorted(names)}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key in _NESTED and cls is TinyVLAConfig:
            nested = _NESTED[key]
            kwargs[key] = value if isinstance(value, nested) else _build(nested, value, key)
        else:
            kwargs[key] = _coerce(cls, key, value)
    return cls(**kwargs)


def _apply_overrides(config: TinyVLAConfig, overrides: Mapping[str, Any]) -> TinyVLAConfig:
    names = {f.name for f in dataclasses.fields(TinyVLAConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown}; valid fields: {sorted(names)}")
    kwargs: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in _NESTED and isinstance(value, Mapping):
            current = dataclasses.asdict(getattr(config, key))
            unknown_nested = sorted(set(value) - set(current))
            if unknown_nested:
                raise ValueError(f"unknown {key} field(s) {unknown_nested}; valid fields: {sorted(current)}")
            current.update(value)
            kwargs[key] = _build(_NESTED[key], current, key)
        else:
            kwargs[key] = _coerce(TinyVLAConfig, key, value)
    return dataclasses.replace(config, **kwargs)


# --------------------------------------------------------------------- presets
CLIP_L14_336 = VisionConfig(
    hidden_size=1024, intermediate_size=4096, num_layers=24, num_heads=16, patch_size=14
)


def _paper(name: str, llm: LLMConfig) -> TinyVLAConfig:
    return TinyVLAConfig(name=name, image_size=336, vision=CLIP_L14_336, llm=llm, tokenizer="external")


def _tinyvla_s() -> TinyVLAConfig:
    """Pythia-70M."""
    return _paper("tinyvla-s", LLMConfig(hidden_size=512, intermediate_size=2048, num_layers=6, num_heads=8))


def _tinyvla_b() -> TinyVLAConfig:
    """Pythia-410M."""
    return _paper(
        "tinyvla-b", LLMConfig(hidden_size=1024, intermediate_size=4096, num_layers=24, num_heads=16)
    )


def _tinyvla_h() -> TinyVLAConfig:
    """Pythia-1B."""
    return _paper(
        "tinyvla-h", LLMConfig(hidden_size=2048, intermediate_size=8192, num_layers=16, num_heads=8)
    )


def _micro() -> TinyVLAConfig:
    return TinyVLAConfig(
        name="micro",
        image_size=112,
        max_text_tokens=48,
        tokenizer="tiny",
        vision=VisionConfig(hidden_size=128, intermediate_size=512, num_layers=4, num_heads=4, patch_size=14),
        llm=LLMConfig(hidden_size=256, intermediate_size=1024, num_layers=4, num_heads=4, vocab_size=2048),
        head=HeadConfig(down_dims=(64, 128, 256), kernel_size=5, n_groups=8, step_embed_dim=128),
        lora=LoraSettings(r=16, alpha=64),
    )


def _nano() -> TinyVLAConfig:
    return TinyVLAConfig(
        name="nano",
        image_size=64,
        max_text_tokens=48,
        tokenizer="tiny",
        vision=VisionConfig(hidden_size=64, intermediate_size=256, num_layers=3, num_heads=4, patch_size=16),
        llm=LLMConfig(hidden_size=128, intermediate_size=512, num_layers=2, num_heads=4, vocab_size=2048),
        head=HeadConfig(down_dims=(32, 64, 128), kernel_size=5, n_groups=8, step_embed_dim=64),
        lora=LoraSettings(r=8, alpha=32),
    )


def _cpu(name: str, vision: VisionConfig) -> TinyVLAConfig:
    """CPU policies that see: nano's LLM, micro's head, 160 px, 32 spatial keypoints per camera."""
    return TinyVLAConfig(
        name=name,
        image_size=160,
        max_text_tokens=48,
        tokenizer="tiny",
        spatial_keypoints=32,
        timestep_spacing="trailing",
        vision=vision,
        llm=LLMConfig(hidden_size=128, intermediate_size=512, num_layers=2, num_heads=4, vocab_size=2048),
        head=HeadConfig(down_dims=(64, 128, 256), kernel_size=5, n_groups=8, step_embed_dim=64),
        lora=LoraSettings(r=8, alpha=32),
    )


def _cpu_lite0() -> TinyVLAConfig:
    """Frozen ImageNet EfficientNet-Lite0 to stride 8 (TinyVLA's frozen-tower recipe in small)."""
    return _cpu(
        "cpu-lite0", VisionConfig(tower="efficientnet_lite0", feature_stride=8, token_grid=4, frozen=True)
    )


def _cpu_conv() -> TinyVLAConfig:
    """A small GroupNorm conv tower trained from scratch (Diffusion Policy's recipe in small)."""
    return _cpu("cpu-conv", VisionConfig(tower="conv", conv_channels=(16, 32, 32), token_grid=4))


_PRESETS: dict[str, Callable[[], TinyVLAConfig]] = {
    "tinyvla-s": _tinyvla_s,
    "tinyvla-b": _tinyvla_b,
    "tinyvla-h": _tinyvla_h,
    "micro": _micro,
    "nano": _nano,
    "cpu-lite0": _cpu_lite0,
    "cpu-conv": _cpu_conv,
}
PRESETS: tuple[str, ...] = tuple(_PRESETS)
# Totals reported in the paper (used by tests and `tinyvla-model info`).
PAPER_PARAMETERS = {"tinyvla-s": 422e6, "tinyvla-b": 740e6, "tinyvla-h": 1.3e9}


def get_config(name: str, **overrides: Any) -> TinyVLAConfig:
    """Preset ``name`` (one of PRESETS) with field ``overrides`` (nested parts as dicts).

    Example: ``get_config("nano", action_dim=14, camera_names=("l", "r", "top"), head={"kernel_size": 3})``.
    """
    if name not in _PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {list(PRESETS)}")
    config = _PRESETS[name]()
    return _apply_overrides(config, overrides) if overrides else config
