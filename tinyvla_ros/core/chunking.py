"""Action-chunk execution: turn timestamped chunks (T, A) into one action per control tick.

Every step of a chunk carries a time: step i of a chunk predicted from an observation stamped
``s`` is meant for ``s + i * dt`` (latency compensation as in Diffusion Policy's real-robot
code). Steps already in the past when the chunk arrives (earlier than ``now - dt/2``) are
dropped. Between two step times the action is linearly interpolated (``interpolate=True``),
so a 100 Hz control loop gets smooth targets from a 10-50 Hz action stream.

Modes:
    open_loop          the newest chunk is the plan; a new chunk is requested once
                       ``open_loop_steps`` of it have elapsed (openpi, OpenVLA-OFT, Octo). The rest
                       of the chunk keeps the robot moving while inference runs, unless
                       ``strict_open_loop`` truncates each chunk to ``open_loop_steps`` (the robot
                       then holds when the next chunk is late).
    temporal_ensemble  every chunk that covers t votes; weights exp(-k * j), j = 0 for the OLDEST
                       prediction (ACT / official TinyVLA, k = 0.01). Memory is a deque of at most
                       ``max_chunks`` chunks: O(chunk_len * max_chunks), never a 10000 x 10000 buffer.
    overlap_blend      the newest chunk replaces the plan, its first ``blend_steps`` steps blended
                       with what the old plan said for the same times (weights ramp towards the
                       new chunk); a new chunk is requested when the plan runs low (LeRobot async).
    inpaint            the newest chunk replaces the plan from its first future step on, with no
                       blending: the policy has already made it continue the committed plan (its
                       leading steps were inpainted with ``committed_steps``, see ``inpaint_prefix``
                       and tinyvla_ros.vla.inpaint); a new chunk is requested when the plan runs low.

Inpainting support (real-time chunking for a diffusion head): ``committed_steps(t)`` is what the
executor will execute from t on; ``inpaint_prefix`` maps it onto the next chunk's step grid with
per-step weights (1 on the steps executed before the chunk can arrive, a soft decay after them);
``DelayEstimator`` is the online (EMA) estimate of the inference delay that decides that split.

Glossary: T = steps in a chunk (<= chunk_len), A = action_dim, t = time in seconds.
Thread-safe: chunks may arrive on one thread while a control timer reads on another.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import KW_ONLY, dataclass

import numpy as np

from tinyvla_ros.core.stats import Counters

__all__ = [
    "EXECUTION_MODES",
    "ChunkExecutor",
    "ChunkExecutorConfig",
    "DelayEstimator",
    "inpaint_prefix",
    "prefix_weights",
]

EXECUTION_MODES = ("open_loop", "temporal_ensemble", "overlap_blend", "inpaint")


def _int_in(name: str, value: object, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"ChunkExecutorConfig.{name} must be an int in [{lo}, {hi}], got {value!r}")


@dataclass
class ChunkExecutorConfig:
    """Chunk execution settings.

    Attributes:
        mode: one of EXECUTION_MODES.
        dt: seconds between consecutive steps of a chunk (the dataset's action period).
        action_dim: A, entries per action.
        chunk_len: maximum steps per chunk (16 for TinyVLA).
        open_loop_steps: open_loop: steps executed before the next chunk is requested.
        ensemble_k: temporal_ensemble: weight decay k in exp(-k * j).
        blend_steps: overlap_blend: leading steps of a new chunk blended with the old plan.
        max_chunks: chunks kept at most (temporal_ensemble); default chunk_len.
        refill_steps: request a chunk when at most this many planned steps remain; default:
            open_loop chunk_len - open_loop_steps, temporal_ensemble chunk_len - 1 (every step),
            overlap_blend and inpaint chunk_len // 2.
        interpolate: linear interpolation between step times (else nearest step).
        strict_open_loop: open_loop: keep only the first open_loop_steps of each chunk.
    """

    mode: str
    dt: float
    _: KW_ONLY
    action_dim: int
    chunk_len: int = 16
    open_loop_steps: int = 8
    ensemble_k: float = 0.01
    blend_steps: int = 4
    max_chunks: int | None = None
    refill_steps: int | None = None
    interpolate: bool = True
    strict_open_loop: bool = False

    def __post_init__(self) -> None:
        if self.mode not in EXECUTION_MODES:
            raise ValueError(f"ChunkExecutorConfig.mode must be one of {EXECUTION_MODES}, got {self.mode!r}")
        if not isinstance(self.dt, (int, float)) or not math.isfinite(self.dt) or self.dt <= 0:
            raise ValueError(f"ChunkExecutorConfig.dt must be a finite number > 0, got {self.dt!r}")
        _int_in("action_dim", self.action_dim, 1, 10_000)
        _int_in("chunk_len", self.chunk_len, 1, 10_000)
        _int_in("open_loop_steps", self.open_loop_steps, 1, self.chunk_len)
        _int_in("blend_steps", self.blend_steps, 0, self.chunk_len)
        k = self.ensemble_k
        if not isinstance(k, (int, float)) or not math.isfinite(k) or k < 0:
            raise ValueError(f"ChunkExecutorConfig.ensemble_k must be a finite number >= 0, got {k!r}")
        if self.max_chunks is None:
            self.max_chunks = self.chunk_len
        _int_in("max_chunks", self.max_chunks, 1, 10_000)
        if self.refill_steps is None:
            self.refill_steps = {
                "open_loop": self.chunk_len - self.open_loop_steps,
                "temporal_ensemble": self.chunk_len - 1,
                "overlap_blend": self.chunk_len // 2,
                "inpaint": self.chunk_len // 2,
            }[self.mode]
        _int_in("refill_steps", self.refill_steps, 0, self.chunk_len - 1)


@dataclass
class _Chunk:
    obs_stamp: float
    t0: float  # time of actions[0]
    actions: np.ndarray  # (k, A)

    def times(self, dt: float) -> np.ndarray:
        return self.t0 + dt * np.arange(len(self.actions))

    def end(self, dt: float) -> float:
        return self.t0 + dt * (len(self.actions) - 1)

    def at(self, t: float, dt: float, interpolate: bool) -> np.ndarray | None:
        """Action (A,) for time t, or None when t is outside [t0 - dt/2, end + dt/2]."""
        k = len(self.actions)
        x = (t - self.t0) / dt
        if x < -0.5 or x > k - 0.5:
            return None
        if not interpolate:
            return self.actions[int(min(max(round(x), 0), k - 1))]
        x = min(max(x, 0.0), k - 1.0)
        i0 = int(math.floor(x))
        i1 = min(i0 + 1, k - 1)
        w = x - i0
        return (1.0 - w) * self.actions[i0] + w * self.actions[i1]


class ChunkExecutor:
    """Keeps the chunks received so far and answers "which action at time t?"."""

    def __init__(self, cfg: ChunkExecutorConfig) -> None:
        self.cfg = cfg
        self._lock = threading.Lock()
        self._chunks: deque[_Chunk] = deque(maxlen=cfg.max_chunks if cfg.mode == "temporal_ensemble" else 1)
        self.counters = Counters()  # chunks_received, chunks_kept, dropped_*, steps_dropped_late
        self.last_drop_reason: str | None = None

    def reset(self) -> None:
        """Forget every chunk (the caller then holds until a new chunk arrives)."""
        with self._lock:
            self._chunks.clear()

    # ------------------------------------------------------------------ input
    def add_chunk(self, chunk: np.ndarray, obs_stamp: float, now: float) -> int:
        """Add a chunk predicted from the observation stamped ``obs_stamp``; returns the steps kept.

        Args:
            chunk: (T, A) actions, 1 <= T <= chunk_len; step i is meant for obs_stamp + i*dt.
            obs_stamp: the observation's time (s).
            now: current time (s); steps earlier than now - dt/2 are dropped.
        Raises:
            ValueError: wrong shape or non-finite times (a programming error). A chunk with
            NaN/inf values, one older than the newest chunk, or one entirely in the past is
            dropped (returns 0, reason in ``last_drop_reason`` and ``counters``).
        """
        cfg = self.cfg
        arr = np.asarray(chunk, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != cfg.action_dim or not 1 <= arr.shape[0] <= cfg.chunk_len:
            raise ValueError(
                f"chunk must be (T, {cfg.action_dim}) with 1 <= T <= {cfg.chunk_len}, got {arr.shape}"
            )
        if not (math.isfinite(obs_stamp) and math.isfinite(now)):
            raise ValueError(f"obs_stamp and now must be finite, got {obs_stamp!r}, {now!r}")
        self.counters.increment("chunks_received")
        if not np.all(np.isfinite(arr)):
            return self._drop("nonfinite", "chunk contains NaN or inf")
        if cfg.mode == "open_loop" and cfg.strict_open_loop:
            arr = arr[: cfg.open_loop_steps]
        times = obs_stamp + cfg.dt * np.arange(arr.shape[0])
        first = int(np.searchsorted(times, now - cfg.dt / 2.0, side="left"))
        if first:
            self.counters.increment("steps_dropped_late", first)
        if first >= arr.shape[0]:
            return self._drop(
                "late", f"all {arr.shape[0]} steps are in the past (latency {now - obs_stamp:.3f} s)"
            )
        new = _Chunk(float(obs_stamp), float(times[first]), arr[first:].copy())
        with self._lock:
            if self._chunks and obs_stamp <= self._chunks[-1].obs_stamp:
                newest = self._chunks[-1].obs_stamp
                return self._drop(
                    "out_of_order", f"observation {obs_stamp:.6f} is not newer than {newest:.6f}"
                )
            if cfg.mode == "overlap_blend" and self._chunks:
                self._blend(self._chunks[-1], new)
            self._prune(now)
            self._chunks.append(new)
        self.counters.increment("chunks_kept")
        return len(new.actions)

    def _drop(self, code: str, reason: str) -> int:
        self.counters.increment(f"dropped_{code}")
        self.last_drop_reason = f"{code}: {reason}"
        return 0

    def _blend(self, old: _Chunk, new: _Chunk) -> None:
        """Blend new's first blend_steps steps towards what ``old`` planned for the same times."""
        b = self.cfg.blend_steps
        for j, t in enumerate(new.times(self.cfg.dt)[:b]):
            prev = old.at(float(t), self.cfg.dt, self.cfg.interpolate)
            if prev is None:
                continue
            w = (j + 1) / (b + 1)  # weight of the new chunk: 1/(b+1) ... b/(b+1)
            new.actions[j] = (1.0 - w) * prev + w * new.actions[j]

    def _prune(self, t: float) -> None:
        dt = self.cfg.dt
        while self._chunks and self._chunks[0].end(dt) + dt / 2.0 < t and len(self._chunks) > 1:
            self._chunks.popleft()

    # ----------------------------------------------------------------- output
    def action_at(self, t: float) -> np.ndarray | None:
        """Action (A,) for time t, or None when no chunk covers t (the caller holds)."""
        with self._lock:
            self._prune(t)
            return self._value_at(t)

    def _value_at(self, t: float) -> np.ndarray | None:
        cfg = self.cfg
        if cfg.mode != "temporal_ensemble":
            return self._chunks[-1].at(t, cfg.dt, cfg.interpolate) if self._chunks else None
        votes = [v for c in self._chunks if (v := c.at(t, cfg.dt, cfg.interpolate)) is not None]
        if not votes:
            return None
        w = np.exp(-cfg.ensemble_k * np.arange(len(votes)))  # oldest first, weight 1
        return (w[:, None] * np.stack(votes)).sum(axis=0) / w.sum()

    def steps_remaining(self, t: float) -> int:
        """Steps of the newest chunk whose time is >= t."""
        with self._lock:
            if not self._chunks:
                return 0
            return int(np.count_nonzero(self._chunks[-1].times(self.cfg.dt) >= t - 1e-9))

    def needs_chunk(self, t: float) -> bool:
        """True when a new chunk should be requested at time t (nothing valid, or the plan runs low)."""
        with self._lock:
            empty = self._value_at(t) is None
        return empty or self.steps_remaining(t) <= self.cfg.refill_steps

    def committed_steps(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """What will be executed from t on: actions (k, A) at times (k,) of the newest chunk's grid."""
        with self._lock:
            if not self._chunks:
                return np.zeros((0, self.cfg.action_dim)), np.zeros(0)
            times = self._chunks[-1].times(self.cfg.dt)
            times = times[times >= t - 1e-9]
            acts = [self._value_at(float(tt)) for tt in times]
        keep = [i for i, a in enumerate(acts) if a is not None]
        if not keep:
            return np.zeros((0, self.cfg.action_dim)), np.zeros(0)
        return np.stack([acts[i] for i in keep]), times[keep]

    @property
    def num_chunks(self) -> int:
        with self._lock:
            return len(self._chunks)


# ----------------------------------------------------------------------------- inpainting support
def prefix_weights(chunk_len: int, hard_steps: int, prefix_len: int, soft_decay_steps: int) -> np.ndarray:
    """Per-step inpainting weights (chunk_len,) in [0, 1].

    1 on the first ``hard_steps`` steps (executed before the new chunk can arrive), then a linear
    decay 1 - j / (soft_decay_steps + 1), j = 1..soft_decay_steps, on the following steps, 0 from
    ``prefix_len`` on (no committed action is known there) and after the decay.
    """
    _check_int("chunk_len", chunk_len, 1, 10_000)
    _check_int("prefix_len", prefix_len, 0, chunk_len)
    _check_int("hard_steps", hard_steps, 0, prefix_len)
    _check_int("soft_decay_steps", soft_decay_steps, 0, 10_000)
    w = np.zeros(chunk_len)
    w[:hard_steps] = 1.0
    for j in range(soft_decay_steps):
        i = hard_steps + j
        if i >= prefix_len:
            break
        w[i] = 1.0 - (j + 1) / (soft_decay_steps + 1)
    return w


def _check_int(name: str, value: object, lo: int, hi: int) -> None:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {value!r}")


def inpaint_prefix(
    times: np.ndarray,
    actions: np.ndarray,
    obs_time: float,
    dt: float,
    chunk_len: int,
    hard_until: float,
    soft_decay_steps: int = 0,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Map committed steps onto the grid of a chunk predicted from an observation at ``obs_time``.

    Args:
        times: (m,) increasing times (s) of the committed steps (``ChunkExecutor.committed_steps``).
        actions: (m, A) committed actions in robot units.
        obs_time: the new chunk's observation stamp: its step i is meant for obs_time + i * dt.
        dt: seconds between chunk steps; chunk_len: T, steps of the new chunk.
        hard_until: time (s) until which the committed plan will surely be executed (expected
            arrival of the new chunk plus a margin): grid steps up to it get weight 1.
        soft_decay_steps: grid steps after those whose weight decays linearly towards 0.
    Returns:
        (prefix (k, A) robot units, weights (T,) in [0, 1]) for ``predict_chunk(prefix=...,
        prefix_weight=...)``, or None when no grid step falls within the committed times. Grid
        steps before the first committed time (in the past by the time the chunk arrives) hold the
        first committed action; between committed times the actions are interpolated linearly.
    """
    times = np.asarray(times, dtype=np.float64)
    acts = np.asarray(actions, dtype=np.float64)
    if times.ndim != 1 or acts.ndim != 2 or acts.shape[0] != times.shape[0]:
        raise ValueError(f"times (m,) and actions (m, A) must match, got {times.shape} and {acts.shape}")
    if not (np.all(np.isfinite(times)) and np.all(np.isfinite(acts))):
        raise ValueError("committed times and actions must be finite")
    if times.size > 1 and np.any(np.diff(times) <= 0):
        raise ValueError(f"committed times must increase strictly, got {times.tolist()}")
    for name, value in (("obs_time", obs_time), ("hard_until", hard_until)):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a finite number > 0, got {dt!r}")
    _check_int("chunk_len", chunk_len, 1, 10_000)
    _check_int("soft_decay_steps", soft_decay_steps, 0, 10_000)
    if times.size == 0:
        return None
    grid = obs_time + dt * np.arange(chunk_len)  # (T,)
    covered = int(np.count_nonzero(grid <= times[-1] + 1e-6 * dt))
    if covered == 0:
        return None
    hard = min(covered, int(np.count_nonzero(grid <= hard_until + 1e-6 * dt)))
    k = min(covered, hard + soft_decay_steps)
    if k == 0:
        return None
    prefix = np.stack([np.interp(grid[:k], times, acts[:, d]) for d in range(acts.shape[1])], axis=1)
    return prefix, prefix_weights(chunk_len, hard, k, soft_decay_steps)


class DelayEstimator:
    """Online estimate (exponential moving average) of a delay in seconds.

    ``value`` is ``initial`` (e.g. the warm-up inference time) until the first ``update``, which
    replaces it; each later update moves it by ``alpha`` towards the new measurement (alpha 1:
    the last measurement only).
    """

    def __init__(self, alpha: float = 0.3, initial: float = 0.0) -> None:
        if not (isinstance(alpha, int | float) and math.isfinite(alpha) and 0.0 < alpha <= 1.0):
            raise ValueError(f"DelayEstimator.alpha must be in (0, 1], got {alpha!r}")
        if not (isinstance(initial, int | float) and math.isfinite(initial) and initial >= 0.0):
            raise ValueError(f"DelayEstimator.initial must be a finite number >= 0, got {initial!r}")
        self.alpha = float(alpha)
        self.value = float(initial)
        self.count = 0
        self._lock = threading.Lock()

    def update(self, seconds: float) -> float:
        """Add one measurement (s, finite, >= 0); returns the new estimate."""
        if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds >= 0.0):
            raise ValueError(f"a measured delay must be a finite number >= 0 s, got {seconds!r}")
        with self._lock:
            self.value = (
                float(seconds) if self.count == 0 else self.value + self.alpha * (seconds - self.value)
            )
            self.count += 1
            return self.value
