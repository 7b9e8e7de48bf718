"""sensor_msgs/Image and sensor_msgs/CompressedImage payloads <-> RGB NumPy arrays, without cv_bridge.

Every decoder returns a fresh, C-contiguous (H, W, 3) uint8 RGB array that owns its memory (it
never aliases the message buffer), so callers may keep it after the message is gone.

Raw encodings (names as in sensor_msgs/image_encodings.hpp):
    rgb8, bgr8, rgba8, bgra8 (ZED wrapper), mono8 / 8UC1,
    rgb16, bgr16, rgba16, bgra16, mono16 (16-bit: the high byte is kept),
    yuv422 / uyvy (U Y0 V Y1), yuv422_yuy2 / yuyv (Y0 U Y1 V) (BT.601 limited range, as OpenCV).
``step`` (bytes per row, possibly padded) is honoured; ``is_bigendian`` matters for 16-bit data.

Compressed payloads (image_transport "compressed"): JPEG and PNG via Pillow, format strings as
image_transport writes them (``"rgb8; jpeg compressed bgr8"``, ``"bgra8; png compressed bgr8"``)
or bare (``"jpeg"``, ``"png"``). The "compressed bgr8" suffix names the OpenCV buffer order at
encoding time; the file itself stores standard colour, so Pillow's RGB output is correct.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ImageFormatError",
    "SUPPORTED_ENCODINGS",
    "COMPRESSED_FORMATS",
    "decode_image",
    "decode_compressed",
    "encode_image",
    "encode_compressed",
    "check_image_shape",
    "add_sensor_noise",
]


class ImageFormatError(ValueError):
    """An image payload that cannot be decoded: unknown encoding, bad sizes, corrupt data."""


@dataclass(frozen=True)
class _Layout:
    channels: int  # channels stored per pixel in the message
    bytes_per_channel: int  # 1 or 2
    rgb_index: tuple[int, ...] | None  # which stored channels are R, G, B (None: mono)


_LAYOUTS: dict[str, _Layout] = {
    "rgb8": _Layout(3, 1, (0, 1, 2)),
    "bgr8": _Layout(3, 1, (2, 1, 0)),
    "rgba8": _Layout(4, 1, (0, 1, 2)),
    "bgra8": _Layout(4, 1, (2, 1, 0)),
    "mono8": _Layout(1, 1, None),
    "8UC1": _Layout(1, 1, None),
    "rgb16": _Layout(3, 2, (0, 1, 2)),
    "bgr16": _Layout(3, 2, (2, 1, 0)),
    "rgba16": _Layout(4, 2, (0, 1, 2)),
    "bgra16": _Layout(4, 2, (2, 1, 0)),
    "mono16": _Layout(1, 2, None),
}
# Packed 4:2:2 formats: 2 bytes per pixel, byte offsets of (Y0, U, Y1, V) in each 4-byte pair.
_YUV422: dict[str, tuple[int, int, int, int]] = {
    "yuv422": (1, 0, 3, 2),  # UYVY
    "uyvy": (1, 0, 3, 2),
    "yuv422_yuy2": (0, 1, 2, 3),  # YUYV
    "yuyv": (0, 1, 2, 3),
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_LAYOUTS) + tuple(_YUV422)
COMPRESSED_FORMATS: tuple[str, ...] = ("jpeg", "png")

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DEFAULT_MAX_PIXELS = 8192 * 8192


def _unknown(encoding: str) -> ImageFormatError:
    return ImageFormatError(
        f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
    )


def _as_bytes_array(data: object) -> np.ndarray:
    """Any buffer (bytes, bytearray, memoryview, array.array('B'), ndarray) -> flat uint8 view."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)  # type: ignore[arg-type]
    except TypeError as exc:
        raise ImageFormatError(f"image data must be a bytes-like buffer, got {type(data).__name__}") from exc


def _rows(buf: np.ndarray, height: int, width: int, step: int, row_bytes: int, encoding: str) -> np.ndarray:
    """Validate sizes and return the (height, row_bytes) pixel bytes without row padding."""
    for name, value in (("height", height), ("width", width), ("step", step)):
        if not isinstance(value, (int, np.integer)) or value <= 0:
            raise ImageFormatError(f"image {name} must be a positive int, got {value!r}")
    if step < row_bytes:
        raise ImageFormatError(
            f"image step {step} < width*bytes_per_pixel = {width}*{row_bytes // width} = {row_bytes} "
            f"for encoding {encoding!r}"
        )
    need = step * height
    if buf.size < need:
        raise ImageFormatError(
            f"image data has {buf.size} bytes, need step*height = {step}*{height} = {need} ({encoding})"
        )
    return buf[:need].reshape(height, step)[:, :row_bytes]


