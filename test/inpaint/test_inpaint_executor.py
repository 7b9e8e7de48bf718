"""Executor mode ``inpaint`` and the inpainting helpers of core/chunking.py (no torch, no ROS)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyvla_ros.core.chunking import (
    ChunkExecutor,
    ChunkExecutorConfig,
    DelayEstimator,
    inpaint_prefix,
    prefix_weights,
)
from tinyvla_ros.core.robots import ActionLayout, load_robot_spec
from tinyvla_ros.core.safety import SafetyFilter, SafetyLimits

DT = 0.05
TOL = 1e-9
FR3 = load_robot_spec("fr3")
PROPERTY = settings(
    max_examples=int(os.environ.get("TINYVLA_HYPOTHESIS_EXAMPLES", "150")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def ramp(start: float, n: int = 16, dim: int = 2) -> np.ndarray:
    """(n, dim) chunk start, start + 1, ... in every column."""
    return np.repeat((start + np.arange(n, dtype=np.float64))[:, None], dim, axis=1)


def make(mode: str = "inpaint", **kw) -> ChunkExecutor:
    return ChunkExecutor(ChunkExecutorConfig(mode, DT, action_dim=2, **kw))


# --------------------------------------------------------------------------- executor mode
def test_inpaint_replaces_the_plan_from_the_first_future_step_without_blending() -> None:
    ex, blend = make(), make("overlap_blend")
    for e in (ex, blend):
        e.add_chunk(ramp(0.0), obs_stamp=0.0, now=0.0)
        e.add_chunk(ramp(100.0), obs_stamp=0.2, now=0.2 + 2 * DT)  # arrives 2 steps late
    for i in range(2, 16):  # every step of the new chunk that is not in the past: exactly its value
        t = 0.2 + i * DT
        np.testing.assert_array_equal(ex.action_at(t), ramp(100.0)[i])
    # overlap_blend, same input, blends its first steps with the old plan (the test can fail)
    assert not np.allclose(blend.action_at(0.2 + 2 * DT), ramp(100.0)[2])
    assert ex.num_chunks == 1


def test_inpaint_drops_steps_in_the_past_and_counts_them() -> None:
    ex = make()
    kept = ex.add_chunk(ramp(0.0), obs_stamp=1.0, now=1.0 + 3 * DT)  # 3 steps late
    assert kept == 13 and ex.counters.as_dict()["steps_dropped_late"] == 3
    assert ex.action_at(1.0 + DT) is None  # before the first kept step (beyond dt/2): nothing
    np.testing.assert_array_equal(ex.action_at(1.0 + 3 * DT), ramp(0.0)[3])
    assert ex.add_chunk(ramp(0.0), obs_stamp=2.0, now=2.0 + 16 * DT) == 0  # entirely in the past
    assert ex.last_drop_reason.startswith("late")


def test_inpaint_refills_at_half_a_chunk_and_reports_committed_steps() -> None:
    cfg = ChunkExecutorConfig("inpaint", DT, action_dim=2)
    assert cfg.refill_steps == 8
    ex = ChunkExecutor(cfg)
    ex.add_chunk(ramp(0.0), obs_stamp=0.0, now=0.0)
    assert not ex.needs_chunk(7 * DT) and ex.needs_chunk(8.5 * DT)
    actions, times = ex.committed_steps(10 * DT)
    np.testing.assert_allclose(times, DT * np.arange(10, 16))
    np.testing.assert_allclose(actions, ramp(0.0)[10:], atol=1e-12)


@PROPERTY
@given(
    st.lists(
        st.tuples(
            st.lists(st.lists(st.floats(-4.0, 4.0), min_size=8, max_size=8), min_size=1, max_size=16),
            st.floats(0.0, 0.3),  # inference latency
            st.integers(2, 12),  # control ticks until the next chunk's observation
            st.sampled_from([None, math.nan, math.inf]),  # a poisoned value in the chunk, if any
        ),
        min_size=1,
        max_size=4,
    )
)
def test_any_chunk_stream_in_inpaint_mode_is_safe_unblended_and_drops_the_past(stream) -> None:
    layout = ActionLayout.franka_joint()
    ex = ChunkExecutor(ChunkExecutorConfig("inpaint", DT, action_dim=layout.dim))
    ctrl_dt = 0.02
    filt = SafetyFilter(SafetyLimits.from_spec(FR3), ctrl_dt, fk=FR3.fk_xyz)
    filt.reset(FR3.home)
    q, v = FR3.home.copy(), np.zeros(7)
    lim = filt.limits
    t, newest = 0.0, None
    for chunk, latency, ticks, poison in stream:
        arr = np.array(chunk)
        if poison is not None:
            arr[-1, 0] = poison
        kept = ex.add_chunk(arr, obs_stamp=t, now=t + latency)
        late = int(np.count_nonzero(t + DT * np.arange(len(arr)) < t + latency - DT / 2))
        if np.all(np.isfinite(arr)) and late < len(arr):
            assert kept == len(arr) - late  # exactly the past steps are dropped
            newest = (t, arr, late)
        else:
            assert kept == 0
        now = t + latency
        for _ in range(ticks):
            action = ex.action_at(now)
            if newest is not None and action is not None:  # no blending: the newest chunk's own value
                stamp, arr_n, first = newest
                x = min(max((now - stamp) / DT, first), len(arr_n) - 1)
                i0 = int(math.floor(x))
                i1 = min(i0 + 1, len(arr_n) - 1)
                np.testing.assert_allclose(
                    action, (1 - (x - i0)) * arr_n[i0] + (x - i0) * arr_n[i1], atol=1e-9
                )
            target = None if action is None else layout.split(action)["arm"].joints
            cmd = filt.filter(target).command
            assert np.all(np.isfinite(cmd))
            assert np.all(cmd >= lim.command_lower - TOL) and np.all(cmd <= lim.command_upper + TOL)
            vel = (cmd - q) / ctrl_dt
            assert np.all(np.abs(vel) <= lim.velocity + 1e-6)
            assert np.all(np.abs(vel - v) <= lim.acceleration * ctrl_dt + 1e-6)
            q, v = cmd, vel
            now += ctrl_dt
        t = now


# --------------------------------------------------------------------------- prefix helpers
def test_prefix_weights_hard_then_linear_decay_then_zero() -> None:
    np.testing.assert_allclose(prefix_weights(8, 2, 6, 3), [1, 1, 0.75, 0.5, 0.25, 0, 0, 0])
    np.testing.assert_allclose(prefix_weights(8, 2, 3, 3), [1, 1, 0.75, 0, 0, 0, 0, 0])  # prefix ends
    np.testing.assert_allclose(prefix_weights(4, 4, 4, 2), [1, 1, 1, 1])
    with pytest.raises(ValueError, match="hard_steps must be an int in"):
        prefix_weights(8, 5, 4, 0)


def test_inpaint_prefix_maps_committed_steps_onto_the_new_grid() -> None:
    times = 1.0 + DT * np.arange(8) + 0.02  # executor grid, out of phase with the new chunk's
    actions = np.stack([np.arange(8.0), -np.arange(8.0)], axis=1)  # (8, 2): linear in time
    prefix, w = inpaint_prefix(
        times, actions, obs_time=1.0, dt=DT, chunk_len=16, hard_until=1.16, soft_decay_steps=2
    )
    # grid 1.00 (before the first committed time: holds it), 1.05, 1.10, 1.15 hard; 1.20, 1.25 soft
    assert prefix.shape == (6, 2)
    np.testing.assert_allclose(prefix[0], actions[0])
    np.testing.assert_allclose(prefix[1:, 0], (DT * np.arange(1, 6) - 0.02) / DT)  # interpolated
    np.testing.assert_allclose(w[:8], [1, 1, 1, 1, 2 / 3, 1 / 3, 0, 0])
    assert np.all(w[8:] == 0)


def test_inpaint_prefix_is_limited_by_the_committed_horizon() -> None:
    times, actions = DT * np.arange(3), np.ones((3, 2))
    prefix, w = inpaint_prefix(times, actions, 0.0, DT, 16, hard_until=1.0, soft_decay_steps=4)
    assert prefix.shape == (3, 2) and np.array_equal(w[:4], [1, 1, 1, 0])
    assert inpaint_prefix(times, actions, 1.0, DT, 16, hard_until=2.0) is None  # all committed before obs
    assert inpaint_prefix(np.zeros(0), np.zeros((0, 2)), 0.0, DT, 16, hard_until=1.0) is None
    with pytest.raises(ValueError, match="must increase"):
        inpaint_prefix(np.array([0.0, 0.0]), np.ones((2, 2)), 0.0, DT, 16, hard_until=1.0)
    with pytest.raises(ValueError, match="finite"):
        inpaint_prefix(times, np.full((3, 2), np.nan), 0.0, DT, 16, hard_until=1.0)


def test_delay_estimator_is_an_ema_seeded_by_the_first_measurement() -> None:
    est = DelayEstimator(alpha=0.5, initial=0.3)
    assert est.value == 0.3
    assert est.update(0.1) == pytest.approx(0.1)
    assert est.update(0.2) == pytest.approx(0.15)
    with pytest.raises(ValueError, match="finite number >= 0"):
        est.update(-1.0)
    with pytest.raises(ValueError, match="alpha"):
        DelayEstimator(alpha=0.0)
