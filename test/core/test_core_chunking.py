"""Chunk execution: timestamps, late-step dropping, the three modes, bounded memory."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tinyvla_ros.core.chunking import ChunkExecutor, ChunkExecutorConfig

DT = 0.02


def ramp(start: float, n: int = 16, dim: int = 2, slope: float = 1.0) -> np.ndarray:
    """Chunk whose step i holds [start + slope*i, -(start + slope*i)]."""
    v = start + slope * np.arange(n)
    return np.stack([v, -v], axis=1)[:, :dim]


def make(mode: str, **kw: object) -> ChunkExecutor:
    return ChunkExecutor(ChunkExecutorConfig(mode, DT, action_dim=2, **kw))


def test_steps_in_the_past_are_dropped_on_arrival() -> None:
    ex = make("open_loop")
    kept = ex.add_chunk(ramp(0.0), obs_stamp=10.0, now=10.0 + 0.035)  # 35 ms latency
    assert kept == 14  # steps at +0 and +20 ms are older than now - dt/2 = +25 ms
    assert ex.counters.get("steps_dropped_late") == 2
    np.testing.assert_allclose(ex.action_at(10.04), [2.0, -2.0])  # step 2 is for obs + 2*dt


def test_step_times_and_interpolation() -> None:
    ex = make("open_loop")
    ex.add_chunk(ramp(0.0), obs_stamp=1.0, now=1.0)
    np.testing.assert_allclose(ex.action_at(1.0 + 5 * DT), [5.0, -5.0])
    np.testing.assert_allclose(ex.action_at(1.0 + 5.25 * DT), [5.25, -5.25])
    assert ex.action_at(1.0 - 0.6 * DT) is None  # before the chunk
    np.testing.assert_allclose(ex.action_at(1.0 + 15.4 * DT), [15.0, -15.0])  # holds the last half step
    assert ex.action_at(1.0 + 15.6 * DT) is None  # exhausted: caller holds
    nearest = make("open_loop", interpolate=False)
    nearest.add_chunk(ramp(0.0), obs_stamp=1.0, now=1.0)
    np.testing.assert_allclose(nearest.action_at(1.0 + 5.4 * DT), [5.0, -5.0])


def test_open_loop_requests_after_n_steps_and_newest_chunk_wins() -> None:
    ex = make("open_loop", open_loop_steps=8)
    assert ex.needs_chunk(0.0)  # nothing yet
    ex.add_chunk(ramp(0.0), obs_stamp=0.0, now=0.0)
    assert not ex.needs_chunk(7 * DT)
    assert ex.needs_chunk(8 * DT)  # 8 steps done: 8 remain
    ex.add_chunk(ramp(100.0), obs_stamp=8 * DT, now=9 * DT)
    np.testing.assert_allclose(ex.action_at(9 * DT), [101.0, -101.0])
    assert not ex.needs_chunk(9 * DT)


def test_strict_open_loop_truncates_and_then_holds() -> None:
    ex = make("open_loop", open_loop_steps=4, strict_open_loop=True)
    assert ex.add_chunk(ramp(0.0), obs_stamp=0.0, now=0.0) == 4
    np.testing.assert_allclose(ex.action_at(3 * DT), [3.0, -3.0])
    assert ex.action_at(4 * DT) is None


def test_temporal_ensemble_weights_oldest_first() -> None:
    k = 0.5
    ex = make("temporal_ensemble", ensemble_k=k)
    ex.add_chunk(ramp(0.0), obs_stamp=0.0, now=0.0)  # predicts i at time i*dt
    ex.add_chunk(ramp(10.0), obs_stamp=DT, now=DT)  # predicts 10 + (i-1) at time i*dt
    ex.add_chunk(ramp(20.0), obs_stamp=2 * DT, now=2 * DT)
    t = 5 * DT
    votes = np.array([5.0, 14.0, 23.0])
    w = np.exp(-k * np.arange(3))  # oldest prediction has weight 1 (ACT convention)
    np.testing.assert_allclose(ex.action_at(t)[0], (w * votes).sum() / w.sum())
    uniform = make("temporal_ensemble", ensemble_k=0.0)
    for j in range(3):
        uniform.add_chunk(ramp(10.0 * j), obs_stamp=j * DT, now=j * DT)
    np.testing.assert_allclose(uniform.action_at(t)[0], votes.mean())


def test_temporal_ensemble_memory_is_bounded() -> None:
    ex = make("temporal_ensemble", max_chunks=5)
    for j in range(200):
        ex.add_chunk(ramp(float(j)), obs_stamp=j * DT, now=j * DT)
        ex.action_at(j * DT)
        assert ex.num_chunks <= 5
    assert ex.needs_chunk(199 * DT + DT)  # requests every step


def test_overlap_blend_ramps_from_old_plan_to_new_chunk() -> None:
    ex = make("overlap_blend", blend_steps=3)
    ex.add_chunk(np.zeros((16, 2)), obs_stamp=0.0, now=0.0)
    assert not ex.needs_chunk(7 * DT)
    assert ex.needs_chunk(8 * DT)  # default refill: half a chunk left
    ex.add_chunk(np.ones((16, 2)), obs_stamp=8 * DT, now=8 * DT)
    values = [ex.action_at((8 + i) * DT)[0] for i in range(6)]
    np.testing.assert_allclose(values, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0])  # old plan was 0 there


def test_overlap_blend_without_overlap_just_replaces() -> None:
    ex = make("overlap_blend", blend_steps=4)
    ex.add_chunk(np.zeros((4, 2)), obs_stamp=0.0, now=0.0)
    ex.add_chunk(np.ones((16, 2)), obs_stamp=1.0, now=1.0)  # old plan long over
    np.testing.assert_allclose(ex.action_at(1.0), [1.0, 1.0])


def test_dropped_chunks_are_counted_with_reasons() -> None:
    ex = make("open_loop")
    assert ex.add_chunk(ramp(0.0), obs_stamp=1.0, now=1.0) == 16
    assert ex.add_chunk(ramp(0.0), obs_stamp=0.9, now=1.0) == 0
    assert ex.last_drop_reason.startswith("out_of_order")
    bad = ramp(0.0)
    bad[3, 1] = math.nan
    assert ex.add_chunk(bad, obs_stamp=2.0, now=2.0) == 0
    assert ex.last_drop_reason.startswith("nonfinite")
    assert ex.add_chunk(ramp(0.0), obs_stamp=2.0, now=3.0) == 0
    assert ex.last_drop_reason.startswith("late")
    counts = ex.counters.as_dict()
    assert counts["dropped_out_of_order"] == counts["dropped_nonfinite"] == counts["dropped_late"] == 1
    assert counts["chunks_received"] == 4 and counts["chunks_kept"] == 1
    np.testing.assert_allclose(ex.action_at(1.0), [0.0, -0.0])  # the good chunk is untouched


@pytest.mark.parametrize("shape", [(16, 3), (17, 2), (0, 2), (2,)])
def test_wrong_shape_raises(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="chunk must be"):
        make("open_loop").add_chunk(np.zeros(shape), obs_stamp=0.0, now=0.0)


def test_non_finite_times_raise() -> None:
    with pytest.raises(ValueError, match="finite"):
        make("open_loop").add_chunk(ramp(0.0), obs_stamp=math.inf, now=0.0)


@pytest.mark.parametrize("mode", ["open_loop", "temporal_ensemble", "overlap_blend"])
def test_committed_steps_agree_with_action_at(mode: str) -> None:
    ex = make(mode)
    ex.add_chunk(ramp(0.0), obs_stamp=0.0, now=0.0)
    ex.add_chunk(ramp(3.0), obs_stamp=2 * DT, now=2 * DT)
    t = 5.5 * DT
    actions, times = ex.committed_steps(t)
    assert actions.shape == (len(times), 2) and len(times) > 0
    assert np.all(times >= t - 1e-9) and np.all(np.diff(times) > 0)
    for a, tt in zip(actions, times, strict=True):
        np.testing.assert_allclose(a, ex.action_at(float(tt)))
    ex.reset()
    actions, times = ex.committed_steps(t)
    assert actions.shape == (0, 2) and ex.action_at(t) is None


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"mode": "ensemble"}, "mode"),
        ({"dt": 0.0}, "dt"),
        ({"dt": math.nan}, "dt"),
        ({"action_dim": 0}, "action_dim"),
        ({"open_loop_steps": 17}, "open_loop_steps"),
        ({"blend_steps": -1}, "blend_steps"),
        ({"ensemble_k": -0.1}, "ensemble_k"),
        ({"max_chunks": 0}, "max_chunks"),
        ({"refill_steps": 16}, "refill_steps"),
    ],
)
def test_config_validation(args: dict, field: str) -> None:
    base = {"mode": "open_loop", "dt": DT, "action_dim": 2}
    with pytest.raises(ValueError, match=field):
        ChunkExecutorConfig(**(base | args))


def test_default_refill_per_mode() -> None:
    assert ChunkExecutorConfig("open_loop", DT, action_dim=1, open_loop_steps=6).refill_steps == 10
    assert ChunkExecutorConfig("temporal_ensemble", DT, action_dim=1).refill_steps == 15
    assert ChunkExecutorConfig("overlap_blend", DT, action_dim=1).refill_steps == 8
    assert ChunkExecutorConfig("overlap_blend", DT, action_dim=1).max_chunks == 16
