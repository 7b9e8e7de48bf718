"""The localisation probe: the spatial condition localises the instructed object, the pooled one cannot."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mujoco")

from tinyvla_ros.data.probe import (  # noqa: E402,E501
    ProbeConfig,
    build_policy,
    format_table,
    main,
    render_scenes,
    ridge_error,
    run_probe,
)


def test_ridge_readout_recovers_a_linear_map_and_not_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6))
    y = x[:, :2] @ np.array([[1.0, 0.5], [-0.3, 2.0]]) + 0.3
    assert ridge_error(x, y, 200, alpha=1e-6) < 1e-3
    noise = rng.normal(size=(300, 6))
    assert ridge_error(noise, y, 200) > 0.5 * np.linalg.norm(y[200:] - y[:200].mean(0), axis=1).mean()


def test_spatial_condition_localises_the_cube_far_better_than_the_pooled_one():
    """Same scenes, same training budget: the pooled-only condition stays near the mean predictor;
    the spatial keypoints bring the error down (the probe must be able to tell them apart)."""
    torch.set_num_threads(1)
    spatial = ProbeConfig(
        target="cpu-lite0", scenes=260, held_out=60, steps=250, image_width=128, image_height=96
    )
    pooled = dataclasses.replace(spatial, overrides={"spatial_keypoints": 0})
    scenes = render_scenes(spatial, build_policy(spatial)[0])
    assert (
        scenes.pixels.shape == (260, 2, 3, 160, 160) and len(set(map(tuple, scenes.targets.round(4)))) == 260
    )
    with_keypoints = run_probe(spatial, scenes)
    without = run_probe(pooled, scenes)
    mean = with_keypoints["mean_predictor_cm"]
    assert 7.0 < mean < 14.0  # the cube region is 23 x 24 cm
    assert without["condition_trained_cm"] > 0.7 * mean
    assert with_keypoints["condition_trained_cm"] < 0.5 * without["condition_trained_cm"]
    assert "keypoints_linear_cm" in with_keypoints and "keypoints_linear_cm" not in without
    table = format_table(with_keypoints)
    assert "mean predictor" in table and "keypoints alone" in table


def test_probe_command_errors(capsys):
    assert main(["no-such-preset-or-dir", "--scenes", "30", "--held-out", "10"]) == 2
    assert "neither a preset" in capsys.readouterr().err
    with pytest.raises(ValueError, match="held_out"):
        ProbeConfig(target="cpu-lite0", scenes=30, held_out=25)


@pytest.mark.parametrize(
    "overrides",
    [{"aux_dim": 10, "object_slots": True}, {"aux_dim": 10, "object_slots": True, "slot_bottleneck": True}],
    ids=["object_slots", "slot_bottleneck"],
)
def test_probe_reads_the_condition_the_head_reads(overrides):
    """With object slots the head's condition is wider than the mixed part (the readout appended, or
    pooled + state + readout): the probe trains on that whole condition (it used to crash on it)."""
    torch.set_num_threads(1)
    cfg = ProbeConfig(
        target="cpu-lite0",
        scenes=20,
        held_out=10,
        steps=2,
        image_width=64,
        image_height=48,
        overrides=overrides,
    )
    policy = build_policy(cfg)[0]
    result = run_probe(cfg, render_scenes(cfg, policy))
    assert np.isfinite(result["condition_trained_cm"]) and np.isfinite(result["condition_linear_cm"])
