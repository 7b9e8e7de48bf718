"""The NumPy input/output step every engine shares: observation checks, model inputs, actions out.

``ChunkIO(config, normalizer)`` for a checkpoint's TinyVLAConfig and Normalizer. Glossary: B batch,
N cameras (config.camera_names order), S image side, Ds/Da state/action dims, T chunk length,
n DDIM steps, k committed steps.

    single(images, instruction, state, initial_noise, prefix, prefix_weight)
        one observation's checks -> (images, instructions, states, initial_noise) as a batch of 1
    prepare(images, instructions, states, seed, initial_noise, prefix, prefix_weight, steps)
        -> ChunkInputs: pixel_values (B, N, 3, S, S) f32 in [0, 1] (vla/preprocess.py),
           state_norm (B, Ds) f32 z-scores, noise (B, T, Da) f32 (``initial_noise``, else torch's
           CPU generator seeded by ``seed``: the same numbers in every engine), inpaint (the
           committed prefix normalised, its weights and seeded per-step noise; vla/inpaint.py) or None
    actions(normalised (B, T, Da)) -> (B, T, Da) f32 robot units (clipped to the stats' range)

A bad input raises ValueError naming it (TypeError for an instruction that is not a str). Used by
``TinyVLAPolicy.predict_chunk(_batch)`` (so by the torch and torch_compile engines, which run it)
and by ``OnnxEngine``; the prompt's tokens stay with each engine (the policy's tokenizer, the ONNX
engine's per-instruction cache). NumPy only: torch is imported for the seeded noise alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinyvla_ros.vla.inpaint import InpaintInputs, check_prefix, prepare_inpaint
from tinyvla_ros.vla.preprocess import prepare_cameras


@dataclass(frozen=True)
class ChunkInputs:
    """The model inputs of B observations (float32, C-contiguous); see the module docstring."""

    pixel_values: np.ndarray
    state_norm: np.ndarray
    noise: np.ndarray
    inpaint: InpaintInputs | None


class ChunkIO:
    """Observation checks and conversions of one checkpoint (config + normalisation statistics).

    reuse_buffers: ``pixel_values`` writes into one preallocated array per batch size (returned
    each time; the ONNX engine, which holds a lock around a call) instead of a new array.
    """

    def __init__(self, config: Any, normalizer: Any, reuse_buffers: bool = False) -> None:
        self.config = config
        self.normalizer = normalizer
        self._pixels: dict[int, np.ndarray] | None = {} if reuse_buffers else None

    # ------------------------------------------------------------------ checks
    def single(
        self,
        images: Sequence[np.ndarray],
        instruction: str,
        state: Any,
        initial_noise: Any = None,
        prefix: Any = None,
        prefix_weight: Any = None,
    ) -> tuple[list, list, np.ndarray, np.ndarray | None]:
        """One observation (N images, instruction, state (Ds,), initial_noise (T, Da), prefix (k, Da),
        prefix_weight (T,)) -> ([images], [instruction], states (1, Ds), initial_noise (1, T, Da) or None)."""
        c = self.config
        state = np.asarray(state, dtype=np.float32)
        if state.shape != (c.state_dim,):
            raise ValueError(f"state must have shape ({c.state_dim},), got {state.shape}")
        noise = None if initial_noise is None else np.asarray(initial_noise, dtype=np.float32)[None]
        if noise is not None and noise.shape[1:] != (c.chunk_len, c.action_dim):
            raise ValueError(
                f"initial_noise must have shape {(c.chunk_len, c.action_dim)}, got {noise.shape[1:]}"
            )
        if (prefix is not None and np.ndim(prefix) != 2) or (
            prefix_weight is not None and np.ndim(prefix_weight) != 1
        ):
            raise ValueError(
                f"prefix must be (k, Da) and prefix_weight (T,) for one observation, got shapes "
                f"{np.shape(prefix)} and {np.shape(prefix_weight)}"
            )
        return [images], [instruction], state[None], noise

    def check_batch(self, images: Sequence[Any], instructions: Sequence[str]) -> int:
        """B image sets and B instructions (each a str) -> B."""
        batch = len(images)
        if batch == 0 or isinstance(instructions, str) or len(instructions) != batch:
            raise ValueError(
                f"need one instruction per observation: {batch} image sets, {len(instructions)} instructions"
            )
        for instruction in instructions:
            if not isinstance(instruction, str):
                raise TypeError(f"instruction must be a str, got {type(instruction).__name__}")
        return batch

    # ------------------------------------------------------------------ inputs
    def pixel_values(self, images: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
        """B lists of N (H, W, 3) uint8 RGB, any H, W -> (B, N, 3, S, S) f32 in [0, 1]."""
        c = self.config
        batch = len(images)
        out = None if self._pixels is None else self._pixels.get(batch)
        if out is None:
            out = np.empty((batch, c.num_cameras, 3, c.image_size, c.image_size), np.float32)
            if self._pixels is not None:
                self._pixels[batch] = out
        for b, obs in enumerate(images):
            prepare_cameras(obs, c.image_size, c.camera_names, crop=c.center_crop, out=out[b])
        return out

    def states(self, states: Any, batch: int) -> np.ndarray:
        """(B, Ds) robot units -> (B, Ds) f32 z-scores (the checkpoint's statistics)."""
        c = self.config
        arr = np.asarray(states, dtype=np.float32)
        if arr.shape != (batch, c.state_dim):
            raise ValueError(f"states must have shape (B={batch}, state_dim={c.state_dim}), got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"state contains NaN or inf: {arr.tolist()}")
        return np.ascontiguousarray(self.normalizer.normalize_state(arr), dtype=np.float32)

    def noise(self, batch: int, seed: int | None, initial_noise: Any = None) -> np.ndarray:
        """(B, T, Da) f32: ``initial_noise`` (checked) or a draw of torch's CPU generator seeded by
        ``seed`` (None: a fresh seed), independent of the global RNG."""
        shape = (batch, self.config.chunk_len, self.config.action_dim)
        if initial_noise is not None:
            noise = np.asarray(initial_noise, dtype=np.float32)
            if noise.shape != shape:
                raise ValueError(f"initial_noise must have shape {shape}, got {noise.shape}")
            if not np.all(np.isfinite(noise)):
                raise ValueError("initial_noise contains NaN or inf")
            return noise
        import torch

        gen = torch.Generator(device="cpu")
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(int(seed))
        return torch.randn(shape, generator=gen).numpy()

    def inpaint(
        self, prefix: Any, prefix_weight: Any, batch: int, steps: int, seed: int | None
    ) -> InpaintInputs | None:
        """Checked committed prefix (k, Da) or (B, k, Da) robot units + weights (T,) or (B, T) ->
        the sampler's inpainting inputs for ``steps`` DDIM steps (known part's noise seeded by
        ``seed``); None when both are None (free sampling)."""
        c = self.config
        checked = check_prefix(prefix, prefix_weight, batch, c.chunk_len, c.action_dim)
        if checked is None:
            return None
        return prepare_inpaint(*checked, self.normalizer, c.chunk_len, steps, seed)

    def prepare(
        self,
        images: Sequence[Sequence[np.ndarray]],
        instructions: Sequence[str],
        states: Any,
        seed: int | None = None,
        initial_noise: Any = None,
        prefix: Any = None,
        prefix_weight: Any = None,
        steps: int = 0,
    ) -> ChunkInputs:
        """B observations -> ChunkInputs (see the module docstring); ``steps``: the sampler's DDIM
        steps (used with a prefix)."""
        batch = self.check_batch(images, instructions)
        state_norm = self.states(states, batch)
        noise = self.noise(batch, seed, initial_noise)
        inpaint = self.inpaint(prefix, prefix_weight, batch, steps, seed)
        return ChunkInputs(self.pixel_values(images), state_norm, noise, inpaint)

    # ------------------------------------------------------------------ outputs
    def actions(self, normalised: np.ndarray) -> np.ndarray:
        """(B, T, Da) normalised actions in [-1, 1] -> (B, T, Da) f32 robot units (clipped)."""
        return self.normalizer.unnormalize_action(np.asarray(normalised, np.float32)).astype(np.float32)
