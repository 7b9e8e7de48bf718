"""Training: samples and windows, augmentations, schedule, optimizer state without pickle, exact
resume, LoRA learning rates and the merged final checkpoint (nano preset, a few steps on CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

from tinyvla_ros.data.augment import (  # noqa: E402
    AugmentConfig,
    augment_image,
    center_crop,
    crop_size,
    eval_image,
)
from tinyvla_ros.data.checkpointing import optimizer_from_files, optimizer_to_files  # noqa: E402
from tinyvla_ros.data.episodes import EpisodeFile, load_info  # noqa: E402
from tinyvla_ros.data.samples import (  # noqa: E402
    EpisodeDataset,
    SampleConfig,
    action_window,
    collate,
    split_episodes,
)
from tinyvla_ros.data.train import (  # noqa: E402
    TrainConfig,
    Trainer,
    autocast_dtype,
    lr_factor,
    normalizer_from_stats,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_action_window_pads_past_the_episode_end():
    actions = np.arange(10, dtype=np.float32).reshape(5, 2)
    window, pad = action_window(actions, 3, 4)
    np.testing.assert_array_equal(window, [[6, 7], [8, 9], [8, 9], [8, 9]])
    assert pad.tolist() == [False, False, True, True]
    window, pad = action_window(actions, 0, 4)
    assert not pad.any() and window[3].tolist() == [6, 7]


def test_split_episodes_is_seeded_and_disjoint():
    train, val = split_episodes(10, 0.2, seed=1)
    assert sorted(train + val) == list(range(10)) and len(val) == 2
    assert (train, val) == split_episodes(10, 0.2, seed=1)
    assert split_episodes(3, 0.1, seed=0)[1] != []  # at least one validation episode
    assert split_episodes(1, 0.5, seed=0) == ([0], [])
    with pytest.raises(ValueError, match="val_fraction"):
        split_episodes(4, 1.0, 0)


def test_augmentations_follow_the_official_recipe():
    img = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    assert crop_size(60, 80, 0.95) == (57, 76)
    cfg = AugmentConfig()
    np.testing.assert_array_equal(eval_image(img, cfg), eval_image(img, cfg))  # deterministic
    assert eval_image(img, cfg).shape == img.shape
    np.testing.assert_array_equal(center_crop(img, 1.0), img)
    a = augment_image(img, cfg, np.random.default_rng(1))
    b = augment_image(img, cfg, np.random.default_rng(1))
    c = augment_image(img, cfg, np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert a.shape == img.shape and not np.array_equal(a, c)
    plain = AugmentConfig(crop_ratio=1.0, rotation_deg=0.0, brightness=0.0, contrast=0.0, saturation=0.0)
    np.testing.assert_array_equal(augment_image(img, plain, np.random.default_rng(3)), img)
    bright = AugmentConfig(crop_ratio=1.0, rotation_deg=0.0, brightness=0.3, contrast=0.0, saturation=0.0)
    grey = np.full((8, 8, 3), 100, np.uint8)
    levels = {int(augment_image(grey, bright, np.random.default_rng(s))[0, 0, 0]) for s in range(20)}
    assert min(levels) >= 70 and max(levels) <= 130 and len(levels) > 5  # factor in [0.7, 1.3]
    with pytest.raises(ValueError, match="crop_ratio"):
        AugmentConfig(crop_ratio=0.2)


def test_samples_hold_the_window_the_state_and_model_sized_images(demo_dataset):
    info = load_info(demo_dataset)
    cfg = SampleConfig(("zed_right", "zed_left"), image_size=64, chunk_len=16, train=False)
    ds = EpisodeDataset(demo_dataset, cfg, episodes=[0])
    ep = EpisodeFile(demo_dataset / info.episodes[0]["file"])
    assert len(ds) == ep.length
    last = ds[len(ds) - 1]
    assert last["images"].shape == (2, 3, 64, 64) and last["images"].dtype == torch.uint8
    assert last["action_pad"].tolist() == [False] + [True] * 15
    np.testing.assert_array_equal(last["actions"].numpy(), np.repeat(ep.action[-1:], 16, 0))
    np.testing.assert_array_equal(ds[3]["state"].numpy(), ep.state[3])
    np.testing.assert_array_equal(ds[3]["actions"].numpy(), ep.action[3:19])
    batch = collate([ds[0], ds[1]])
    assert batch["images"].shape == (2, 2, 3, 64, 64) and batch["instruction"] == [ep.instruction] * 2


def test_a_trained_checkpoint_sees_at_deployment_the_evaluation_view_of_its_training_images(
    demo_dataset, tmp_path
):
    """Training with random 95% crops records center_crop 0.95 in the checkpoint; the deployed
    policy's preprocessing then equals the dataset's evaluation view pixel for pixel."""
    from tinyvla_ros.vla.policy import TinyVLAPolicy

    final = Trainer(_cfg(demo_dataset, tmp_path / "run", steps=2)).run()
    policy = TinyVLAPolicy.from_pretrained(final)
    c = policy.config
    assert c.center_crop == 0.95
    info = load_info(demo_dataset)
    ep = EpisodeFile(demo_dataset / info.episodes[0]["file"])
    ds = EpisodeDataset(demo_dataset, SampleConfig(c.camera_names, c.image_size, train=False), episodes=[0])
    expected = ds[5]["images"].numpy().astype(np.float32) * np.float32(1.0 / 255.0)
    frames = [ep.frame(cam, 5) for cam in c.camera_names]
    np.testing.assert_array_equal(policy.preprocess_images(frames).numpy(), expected)
    policy.config = c.replace(center_crop=1.0)  # the whole image: another view (the crop matters)
    assert np.abs(policy.preprocess_images(frames).numpy() - expected).max() > 0.05


def test_lr_schedule_warms_up_then_follows_a_cosine():
    assert lr_factor(0, 10, 100, 0.0) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, 0.0) == pytest.approx(1.0)
    assert lr_factor(10, 10, 100, 0.0) == pytest.approx(1.0)
    assert lr_factor(55, 10, 100, 0.0) == pytest.approx(0.5)
    assert lr_factor(100, 10, 100, 0.1) == pytest.approx(0.1)


def test_optimizer_state_round_trips_without_pickle():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.98), eps=1e-7)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 4)).pow(2).sum().backward()
        opt.step()
    tensors, rest = optimizer_to_files(opt)
    json.dumps(rest)
    clone = torch.nn.Linear(4, 3)
    clone.load_state_dict(model.state_dict())
    opt2 = torch.optim.AdamW(clone.parameters(), lr=1e-2, betas=(0.9, 0.98), eps=1e-7)
    opt2.load_state_dict(optimizer_from_files(tensors, json.loads(json.dumps(rest))))
    x = torch.randn(5, 4)
    for m, o in ((model, opt), (clone, opt2)):
        o.zero_grad()
        m(x).pow(2).sum().backward()
        o.step()
    torch.testing.assert_close(model.weight, clone.weight, rtol=0, atol=0)


def _cfg(dataset, out, **kw):
    base = dict(dataset=str(dataset), output=str(out), preset="nano", steps=4, batch_size=4, warmup_steps=1,
                val_every=2, save_every=2, log_every=1, val_batches=1, progress=False, lr=3e-4)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_resumed_training_equals_uninterrupted_training(demo_dataset, tmp_path):
    straight = Trainer(_cfg(demo_dataset, tmp_path / "a")).run()
    stopped = Trainer(_cfg(demo_dataset, tmp_path / "b", stop_after=2)).run()
    assert stopped.name == "step_00000002" and not (tmp_path / "b" / "final").exists()
    resumed = Trainer(
        _cfg(demo_dataset, tmp_path / "b", resume=True, num_workers=1)
    ).run()  # a worker process too
    a = load_file(str(straight / "model.safetensors"))
    b = load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    steps = [
        m["step"]
        for m in map(json.loads, (tmp_path / "b" / "metrics.jsonl").read_text().splitlines())
        if "loss" in m
    ]
    assert steps == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="already holds a run"):
        Trainer(_cfg(demo_dataset, tmp_path / "a")).run()


def _llava_pythia_dir(path, seed: int = 0):
    """A nano-sized VLM written in the official Llava-Pythia layout (config.json, weights with the
    transformers-4.x key names, tokenizer): what a downloaded initialiser looks like."""
    from safetensors.torch import save_file

    from tinyvla_ros.vla.config import get_config
    from tinyvla_ros.vla.policy import TinyVLAPolicy

    torch.manual_seed(seed)
    policy = TinyVLAPolicy(get_config("nano"))
    c = policy.config
    prefixes = {"backbone.vision.": "gpt_neox.vision_tower.vision_model.", "backbone.projector.": "gpt_neox.mm_projector.",
                "backbone.llm.": "gpt_neox."}  # fmt: skip
    state = {}
    for key, value in policy.state_dict().items():
        for ours, theirs in prefixes.items():
            if key.startswith(ours):
                state[theirs + key[len(ours) :]] = value.contiguous()
    state["embed_out.weight"] = torch.zeros(c.llm.vocab_size, c.llm.hidden_size)
    path.mkdir(parents=True)
    save_file(state, str(path / "model.safetensors"))
    tower = {"hidden_size": c.vision.hidden_size, "intermediate_size": c.vision.intermediate_size,
             "num_hidden_layers": c.vision.num_layers, "num_attention_heads": c.vision.num_heads,
             "patch_size": c.vision.patch_size, "image_size": c.image_size, "mm_vision_select_layer": -2}  # fmt: skip
    config = {"model_type": "llava_pythia", "hidden_size": c.llm.hidden_size, "intermediate_size": c.llm.intermediate_size,
              "num_hidden_layers": c.llm.num_layers, "num_attention_heads": c.llm.num_heads,
              "vocab_size": c.llm.vocab_size, "rotary_pct": 0.25, "vision_config": {"vision_tower": tower,
              "mm_projector": {"mm_projector_type": "mlp2x_gelu", "mm_hidden_size": c.vision.hidden_size,
                               "hidden_size": c.llm.hidden_size}}}  # fmt: skip
    (path / "config.json").write_text(json.dumps(config))
    policy.tokenizer.save_pretrained(str(path))
    return state


def test_training_from_a_llava_pythia_initialiser_uses_lora_and_writes_a_merged_checkpoint(
    demo_dataset, tmp_path
):
    from tinyvla_ros.vla.policy import TinyVLAPolicy

    vlm = _llava_pythia_dir(tmp_path / "llava-pythia-nano")
    trainer = Trainer(
        _cfg(demo_dataset, tmp_path / "lora", init=str(tmp_path / "llava-pythia-nano"), steps=2)
    )
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [2e-4, 2e-5]  # LoRA, projector + head
    assert trainer.policy.lora_applied and trainer.policy.config.name == "llava-pythia"
    summary = trainer.policy.parameter_summary()
    assert 0 < summary["trainable"] < summary["total"]
    torch.testing.assert_close(
        trainer.policy.backbone.projector[0].weight, vlm["gpt_neox.mm_projector.0.weight"], rtol=0, atol=0
    )
    final = trainer.run()
    config = json.loads((final / "config.json").read_text())
    assert config["lora_applied"] is False and config["tokenizer"] == "external"
    policy = TinyVLAPolicy.from_pretrained(final)
    info = load_info(demo_dataset)
    stats = json.loads((demo_dataset / "stats.json").read_text())
    np.testing.assert_allclose(policy.normalizer.action_low, normalizer_from_stats(stats).action_low)
    images = [np.zeros((48, 64, 3), np.uint8)] * 2
    chunk = policy.predict_chunk(images, "pick up the red cube", np.zeros(len(info.state_names)), seed=0)
    assert chunk.shape == (16, len(info.action_names)) and np.all(np.isfinite(chunk))
    assert (tmp_path / "lora" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = [json.loads(x) for x in (tmp_path / "lora" / "metrics.jsonl").read_text().splitlines()]
    assert any("val_loss" in m for m in metrics) and all(m.get("samples_per_s", 1) > 0 for m in metrics)


def test_training_options_are_checked(demo_dataset, tmp_path):
    with pytest.raises(ValueError, match="preset"):
        _cfg(demo_dataset, tmp_path, preset="giant")
    with pytest.raises(ValueError, match="batch_size"):
        _cfg(demo_dataset, tmp_path, batch_size=0)
    with pytest.raises(ValueError, match="fp16 needs a CUDA"):
        autocast_dtype("fp16", torch.device("cpu"))
    with pytest.raises(ValueError, match="--init"):
        Trainer(_cfg(demo_dataset, tmp_path / "s", preset="tinyvla-s"))


def test_model_overrides_from_the_command_line_are_parsed_and_checked():
    from tinyvla_ros.data.train import parse_overrides

    parsed = parse_overrides(["image_size=128", "vision.patch_size=8", "head.down_dims=[16, 32]"])
    assert parsed == {"image_size": 128, "vision": {"patch_size": 8}, "head": {"down_dims": [16, 32]}}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["image_size"])
    with pytest.raises(ValueError, match="already set"):
        parse_overrides(["vision=3", "vision.patch_size=8"])
