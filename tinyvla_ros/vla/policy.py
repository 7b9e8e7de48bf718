"""TinyVLAPolicy: backbone + diffusion head + normalisation, with a small training/inference API.

Glossary: B batch, N cameras (config.camera_names order), S image side (config.image_size),
L prompt tokens, T chunk length, Da action dim, Ds state dim, C condition size (= LLM hidden).

    forward(batch) -> scalar loss        masked MSE between predicted and true DDPM noise
    predict_chunk(images, instruction, state, seed) -> (T, Da) float32 in robot units
    predict_chunk_batch(images, instructions, states, seed) -> (B, T, Da)
        (input checks, pixel values, state normalisation, initial noise and un-normalisation: the
        NumPy step every engine shares, vla/engines/chunk_io.py)
Tensor-only pieces (mirrored by ONNX export / engines / inpainting):
    preprocess_images(list of N (H, W, 3) uint8) -> pixel_values (N, 3, S, S) float32 in [0, 1]
    tokenize(instruction) -> input_ids (1, L), attention_mask (1, L)
    encode_observation(pixel_values (B, N, 3, S, S), input_ids (B, L), attention_mask (B, L),
                       state_norm (B, Ds)) -> condition (B, C)
    denoise(noisy_actions (B, T, Da), timesteps (B,), condition (B, C)) -> eps (B, T, Da)
    sample(condition (B, C), noise (B, T, Da), inpaint=None) -> normalised actions (B, T, Da) (DDIM loop;
           inpaint: a committed prefix held in the chunk, RePaint-style, see vla/inpaint.py)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tinyvla_ros.vla import lora as lora_lib
from tinyvla_ros.vla.backbone import TinyVLABackbone
from tinyvla_ros.vla.checkpoint import CheckpointMismatchError, load_policy, save_policy
from tinyvla_ros.vla.config import LORA_VARIANTS, TinyVLAConfig
from tinyvla_ros.vla.engines.chunk_io import ChunkIO
from tinyvla_ros.vla.engines.ddim import DDIMPlan, build_scheduler
from tinyvla_ros.vla.head import ActionHead
from tinyvla_ros.vla.inpaint import InpaintInputs, blend_torch
from tinyvla_ros.vla.normalize import Normalizer
from tinyvla_ros.vla.preprocess import prepare_cameras
from tinyvla_ros.vla.tokenizer import IMAGE_TOKEN_INDEX, PromptTokenizer, build_tiny_tokenizer

__all__ = ["CheckpointMismatchError", "TinyVLAPolicy"]
PARTS = ("vision", "projector", "llm", "head")


def _diffusers():
    try:
        from diffusers import DDIMScheduler, DDPMScheduler
    except ImportError as exc:  # pragma: no cover - diffusers is in requirements/ml.txt
        raise ImportError("the diffusion head needs diffusers: pip install -r requirements/ml.txt") from exc
    return DDPMScheduler, DDIMScheduler


class TinyVLAPolicy(nn.Module):
    """The TinyVLA model (see module docstring for the API and shapes).

    tokenizer: a transformers fast tokenizer; None builds the tiny tokenizer for
    ``config.tokenizer == "tiny"`` and leaves none for "external" (Pythia) configs, which then
    take input_ids directly or get their tokenizer from a checkpoint.
    normalizer: action/state statistics; required by forward/predict (robot units in and out).
    pretrained_tower: load the EfficientNet-Lite0 tower's ImageNet weights (checkpoint loading
    passes False: the checkpoint's own weights follow).
    """

    def __init__(
        self,
        config: TinyVLAConfig,
        tokenizer: Any = None,
        normalizer: Normalizer | None = None,
        pretrained_tower: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(config, TinyVLAConfig):
            raise TypeError(f"config must be a TinyVLAConfig, got {type(config).__name__}")
        self.config = config
        self.backbone = TinyVLABackbone(config, pretrained_tower=pretrained_tower)
        self.head = ActionHead(config)
        if tokenizer is None and config.tokenizer == "tiny":
            tokenizer = build_tiny_tokenizer()
        self.tokenizer = tokenizer
        self.prompt = self._prompt_tokenizer(tokenizer)
        self.normalizer = normalizer
        self._schedulers: tuple[Any, Any] | None = None
        self._plan: DDIMPlan | None = None

    def _prompt_tokenizer(self, tokenizer: Any) -> PromptTokenizer | None:
        if tokenizer is None:
            return None
        if len(tokenizer) > self.config.llm.vocab_size:
            raise ValueError(
                f"tokenizer has {len(tokenizer)} tokens but llm.vocab_size is {self.config.llm.vocab_size}: "
                "the tokenizer does not belong to this model"
            )
        return PromptTokenizer(tokenizer, self.config.prompt_template, self.config.max_text_tokens)

    # ------------------------------------------------------------------ properties
    @property
    def normalizer(self) -> Normalizer | None:
        return self._normalizer

    @normalizer.setter
    def normalizer(self, value: Normalizer | None) -> None:
        if value is not None:
            if not isinstance(value, Normalizer):
                raise TypeError(f"normalizer must be a Normalizer, got {type(value).__name__}")
            dims = (value.action_dim, value.state_dim)
            if dims != (self.config.action_dim, self.config.state_dim):
                raise ValueError(
                    f"normaliser has action_dim {value.action_dim}, state_dim {value.state_dim}; the model has "
                    f"action_dim {self.config.action_dim}, state_dim {self.config.state_dim}"
                )
        self._normalizer = value

    @property
    def device(self) -> torch.device:
        """Device of the weights (read from one head weight: O(1), unlike next(parameters()))."""
        return self.head.condition.combine.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.head.condition.combine.weight.dtype

    @property
    def image_position(self) -> int:
        """Index of the image placeholder in every input_ids row."""
        return self._require_prompt().image_position

    @property
    def lora_applied(self) -> bool:
        return lora_lib.has_lora(self.backbone)

    def _require_prompt(self) -> PromptTokenizer:
        if self.prompt is None:
            raise RuntimeError(
                f"preset {self.config.name!r} uses an external (Pythia) tokenizer and none was given: load a "
                "checkpoint (from_pretrained / load_llava_pythia) or pass tokenizer= to TinyVLAPolicy"
            )
        return self.prompt

    def _require_normalizer(self) -> Normalizer:
        if self._normalizer is None:
            raise RuntimeError(
                "the policy has no normalisation statistics: set policy.normalizer = Normalizer.from_data(actions, "
                "states) (training) or load a checkpoint with stats.json"
            )
        return self._normalizer

    @property
    def schedulers(self) -> tuple[Any, Any]:
        """(DDPMScheduler for training noise, DDIMScheduler with num_inference_steps set)."""
        if self._schedulers is None:
            ddpm_cls, _ = _diffusers()
            c = self.config
            kwargs = dict(
                num_train_timesteps=c.num_train_steps,
                beta_schedule=c.beta_schedule,
                clip_sample=c.clip_sample,
                prediction_type="epsilon",
            )
            with torch.device("cpu"):
                ddpm = ddpm_cls(**kwargs)
                ddim = build_scheduler(c)  # the same DDIM plan every engine reads
            self._schedulers = (ddpm, ddim)
        return self._schedulers

    # ------------------------------------------------------------------ tensor-only pieces
    def preprocess_images(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """N images (H, W, 3) uint8 RGB, any H, W -> pixel_values (N, 3, S, S) float32 in [0, 1]."""
        c = self.config
        arr = prepare_cameras(images, c.image_size, c.camera_names, crop=c.center_crop)
        return torch.from_numpy(arr)

    def tokenize(self, instruction: str) -> tuple[torch.Tensor, torch.Tensor]:
        """instruction -> input_ids (1, L) long, attention_mask (1, L) long (cached per instruction)."""
        return self._require_prompt().batch([instruction])

    def tokenize_batch(self, instructions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """B instructions -> right-padded input_ids (B, L), attention_mask (B, L)."""
        if isinstance(instructions, str):
            raise TypeError("instructions must be a list of strings, got a single string")
        return self._require_prompt().batch(list(instructions))

    def _position(self, input_ids: torch.Tensor) -> int:
        if self.prompt is not None:
            return self.prompt.image_position
        hits = (input_ids[0] == IMAGE_TOKEN_INDEX).nonzero()
        if hits.numel() != 1:
            raise ValueError(
                f"input_ids must contain IMAGE_TOKEN_INDEX ({IMAGE_TOKEN_INDEX}) exactly once per row"
            )
        return int(hits[0, 0])

    def encode_observation(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        state_norm: torch.Tensor,
    ) -> torch.Tensor:
        """(B, N, 3, S, S) [0, 1], (B, L), (B, L), (B, Ds) normalised -> condition (B, C)."""
        return self._with_slots(self._condition(pixel_values, None, input_ids, attention_mask, state_norm))

    def encode_features(
        self,
        maps: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        state_norm: torch.Tensor,
    ) -> torch.Tensor:
        """encode_observation from a frozen tower's feature maps (B, N, C, h, w) -> condition (B, C)."""
        return self._with_slots(self._condition(None, maps, input_ids, attention_mask, state_norm))

    def _condition(
        self,
        pixel_values: torch.Tensor | None,
        maps: torch.Tensor | None,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        state_norm: torch.Tensor,
    ) -> torch.Tensor:
        """The observation condition before the object slots (head.condition's output)."""
        hidden, token_mask, maps = self.backbone(
            pixel_values, input_ids, attention_mask, self._position(input_ids), maps=maps
        )
        return self.head.condition(hidden, token_mask, state_norm, maps)

    def _with_slots(self, condition: torch.Tensor) -> torch.Tensor:
        """config.object_slots: (B, H) -> (B, H + aux_dim), the object readout appended; with
        slot_bottleneck (B, 2H + Ds) -> (B, H + Ds + slot_dim): (pooled, state, readout of the mixed
        part, or with object_targets=selected the instructed object's and destination's xy selected
        out of it); else as is."""
        return self._slots(condition)[0]

    def _slots(
        self, condition: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """_with_slots, with what training needs besides: (the head's condition, the object readout
        (B, aux_dim) or None, the selection weights (B, 2, n_objects) or None)."""
        if not self.config.object_slots:
            return condition, None, None
        base, mixed = condition, condition
        if self.config.slot_bottleneck:
            h = self.config.llm.hidden_size
            base, mixed = condition[:, :-h], condition[:, -h:]
        readout = self.head.aux(mixed)  # (B, aux_dim)
        slots, weights = readout, None
        if self.config.object_targets == "selected":
            slots, weights = self._select(mixed, readout)
        return torch.cat([base, slots], dim=-1), readout, weights

    def _select(self, mixed: torch.Tensor, readout: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """object_targets=selected: (the 4 slots: softmax-weighted object xy (B, 4), the weights
        (B, 2, n_objects)). The logits come from the condition's mixed part (B, H), as the readout
        does (the pooled embedding the head reads may be detached; this one trains the language
        model to carry the instruction), one softmax for the instructed object, one for its
        destination."""
        n = self.config.aux_dim // 2
        weights = self.head.select(mixed).float().view(-1, 2, n).softmax(dim=-1)
        return _weighted_xy(weights, readout, n).to(readout.dtype), weights

    def denoise(
        self, noisy_actions: torch.Tensor, timesteps: torch.Tensor, condition: torch.Tensor
    ) -> torch.Tensor:
        """(B, T, Da), (B,) long, (B, C) -> predicted noise eps (B, T, Da)."""
        return self.head.unet(noisy_actions.to(condition.dtype), timesteps, condition)

    def sample(
        self, condition: torch.Tensor, noise: torch.Tensor, inpaint: InpaintInputs | None = None
    ) -> torch.Tensor:
        """DDIM (eta 0, num_inference_steps) from ``noise`` (B, T, Da) -> normalised actions (B, T, Da) float32.

        inpaint: committed prefix, weights and per-step noise (vla/inpaint.py): the known steps are
        re-noised to every step's level and blended in; None samples freely (bit-identical to before).
        """
        _, ddim = self.schedulers
        x = noise.to(device=condition.device, dtype=torch.float32)
        if inpaint is not None:
            return self._sample_inpaint(condition, x, inpaint)
        for t in ddim.timesteps:
            steps = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
            eps = self.denoise(x, steps, condition).float()  # (B, T, Da)
            x = ddim.step(eps, int(t), x).prev_sample
        return x

    def _sample_inpaint(
        self, condition: torch.Tensor, x: torch.Tensor, inpaint: InpaintInputs
    ) -> torch.Tensor:
        """The DDIM loop of ``sample`` with the RePaint-style blend after every step (see vla/inpaint.py)."""
        _, ddim = self.schedulers
        if self._plan is None:
            self._plan = DDIMPlan.from_scheduler(ddim)
        if inpaint.noise.shape[0] != len(self._plan) or inpaint.prefix.shape != tuple(x.shape):
            raise ValueError(
                f"inpaint inputs are for {inpaint.noise.shape[0]} steps and shape {inpaint.prefix.shape}; the "
                f"sampler runs {len(self._plan)} steps on {tuple(x.shape)}"
            )
        dev = x.device
        prefix = torch.from_numpy(inpaint.prefix).to(dev)  # (B, T, Da)
        weight = torch.from_numpy(inpaint.weight).to(dev)  # (B, T)
        noise = torch.from_numpy(inpaint.noise).to(dev)  # (n, B, T, Da)
        coef = torch.from_numpy(self._plan.coefficients).to(dev)  # (n, 4): sqrt a_t, sqrt 1-a_t, prev ...
        x = blend_torch(x, prefix, weight, x, coef[0, 0], coef[0, 1])
        for i, t in enumerate(ddim.timesteps):
            steps = torch.full((x.shape[0],), int(t), dtype=torch.long, device=dev)
            eps = self.denoise(x, steps, condition).float()  # (B, T, Da)
            x = ddim.step(eps, int(t), x).prev_sample
            x = blend_torch(x, prefix, weight, noise[i], coef[i, 2], coef[i, 3])
        return x

    # ------------------------------------------------------------------ training
    def _check_batch(self, batch: Mapping[str, Any]) -> int:
        c = self.config
        seen = "features" if "features" in batch else "images"
        for key in (seen, "state", "actions"):
            if key not in batch:
                raise KeyError(f"batch lacks {key!r}; keys given: {sorted(batch)}")
        images = batch[seen]
        if not isinstance(images, torch.Tensor) or images.ndim != 5:
            raise ValueError(
                f"batch[{seen!r}] must be a (B, N, ...) 5-D tensor, got {getattr(images, 'shape', images)!r}"
            )
        b = images.shape[0]
        side = c.feature_map_side
        expected = {
            seen: (b, c.num_cameras, 3, c.image_size, c.image_size)
            if seen == "images"
            else (b, c.num_cameras, c.vision.feature_channels, side, side),
            "state": (b, c.state_dim),
            "actions": (b, c.chunk_len, c.action_dim),
        }
        if seen == "features" and not c.vision.frozen:
            raise ValueError("batch['features'] (cached tower features) needs a frozen vision tower")
        for key, shape in expected.items():
            if tuple(batch[key].shape) != shape:
                raise ValueError(
                    f"batch[{key!r}] must have shape {shape} (B, ...), got {tuple(batch[key].shape)}"
                )
        if "action_pad" in batch and tuple(batch["action_pad"].shape) != (b, c.chunk_len):
            raise ValueError(
                f"batch['action_pad'] must have shape {(b, c.chunk_len)}, got {tuple(batch['action_pad'].shape)}"
            )
        for key in ("state", "actions"):
            if not bool(torch.isfinite(batch[key]).all()):
                raise ValueError(f"batch[{key!r}] contains NaN or inf")
        return b

    def _text_inputs(self, batch: Mapping[str, Any], b: int) -> tuple[torch.Tensor, torch.Tensor]:
        if "input_ids" in batch:
            ids = batch["input_ids"]
            mask = batch.get("attention_mask", torch.ones_like(ids))
        elif "instruction" in batch:
            ids, mask = self.tokenize_batch(batch["instruction"])
        else:
            raise KeyError("batch needs 'instruction' (list of str) or 'input_ids' (+ 'attention_mask')")
        if ids.shape[0] != b or mask.shape != ids.shape:
            raise ValueError(
                f"text inputs must be (B={b}, L); got input_ids {tuple(ids.shape)}, mask {tuple(mask.shape)}"
            )
        return ids.to(self.device), mask.to(self.device)

    @staticmethod
    def _unit_images(images: torch.Tensor) -> torch.Tensor:
        """uint8 (0..255) or float in [0, 1] -> float in [0, 1]."""
        if images.dtype == torch.uint8:
            return images.float() / 255.0
        if not images.is_floating_point():
            raise TypeError(f"images must be uint8 or float in [0, 1], got dtype {images.dtype}")
        low, high = float(images.min()), float(images.max())
        if not (low >= -1e-3 and high <= 1.0 + 1e-3):  # also rejects NaN
            raise ValueError(f"float images must lie in [0, 1] (RGB / 255), got values in [{low}, {high}]")
        return images

    def training_noise(
        self, b: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """DDPM noise (b, T, Da) float32 and diffusion steps (b,) long for b training samples, drawn
        from ``generator`` (on the model's device) in the order ``forward`` draws them."""
        c, dev = self.config, self.device
        noise = torch.randn((b, c.chunk_len, c.action_dim), generator=generator, device=dev)
        steps = torch.randint(0, c.num_train_steps, (b,), generator=generator, device=dev)
        return noise, steps

    def forward(
        self,
        batch: Mapping[str, Any],
        generator: torch.Generator | None = None,
        return_terms: bool = False,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Scalar training loss. batch: images (B, N, 3, S, S) uint8 or [0, 1] float (or features
        (B, N, C, h, w): a frozen tower's cached feature maps), instruction list[str] or input_ids/attention_mask (B, L), state (B, Ds), actions (B, T, Da) robot units, optional
        action_pad (B, T) bool (True past the episode end: excluded from the loss), optional
        noise (B, T, Da) and timesteps (B,) (this batch's rows of ``training_noise`` for a larger
        batch: how data-parallel ranks share one global batch's noise); optional state_noise (B, Ds),
        added to the normalised state, and slot_noise (B, slot_dim), the object slots' jitter draws
        (training augmentations); with the auxiliary loss aux (B, aux_dim) object xy and aux_mask
        (B,) (the steps they hold for), under object_targets=selected aux (B, aux_dim + 4): every
        object's xy, then the instructed object's and its destination's.
        generator: optional torch.Generator (on the model's device) for noise and timesteps.
        return_terms: instead of the loss, its sums and counts ({"mse_sum", "mse_count"} and, with
        the auxiliary loss, {"aux_sum", "aux_count"}, and {"select_sum", "select_count"} under
        object_targets=selected): data-parallel training divides the sums by
        the counts of the global batch (loss_from_terms), so the loss does not depend on how the
        batch was split.
        """
        b = self._check_batch(batch)
        norm = self._require_normalizer()
        dev = self.device
        ids, mask = self._text_inputs(batch, b)
        state = norm.normalize_state(batch["state"].to(dev, torch.float32))
        if "state_noise" in batch:  # training augmentation (B, Ds), in normalised state units
            state = state + batch["state_noise"].to(dev, torch.float32)
        target = norm.normalize_action(batch["actions"].to(dev, torch.float32))  # (B, T, Da) in [-1, 1]
        if "features" in batch:  # a frozen tower's cached feature maps (B, N, C, h, w)
            raw = self._condition(None, batch["features"].to(dev, self.dtype), ids, mask, state)
        else:
            raw = self._condition(self._unit_images(batch["images"].to(dev)), None, ids, mask, state)
        ddpm, _ = self.schedulers
        if "noise" in batch:
            noise = batch["noise"].to(dev, torch.float32)
            steps = batch["timesteps"].to(dev, torch.long)
            if tuple(noise.shape) != tuple(target.shape) or tuple(steps.shape) != (b,):
                raise ValueError(
                    f"batch noise {tuple(noise.shape)} / timesteps {tuple(steps.shape)} must be "
                    f"{tuple(target.shape)} / {(b,)}"
                )
        else:
            noise, steps = self.training_noise(b, generator)
        noisy = ddpm.add_noise(target, noise, steps)
        c = self.config
        aux = c.aux_dim and c.aux_weight and "aux" in batch
        condition, readout, weights = self._slots(raw)
        head_condition = condition
        if c.object_slots and "aux" in batch:
            teach = batch["aux_mask"]
            if c.object_slot_teacher == "episode":  # every step of a simulated episode
                teach = torch.ones_like(torch.as_tensor(teach), dtype=torch.bool)
            head_condition = self._teacher_slots(
                condition, batch["aux"][:, -c.slot_dim :], teach, generator, batch.get("slot_noise")
            )
        eps = self.denoise(noisy, steps, head_condition).float()
        terms = masked_mse_terms(eps, noise, batch.get("action_pad"))
        if aux:
            scene = batch["aux"][:, : c.aux_dim]
            terms.update(self.aux_terms(raw if readout is None else readout, scene, batch["aux_mask"]))
            if weights is not None:
                terms.update(self._selection_terms(weights, scene, batch["aux"][:, c.aux_dim :]))
        if return_terms:
            return terms
        counts = {k: v for k, v in terms.items() if k.endswith("_count")}
        return self.loss_from_terms(terms, counts)

    def loss_from_terms(
        self, terms: Mapping[str, torch.Tensor], counts: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        """The loss of ``forward`` from its ``return_terms`` sums and the ``counts`` to divide them
        by (this batch's, or a global batch's summed over data-parallel ranks)."""
        if float(counts["mse_count"]) == 0.0:
            raise ValueError("every step of the batch is padding (action_pad all True): nothing to learn")
        loss = terms["mse_sum"] / counts["mse_count"]
        for name in ("aux", "select"):  # the auxiliary terms (sim-only), with aux_weight
            if f"{name}_sum" in terms:
                mean = terms[f"{name}_sum"] / counts[f"{name}_count"].clamp_min(1.0)
                loss = loss + self.config.aux_weight * mean
        return loss

    def aux_loss(self, condition: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Sim-only auxiliary loss: MSE of the Linear readout of ``condition`` (B, C) against the
        object coordinates ``target`` (B, aux_dim), over the samples where ``mask`` (B,) is True."""
        terms = self.aux_terms(condition, target, mask)
        return terms["aux_sum"] / terms["aux_count"].clamp_min(1.0)

    def aux_terms(
        self, condition: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """aux_loss as {"aux_sum": squared errors summed, "aux_count": their number} (float32).
        Under object_slots ``condition`` ends with the readout: the readout alone (B, aux_dim), or
        _with_slots' output where the slots are the readout (not under object_targets=selected);
        else the readout is applied to it."""
        if self.config.object_slots:
            pred = condition[:, -self.config.aux_dim :].float()
        else:
            pred = self.head.aux(condition).float()  # (B, aux_dim)
        weight = mask.to(pred.device, pred.dtype).unsqueeze(-1)  # (B, 1)
        sq = (pred - target.to(pred.device, pred.dtype)) ** 2 * weight
        return {"aux_sum": sq.sum(), "aux_count": (weight.sum() * pred.shape[-1]).detach()}

    @staticmethod
    def _selection_terms(
        weights: torch.Tensor, scene: torch.Tensor, instructed: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """object_targets=selected: squared error of the selection ``weights`` (B, 2, n) applied to
        the simulator's object xy ``scene`` (B, 2n) against the instructed ones (B, 4), on every
        sample (the selection depends on the words, not on whether the objects have moved):
        {"select_sum", "select_count"}."""
        picked = _weighted_xy(weights, scene.to(weights.device), scene.shape[-1] // 2)
        sq = (picked - instructed.to(picked.device, torch.float32)) ** 2
        return {"select_sum": sq.sum(), "select_count": torch.tensor(float(sq.numel()), device=sq.device)}

    def _teacher_slots(
        self,
        condition: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor,
        generator: torch.Generator | None,
        jitter: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Training input of the head under config.object_slots: on the samples where ``mask`` (B,)
        is True the slots hold the simulator's coordinates ``target`` (B, aux_dim) plus noise of std
        object_slot_noise, elsewhere the readout, detached (the readout learns from the auxiliary
        loss alone, the head learns to act on positions). ``jitter`` (B, slot_dim): the standard
        normal draws to scale (a global batch's rows, as for the diffusion noise); from ``generator``
        when None."""
        d = self.config.slot_dim
        base, readout = condition[:, :-d], condition[:, -d:]
        target = target.to(readout.device, torch.float32)
        if jitter is None:
            jitter = torch.randn(target.shape, generator=generator, device=target.device)
        jitter = jitter.to(target.device, torch.float32)
        forced = (target + self.config.object_slot_noise * jitter).to(readout.dtype)
        keep = mask.to(readout.device).bool().unsqueeze(-1)  # (B, 1)
        return torch.cat([base, torch.where(keep, forced, readout.detach())], dim=-1)

    # ------------------------------------------------------------------ inference
    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        """Eval mode (no LoRA dropout) and inference_mode for one call; the previous mode is restored."""
        was_training = self.training
        toggle = any(m.training for m in self.modules())
        if toggle:
            self.eval()
        try:
            with torch.inference_mode():
                yield
        finally:
            if toggle:
                self.train(was_training)

    def predict_chunk_batch(
        self,
        images: Sequence[Sequence[np.ndarray]],
        instructions: Sequence[str],
        states: Any,
        seed: int | None = None,
        initial_noise: np.ndarray | None = None,
        prefix: np.ndarray | None = None,
        prefix_weight: np.ndarray | None = None,
    ) -> np.ndarray:
        """B observations -> (B, T, Da) float32 actions in robot units.

        images: B lists of N (H, W, 3) uint8 RGB (camera_names order); instructions: B strings;
        states (B, Ds) robot units; seed: fixes the initial noise (independent of global RNG);
        initial_noise (B, T, Da) overrides it. prefix (k, Da) or (B, k, Da) robot units and
        prefix_weight (T,) or (B, T) in [0, 1]: inpaint the committed steps (vla/inpaint.py); the
        known part's noise is seeded by ``seed`` too.
        """
        io = ChunkIO(self.config, self._require_normalizer())
        steps = len(self.schedulers[1].timesteps)
        x = io.prepare(images, instructions, states, seed, initial_noise, prefix, prefix_weight, steps)
        ids, mask = self.tokenize_batch(instructions)
        dev = self.device
        with self._inference():
            pixels, state_norm, noise = (
                torch.from_numpy(a).to(dev) for a in (x.pixel_values, x.state_norm, x.noise)
            )
            condition = self.encode_observation(pixels, ids.to(dev), mask.to(dev), state_norm)
            actions = self.sample(condition, noise, x.inpaint)
        return io.actions(actions.float().cpu().numpy())

    def predict_chunk(
        self,
        images: Sequence[np.ndarray],
        instruction: str,
        state: Any,
        seed: int | None = None,
        initial_noise: np.ndarray | None = None,
        prefix: np.ndarray | None = None,
        prefix_weight: np.ndarray | None = None,
    ) -> np.ndarray:
        """N images (H, W, 3) uint8 RGB, instruction, state (Ds,) -> (T, Da) float32 robot units.

        prefix (k, Da) robot units + prefix_weight (T,): inpaint the committed steps (see
        predict_chunk_batch); None for both samples freely.
        """
        io = ChunkIO(self.config, self._normalizer)
        images, instructions, states, noise = io.single(
            images, instruction, state, initial_noise, prefix, prefix_weight
        )
        out = self.predict_chunk_batch(
            images, instructions, states, seed, noise, prefix=prefix, prefix_weight=prefix_weight
        )
        return out[0]

    # ------------------------------------------------------------------ LoRA
    def apply_lora(self, variant: str | None = None) -> dict[str, int]:
        """Add LoRA adapters (config.lora, or ``variant`` "official" / "paper"); returns adapted layers per part."""
        settings = self.config.lora
        if variant is not None:
            if variant not in LORA_VARIANTS:
                raise ValueError(f"variant must be one of {list(LORA_VARIANTS)}, got {variant!r}")
            settings = settings.__class__(**{**settings.__dict__, "variant": variant})
            self.config = self.config.replace(lora=settings)
        return lora_lib.inject_lora(self.backbone, settings)

    def merge_lora(self) -> TinyVLAPolicy:
        """Fold the LoRA weights into the base weights in place; returns self, now a plain model
        (same parameter names as a model that never had LoRA, every parameter trainable)."""
        if not self.lora_applied:
            raise RuntimeError("merge_lora(): no LoRA adapters to merge")
        lora_lib.merge_lora_layers(self.backbone)
        for param in self.parameters():
            param.requires_grad_(True)
        return self

    def optimizer_param_groups(self, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        """AdamW groups: LoRA weights at config.lora.lr, other trainable weights at config.lora.base_lr
        (official 2e-4 / 2e-5); without LoRA a single group of every trainable parameter at lora.lr."""
        lora_params = [p for n, p in self.named_parameters() if p.requires_grad and "lora_" in n]
        other = [p for n, p in self.named_parameters() if p.requires_grad and "lora_" not in n]
        if not lora_params:
            return [{"params": other, "lr": self.config.lora.lr, "weight_decay": weight_decay}]
        return [
            {"params": lora_params, "lr": self.config.lora.lr, "weight_decay": weight_decay},
            {"params": other, "lr": self.config.lora.base_lr, "weight_decay": weight_decay},
        ]

    def parameter_summary(self) -> dict[str, Any]:
        """Parameter counts: total, per part (vision, projector, llm, head; LoRA adapters counted in
        their part), LoRA adapters, trainable and trainable percentage of the total."""
        parts = {
            "vision": self.backbone.vision,
            "projector": self.backbone.projector,
            "llm": self.backbone.llm,
            "head": self.head,
        }
        counts = {name: sum(p.numel() for p in mod.parameters()) for name, mod in parts.items()}
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {
            "total": total,
            "parts": counts,
            "lora": lora_lib.lora_parameter_count(self),
            "trainable": trainable,
            "trainable_percent": round(100.0 * trainable / max(total, 1), 3),
        }

    # ------------------------------------------------------------------ checkpoints
    def save_pretrained(self, directory: str | Path, state_dict: Mapping[str, Any] | None = None) -> Path:
        """Write config.json, model.safetensors, stats.json and tokenizer files to ``directory``
        (``state_dict``: weights to write instead of this model's own, same keys)."""
        return save_policy(self, directory, state_dict=state_dict)

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, map_location: str | torch.device = "cpu", expected: dict | None = None
    ) -> TinyVLAPolicy:
        """Load a checkpoint written by save_pretrained. ``expected`` ({"action_dim", "state_dim",
        "camera_names", ...}: what the robot needs) raises CheckpointMismatchError on a mismatch."""
        return load_policy(cls, directory, map_location=map_location, expected=expected)


def masked_mse_terms(
    pred: torch.Tensor, target: torch.Tensor, action_pad: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """masked_mse as {"mse_sum": squared errors over steps not padded, "mse_count": their number}."""
    sq = (pred - target) ** 2  # (B, T, Da)
    if action_pad is None:
        return {"mse_sum": sq.sum(), "mse_count": torch.tensor(float(sq.numel()), device=sq.device)}
    valid = (~action_pad.to(device=sq.device, dtype=torch.bool)).unsqueeze(-1).to(sq.dtype)  # (B, T, 1)
    return {"mse_sum": (sq * valid).sum(), "mse_count": (valid.sum() * sq.shape[-1]).detach()}


def _weighted_xy(weights: torch.Tensor, xy: torch.Tensor, n: int) -> torch.Tensor:
    """Selection weights (B, k, n) over n objects' xy (B, 2n) -> the k weighted xy (B, 2k), float32.
    ``n`` is a Python int so that exported graphs keep a static width."""
    rows = xy.float().view(-1, n, 2)  # (B, n, 2)
    return torch.einsum("bkn,bnc->bkc", weights.float(), rows).flatten(1)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, action_pad: torch.Tensor | None) -> torch.Tensor:
    """Mean squared error over steps not padded: pred/target (B, T, Da), action_pad (B, T) bool."""
    terms = masked_mse_terms(pred, target, action_pad)
    if float(terms["mse_count"]) == 0.0:
        raise ValueError("every step of the batch is padding (action_pad all True): nothing to learn")
    return terms["mse_sum"] / terms["mse_count"]
