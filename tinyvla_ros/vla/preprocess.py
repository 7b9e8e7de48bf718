"""CLIP-style image preprocessing (LLaVA "pad" aspect mode), NumPy/PIL only.

Each camera image (H, W, 3) uint8 RGB is padded to a square with the CLIP mean colour
(centred, as LLaVA's expand-to-square), resized to S x S with bicubic filtering (as CLIP's
processor), and scaled to [0, 1]. The CLIP mean/std normalisation is applied inside the model
(``TinyVLABackbone.encode_images``), so training batches and deployment share one path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PAD_COLOUR = tuple(int(m * 255) for m in CLIP_MEAN)  # (122, 116, 104)
REDUCING_GAP = 3.0


def _pil():
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - pillow is in requirements/data.txt
        raise ImportError("image preprocessing needs Pillow: pip install pillow") from exc
    return Image


def check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Validate one (H, W, 3) uint8 RGB image; returns it as a C-contiguous array."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a numpy array (H, W, 3) uint8, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be (H, W, 3) uint8 RGB, got shape {image.shape} dtype {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{name} is empty: shape {image.shape}")
    return np.ascontiguousarray(image)


def pad_to_square(image: np.ndarray, fill: Sequence[int] = PAD_COLOUR) -> np.ndarray:
    """(H, W, 3) uint8 -> (M, M, 3) uint8, M = max(H, W), image centred on ``fill``."""
    height, width = image.shape[:2]
    if height == width:
        return image
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    out = np.empty((side, side, 3), dtype=np.uint8)
    colour = np.asarray(fill, dtype=np.uint8)
    if height < side:  # bands above and below
        out[:top] = colour
        out[top + height :] = colour
    else:  # bands left and right
        out[:, :left] = colour
        out[:, left + width :] = colour
    out[top : top + height, left : left + width] = image
    return out


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """(M, M, 3) uint8 -> (size, size, 3) uint8 with PIL bicubic (antialiased).

    For reductions of more than 3x, PIL first box-reduces to within 3x of the target
    (``reducing_gap=3``; about 4x faster, visually the same as a plain bicubic resize).
    """
    if image.shape[0] == size and image.shape[1] == size:
        return image
    pil = _pil()
    resized = pil.fromarray(image).resize(
        (size, size), resample=pil.Resampling.BICUBIC, reducing_gap=REDUCING_GAP
    )
    return np.asarray(resized)


def crop_size(height: int, width: int, ratio: float) -> tuple[int, int]:
    """(h, w) of a crop keeping ``ratio`` of each side (at least 1 pixel)."""
    return max(1, int(height * ratio)), max(1, int(width * ratio))


def crop_resize(image: np.ndarray, top: int, left: int, ch: int, cw: int) -> np.ndarray:
    """Crop (ch, cw) at (top, left) and resize back to the input's (H, W) with bilinear antialiasing."""
    if (ch, cw) == image.shape[:2]:
        return image
    pil = _pil()
    crop = pil.fromarray(np.ascontiguousarray(image[top : top + ch, left : left + cw]))
    return np.asarray(crop.resize((image.shape[1], image.shape[0]), resample=pil.Resampling.BILINEAR))


def center_crop(image: np.ndarray, ratio: float) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W, 3) uint8: centre crop of ``ratio`` per side, resized back.

    The evaluation view of the official training recipe (random crops of ``ratio`` in training);
    ``TinyVLAConfig.center_crop`` applies it at deployment through ``prepare_image``.
    """
    h, w = image.shape[:2]
    ch, cw = crop_size(h, w, ratio)
    return crop_resize(image, (h - ch) // 2, (w - cw) // 2, ch, cw)


def prepare_image(image: np.ndarray, size: int, name: str = "image", crop: float = 1.0) -> np.ndarray:
    """(H, W, 3) uint8 RGB, any H, W -> (size, size, 3) uint8 (centre crop of ``crop`` when < 1,
    pad to square, then resize).

    The same pixels as ``resize_square(pad_to_square(image), size)``, with the padding done by PIL
    on its own image (no padded NumPy copy to convert): 1.1-2x faster, e.g. 1280x720 -> 112 px in
    3.5 ms instead of 6.1 ms on one core here.
    """
    image = check_image(image, name)
    if crop < 1.0:
        image = center_crop(image, crop)
    height, width = image.shape[:2]
    side = max(height, width)
    if height == width == size:
        return image
    pil = _pil()
    square = pil.fromarray(image)
    if height != width:
        canvas = pil.new("RGB", (side, side), PAD_COLOUR)
        canvas.paste(square, ((side - width) // 2, (side - height) // 2))
        square = canvas
    if side == size:
        return np.asarray(square)
    resized = square.resize((size, size), resample=pil.Resampling.BICUBIC, reducing_gap=REDUCING_GAP)
    return np.asarray(resized)


def prepare_cameras(
    images: Sequence[np.ndarray],
    size: int,
    camera_names: Sequence[str],
    crop: float = 1.0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """n_cams images in ``camera_names`` order -> (n_cams, 3, size, size) float32 in [0, 1]
    (``crop``: centre crop side fraction, see prepare_image; ``out``: an array of that shape and
    dtype to write into, e.g. one row of a preallocated batch)."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        raise ValueError("images must be a sequence with one (H, W, 3) array per camera, got a single image")
    if len(images) != len(camera_names):
        raise ValueError(
            f"expected {len(camera_names)} images (cameras {list(camera_names)}), got {len(images)}"
        )
    if out is None:
        out = np.empty((len(images), 3, size, size), dtype=np.float32)
    scale = np.float32(1.0 / 255.0)
    for i, (image, cam) in enumerate(zip(images, camera_names, strict=True)):
        square = prepare_image(image, size, name=f"image of camera {cam!r}", crop=crop)
        np.multiply(square.transpose(2, 0, 1), scale, out=out[i])
    return out
