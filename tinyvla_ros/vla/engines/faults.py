"""Test-only fault hook: an engine wrapper that makes a real engine misbehave on purpose.

Enabled only when the environment variable ``TINYVLA_ENABLE_FAULT_HOOKS=1`` is set (anything
else: ``fault_config`` raises RuntimeError), so a deployed policy node can never be
switched into it by a parameter alone. Selected through the policy node's ``engine``
parameter with a spec string::

    fault:mode=<nan|huge|jump|stall|file>[,inner=torch][,after_s=S][,duration_s=D]
          [,trigger=/path/file][,magnitude=M][,stall_s=T]

- ``nan``   the chunk's every value is NaN;
- ``huge``  every joint action becomes ``magnitude`` (default 1000: far outside any limit);
- ``jump``  the second half of the chunk is offset by ``magnitude`` (default 1.0 rad): a
            discontinuous chunk whose values may all lie inside the limits;
- ``stall`` inference blocks for ``stall_s`` seconds (default 3.0), then returns normally.

The fault is active while ``trigger`` names an existing file (the test creates and deletes it:
precise injection and recovery; with ``mode=file`` the file's content, e.g. ``jump``, picks the
mode of each prediction, so one policy process can go through every fault), or, without a trigger, from ``after_s`` seconds after the first
prediction for ``duration_s`` seconds (default: forever). Outside it the inner engine's chunk
is returned unchanged. Shapes: chunk (T, A) float32.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ENV_FLAG = "TINYVLA_ENABLE_FAULT_HOOKS"
FAULT_MODES = ("nan", "huge", "jump", "stall")
SPEC_MODES = (*FAULT_MODES, "file")
_DEFAULT_MAGNITUDE = {"nan": 0.0, "huge": 1000.0, "jump": 1.0, "stall": 0.0}


@dataclass
class FaultEngineConfig:
    """Parsed fault spec (see the module docstring); times in seconds."""

    mode: str
    inner: str = "torch"
    after_s: float = 0.0
    duration_s: float = math.inf
    trigger: str = ""
    magnitude: float = math.nan  # nan: the mode's default
    stall_s: float = 3.0

    def __post_init__(self) -> None:
        if self.mode not in SPEC_MODES:
            raise ValueError(f"fault engine mode must be one of {list(SPEC_MODES)}, got {self.mode!r}")
        if self.mode == "file" and not self.trigger:
            raise ValueError("fault engine mode 'file' needs trigger=<path>")
        if not self.inner or self.inner.startswith("fault"):
            raise ValueError(f"fault engine inner must name a real engine (e.g. torch), got {self.inner!r}")
        for name in ("after_s", "duration_s", "stall_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
                raise ValueError(f"fault engine {name} must be a number >= 0, got {value!r}")
        if math.isnan(self.magnitude) and self.mode != "file":
            self.magnitude = _DEFAULT_MAGNITUDE[self.mode]
        if not math.isfinite(self.magnitude) and self.mode != "file":
            raise ValueError(f"fault engine magnitude must be finite, got {self.magnitude!r}")


def parse_fault_spec(spec: str) -> FaultEngineConfig:
    """ "fault:mode=jump,after_s=2" -> FaultEngineConfig; ValueError naming the bad item."""
    head, _, body = str(spec).partition(":")
    if head != "fault" or not body:
        raise ValueError(f"fault engine spec must look like 'fault:mode=nan,...', got {spec!r}")
    values: dict[str, Any] = {}
    for item in body.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in FaultEngineConfig.__dataclass_fields__:
            raise ValueError(
                f"fault engine spec item {item!r} must be key=value with key in "
                f"{list(FaultEngineConfig.__dataclass_fields__)}"
            )
        if key in ("mode", "inner", "trigger"):
            values[key] = value.strip()
        else:
            try:
                values[key] = float(value)
            except ValueError:
                raise ValueError(f"fault engine spec {key}={value!r} must be a number") from None
    if "mode" not in values:
        raise ValueError(f"fault engine spec {spec!r} needs mode=<{'|'.join(FAULT_MODES)}>")
    return FaultEngineConfig(**values)


def hooks_enabled() -> bool:
    """Whether TINYVLA_ENABLE_FAULT_HOOKS=1 is set."""
    return os.environ.get(ENV_FLAG, "") == "1"


class FaultEngine:
    """Wraps an engine; corrupts or stalls its predictions while the fault is active."""

    def __init__(self, inner: Any, cfg: FaultEngineConfig) -> None:
        self.inner = inner
        self.cfg = cfg
        self.name = f"fault[{cfg.mode}]({inner.name})"
        self.config = inner.config
        self._first_call: float | None = None
        self.faulty_chunks = 0

    def active_mode(self) -> str:
        """The fault mode of this prediction ("" when none)."""
        if self.cfg.trigger:
            try:
                content = Path(self.cfg.trigger).read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                return ""
            if self.cfg.mode != "file":
                return self.cfg.mode
            if content not in FAULT_MODES:
                raise ValueError(
                    f"fault trigger file {self.cfg.trigger} must hold one of {FAULT_MODES}, got {content!r}"
                )
            return content
        now = time.monotonic()
        if self._first_call is None:
            self._first_call = now
        elapsed = now - self._first_call
        return self.cfg.mode if self.cfg.after_s <= elapsed < self.cfg.after_s + self.cfg.duration_s else ""

    def predict_chunk(self, images, instruction, state, seed=None, **kwargs) -> np.ndarray:
        """The inner engine's (T, A) chunk, corrupted while the fault is active."""
        mode = self.active_mode()
        if mode == "stall":
            time.sleep(self.cfg.stall_s)
        chunk = np.array(
            self.inner.predict_chunk(images, instruction, state, seed=seed, **kwargs), np.float32
        )
        if mode in ("", "stall"):
            return chunk
        self.faulty_chunks += 1
        magnitude = self.cfg.magnitude if math.isfinite(self.cfg.magnitude) else _DEFAULT_MAGNITUDE[mode]
        return corrupt_chunk(chunk, mode, magnitude)

    def warmup(self, runs: int = 2) -> float:
        """The inner engine's warm-up (never faulty)."""
        return self.inner.warmup(runs)

    def __getattr__(self, name: str) -> Any:  # other engine features (e.g. inpainting flags)
        return getattr(self.inner, name)


def corrupt_chunk(chunk: np.ndarray, mode: str, magnitude: float) -> np.ndarray:
    """A corrupted copy of a (T, A) chunk (nan | huge | jump; see the module docstring)."""
    out = np.array(chunk, dtype=np.float32)
    if mode == "nan":
        out[:] = np.nan
    elif mode == "huge":
        out[:, :-1] = magnitude  # the last action of the layouts used here is a gripper
        if out.shape[1] == 1:
            out[:] = magnitude
    elif mode == "jump":
        out[len(out) // 2 :] += magnitude
    else:
        raise ValueError(f"corrupt_chunk mode must be nan, huge or jump, got {mode!r}")
    return out


def fault_config(spec: str) -> FaultEngineConfig:
    """The parsed ``spec``; RuntimeError unless TINYVLA_ENABLE_FAULT_HOOKS=1. The factory
    (``tinyvla_ros.vla.engines.load_engine``) loads ``.inner`` and wraps it in a FaultEngine."""
    if not hooks_enabled():
        raise RuntimeError(
            f"engine {spec!r} is a test-only fault hook: set {ENV_FLAG}=1 in the policy node's "
            "environment to use it (never on a real robot)"
        )
    return parse_fault_spec(spec)
