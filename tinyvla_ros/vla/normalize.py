"""Action / state normalisation, stored as JSON beside the weights (never pickle).

Actions: min-max to [-1, 1]. ``action_low`` / ``action_high`` are the values that map to -1 / +1:
the data range widened by ``margin`` (a fraction of the range, default 1%) plus ``eps`` (so a
constant dimension still has a non-zero range). Unnormalisation clips to [-1, 1] first, so a
policy can never command an action outside [action_low, action_high].
States: z-score with the standard deviation floored at ``std_floor`` (0.01).

Works on NumPy arrays and on torch tensors (stats are converted to the tensor's device/dtype);
this module itself does not import torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "tinyvla_ros.normalizer/1"


def _vector(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D vector, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return arr


def _like(stat: np.ndarray, x: Any) -> Any:
    """``stat`` as the same kind of array as ``x`` (torch tensor on x's device/dtype, or NumPy)."""
    if type(x).__module__.startswith("torch"):
        import torch

        return torch.as_tensor(stat, dtype=x.dtype, device=x.device)
    return stat.astype(np.asarray(x).dtype if np.asarray(x).dtype.kind == "f" else np.float64)


def _clip(x: Any, low: float, high: float) -> Any:
    return x.clamp(low, high) if hasattr(x, "clamp") else np.clip(x, low, high)


@dataclass(frozen=True)
class Normalizer:
    """Per-dimension statistics. Shapes: action_low/high (Da,), state_mean/std (Ds,)."""

    action_low: np.ndarray
    action_high: np.ndarray
    state_mean: np.ndarray
    state_std: np.ndarray
    std_floor: float = 0.01

    def __post_init__(self) -> None:
        for name in ("action_low", "action_high", "state_mean", "state_std"):
            object.__setattr__(self, name, _vector(name, getattr(self, name)))
        if self.action_low.shape != self.action_high.shape:
            raise ValueError(
                f"action_low {self.action_low.shape} and action_high {self.action_high.shape} differ in shape"
            )
        if self.state_mean.shape != self.state_std.shape:
            raise ValueError(
                f"state_mean {self.state_mean.shape} and state_std {self.state_std.shape} differ in shape"
            )
        bad = np.nonzero(self.action_high <= self.action_low)[0]
        if bad.size:
            raise ValueError(
                f"action_high must exceed action_low in every dimension; not in dims {bad.tolist()}: "
                f"low={self.action_low[bad].tolist()} high={self.action_high[bad].tolist()}"
            )
        if not (
            isinstance(self.std_floor, int | float) and math.isfinite(self.std_floor) and self.std_floor > 0
        ):
            raise ValueError(f"std_floor must be a positive number, got {self.std_floor!r}")
        object.__setattr__(self, "state_std", np.maximum(self.state_std, self.std_floor))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_data(
        cls, actions: Any, states: Any, margin: float = 0.01, eps: float = 1e-4, std_floor: float = 0.01
    ) -> Normalizer:
        """Statistics of ``actions`` (..., Da) and ``states`` (..., Ds) in robot units."""
        if not (0.0 <= margin <= 1.0) or not (0.0 < eps):
            raise ValueError(f"margin must be in [0, 1] and eps > 0, got margin={margin!r} eps={eps!r}")
        acts = np.asarray(actions, dtype=np.float64)
        sts = np.asarray(states, dtype=np.float64)
        if acts.ndim < 1 or acts.size == 0 or sts.ndim < 1 or sts.size == 0:
            raise ValueError(f"actions and states must be non-empty, got shapes {acts.shape} and {sts.shape}")
        acts = acts.reshape(-1, acts.shape[-1])
        sts = sts.reshape(-1, sts.shape[-1])
        for name, arr in (("actions", acts), ("states", sts)):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} contain NaN or inf values")
        lo, hi = acts.min(axis=0), acts.max(axis=0)
        widen = margin * (hi - lo) + eps
        return cls(lo - widen, hi + widen, sts.mean(axis=0), sts.std(axis=0), std_floor=std_floor)

    @classmethod
    def identity(cls, action_dim: int, state_dim: int) -> Normalizer:
        """Actions already in [-1, 1], states already standardised (for tests and random models)."""
        return cls(-np.ones(action_dim), np.ones(action_dim), np.zeros(state_dim), np.ones(state_dim))

    @property
    def action_dim(self) -> int:
        return int(self.action_low.shape[0])

    @property
    def state_dim(self) -> int:
        return int(self.state_mean.shape[0])

    # ------------------------------------------------------------------ transforms
    def _check(self, x: Any, dim: int, what: str) -> None:
        if x.shape[-1] != dim:
            raise ValueError(f"{what} has last dimension {x.shape[-1]}, the normaliser expects {dim}")

    # Centre and half-range are computed in float64 once, so float32 inputs lose no precision
    # to the subtraction of nearly equal bounds (e.g. a gripper that barely moves).
    @property
    def _centre(self) -> np.ndarray:
        return (self.action_high + self.action_low) * 0.5

    @property
    def _half_range(self) -> np.ndarray:
        return (self.action_high - self.action_low) * 0.5

    def normalize_action(self, actions: Any) -> Any:
        """(..., Da) robot units -> (..., Da) in [-1, 1] for data within the stats' range."""
        self._check(actions, self.action_dim, "actions")
        return (actions - _like(self._centre, actions)) * _like(1.0 / self._half_range, actions)

    def unnormalize_action(self, actions: Any) -> Any:
        """(..., Da) normalised -> (..., Da) robot units, clipped into [action_low, action_high]."""
        self._check(actions, self.action_dim, "normalised actions")
        return _clip(actions, -1.0, 1.0) * _like(self._half_range, actions) + _like(self._centre, actions)

    def normalize_state(self, states: Any) -> Any:
        """(..., Ds) robot units -> z-scores."""
        self._check(states, self.state_dim, "state")
        return (states - _like(self.state_mean, states)) / _like(self.state_std, states)

    # ------------------------------------------------------------------ storage
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "action_low": self.action_low.tolist(),
            "action_high": self.action_high.tolist(),
            "state_mean": self.state_mean.tolist(),
            "state_std": self.state_std.tolist(),
            "std_floor": float(self.std_floor),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalizer:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"not a normaliser dict: format is {found!r}, expected {FORMAT!r}")
        keys = ("action_low", "action_high", "state_mean", "state_std")
        missing = [k for k in keys if k not in data]
        if missing:
            raise ValueError(f"normaliser dict lacks {missing}")
        return cls(*(data[k] for k in keys), std_floor=float(data.get("std_floor", 0.01)))

    def save(self, path: str | Path) -> Path:
        """Write JSON to ``path`` (a file)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Normalizer:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
        try:
            return cls.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
