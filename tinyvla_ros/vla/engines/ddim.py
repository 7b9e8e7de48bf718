"""The DDIM sampling loop as precomputed numbers, for engines that run it outside diffusers.

``DDIMPlan.from_config(config)`` builds diffusers' own ``DDIMScheduler`` with the checkpoint's
schedule (the same arguments as ``TinyVLAPolicy.schedulers``), calls ``set_timesteps`` and reads,
for every inference step i, the timestep t_i and the four float32 coefficients of one
deterministic (eta = 0) DDIM update, computed with the scheduler's own tensors and torch float32
arithmetic, in the order diffusers computes them:

    x0    = (x - sqrt(1 - a_t) * eps) / sqrt(a_t)          a_t = alphas_cumprod[t_i]
    x0    = clip(x0, -r, r)                                   (when clip_sample; r = clip_sample_range)
    x_new = sqrt(a_prev) * x0 + sqrt(1 - a_prev) * eps       a_prev = alphas_cumprod[t_i - k] or final

The float32 products and quotients are the same IEEE operations diffusers performs, so the
NumPy update (``step_numpy``) reproduces ``DDIMScheduler.step(...).prev_sample`` bit for bit.
Shapes: x, eps (B, T, Da) float32; coefficients (n_steps, 4) float32 [sqrt_a, sqrt_1ma, sqrt_ap, dir].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

COEFFICIENTS = ("sqrt_alpha", "sqrt_one_minus_alpha", "sqrt_alpha_prev", "direction")


def _schedulers() -> Any:
    try:
        from diffusers import DDIMScheduler
    except ImportError as exc:  # pragma: no cover - diffusers is in requirements/ml.txt
        raise ImportError("the DDIM plan needs diffusers: pip install -r requirements/ml.txt") from exc
    return DDIMScheduler


def build_scheduler(config: Any, num_inference_steps: int | None = None) -> Any:
    """diffusers DDIMScheduler of a TinyVLAConfig (as TinyVLAPolicy builds it), timesteps set."""
    steps = config.num_inference_steps if num_inference_steps is None else num_inference_steps
    _check_steps(steps, config.num_train_steps)
    scheduler = _schedulers()(
        num_train_timesteps=config.num_train_steps,
        beta_schedule=config.beta_schedule,
        clip_sample=config.clip_sample,
        prediction_type="epsilon",
        timestep_spacing=config.timestep_spacing,
    )
    scheduler.set_timesteps(steps)
    return scheduler


def _check_steps(steps: Any, train_steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= train_steps:
        raise ValueError(f"num_inference_steps must be an integer in [1, {train_steps}], got {steps!r}")


@dataclass(frozen=True)
class DDIMPlan:
    """Timesteps (n,) int64 and coefficients (n, 4) float32 of a deterministic DDIM loop.

    clip: whether x0 is clipped; clip_range: r. ``len(plan)`` is the number of denoiser calls.
    """

    timesteps: np.ndarray
    coefficients: np.ndarray
    clip: bool
    clip_range: float

    def __post_init__(self) -> None:
        t = np.asarray(self.timesteps)
        c = np.asarray(self.coefficients)
        if t.ndim != 1 or t.size == 0 or t.dtype != np.int64:
            raise ValueError(
                f"timesteps must be a non-empty 1-D int64 array, got shape {t.shape} dtype {t.dtype}"
            )
        if c.shape != (t.size, 4) or c.dtype != np.float32:
            raise ValueError(
                f"coefficients must be ({t.size}, 4) float32, got shape {c.shape} dtype {c.dtype}"
            )
        if not np.all(np.isfinite(c)):
            raise ValueError(f"coefficients must be finite, got {c.tolist()}")
        if not (np.isfinite(self.clip_range) and self.clip_range > 0):
            raise ValueError(f"clip_range must be a positive number, got {self.clip_range!r}")

    def __len__(self) -> int:
        return int(self.timesteps.shape[0])

    @classmethod
    def from_scheduler(cls, scheduler: Any) -> DDIMPlan:
        """Read the plan from a diffusers DDIMScheduler whose timesteps are set (eta 0, epsilon)."""
        import torch

        cfg = scheduler.config
        if cfg.prediction_type != "epsilon" or cfg.thresholding:
            raise ValueError(
                f"DDIMPlan supports prediction_type 'epsilon' without thresholding, got "
                f"{cfg.prediction_type!r} thresholding={cfg.thresholding!r}"
            )
        if scheduler.num_inference_steps is None:
            raise ValueError("the scheduler's timesteps are not set: call set_timesteps first")
        stride = cfg.num_train_timesteps // scheduler.num_inference_steps
        rows = []
        for t in scheduler.timesteps.tolist():
            prev = t - stride
            a_t = scheduler.alphas_cumprod[t]
            a_prev = scheduler.alphas_cumprod[prev] if prev >= 0 else scheduler.final_alpha_cumprod
            std_dev = torch.tensor(0.0)  # eta = 0: no variance term
            rows.append(
                [
                    float(a_t**0.5),
                    float((1 - a_t) ** 0.5),
                    float(a_prev**0.5),
                    float((1 - a_prev - std_dev**2) ** 0.5),
                ]
            )
        return cls(
            timesteps=np.asarray(scheduler.timesteps.tolist(), dtype=np.int64),
            coefficients=np.asarray(rows, dtype=np.float32),
            clip=bool(cfg.clip_sample),
            clip_range=float(cfg.clip_sample_range),
        )

    @classmethod
    def from_config(cls, config: Any, num_inference_steps: int | None = None) -> DDIMPlan:
        """Plan of a TinyVLAConfig; num_inference_steps overrides config.num_inference_steps."""
        return cls.from_scheduler(build_scheduler(config, num_inference_steps))

    def step_numpy(self, i: int, x: np.ndarray, eps: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """One update: x (B, T, Da), eps (B, T, Da) float32 -> x_prev (B, T, Da); ``out`` may alias x."""
        sa, s1a, sap, direction = (np.float32(v) for v in self.coefficients[i])
        x0 = (x - s1a * eps) / sa  # predicted clean sample
        if self.clip:
            np.clip(x0, np.float32(-self.clip_range), np.float32(self.clip_range), out=x0)
        x0 *= sap
        if out is None:
            out = np.empty_like(x0)
        np.multiply(eps, direction, out=out)
        out += x0
        return out

    def run_numpy(self, denoise: Any, noise: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The whole loop: denoise(x (B, T, Da), step_index) -> eps; noise (B, T, Da) -> x_0 (B, T, Da)."""
        x = np.array(noise, dtype=np.float32, copy=True) if out is None else out
        if out is not None:
            np.copyto(x, noise)
        for i in range(len(self)):
            self.step_numpy(i, x, denoise(x, i), out=x)
        return x

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description (stored in the ONNX manifest)."""
        return {
            "timesteps": self.timesteps.tolist(),
            "coefficients": self.coefficients.tolist(),
            "clip": self.clip,
            "clip_range": self.clip_range,
        }
