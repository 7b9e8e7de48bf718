"""Inpainting in the DDIM sampler (RePaint-style): hold a chunk's leading steps to a committed prefix.

Real-time chunking for a diffusion head. The caller knows which actions of the next chunk are
already committed (they will be executed before the chunk arrives) and how strongly the steps
after them should follow the old plan: ``prefix`` (k, Da) in robot units and ``prefix_weight``
w (T,) in [0, 1], zero from step k on. The sampler then runs, with p the prefix normalised with
the checkpoint's statistics and zero-padded to T steps:

    x_T  <- w * (sqrt(a_T) p + sqrt(1 - a_T) noise) + (1 - w) * noise
    for every DDIM step i (timestep t_i, next noise level a_prev = alphas_cumprod[t_i - stride]):
        x <- ddim_step(x, denoise(x, t_i))                          (the usual update)
        x <- w * (sqrt(a_prev) p + sqrt(1 - a_prev) z_i) + (1 - w) * x    (known part re-noised)

So before every denoiser call the known steps sit at the current noise level (q(x_t | x_0) with
the scheduler's alphas_cumprod and a seeded draw z_i), and after the last step (a_prev = 1, the
DDIM "final alpha") the steps with w = 1 equal the prefix exactly; a step with 0 < w < 1 ends as
w * p + (1 - w) * (the model's value, itself steered towards p while denoising). The four numbers of each
step are DDIMPlan's coefficients: sqrt(a_t), sqrt(1 - a_t), sqrt(a_prev), sqrt(1 - a_prev).
Committed actions from an earlier chunk lie within the checkpoint's action range; a prefix
outside it comes out clipped to it, as every unnormalised action does.

One implementation per runtime, all with the same operation order (float32):
    torch   ``blend_torch``   (TinyVLAPolicy.sample; torch and torch_compile engines)
    numpy   ``blend_numpy``   (ONNX engine, numpy loop)
    graph   ``blend_torch`` traced into denoise_step_inpaint.onnx / sampler_inpaint_<n>.onnx
            (ONNX engine, fused and graph loops: prefix, weight and noise are graph inputs)

Glossary: B batch, T chunk length, Da action dim, n DDIM steps, k committed steps (<= T).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["InpaintInputs", "blend_numpy", "blend_torch", "check_prefix", "prepare_inpaint", "prefix_noise"]

# The known part's noise comes from its own torch CPU generator: seed ^ _SEED_MIX, so that the
# initial noise of a seed is the same with and without a prefix.
_SEED_MIX = 0x5EED_1A7E


@dataclass(frozen=True)
class InpaintInputs:
    """Sampler inputs of one inpainted batch (all float32, C-contiguous).

    prefix: (B, T, Da) normalised committed actions, zero past each row's k;
    weight: (B, T) per-step weights in [0, 1]; noise: (n, B, T, Da) one draw z_i per DDIM step.
    """

    prefix: np.ndarray
    weight: np.ndarray
    noise: np.ndarray

    def __post_init__(self) -> None:
        b, t, d = self.prefix.shape
        if self.weight.shape != (b, t) or self.noise.ndim != 4 or self.noise.shape[1:] != (b, t, d):
            raise ValueError(
                f"inpaint inputs disagree: prefix {self.prefix.shape}, weight {self.weight.shape}, "
                f"noise {self.noise.shape} (need (B, T, Da), (B, T), (n, B, T, Da))"
            )


def check_prefix(
    prefix: Any, prefix_weight: Any, batch: int, chunk_len: int, action_dim: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Validate a committed prefix; returns (prefix (B, k, Da), weight (B, T)) float32 or None.

    prefix: (k, Da) or (B, k, Da) robot units, 1 <= k <= chunk_len; prefix_weight: (T,) or (B, T)
    in [0, 1] with zeros from step k on. Both None: no inpainting. Raises ValueError naming the
    argument and the bad value otherwise.
    """
    if prefix is None and prefix_weight is None:
        return None
    if prefix is None or prefix_weight is None:
        raise ValueError(
            "prefix and prefix_weight go together: got "
            f"prefix={'None' if prefix is None else 'array'}, prefix_weight={'None' if prefix_weight is None else 'array'}"
        )
    p = np.asarray(prefix, dtype=np.float32)
    w = np.asarray(prefix_weight, dtype=np.float32)
    if p.ndim == 2:
        p = np.broadcast_to(p, (batch, *p.shape))
    if w.ndim == 1:
        w = np.broadcast_to(w, (batch, *w.shape))
    if p.ndim != 3 or p.shape[0] != batch or p.shape[2] != action_dim or not 1 <= p.shape[1] <= chunk_len:
        raise ValueError(
            f"prefix must have shape (k, {action_dim}) or ({batch}, k, {action_dim}) with 1 <= k <= "
            f"{chunk_len}, got {np.shape(prefix)}"
        )
    if w.shape != (batch, chunk_len):
        raise ValueError(
            f"prefix_weight must have shape ({chunk_len},) or ({batch}, {chunk_len}), got {np.shape(prefix_weight)}"
        )
    if not np.all(np.isfinite(p)):
        raise ValueError(f"prefix contains NaN or inf: {p.tolist()}")
    if not (np.all(np.isfinite(w)) and np.all(w >= 0.0) and np.all(w <= 1.0)):
        raise ValueError(f"prefix_weight must lie in [0, 1], got {w.tolist()}")
    k = p.shape[1]
    if np.any(w[:, k:] != 0.0):
        raise ValueError(
            f"prefix_weight must be 0 from step k={k} on (no committed action there), got {w.tolist()}"
        )
    return np.array(p, dtype=np.float32, order="C"), np.array(w, dtype=np.float32, order="C")  # own copies


