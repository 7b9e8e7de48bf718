"""Training a frozen-tower preset: cached feature maps, EMA of the weights, exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

from tinyvla_ros.data.features import CACHE_DIR, MANIFEST, CachedFeatureDataset, build_cache  # noqa: E402
from tinyvla_ros.data.train import EMA_FILE, TrainConfig, Trainer, normalizer_from_stats  # noqa: E402
from tinyvla_ros.data.training import EpisodeDataset, SampleConfig  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _cfg(dataset, out, **kw):
    base = dict(dataset=str(dataset), output=str(out), preset="cpu-lite0", steps=4, batch_size=4, warmup_steps=1,
                val_every=2, save_every=2, log_every=1, val_batches=1, progress=False, lr=1e-3, ema=True,
                overrides={"image_size": 64})  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_cached_features_are_the_towers_output_on_the_evaluation_view(demo_dataset, tmp_path):
    from tinyvla_ros.data.episodes import load_info, load_stats
    from tinyvla_ros.data.train import build_policy

    cfg = _cfg(demo_dataset, tmp_path / "run")
    policy = build_policy(cfg, load_info(demo_dataset), normalizer_from_stats(load_stats(demo_dataset)))
    cache = build_cache(policy, demo_dataset, [0, 2], cfg.augment.crop_ratio, tmp_path / "cache")
    assert json.loads((tmp_path / "cache" / MANIFEST).read_text())["tower"] == "efficientnet_lite0"
    images = EpisodeDataset(demo_dataset, SampleConfig(policy.config.camera_names, 64, train=False), [2])
    sample = images[5]  # episode 2, step 5
    with torch.no_grad():
        want = policy.backbone.tower_features(sample["images"][None].float() / 255.0)[0]
    torch.testing.assert_close(cache[2][5].float(), want, atol=2e-2, rtol=1e-2)  # float16 storage
    ds = CachedFeatureDataset(demo_dataset, cache, [2], chunk_len=16)
    item = ds[5]
    torch.testing.assert_close(item["actions"], sample["actions"])
    assert item["instruction"] == sample["instruction"] and item["features"].dtype == torch.float32
    shifted = CachedFeatureDataset(demo_dataset, cache, [2], chunk_len=16, shift=1, seed=3)
    moved = shifted[5]["features"]
    assert moved.shape == item["features"].shape and not torch.equal(moved, item["features"])
    other = policy.backbone.vision._conv_stem.weight
    with torch.no_grad():
        other.add_(0.1)  # another tower: the cache refuses to be reused
    with pytest.raises(ValueError, match="another tower"):
        build_cache(policy, demo_dataset, [0], cfg.augment.crop_ratio, tmp_path / "cache")


def test_ema_training_on_cached_features_resumes_exactly_and_deploys_the_average(demo_dataset, tmp_path):
    straight = Trainer(_cfg(demo_dataset, tmp_path / "a")).run()
    stopped = Trainer(_cfg(demo_dataset, tmp_path / "b", stop_after=2)).run()
    assert (stopped / EMA_FILE).is_file()
    cache_files = sorted((tmp_path / "b" / CACHE_DIR).glob("episode_*.safetensors"))
    stamps = [p.stat().st_mtime_ns for p in cache_files]
    assert len(cache_files) == 3
    resumed = Trainer(_cfg(demo_dataset, tmp_path / "b", resume=True)).run()
    assert [p.stat().st_mtime_ns for p in cache_files] == stamps  # the cache was reused
    a = load_file(str(straight / "model.safetensors"))
    b = load_file(str(resumed / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    # final/ holds the EMA weights, not the last raw weights of the run
    raw = load_file(str(tmp_path / "a" / "checkpoints" / "step_00000004" / "model.safetensors"))
    ema = load_file(str(tmp_path / "a" / "checkpoints" / "step_00000004" / EMA_FILE))
    key = "head.condition.combine.weight"
    assert not torch.equal(a[key], raw[key])
    assert any(torch.equal(a[key], t) for t in ema.values())
    assert torch.equal(a["backbone.vision._conv_stem.weight"], raw["backbone.vision._conv_stem.weight"])
    summary = json.loads((straight / "training.json").read_text())
    assert summary["ema"] is True
    Trainer(_cfg(demo_dataset, tmp_path / "c", stop_after=2, ema=False)).run()
    with pytest.raises(ValueError, match="without --ema"):
        Trainer(_cfg(demo_dataset, tmp_path / "c", resume=True)).run()


def test_ema_and_feature_options_are_checked(demo_dataset, tmp_path):
    with pytest.raises(ValueError, match="ema_power"):
        _cfg(demo_dataset, tmp_path / "x", ema_power=0.0)
    with pytest.raises(ValueError, match="feature_shift"):
        _cfg(demo_dataset, tmp_path / "x", feature_shift=-1)
    assert np.isfinite(_cfg(demo_dataset, tmp_path / "x").ema_max_decay)
