"""Image decoding for every encoding the drivers publish, step padding, compressed payloads."""

from __future__ import annotations

import array
import io

import numpy as np
import pytest
from PIL import Image

from tinyvla_ros.core.images import (
    SUPPORTED_ENCODINGS,
    ImageFormatError,
    check_image_shape,
    decode_compressed,
    decode_image,
    encode_compressed,
    encode_image,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(6, 10, 3), dtype=np.uint8)
EXACT = ["rgb8", "bgr8", "rgba8", "bgra8", "rgb16", "bgr16", "rgba16", "bgra16"]


@pytest.mark.parametrize("encoding", EXACT)
@pytest.mark.parametrize("padding", [0, 7])
def test_colour_encodings_round_trip_exactly(encoding: str, padding: int) -> None:
    step, data = encode_image(RGB, encoding, row_padding=padding)
    out = decode_image(encoding, RGB.shape[0], RGB.shape[1], step, data)
    assert out.shape == RGB.shape and out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, RGB)


def test_bgra8_byte_order_is_blue_green_red_alpha() -> None:
    # One ZED-style pixel: B=10, G=20, R=30, A=255
    out = decode_image("bgra8", 1, 1, 4, bytes([10, 20, 30, 255]))
    np.testing.assert_array_equal(out[0, 0], [30, 20, 10])
    out = decode_image("bgr8", 1, 1, 3, bytes([10, 20, 30]))
    np.testing.assert_array_equal(out[0, 0], [30, 20, 10])


def test_padding_bytes_are_ignored_not_read_as_pixels() -> None:
    step, data = encode_image(RGB, "rgb8", row_padding=5)
    buf = bytearray(data)
    for row in range(RGB.shape[0]):  # garbage in the padding must not show up
        buf[row * step + 30 : row * step + 35] = b"\xff" * 5
    np.testing.assert_array_equal(decode_image("rgb8", 6, 10, step, bytes(buf)), RGB)


@pytest.mark.parametrize("encoding", ["mono8", "8UC1", "mono16"])
def test_mono_is_replicated_to_three_channels(encoding: str) -> None:
    grey = RNG.integers(0, 256, size=(4, 5), dtype=np.uint8)
    if encoding == "mono16":
        data = (grey.astype("<u2") * 257).tobytes()
        step = 10
    else:
        data, step = grey.tobytes(), 5
    out = decode_image(encoding, 4, 5, step, data)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)


def test_16bit_big_endian_flag() -> None:
    values = np.array([[0x1234, 0xABCD]], dtype=">u2")
    out = decode_image("mono16", 1, 2, 4, values.tobytes(), is_bigendian=1)
    np.testing.assert_array_equal(out[0, :, 0], [0x12, 0xAB])
    little = decode_image("mono16", 1, 2, 4, values.tobytes(), is_bigendian=0)
    assert not np.array_equal(little, out)


@pytest.mark.parametrize("encoding", ["yuv422", "uyvy", "yuv422_yuy2", "yuyv"])
def test_yuv422_round_trip_is_close(encoding: str) -> None:
    smooth = np.repeat(RGB[:, ::2], 2, axis=1)  # equal pixel pairs: chroma subsampling is lossless
    step, data = encode_image(smooth, encoding)
    assert step == smooth.shape[1] * 2
    out = decode_image(encoding, 6, 10, step, data)
    assert np.max(np.abs(out.astype(int) - smooth.astype(int))) <= 3


def test_yuv_odd_width_rejected() -> None:
    with pytest.raises(ImageFormatError, match="even width"):
        decode_image("yuv422", 1, 3, 6, bytes(6))


def test_accepts_memoryview_bytearray_array_and_ndarray() -> None:
    step, data = encode_image(RGB, "rgb8")
    for buf in (memoryview(data), bytearray(data), array.array("B", data), np.frombuffer(data, np.uint8)):
        np.testing.assert_array_equal(decode_image("rgb8", 6, 10, step, buf), RGB)


def test_decoded_image_does_not_alias_the_message_buffer() -> None:
    step, data = encode_image(RGB, "rgb8")
    buf = bytearray(data)
    out = decode_image("rgb8", 6, 10, step, buf)
    buf[:] = bytes(len(buf))
    np.testing.assert_array_equal(out, RGB)


