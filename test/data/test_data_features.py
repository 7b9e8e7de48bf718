"""Training a frozen-tower preset: cached feature maps, EMA of the weights, exact resume."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

from tinyvla_ros.data.features import (  # noqa: E402
    CACHE_DIR,
    MANIFEST,
    CachedFeatureDataset,
    build_cache,
    episode_key,
)
from tinyvla_ros.data.samples import EpisodeDataset, SampleConfig  # noqa: E402
from tinyvla_ros.data.train import EMA_FILE, TrainConfig, Trainer, normalizer_from_stats  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


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
    # a stop in the middle of a write leaves only a .partial file: the episode is computed again
    key = episode_key(demo_dataset / "episodes" / "episode_000001.safetensors")
    (tmp_path / "cache" / f"{key}.partial").write_bytes(b"truncated")
    again = build_cache(policy, demo_dataset, [0, 1, 2], cfg.augment.crop_ratio, tmp_path / "cache")
    assert again[1].shape[1:] == cache[0].shape[1:] and not list((tmp_path / "cache").glob("*.partial"))
    other = policy.backbone.vision._conv_stem.weight
    with torch.no_grad():
        other.add_(0.1)  # another tower: the cache refuses to be reused
    with pytest.raises(ValueError, match="another tower"):
        build_cache(policy, demo_dataset, [0], cfg.augment.crop_ratio, tmp_path / "cache")


def test_ema_training_on_cached_features_resumes_exactly_and_deploys_the_average(demo_dataset, tmp_path):
    straight = Trainer(_cfg(demo_dataset, tmp_path / "a")).run()
    stopped = Trainer(_cfg(demo_dataset, tmp_path / "b", stop_after=2)).run()
    assert (stopped / EMA_FILE).is_file()
    cache_files = sorted((tmp_path / "b" / CACHE_DIR).glob("*.safetensors"))
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


def test_datasets_that_share_episodes_share_their_cached_features(demo_dataset, tmp_path):
    import shutil

    from tinyvla_ros.data.episodes import load_info, load_stats
    from tinyvla_ros.data.train import build_policy

    cfg = _cfg(demo_dataset, tmp_path / "run")
    policy = build_policy(cfg, load_info(demo_dataset), normalizer_from_stats(load_stats(demo_dataset)))
    root = tmp_path / "shared"
    first = build_cache(policy, demo_dataset, [0, 1], 1.0, root)
    files = {p.name: p.stat().st_mtime_ns for p in root.glob("*.safetensors")}
    assert len(files) == 2
    # another dataset (here: a copy in another place) holding episodes 0 and 1: nothing recomputed
    other = tmp_path / "other_dataset"
    shutil.copytree(demo_dataset, other)
    again = build_cache(policy, other, [0, 1, 2], 1.0, root)
    assert {p.name: p.stat().st_mtime_ns for p in root.glob("*.safetensors") if p.name in files} == files
    assert len(list(root.glob("*.safetensors"))) == 3
    torch.testing.assert_close(again[1], first[1], rtol=0, atol=0)
    # an episode whose bytes differ is a different cache entry
    ep = other / "episodes" / "episode_000000.safetensors"
    assert episode_key(ep) == episode_key(demo_dataset / "episodes" / "episode_000000.safetensors")
    ep.write_bytes(ep.read_bytes() + b" ")
    assert episode_key(ep) != episode_key(demo_dataset / "episodes" / "episode_000000.safetensors")
    # the same content with its metadata in another order (safetensors does not keep one) is the same
    from safetensors import safe_open
    from safetensors.numpy import load_file as load_np
    from safetensors.numpy import save_file as save_np

    src = demo_dataset / "episodes" / "episode_000001.safetensors"
    with safe_open(str(src), "np") as f:
        meta = f.metadata()
    flipped = tmp_path / "flipped.safetensors"
    save_np(load_np(str(src)), str(flipped), metadata=dict(reversed(list(meta.items()))))
    assert episode_key(flipped) == episode_key(src)
    save_np(load_np(str(src)), str(flipped), metadata={**meta, "task": "another"})
    assert episode_key(flipped) != episode_key(src)
    with pytest.raises(ValueError, match="another tower or view"):
        build_cache(policy, other, [0], 0.9, root)  # another crop
    (root / "episode_000000.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="older layout"):
        build_cache(policy, other, [0], 1.0, root)
    run = Trainer(_cfg(demo_dataset, tmp_path / "run2", feature_cache=str(tmp_path / "shared2"))).run()
    assert run.is_dir() and len(list((tmp_path / "shared2").glob("*.safetensors"))) == 3
    assert not (tmp_path / "run2" / CACHE_DIR).exists()


def test_image_noise_caches_the_towers_output_on_noisy_frames_in_its_own_cache(demo_dataset, tmp_path):
    """``--image-noise``: the cache holds the tower's output on frames with sensor noise (std drawn
    per frame in [0, STD]), the same when written again, and is described as noisy: a clean cache
    directory refuses it (and keeps its older manifest valid: no noise key when clean)."""
    from tinyvla_ros.data.episodes import EpisodeFile, load_info, load_stats
    from tinyvla_ros.data.features import episode_features, frame_noise_rng
    from tinyvla_ros.data.train import build_policy

    cfg = _cfg(demo_dataset, tmp_path / "run")
    policy = build_policy(cfg, load_info(demo_dataset), normalizer_from_stats(load_stats(demo_dataset)))
    clean = build_cache(policy, demo_dataset, [0], 1.0, tmp_path / "clean")
    assert "image_noise" not in json.loads((tmp_path / "clean" / MANIFEST).read_text())
    noisy = build_cache(policy, demo_dataset, [0], 1.0, tmp_path / "noisy", image_noise=6.0)
    assert json.loads((tmp_path / "noisy" / MANIFEST).read_text())["image_noise"] == 6.0
    again = build_cache(policy, demo_dataset, [0, 1], 1.0, tmp_path / "noisy2", image_noise=6.0)
    torch.testing.assert_close(again[0], noisy[0], rtol=0, atol=0)  # seeded by the episode's content
    diff = (noisy[0].float() - clean[0].float()).abs().mean(dim=(1, 2, 3, 4))  # per frame
    assert diff.shape[0] == clean[0].shape[0] and float(diff.min()) >= 0 and float(diff.max()) > 1e-3
    # a cache file is episode_features on the episode with its content-seeded generator
    path = demo_dataset / load_info(demo_dataset).episodes[0]["file"]
    episode = EpisodeFile(path)
    rng = frame_noise_rng(episode_key(path))
    single = episode_features(policy, _FirstFrames(episode, 4), 1.0, image_noise=6.0, rng=rng)
    torch.testing.assert_close(
        single.float(), noisy[0][:4].float(), rtol=1e-2, atol=1e-2
    )  # float16, another batch size
    with pytest.raises(ValueError, match="another tower or view"):
        build_cache(policy, demo_dataset, [0], 1.0, tmp_path / "clean", image_noise=6.0)
    with pytest.raises(ValueError, match="image_noise"):
        _cfg(demo_dataset, tmp_path / "x", image_noise=-1.0)
    with pytest.raises(ValueError, match="image-noise"):
        Trainer(_cfg(demo_dataset, tmp_path / "x", image_noise=2.0, cache_features=False)).run()


class _FirstFrames:
    """The first ``n`` frames of an episode (episode_features reads ``length`` and ``frame``)."""

    def __init__(self, episode, n: int) -> None:
        self.episode, self.length = episode, n

    def frame(self, cam: str, t: int):
        return self.episode.frame(cam, t)


def test_warm_start_continues_a_trained_checkpoint(demo_dataset, tmp_path, capsys):
    from tinyvla_ros.vla.checkpoint import CheckpointMismatchError
    from tinyvla_ros.vla.testing import make_tiny_checkpoint

    first = Trainer(_cfg(demo_dataset, tmp_path / "a", aux_objects=1.0)).run()
    trained = load_file(str(first / "model.safetensors"))
    # a near-zero learning rate: the warm-started run ends where the checkpoint was
    again = Trainer(
        _cfg(
            demo_dataset,
            tmp_path / "b",
            warm_start=str(first),
            aux_objects=1.0,
            overrides={},
            steps=2,
            lr=1e-12,
        )
    ).run()
    moved = load_file(str(again / "model.safetensors"))
    assert "leave the warm-start checkpoint's range" not in capsys.readouterr().err  # the same data
    assert moved.keys() == trained.keys()
    for key in trained:
        torch.testing.assert_close(moved[key], trained[key], rtol=0, atol=1e-6, msg=key)
    # ... and with a real learning rate it trains on from there (the head moves, the tower does not)
    on = Trainer(_cfg(demo_dataset, tmp_path / "c", warm_start=str(first), overrides={}, steps=2)).run()
    moved = load_file(str(on / "model.safetensors"))
    assert not torch.equal(moved["head.condition.combine.weight"], trained["head.condition.combine.weight"])
    assert torch.equal(
        moved["backbone.vision._conv_stem.weight"], trained["backbone.vision._conv_stem.weight"]
    )
    with pytest.raises(ValueError, match="no --init, --set or --lora"):
        _cfg(demo_dataset, tmp_path / "d", warm_start=str(first))  # _cfg sets image_size by --set
    from tinyvla_ros.data.episodes import load_info, load_stats
    from tinyvla_ros.data.train import build_policy
    from tinyvla_ros.vla.normalize import Normalizer

    info, base = load_info(demo_dataset), normalizer_from_stats(load_stats(demo_dataset))
    wide = Normalizer(base.action_low - 1.0, base.action_high, base.state_mean, base.state_std)
    build_policy(_cfg(demo_dataset, tmp_path / "g", warm_start=str(first), overrides={}), info, wide)
    assert "leave the warm-start checkpoint's range" in capsys.readouterr().err
    with pytest.raises(ValueError, match="centre crop"):
        Trainer(
            _cfg(
                demo_dataset, tmp_path / "f", warm_start=str(first), overrides={}, augment={"crop_ratio": 0.8}
            )
        )
    other = make_tiny_checkpoint(tmp_path / "other", ["zed_left", "zed_right"], 8, 5)
    with pytest.raises(CheckpointMismatchError, match="action_dim"):
        Trainer(_cfg(demo_dataset, tmp_path / "e", warm_start=str(other), overrides={})).run()


def test_ema_and_feature_options_are_checked(demo_dataset, tmp_path):
    with pytest.raises(ValueError, match="ema_power"):
        _cfg(demo_dataset, tmp_path / "x", ema_power=0.0)
    with pytest.raises(ValueError, match="feature_shift"):
        _cfg(demo_dataset, tmp_path / "x", feature_shift=-1)
    assert np.isfinite(_cfg(demo_dataset, tmp_path / "x").ema_max_decay)


def test_aux_steps_end_at_the_first_grasp():
    from tinyvla_ros.data.aux_targets import aux_steps

    def actions(grip):
        return np.stack([np.zeros(len(grip)), np.asarray(grip, dtype=float)], axis=1)

    assert aux_steps(actions([1, 1, 1, 1, 1, 0, 0, 1, 1, 1]), 1, 1.0) == 5
    assert aux_steps(actions([0, 0, 1, 1, 1, 1, 1, 1, 0, 0]), 1, 1.0) == 8  # closed at the start: not a grasp
    assert aux_steps(actions([0] * 10), 1, 0.4) == 4  # never opens: the fraction limit
    assert aux_steps(actions([1] * 10), 1, 0.25) == 3


def test_aux_object_targets_come_from_the_recorded_scene(demo_dataset):
    from tinyvla_ros.data.aux_targets import AUX_FILE, CENTRE, SCALE, dataset_targets
    from tinyvla_ros.sim import make_env

    targets = dataset_targets(demo_dataset)
    assert (demo_dataset / AUX_FILE).is_file() and sorted(targets) == [0, 1, 2]
    env = make_env("franka", image_width=8, image_height=8)
    try:
        env.reset("pick_red_cube", 1)  # the second demo episode (conftest DEMO_EPISODES)
        red = env.task_state()["red_cube_pos"][:2]
    finally:
        env.close()
    xy, steps = targets[1]
    assert xy.shape == (10,) and np.allclose(xy[:2] * SCALE + np.asarray(CENTRE["franka"]), red, atol=1e-5)
    assert 10 < steps < 60  # the approach, before the grasp
    assert dataset_targets(demo_dataset)[1][1] == steps  # read back from the cache file


def test_aux_loss_trains_the_condition_on_object_positions(demo_dataset, tmp_path):
    from tinyvla_ros.vla.policy import TinyVLAPolicy

    final = Trainer(_cfg(demo_dataset, tmp_path / "aux", aux_objects=1.0, ema=False)).run()
    policy = TinyVLAPolicy.from_pretrained(final)
    assert policy.config.aux_dim == 10 and policy.config.aux_weight == 1.0
    cond = torch.randn(4, policy.config.cond_dim, requires_grad=True)
    target = torch.randn(4, 10)
    none = policy.aux_loss(cond, target, torch.zeros(4, dtype=torch.bool))
    some = policy.aux_loss(cond, target, torch.tensor([True, False, False, False]))
    assert float(none) == 0.0 and float(some) > 0.0
    some.backward()
    assert cond.grad[0].abs().sum() > 0 and cond.grad[1:].abs().sum() == 0
    with pytest.raises(ValueError, match="aux_objects"):
        _cfg(demo_dataset, tmp_path / "x", aux_objects=-1.0)
    with pytest.raises(ValueError, match="frozen tower"):
        Trainer(_cfg(demo_dataset, tmp_path / "y", aux_objects=1.0, preset="nano", overrides={})).run()


def test_object_slots_feed_the_readout_to_the_head_and_the_simulator_positions_in_training(
    demo_dataset, tmp_path
):
    from tinyvla_ros.vla.policy import TinyVLAPolicy

    overrides = {"image_size": 64, "object_slots": True, "object_slot_noise": 0.0}
    final = Trainer(_cfg(demo_dataset, tmp_path / "s", aux_objects=1.0, ema=False, overrides=overrides)).run()
    policy = TinyVLAPolicy.from_pretrained(final)
    c = policy.config
    assert c.object_slots and c.cond_dim == c.llm.hidden_size + c.aux_dim == c.llm.hidden_size + 10
    base = torch.randn(3, c.llm.hidden_size)
    with torch.no_grad():
        cond = policy._with_slots(base)
        assert torch.equal(cond[:, -10:], policy.head.aux(base)) and torch.equal(cond[:, :-10], base)
    # training: the simulator's coordinates where the mask says the objects have not moved yet
    cond.requires_grad_(True)
    target, mask = torch.randn(3, 10), torch.tensor([True, False, True])
    forced = policy._teacher_slots(cond, target, mask, None)
    assert torch.equal(forced[0, -10:], target[0]) and torch.equal(forced[2, -10:], target[2])
    assert torch.equal(forced[1], cond[1])
    forced.sum().backward()  # the readout of the unmasked row is detached: no gradient reaches it
    assert cond.grad[1, -10:].abs().sum() == 0 and cond.grad[:, :-10].abs().sum() > 0
    # the auxiliary loss reads the slots themselves, not a second readout of them
    assert (
        float(policy.aux_loss(cond.detach(), cond.detach()[:, -10:], torch.ones(3, dtype=torch.bool))) == 0.0
    )
    with pytest.raises(ValueError, match="object_slots needs aux_dim"):
        dataclasses.replace(c, aux_dim=0)


def test_slot_bottleneck_lets_the_keypoints_reach_the_head_only_through_the_readout(demo_dataset, tmp_path):
    from tinyvla_ros.vla.policy import TinyVLAPolicy

    overrides = {"image_size": 64, "object_slots": True, "object_slot_noise": 0.0, "slot_bottleneck": True}
    final = Trainer(_cfg(demo_dataset, tmp_path / "b", aux_objects=1.0, ema=False, overrides=overrides)).run()
    policy = TinyVLAPolicy.from_pretrained(final)
    c = policy.config
    assert c.slot_bottleneck and c.cond_dim == c.llm.hidden_size + c.state_dim + c.aux_dim
    b, h = 3, c.llm.hidden_size
    ids, mask = policy.tokenize_batch(["pick up the red cube"] * b)
    state = torch.randn(b, c.state_dim)
    maps = torch.randn(b, c.num_cameras, c.vision.feature_channels, 8, 8)
    spatial = list(policy.head.condition.spatial.parameters())
    with torch.no_grad():
        cond = policy.encode_features(maps, ids, mask, state)
        for p in spatial:  # other keypoints: the head's input changes in the readout alone
            p.add_(0.5 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        moved = policy.encode_features(maps, ids, mask, state)
    assert cond.shape == (b, c.cond_dim)
    assert torch.allclose(cond[:, h : h + c.state_dim], state)  # the state itself, not a mix of it
    assert not torch.allclose(cond[:, -c.aux_dim :], moved[:, -c.aux_dim :], atol=1e-3)
    assert torch.equal(cond[:, : -c.aux_dim], moved[:, : -c.aux_dim])
    # the diffusion loss cannot train the keypoints: the head reads teacher slots where the mask is
    # set and the detached readout elsewhere; only the auxiliary loss moves them
    batch = {
        "features": maps,
        "input_ids": ids,
        "attention_mask": mask,
        "state": torch.zeros(b, c.state_dim),
        "actions": torch.zeros(b, c.chunk_len, c.action_dim),
        "aux": torch.zeros(b, c.aux_dim),
        "aux_mask": torch.tensor([True, False, True]),
    }
    policy.train()
    terms = policy(batch, generator=torch.Generator().manual_seed(0), return_terms=True)
    terms["mse_sum"].backward(retain_graph=True)
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in spatial)
    assert policy.head.unet.final[1].weight.grad.abs().sum() > 0
    terms["aux_sum"].backward()
    assert sum(float(p.grad.abs().sum()) for p in spatial if p.grad is not None) > 0
    # which steps the head is taught the simulator's positions on: the row without aux_mask gets
    # the readout under "before_grasp", the positions (here 0, no noise) under "episode"
    seen = []
    policy.head.unet.register_forward_hook(
        lambda m, args, out: seen.append(args[2][:, -c.aux_dim :].detach())
    )
    for teacher in ("before_grasp", "episode"):
        policy.config = dataclasses.replace(c, object_slot_teacher=teacher)
        with torch.no_grad():
            policy(batch, generator=torch.Generator().manual_seed(0))
    (before, episode) = seen
    assert before[[0, 2]].abs().sum() == 0 and before[1].abs().sum() > 0
    assert episode.abs().sum() == 0
    with pytest.raises(ValueError, match="slot_bottleneck needs object_slots"):
        dataclasses.replace(c, object_slots=False)
    with pytest.raises(ValueError, match="object_slot_teacher"):
        dataclasses.replace(c, object_slot_teacher="always")
    # pooled_detach: the action loss no longer reaches the language model through the pooled input
    llm = [p for p in policy.backbone.parameters() if p.requires_grad]
    for detach in (False, True):
        policy.zero_grad(set_to_none=True)
        policy.head.condition.detach_pooled = detach
        policy(batch, generator=torch.Generator().manual_seed(0), return_terms=True)["mse_sum"].backward()
        reached = sum(float(p.grad.abs().sum()) for p in llm if p.grad is not None)
        assert (reached == 0) == detach, (detach, reached)
    assert dataclasses.replace(c, pooled_detach=True).cond_dim == c.cond_dim
    with pytest.raises(ValueError, match="pooled_detach needs slot_bottleneck"):
        dataclasses.replace(c, slot_bottleneck=False, object_slots=True, pooled_detach=True)


def test_instructed_targets_are_the_named_object_and_where_it_goes(demo_dataset, tmp_path, monkeypatch):
    from tinyvla_ros.data import features
    from tinyvla_ros.data.aux_targets import dataset_targets, instructed
    from tinyvla_ros.data.episodes import load_info
    from tinyvla_ros.vla.policy import TinyVLAPolicy

    scene = np.arange(10, dtype=np.float32)  # red, green, blue, bowl, handle: (0, 1), (2, 3), ...
    assert instructed(scene, "franka", "pick_red_cube").tolist() == [0, 1, 0, 1]
    assert instructed(scene, "franka", "green_cube_in_bowl").tolist() == [2, 3, 6, 7]
    assert instructed(scene, "franka", "close_drawer").tolist() == [8, 9, 8, 9]
    assert instructed(scene, "franka", "pick_blue_cube").tolist() == [4, 5, 4, 5]
    assert instructed(scene, "ur5_bimanual", "blue_cube_in_bin").tolist() == [6, 7, 8, 9]
    with pytest.raises(ValueError, match="no instructed object"):
        instructed(scene, "franka", "lift_box")
    # training hands the dataset the episode's own task's objects, and the readout has a hidden layer
    given = []

    class Recording(features.CachedFeatureDataset):
        def __init__(self, *args, aux=None, **kw):
            given.append(aux)
            super().__init__(*args, aux=aux, **kw)

    monkeypatch.setattr(features, "CachedFeatureDataset", Recording)
    overrides = {"image_size": 64, "object_slots": True, "slot_bottleneck": True, "object_targets": "instructed",
                 "readout_hidden": 16}  # fmt: skip
    final = Trainer(_cfg(demo_dataset, tmp_path / "i", aux_objects=1.0, ema=False, overrides=overrides)).run()
    c = TinyVLAPolicy.from_pretrained(final).config
    assert c.aux_dim == 4 and c.cond_dim == c.llm.hidden_size + c.state_dim + 4 and c.readout_hidden == 16
    policy = TinyVLAPolicy.from_pretrained(final)
    assert [m.out_features for m in policy.head.aux if isinstance(m, torch.nn.Linear)] == [16, 4]
    scenes, tasks = dataset_targets(demo_dataset), [e["task"] for e in load_info(demo_dataset).episodes]
    assert given and all(len(aux) == len(scenes) for aux in given)
    for e, (xy, steps) in given[0].items():
        assert np.array_equal(xy, instructed(scenes[e][0], "franka", tasks[e])) and steps == scenes[e][1]
    with pytest.raises(ValueError, match="object_targets"):
        dataclasses.replace(c, object_targets="everything")
    with pytest.raises(ValueError, match="object_targets=instructed needs aux_dim 4"):
        dataclasses.replace(c, aux_dim=10)
    with pytest.raises(ValueError, match="readout_hidden needs aux_dim"):
        dataclasses.replace(c, object_slots=False, slot_bottleneck=False, aux_dim=0)


def test_selected_slots_pick_the_instructed_object_out_of_the_scene_readout(
    demo_dataset, tmp_path, monkeypatch
):
    from tinyvla_ros.data import features
    from tinyvla_ros.data.aux_targets import dataset_targets, instructed
    from tinyvla_ros.data.episodes import load_info
    from tinyvla_ros.vla.policy import TinyVLAPolicy

    made = []

    class Recording(features.CachedFeatureDataset):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            made.append(self)

    monkeypatch.setattr(features, "CachedFeatureDataset", Recording)
    overrides = {
        "image_size": 64,
        "object_slots": True,
        "slot_bottleneck": True,
        "object_targets": "selected",
    }
    final = Trainer(_cfg(demo_dataset, tmp_path / "s", aux_objects=1.0, ema=False, overrides=overrides)).run()
    policy = TinyVLAPolicy.from_pretrained(final)
    c, h = policy.config, policy.config.llm.hidden_size
    # the readout gives every object (10), the head reads 4, the selection has 2 x 5 logits
    assert (c.aux_dim, c.slot_dim, c.cond_dim) == (10, 4, h + c.state_dim + 4)
    assert policy.head.aux.out_features == 10 and policy.head.select.out_features == 10
    # training hands each episode every object's xy, then its own task's instructed ones
    scenes, tasks = dataset_targets(demo_dataset), [e["task"] for e in load_info(demo_dataset).episodes]
    for e, (xy, steps) in made[0].aux.items():
        want = np.concatenate([scenes[e][0], instructed(scenes[e][0], "franka", tasks[e])])
        assert np.array_equal(xy, want) and steps == scenes[e][1]
    # the head's slots are the readout's rows the selection weights: one-hot logits pick them exactly
    raw = torch.randn(3, 2 * h + c.state_dim)
    with torch.no_grad():
        policy.head.select.weight.zero_()
        policy.head.select.bias.copy_(torch.tensor([0.0, 0, 0, 50, 0] + [0, 50.0, 0, 0, 0]))  # bowl, green
        head_input, readout, weights = policy._slots(raw)
    rows = readout.view(3, 5, 2)
    assert torch.allclose(head_input[:, -4:], torch.cat([rows[:, 3], rows[:, 1]], dim=-1), atol=1e-5)
    assert torch.equal(policy._with_slots(raw), head_input)
    # the training terms: the selection's error against the instructed targets, on every sample
    torch.manual_seed(0)
    policy.head.select.reset_parameters()  # not saturated, as training starts
    batch = features.collate_features([made[0][i] for i in range(4)])
    policy.train()
    terms = policy(batch, generator=torch.Generator().manual_seed(0), return_terms=True)
    assert float(terms["select_count"]) == 4 * 4 and float(terms["select_sum"].detach()) > 0.0
    assert float(terms["aux_count"]) == 10 * float(batch["aux_mask"].sum())
    terms["select_sum"].backward()
    assert policy.head.select.weight.grad.abs().sum() > 0 and policy.head.aux.weight.grad is None
    # ... and reaches the language model through the condition: it learns to carry the instruction
    assert policy.head.condition.combine.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.backbone.llm.parameters())
    # that error teaches the selection to pick by the words: two instructions, their own objects
    torch.manual_seed(0)
    select = torch.nn.Linear(h, 10)
    policy.head.select = select
    words = torch.randn(2, h)  # two instructions' mixed conditions (what the readout reads)
    optimiser = torch.optim.Adam(select.parameters(), lr=0.05)
    for _ in range(200):
        scene = torch.randn(2, 10)  # fresh scenes: only the words tell which objects
        target = torch.stack(
            [torch.cat([scene[0, 0:2], scene[0, 0:2]]), torch.cat([scene[1, 2:4], scene[1, 6:8]])]
        )
        _, weights = policy._select(words, scene)
        loss = policy._selection_terms(weights, scene, target)["select_sum"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert weights.argmax(-1).tolist() == [[0, 0], [1, 3]] and weights.max(-1).values.min() > 0.9
    with pytest.raises(ValueError, match="object_targets=selected needs slot_bottleneck"):
        dataclasses.replace(c, slot_bottleneck=False, pooled_detach=False)
    with pytest.raises(ValueError, match="object_targets=selected needs aux_dim"):
        dataclasses.replace(c, aux_dim=3)


def test_state_noise_is_seeded_changes_training_and_is_checked(demo_dataset, tmp_path):
    def weights(name, **kw):
        final = Trainer(_cfg(demo_dataset, tmp_path / name, ema=False, steps=2, **kw)).run()
        return load_file(str(final / "model.safetensors"))

    clean, noisy, again = weights("a"), weights("b", state_noise=0.5), weights("c", state_noise=0.5)
    assert all(torch.equal(noisy[k], again[k]) for k in noisy)  # the same draws on a rerun
    combine = "head.condition.combine.weight"
    assert not torch.equal(clean[combine], noisy[combine])
    with pytest.raises(ValueError, match="state_noise"):
        _cfg(demo_dataset, tmp_path / "x", state_noise=-0.1)