def _yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """BT.601 limited-range YUV (float arrays, same shape) -> uint8 RGB (..., 3)."""
    c = 1.164 * (y - 16.0)
    d, e = u - 128.0, v - 128.0
    rgb = np.stack([c + 1.596 * e, c - 0.392 * d - 0.813 * e, c + 2.017 * d], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _decode_yuv422(
    rows: np.ndarray, height: int, width: int, offsets: tuple[int, int, int, int]
) -> np.ndarray:
    pairs = rows.reshape(height, width // 2, 4).astype(np.float32)
    y0, u, y1, v = (pairs[..., i] for i in offsets)
    y = np.stack([y0, y1], axis=-1).reshape(height, width)
    return _yuv_to_rgb(y, np.repeat(u, 2, axis=1), np.repeat(v, 2, axis=1))


def decode_image(
    encoding: str,
    height: int,
    width: int,
    step: int,
    data: bytes | bytearray | memoryview | np.ndarray,
    is_bigendian: int = 0,
) -> np.ndarray:
    """Decode a sensor_msgs/Image payload to RGB.

    Args:
        encoding: sensor_msgs encoding string (see ``SUPPORTED_ENCODINGS``).
        height, width: image size in pixels.
        step: bytes per row including padding (>= width * bytes per pixel).
        data: at least ``step * height`` bytes.
        is_bigendian: 1 when 16-bit samples are big-endian.
    Returns:
        (height, width, 3) uint8 RGB, C-contiguous, owning its memory.
    Raises:
        ImageFormatError: unknown encoding, inconsistent sizes, odd width for YUV 4:2:2.
    """
    if not isinstance(encoding, str):
        raise ImageFormatError(f"image encoding must be a str, got {type(encoding).__name__}")
    buf = _as_bytes_array(data)
    if encoding in _YUV422:
        if width % 2:
            raise ImageFormatError(f"{encoding} needs an even width, got {width}")
        rows = _rows(buf, height, width, step, width * 2, encoding)
        return _decode_yuv422(rows, height, width, _YUV422[encoding])
    layout = _LAYOUTS.get(encoding)
    if layout is None:
        raise _unknown(encoding)
    bpp = layout.channels * layout.bytes_per_channel
    rows = _rows(buf, height, width, step, width * bpp, encoding)
    if layout.bytes_per_channel == 2:
        dtype = np.dtype(">u2" if is_bigendian else "<u2")
        px = np.ascontiguousarray(rows).view(dtype).reshape(height, width, layout.channels)
        px = (px >> 8).astype(np.uint8)
    else:
        px = rows.reshape(height, width, layout.channels)
    if layout.rgb_index == (0, 1, 2):
        return np.array(px[..., :3], order="C", copy=True)  # never aliases the message buffer
    out = np.empty((height, width, 3), dtype=np.uint8)
    for dst, src in enumerate(layout.rgb_index or (0, 0, 0)):  # per-channel copies: ~3x faster than
        out[..., dst] = px[..., src]  # a reversed-stride view or np.repeat
    return out


def _compressed_kind(fmt: str, data: bytes) -> str:
    low = (fmt or "").lower()
    if "compresseddepth" in low:
        raise ImageFormatError(f"compressedDepth payloads are depth images, not supported: {fmt!r}")
    if data[:3] == _JPEG_MAGIC:
        sniffed = "jpeg"
    elif data[:8] == _PNG_MAGIC:
        sniffed = "png"
    else:
        raise ImageFormatError(
            f"compressed image (format {fmt!r}, {len(data)} bytes) is neither JPEG nor PNG; "
            f"supported: {', '.join(COMPRESSED_FORMATS)}"
        )
    declared = "jpeg" if ("jpeg" in low or "jpg" in low) else "png" if "png" in low else None
    if low.strip() and declared is None:
        raise ImageFormatError(
            f"unsupported compressed format {fmt!r}; supported: {', '.join(COMPRESSED_FORMATS)}"
        )
    if declared is not None and declared != sniffed:
        raise ImageFormatError(f"compressed format says {declared!r} but the data is {sniffed}: {fmt!r}")
    return sniffed


def _pil_to_rgb(img: object) -> np.ndarray:
    mode = img.mode  # type: ignore[attr-defined]
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img)
        arr8 = (np.clip(arr, 0, 65535).astype(np.uint16) >> 8).astype(np.uint8)
        return np.repeat(arr8[..., None], 3, axis=2)
    if mode != "RGB":
        img = img.convert("RGB")  # type: ignore[attr-defined]
    return np.array(img, dtype=np.uint8, copy=True)


def decode_compressed(format: str, data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage payload (JPEG or PNG) to (H, W, 3) uint8 RGB.

    The payload's magic bytes must agree with ``format``; images above ``max_pixels`` are
    refused before decoding (decompression bombs). Needs Pillow.
    """
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow is a pinned dependency
        raise ImportError("decode_compressed needs Pillow: pip install pillow") from exc
    raw = bytes(_as_bytes_array(data))
    _compressed_kind(format, raw)
    try:
        with Image.open(io.BytesIO(raw)) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise ImageFormatError(f"compressed image {w}x{h} exceeds max_pixels={max_pixels}")
            img.load()
            return _pil_to_rgb(img)
    except ImageFormatError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageFormatError(f"corrupt compressed image (format {format!r}): {exc}") from exc


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ImageFormatError(
            f"expected an (H, W, 3) uint8 RGB array, got shape {arr.shape} dtype {arr.dtype}"
        )
    return arr


def _rgb_to_yuv422(rgb: np.ndarray, offsets: tuple[int, int, int, int]) -> np.ndarray:
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 16.0 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128.0 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128.0 + 0.439 * r - 0.368 * g - 0.071 * b
    h, w = y.shape
    out = np.empty((h, w // 2, 4), dtype=np.float32)
    iy0, iu, iy1, iv = offsets
    out[..., iy0], out[..., iy1] = y[:, 0::2], y[:, 1::2]
    out[..., iu] = 0.5 * (u[:, 0::2] + u[:, 1::2])
    out[..., iv] = 0.5 * (v[:, 0::2] + v[:, 1::2])
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(h, w * 2)


def _rgb_to_layout(rgb: np.ndarray, layout: _Layout, bigendian: bool) -> np.ndarray:
    h, w, _ = rgb.shape
    if layout.rgb_index is None:
        f = rgb.astype(np.float32)
        px = np.rint(0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2])[..., None].astype(np.uint8)
    else:
        px = np.empty((h, w, layout.channels), dtype=np.uint8)
        px[..., list(layout.rgb_index)] = rgb
        if layout.channels == 4:
            px[..., 3] = 255
    if layout.bytes_per_channel == 2:
        px16 = px.astype(np.uint16) * 257  # 0..255 -> 0..65535
        return px16.astype(">u2" if bigendian else "<u2").view(np.uint8).reshape(h, -1)
    return px.reshape(h, -1)


def encode_image(
    rgb: np.ndarray, encoding: str, row_padding: int = 0, is_bigendian: int = 0
) -> tuple[int, bytes]:
    """Encode an (H, W, 3) uint8 RGB array as a sensor_msgs/Image payload.

    Returns ``(step, data)``; ``row_padding`` extra zero bytes are appended to each row (as
    some drivers do) so that ``step = width * bytes_per_pixel + row_padding``.
    """
    arr = _check_rgb(rgb)
    if not isinstance(row_padding, int) or row_padding < 0:
        raise ImageFormatError(f"row_padding must be an int >= 0, got {row_padding!r}")
    if encoding in _YUV422:
        if arr.shape[1] % 2:
            raise ImageFormatError(f"{encoding} needs an even width, got {arr.shape[1]}")
        rows = _rgb_to_yuv422(arr, _YUV422[encoding])
    elif encoding in _LAYOUTS:
        rows = _rgb_to_layout(arr, _LAYOUTS[encoding], bool(is_bigendian))
    else:
        raise _unknown(encoding)
    if row_padding:
        rows = np.concatenate([rows, np.zeros((rows.shape[0], row_padding), dtype=np.uint8)], axis=1)
    return int(rows.shape[1]), rows.tobytes()


def encode_compressed(
    rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90, source_encoding: str = "rgb8"
) -> tuple[str, bytes]:
    """Encode RGB as JPEG or PNG; returns ``(format_string, data)`` as image_transport would."""
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover
        raise ImportError("encode_compressed needs Pillow: pip install pillow") from exc
    arr = _check_rgb(rgb)
    if fmt not in COMPRESSED_FORMATS:
        raise ImageFormatError(f"unsupported compressed format {fmt!r}; supported: {COMPRESSED_FORMATS}")
    if not 1 <= int(quality) <= 100:
        raise ImageFormatError(f"JPEG quality must be in [1, 100], got {quality}")
    out = io.BytesIO()
    if fmt == "jpeg":
        Image.fromarray(arr, "RGB").save(out, format="JPEG", quality=int(quality))
    else:
        Image.fromarray(arr, "RGB").save(out, format="PNG")
    return f"{source_encoding}; {fmt} compressed bgr8", out.getvalue()


def check_image_shape(img: np.ndarray, expected_hw: Sequence[int] | None = None) -> np.ndarray:
    """Raise ImageFormatError unless ``img`` is (H, W, 3) uint8 with (H, W) == ``expected_hw``."""
    arr = _check_rgb(img)
    if expected_hw is not None:
        exp = tuple(int(v) for v in expected_hw)
        if arr.shape[:2] != exp:
            raise ImageFormatError(
                f"image is {arr.shape[0]}x{arr.shape[1]} (HxW), expected {exp[0]}x{exp[1]}"
            )
    return arr


def add_sensor_noise(rgb: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8 + Gaussian sensor noise of std ``sigma`` intensity levels (0: unchanged).

    What the MuJoCo fake's cameras add to every frame; training adds it too (``tinyvla-train
    --image-noise``), so a policy does not meet it first at deployment.
    """
    if sigma <= 0:
        return rgb
    noise = rng.normal(0.0, sigma, rgb.shape).astype(np.float32)
    return np.clip(rgb.astype(np.float32) + noise, 0, 255).astype(np.uint8)
