"""LatencyStats and Counters."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from tinyvla_ros.core.stats import Counters, LatencyStats


def test_percentiles_match_numpy_over_the_window() -> None:
    stats = LatencyStats(window=100)
    data = np.random.default_rng(0).exponential(0.02, size=250)
    stats.extend(data)
    window = data[-100:]
    assert len(stats) == 100 and stats.count == 250
    assert stats.p50 == pytest.approx(np.percentile(window, 50))
    assert stats.p99 == pytest.approx(np.percentile(window, 99))
    assert stats.max == pytest.approx(window.max())
    summary = stats.summary(scale=1e3)
    assert summary["p99"] == pytest.approx(np.percentile(window, 99) * 1e3)
    assert summary["count"] == 250


def test_empty_and_nonfinite() -> None:
    stats = LatencyStats(window=10)
    assert math.isnan(stats.p50) and math.isnan(stats.summary()["p99"])
    stats.add(float("nan"))
    stats.add(float("inf"))
    assert stats.rejected == 2 and len(stats) == 0
    stats.add(1.0)
    assert stats.p50 == 1.0
    stats.reset()
    assert stats.count == 0 and len(stats) == 0


@pytest.mark.parametrize("window", [0, -1, 1.5])
def test_bad_window(window: object) -> None:
    with pytest.raises(ValueError):
        LatencyStats(window=window)  # type: ignore[arg-type]


def test_percentile_range_checked() -> None:
    with pytest.raises(ValueError):
        LatencyStats().percentile(101)


def test_counters_thread_safe() -> None:
    counters = Counters()

    def work() -> None:
        for _ in range(2000):
            counters.increment("a")
        counters.update({"b": 3})

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counters.as_dict() == {"a": 8000, "b": 12}
    assert counters.total() == 8012 and counters.get("missing") == 0
    counters.reset()
    assert counters.as_dict() == {}