def test_unknown_encoding_names_it_and_the_supported_list() -> None:
    with pytest.raises(ImageFormatError) as info:
        decode_image("bayer_rggb8", 2, 2, 2, bytes(4))
    assert "bayer_rggb8" in str(info.value) and "bgra8" in str(info.value)
    assert isinstance(info.value, ValueError)
    assert "bayer_rggb8" not in SUPPORTED_ENCODINGS


@pytest.mark.parametrize(
    ("height", "width", "step", "size", "match"),
    [
        (2, 4, 11, 24, "step 11 < width"),  # step < width * 3
        (2, 4, 12, 23, "need step\\*height"),  # too few bytes
        (0, 4, 12, 0, "height"),
        (2, -1, 12, 24, "width"),
    ],
)
def test_inconsistent_sizes_raise(height: int, width: int, step: int, size: int, match: str) -> None:
    with pytest.raises(ImageFormatError, match=match):
        decode_image("rgb8", height, width, step, bytes(size))


def test_non_buffer_data_raises() -> None:
    with pytest.raises(ImageFormatError):
        decode_image("rgb8", 1, 1, 3, [1, 2, 3])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fmt", ["rgb8; jpeg compressed bgr8", "bgra8; jpeg compressed bgr8", "jpeg", "JPEG", ""]
)
def test_jpeg_decodes_with_image_transport_format_strings(fmt: str) -> None:
    smooth = np.zeros((32, 48, 3), dtype=np.uint8)
    smooth[..., 0] = 200  # strongly red: a channel swap would be obvious
    smooth[..., 2] = 30
    _, data = encode_compressed(smooth, "jpeg", quality=95)
    out = decode_compressed(fmt, data)
    assert out.shape == smooth.shape
    assert np.mean(np.abs(out.astype(int) - smooth.astype(int))) < 4
    assert out[..., 0].mean() > 150 > out[..., 2].mean()


def test_png_is_lossless_and_format_string_matches_image_transport() -> None:
    fmt, data = encode_compressed(RGB, "png", source_encoding="bgra8")
    assert fmt == "bgra8; png compressed bgr8"
    np.testing.assert_array_equal(decode_compressed(fmt, data), RGB)


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16"])
def test_png_other_modes_become_rgb(mode: str) -> None:
    if mode == "I;16":
        img = Image.fromarray(np.full((3, 4), 0x8000, dtype=np.uint16))
    elif mode == "L":
        img = Image.fromarray(np.full((3, 4), 77, dtype=np.uint8))
    else:
        img = Image.fromarray(np.full((3, 4, 4), 9, dtype=np.uint8), "RGBA")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    out = decode_compressed("png", buf.getvalue())
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
    assert int(out[0, 0, 0]) == {"L": 77, "RGBA": 9, "I;16": 0x80}[mode]


def test_compressed_errors() -> None:
    _, jpeg = encode_compressed(RGB, "jpeg")
    _, png = encode_compressed(RGB, "png")
    with pytest.raises(ImageFormatError, match="says 'png'"):
        decode_compressed("png", jpeg)
    with pytest.raises(ImageFormatError, match="neither JPEG nor PNG"):
        decode_compressed("jpeg", b"not an image at all")
    with pytest.raises(ImageFormatError, match="corrupt"):
        decode_compressed("jpeg", jpeg[:40])
    with pytest.raises(ImageFormatError, match="compressedDepth"):
        decode_compressed("16UC1; compressedDepth png", png)
    with pytest.raises(ImageFormatError, match="unsupported compressed format"):
        decode_compressed("theora", png)
    with pytest.raises(ImageFormatError, match="max_pixels"):
        decode_compressed("png", png, max_pixels=10)


def test_encode_rejects_bad_input() -> None:
    with pytest.raises(ImageFormatError):
        encode_image(RGB.astype(np.float32), "rgb8")
    with pytest.raises(ImageFormatError):
        encode_image(RGB, "nope")
    with pytest.raises(ImageFormatError):
        encode_compressed(RGB, "gif")


def test_check_image_shape() -> None:
    assert check_image_shape(RGB, (6, 10)) is not None
    with pytest.raises(ImageFormatError, match="expected 5x10"):
        check_image_shape(RGB, (5, 10))
    with pytest.raises(ImageFormatError):
        check_image_shape(RGB[..., 0])
