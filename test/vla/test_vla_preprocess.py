"""Image preprocessing: pad to square with the CLIP mean colour, bicubic resize, camera checks."""

from __future__ import annotations

import numpy as np
import pytest

from tinyvla_ros.vla.preprocess import (
    PAD_COLOUR,
    center_crop,
    pad_to_square,
    prepare_cameras,
    prepare_image,
    resize_square,
)


def test_pad_to_square_centres_the_image():
    img = np.full((2, 6, 3), 9, dtype=np.uint8)
    sq = pad_to_square(img)
    assert sq.shape == (6, 6, 3)
    assert np.all(sq[2:4] == 9)
    assert np.all(sq[:2] == PAD_COLOUR) and np.all(sq[4:] == PAD_COLOUR)
    tall = pad_to_square(np.zeros((5, 2, 3), dtype=np.uint8))
    assert tall.shape == (5, 5, 3) and np.all(tall[:, 1:3] == 0) and np.all(tall[:, 0] == PAD_COLOUR)
    square = np.zeros((4, 4, 3), dtype=np.uint8)
    assert pad_to_square(square) is square
    assert PAD_COLOUR == (122, 116, 104)


def test_prepare_image_keeps_content_and_aspect():
    img = np.zeros((40, 80, 3), dtype=np.uint8)
    img[:, :40] = (255, 0, 0)  # left half red, right half black
    out = prepare_image(img, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert np.all(out[:6] == PAD_COLOUR)  # padding rows above (8 rows at 32 px, filter blurs the edge)
    assert out[16, 4, 0] > 240 and out[16, 4, 1] < 15  # red region
    assert out[16, 28].max() < 15  # black region


@pytest.mark.parametrize(
    "shape",
    [(360, 640), (720, 1280), (480, 640), (640, 360), (96, 128), (50, 64), (64, 64), (112, 112), (7, 3)],
)
@pytest.mark.parametrize("size", [64, 112])
def test_prepare_image_equals_pad_then_resize_pixel_for_pixel(shape, size):
    """The fast path (PIL pads) must give training and deployment the reference pixels exactly."""
    img = np.random.default_rng(sum(shape) + size).integers(0, 256, (*shape, 3), dtype=np.uint8)
    np.testing.assert_array_equal(prepare_image(img, size), resize_square(pad_to_square(img), size))


def test_centre_crop_is_applied_before_pad_and_resize():
    img = np.random.default_rng(1).integers(0, 256, (90, 160, 3), dtype=np.uint8)
    cropped = center_crop(img, 0.9)
    assert cropped.shape == img.shape
    np.testing.assert_array_equal(prepare_image(img, 64, crop=0.9), prepare_image(cropped, 64))
    assert np.abs(prepare_image(img, 64, crop=0.9).astype(int) - prepare_image(img, 64)).max() > 20
    np.testing.assert_array_equal(prepare_image(img, 64, crop=1.0), prepare_image(img, 64))


def test_prepare_cameras_layout_and_range():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (30, 50, 3), dtype=np.uint8), np.full((64, 64, 3), 255, dtype=np.uint8)]
    out = prepare_cameras(images, 64, ("a", "b"))
    assert out.shape == (2, 3, 64, 64) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    np.testing.assert_array_equal(out[1], 1.0)  # already at size: exact, no resampling


@pytest.mark.parametrize(
    ("images", "error", "pattern"),
    [
        ([np.zeros((8, 8, 3), np.uint8)], ValueError, r"expected 2 images \(cameras \['a', 'b'\]\), got 1"),
        (
            [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)],
            ValueError,
            "camera 'b' must be \\(H, W, 3\\)",
        ),
        (
            [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 4), np.uint8)],
            ValueError,
            "must be \\(H, W, 3\\) uint8",
        ),
        ([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.float64)], ValueError, "dtype float64"),
        ([np.zeros((8, 8, 3), np.uint8), [[0]]], TypeError, "must be a numpy array"),
        ([np.zeros((8, 8, 3), np.uint8), np.zeros((0, 8, 3), np.uint8)], ValueError, "is empty"),
        (np.zeros((8, 8, 3), np.uint8), ValueError, "got a single image"),
    ],
)
def test_bad_images_raise(images, error, pattern):
    with pytest.raises(error, match=pattern):
        prepare_cameras(images, 16, ("a", "b"))
