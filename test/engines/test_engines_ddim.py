"""DDIMPlan: the precomputed DDIM loop reproduces diffusers' DDIMScheduler.step bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinyvla_ros.vla.config import get_config
from tinyvla_ros.vla.engines.ddim import DDIMPlan, build_scheduler


@pytest.mark.parametrize("steps", [1, 5, 10, 100])
@pytest.mark.parametrize("schedule", ["squaredcos_cap_v2", "linear"])
def test_plan_steps_equal_diffusers_bit_for_bit(steps, schedule):
    config = get_config("nano", num_inference_steps=steps, beta_schedule=schedule)
    scheduler = build_scheduler(config)
    plan = DDIMPlan.from_config(config)
    assert plan.timesteps.tolist() == scheduler.timesteps.tolist() and len(plan) == steps
    rng = np.random.default_rng(steps)
    x_np = (2.0 * rng.standard_normal((3, 16, 10))).astype(np.float32)
    x_t = torch.from_numpy(x_np.copy())
    clipped = 0
    for i, t in enumerate(scheduler.timesteps):
        eps = (1.5 * rng.standard_normal((3, 16, 10))).astype(np.float32)
        out = scheduler.step(torch.from_numpy(eps), int(t), x_t)
        x_t = out.prev_sample
        clipped += int((out.pred_original_sample.abs() >= 1.0).sum())
        plan.step_numpy(i, x_np, eps, out=x_np)
        np.testing.assert_array_equal(x_np, x_t.numpy())
    assert clipped > 0  # the clip branch was exercised


def test_run_numpy_loops_over_all_steps():
    plan = DDIMPlan.from_config(get_config("nano", num_inference_steps=4))
    seen = []
    out = plan.run_numpy(lambda x, i: seen.append(i) or np.zeros_like(x), np.ones((1, 16, 10), np.float32))
    assert seen == [0, 1, 2, 3]
    # eps = 0 and x0 = x / sqrt(a_t) clipped at 1: the last step (a_prev = 1) returns x0 = 1.
    np.testing.assert_allclose(out, 1.0, rtol=0, atol=1e-6)


def test_plan_validation_names_the_bad_value():
    config = get_config("nano")
    with pytest.raises(ValueError, match=r"num_inference_steps must be an integer in \[1, 100\], got 101"):
        DDIMPlan.from_config(config, 101)
    good = DDIMPlan.from_config(config)
    with pytest.raises(ValueError, match="coefficients must be"):
        DDIMPlan(good.timesteps, good.coefficients[:, :3].copy(), True, 1.0)
    with pytest.raises(ValueError, match="timesteps must be"):
        DDIMPlan(good.timesteps.astype(np.int32), good.coefficients, True, 1.0)
    with pytest.raises(ValueError, match="clip_range must be a positive number, got -1"):
        DDIMPlan(good.timesteps, good.coefficients, True, -1.0)
