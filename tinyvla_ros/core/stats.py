"""Small thread-safe statistics for diagnostics: rolling percentiles and named counters."""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable

import numpy as np

__all__ = ["LatencyStats", "Counters"]


class LatencyStats:
    """Rolling window of samples (e.g. seconds of latency) with percentiles.

    ``add`` is O(1); percentiles sort the window (O(n log n)), meant to be called at the
    diagnostics rate (~1 Hz), not per sample. Non-finite samples are counted but not stored.
    """

    def __init__(self, window: int = 1000) -> None:
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"LatencyStats.window must be an int >= 1, got {window!r}")
        self._window = window
        self._samples: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()
        self.count = 0  # samples ever added (finite ones)
        self.rejected = 0  # non-finite samples ignored

    def add(self, value: float) -> None:
        """Record one sample."""
        v = float(value)
        with self._lock:
            if not math.isfinite(v):
                self.rejected += 1
                return
            self._samples.append(v)
            self.count += 1

    def extend(self, values: Iterable[float]) -> None:
        for v in values:
            self.add(v)

    def percentile(self, q: float) -> float:
        """q-th percentile (0..100) of the window; NaN when empty."""
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"percentile q must be in [0, 100], got {q}")
        with self._lock:
            if not self._samples:
                return math.nan
            data = np.fromiter(self._samples, dtype=np.float64, count=len(self._samples))
        return float(np.percentile(data, q))

    @property
    def p50(self) -> float:
        return self.percentile(50.0)

    @property
    def p99(self) -> float:
        return self.percentile(99.0)

    @property
    def mean(self) -> float:
        with self._lock:
            return float(np.mean(self._samples)) if self._samples else math.nan

    @property
    def max(self) -> float:
        with self._lock:
            return float(max(self._samples)) if self._samples else math.nan

    def __len__(self) -> int:
        with self._lock:
            return len(self._samples)

    def reset(self) -> None:
        with self._lock:
            self._samples.clear()
            self.count = 0
            self.rejected = 0

    def summary(self, scale: float = 1.0) -> dict[str, float]:
        """{'p50', 'p99', 'mean', 'max', 'count'} with values multiplied by ``scale`` (e.g. 1e3 for ms)."""
        with self._lock:
            data = np.fromiter(self._samples, dtype=np.float64, count=len(self._samples))
            count = self.count
        if data.size == 0:
            return {"p50": math.nan, "p99": math.nan, "mean": math.nan, "max": math.nan, "count": count}
        p50, p99 = np.percentile(data, [50.0, 99.0])
        return {
            "p50": float(p50) * scale,
            "p99": float(p99) * scale,
            "mean": float(data.mean()) * scale,
            "max": float(data.max()) * scale,
            "count": count,
        }


class Counters:
    """Named monotonically increasing counters (thread-safe), e.g. rejection reasons."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def increment(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + int(n)

    def update(self, counts: dict[str, int]) -> None:
        """Add every (name, n) of ``counts``."""
        with self._lock:
            for name, n in counts.items():
                self._counts[name] = self._counts.get(name, 0) + int(n)

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts.get(name, 0)

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
