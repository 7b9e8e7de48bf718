"""Image augmentation for training, as in the official TinyVLA recipe (NumPy + Pillow, no torchvision).

Training (per camera image, in this order, as the official pipeline applies them before the CLIP
preprocessing):
    1. random crop of ``crop_ratio`` (0.95) of each side, resized back to the original size;
    2. rotation by a uniform angle in [-rotation_deg, +rotation_deg] (5 deg), corners filled black;
    3. colour jitter: brightness factor in [1 - 0.3, 1 + 0.3], contrast in [1 - 0.4, 1 + 0.4],
       saturation in [1 - 0.5, 1 + 0.5], applied in a random order (torchvision's definitions:
       brightness scales, contrast blends with the mean grey level, saturation with the greyscale).
Evaluation: a centre crop of ``crop_ratio`` resized back to the original size.

The result then goes through the model's own preprocessing (pad to square with the CLIP mean
colour, resize to S: tinyvla_ros.vla.preprocess), exactly as at deployment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tinyvla_ros.vla.preprocess import center_crop, crop_resize, crop_size


def _pil():
    try:
        from PIL import Image, ImageEnhance
    except ImportError as exc:  # pragma: no cover - pillow is in requirements/data.txt
        raise ImportError("image augmentation needs Pillow: pip install pillow") from exc
    return Image, ImageEnhance


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths (official values by default); ``enabled=False`` trains on clean images.

    crop_ratio: side fraction kept by the random crop (training) and the centre crop
    (evaluation); 1.0 disables cropping.
    """

    enabled: bool = True
    crop_ratio: float = 0.95
    rotation_deg: float = 5.0
    brightness: float = 0.3
    contrast: float = 0.4
    saturation: float = 0.5

    def __post_init__(self) -> None:
        if not (math.isfinite(self.crop_ratio) and 0.5 <= self.crop_ratio <= 1.0):
            raise ValueError(f"AugmentConfig.crop_ratio must be in [0.5, 1.0], got {self.crop_ratio!r}")
        if not (math.isfinite(self.rotation_deg) and 0.0 <= self.rotation_deg <= 45.0):
            raise ValueError(f"AugmentConfig.rotation_deg must be in [0, 45], got {self.rotation_deg!r}")
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value < 1.0):
                raise ValueError(f"AugmentConfig.{name} must be in [0, 1), got {value!r}")


def random_crop(img: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W, 3) uint8: random crop of ``ratio`` per side, resized back."""
    h, w = img.shape[:2]
    ch, cw = crop_size(h, w, ratio)
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    return crop_resize(img, top, left, ch, cw)


def rotate(img: np.ndarray, degrees: float) -> np.ndarray:
    """(H, W, 3) uint8 rotated counter-clockwise by ``degrees`` about the centre, same size, black corners."""
    if degrees == 0.0:
        return img
    image_cls, _ = _pil()
    out = image_cls.fromarray(img).rotate(
        degrees, resample=image_cls.Resampling.BILINEAR, fillcolor=(0, 0, 0)
    )
    return np.asarray(out)


def color_jitter(img: np.ndarray, factors: dict[str, float], order: list[str]) -> np.ndarray:
    """Apply brightness / contrast / saturation ``factors`` (1 = unchanged) in ``order``."""
    image_cls, enhance = _pil()
    pil = image_cls.fromarray(img)
    ops = {"brightness": enhance.Brightness, "contrast": enhance.Contrast, "saturation": enhance.Color}
    for name in order:
        if factors[name] != 1.0:
            pil = ops[name](pil).enhance(factors[name])
    return np.asarray(pil)


def augment_image(img: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """One training view of an (H, W, 3) uint8 RGB image (see the module docstring)."""
    if not cfg.enabled:
        return center_crop(img, cfg.crop_ratio)
    out = random_crop(img, cfg.crop_ratio, rng)
    if cfg.rotation_deg > 0:
        out = rotate(out, float(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg)))
    strengths = {"brightness": cfg.brightness, "contrast": cfg.contrast, "saturation": cfg.saturation}
    factors = {k: float(rng.uniform(1.0 - s, 1.0 + s)) if s > 0 else 1.0 for k, s in strengths.items()}
    order = [list(strengths)[i] for i in rng.permutation(3)]
    return color_jitter(out, factors, order)


def eval_image(img: np.ndarray, cfg: AugmentConfig) -> np.ndarray:
    """The evaluation view of an (H, W, 3) uint8 image: centre crop of ``crop_ratio``, resized back."""
    return center_crop(img, cfg.crop_ratio)


__all__ = [
    "AugmentConfig",
    "augment_image",
    "center_crop",
    "color_jitter",
    "crop_size",
    "eval_image",
    "random_crop",
    "rotate",
]
