"""``torch`` engine: a TinyVLAPolicy run eagerly by PyTorch, optionally under bf16/fp16 autocast.

``TinyVLAPolicy.predict_chunk`` runs the NumPy step every engine shares (chunk_io.ChunkIO: input
checks, pixel values, state normalisation, seeded initial noise, un-normalisation) around the
policy's encoder and DDIM loop, which this engine runs under inference mode and autocast.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinyvla_ros.vla.engines.base import EngineConfig, warm_up


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a hard dependency of vla/
        raise ImportError("the torch engine needs PyTorch: pip install -r requirements/ml.txt") from exc
    return torch


class TorchEngine:
    """Runs a TinyVLAPolicy with PyTorch (eager), optionally under bf16/fp16 autocast."""

    name = "torch"

    def __init__(self, policy: Any, cfg: EngineConfig) -> None:
        torch = _torch()
        self._torch = torch
        self.cfg = cfg
        if cfg.num_threads > 0:
            torch.set_num_threads(cfg.num_threads)
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"device {cfg.device!r} requested but torch sees no CUDA device")
        self.policy = policy.to(cfg.device).eval()
        self.config = policy.config
        self._dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)

    def predict_chunk(
        self,
        images: list[np.ndarray],
        instruction: str,
        state: np.ndarray,
        seed: int | None = None,
        prefix: np.ndarray | None = None,
        prefix_weight: np.ndarray | None = None,
    ) -> np.ndarray:
        """images: n_cams x (H, W, 3) uint8 RGB; state (state_dim,) -> (T, A) float32 robot units.

        prefix (k, A) robot units + prefix_weight (T,): inpaint the committed steps (vla/inpaint.py).
        The inputs are checked and converted by the policy's NumPy step (chunk_io.ChunkIO).
        """
        torch = self._torch
        kwargs = {"seed": seed}
        if prefix is not None or prefix_weight is not None:
            kwargs.update(prefix=prefix, prefix_weight=prefix_weight)
        with torch.inference_mode():
            if self._dtype is None:
                out = self.policy.predict_chunk(images, instruction, state, **kwargs)
            else:
                device_type = "cuda" if self.cfg.device.startswith("cuda") else "cpu"
                with torch.autocast(device_type=device_type, dtype=self._dtype):
                    out = self.policy.predict_chunk(images, instruction, state, **kwargs)
        return np.asarray(out, dtype=np.float32)

    def warmup(self, runs: int = 2) -> float:
        """Blank inferences at the configured image size; returns the last duration (s)."""
        return warm_up(self, runs)