def prefix_noise(shape: tuple[int, int, int], steps: int, seed: int | None) -> np.ndarray:
    """(steps, B, T, Da) float32 standard normal draws for the known part (torch CPU generator)."""
    import torch

    gen = torch.Generator(device="cpu")
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed((int(seed) ^ _SEED_MIX) % (1 << 63))
    return torch.randn((steps, *shape), generator=gen).numpy()


def prepare_inpaint(
    prefix: np.ndarray, weight: np.ndarray, normalizer: Any, chunk_len: int, steps: int, seed: int | None
) -> InpaintInputs:
    """Checked prefix (B, k, Da) robot units + weight (B, T) -> InpaintInputs for a ``steps``-step loop."""
    b, k, d = prefix.shape
    padded = np.zeros((b, chunk_len, d), np.float32)
    padded[:, :k] = np.asarray(normalizer.normalize_action(prefix.astype(np.float64)), dtype=np.float32)
    return InpaintInputs(
        padded, np.ascontiguousarray(weight, np.float32), prefix_noise((b, chunk_len, d), steps, seed)
    )


def blend_numpy(
    x: np.ndarray, prefix: np.ndarray, weight: np.ndarray, z: np.ndarray, sqrt_a: Any, sqrt_1ma: Any
) -> np.ndarray:
    """x (B, T, Da) <- w * (sqrt_a * p + sqrt_1ma * z) + (1 - w) * x, in place; weight (B, T)."""
    w = weight[..., None]  # (B, T, 1)
    known = prefix * np.float32(sqrt_a) + z * np.float32(sqrt_1ma)
    x *= np.float32(1.0) - w
    x += known * w
    return x


def blend_torch(x: Any, prefix: Any, weight: Any, z: Any, sqrt_a: Any, sqrt_1ma: Any) -> Any:
    """The same blend on tensors: x (B, T, Da), prefix (B, T, Da), weight (B, T), z (B, T, Da)."""
    w = weight.unsqueeze(-1)  # (B, T, 1)
    known = prefix * sqrt_a + z * sqrt_1ma
    return x * (1.0 - w) + known * w
