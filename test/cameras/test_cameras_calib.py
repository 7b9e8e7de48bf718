"""Calibration -> CameraInfo fields and ZED frame conversion (pure functions, no SDK, no ROS)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from tinyvla_ros.core.camera_calib import (
    CameraInfoFields,
    ms_to_ns,
    ns_to_stamp,
    pinhole_camera_info,
    realsense_camera_info,
    realsense_optical_frame,
    zed_camera_info,
    zed_frame_to_encoding,
    zed_optical_frame,
    zed_parameters_from_sdk,
    zed_rgb_topics,
)

# --- shaped as the ZED SDK returns them: sl.CameraParameters of a ZED 2 at HD720 ----------------
DISTO_RAW = np.array([-0.04, 0.011, 0.0003, -0.0002, -0.005, 0.8, 0.02, -0.01, 0.0, 0.0, 0.0, 0.0])


def sdk_camera_parameters(disto: np.ndarray = DISTO_RAW) -> SimpleNamespace:
    """Attributes and types of pyzed.sl.CameraParameters: floats, a 12-value ndarray, sl.Resolution."""
    return SimpleNamespace(
        fx=527.25,
        fy=527.5,
        cx=641.3,
        cy=362.7,
        disto=disto,
        v_fov=68.4,
        h_fov=101.1,
        d_fov=114.9,
        image_size=SimpleNamespace(width=1280, height=720),
    )


def test_pinhole_layout_k_r_p() -> None:
    info = pinhole_camera_info(640, 480, 600.0, 601.0, 320.5, 240.5, frame_id="cam_optical")
    assert np.allclose(np.reshape(info.k, (3, 3)), [[600, 0, 320.5], [0, 601, 240.5], [0, 0, 1]])
    assert np.allclose(np.reshape(info.r, (3, 3)), np.eye(3))
    assert np.allclose(np.reshape(info.p, (3, 4)), [[600, 0, 320.5, 0], [0, 601, 240.5, 0], [0, 0, 1, 0]])
    assert info.d == (0.0,) * 5 and info.distortion_model == "plumb_bob"
    assert info.as_dict()["frame_id"] == "cam_optical"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(width=0), "width"),
        (dict(fx=float("nan")), "k"),
        (dict(fx=-1.0), "k"),
        (dict(distortion_model="fisheye"), "distortion_model"),
        (dict(d=[0.1, 0.2]), "d"),
    ],
)
def test_pinhole_rejects_bad_values_naming_the_field(kwargs: dict, field: str) -> None:
    args = dict(width=640, height=480, fx=600.0, fy=600.0, cx=320.0, cy=240.0) | kwargs
    width, height, fx, fy, cx, cy = (args.pop(k) for k in ("width", "height", "fx", "fy", "cx", "cy"))
    with pytest.raises(ValueError, match=field):
        pinhole_camera_info(width, height, fx, fy, cx, cy, **args)


def test_realsense_intrinsics_from_pyrealsense2_objects() -> None:
    rs = pytest.importorskip("pyrealsense2")
    intr = rs.intrinsics()
    intr.width, intr.height, intr.fx, intr.fy, intr.ppx, intr.ppy = 640, 480, 615.1, 615.3, 322.4, 238.9
    intr.model = rs.distortion.inverse_brown_conrady
    intr.coeffs = [0.1, -0.2, 0.001, 0.002, 0.05]
    info = realsense_camera_info(
        intr.width,
        intr.height,
        intr.fx,
        intr.fy,
        intr.ppx,
        intr.ppy,
        intr.model,
        intr.coeffs,
        "top_color_optical_frame",
    )
    assert info.distortion_model == "plumb_bob"
    assert np.allclose(info.d, [0.1, -0.2, 0.001, 0.002, 0.05], atol=1e-7)
    assert np.allclose([info.k[0], info.k[2], info.k[4], info.k[5]], [615.1, 322.4, 615.3, 238.9], atol=1e-4)
    assert info.p[3] == 0.0 and info.p[7] == 0.0
    intr.model = rs.distortion.kannala_brandt4
    fisheye = realsense_camera_info(640, 480, 300, 300, 320, 240, intr.model, [0.1, 0.2, 0.3, 0.4, 0.0])
    assert fisheye.distortion_model == "equidistant" and fisheye.d == (0.1, 0.2, 0.3, 0.4)


def test_realsense_frame_names() -> None:
    assert realsense_optical_frame("wrist_left") == "wrist_left_color_optical_frame"
    assert realsense_optical_frame("camera", "depth") == "camera_depth_optical_frame"
    with pytest.raises(ValueError, match="5 distortion"):
        realsense_camera_info(640, 480, 600, 600, 320, 240, "brown_conrady", [0.0, 0.0])


def test_zed2_calibration_to_camera_info_like_zed_wrapper() -> None:
    params = zed_parameters_from_sdk(sdk_camera_parameters())
    info = zed_camera_info(params, "MODEL.ZED2", zed_optical_frame("zed_left"))
    assert (info.width, info.height) == (1280, 720)
    assert info.distortion_model == "rational_polynomial"
    assert np.allclose(info.d, DISTO_RAW[:8])
    assert np.allclose(np.reshape(info.k, (3, 3)), [[527.25, 0, 641.3], [0, 527.5, 362.7], [0, 0, 1]])
    assert np.allclose(np.reshape(info.p, (3, 4))[:, :3], np.reshape(info.k, (3, 3)))
    assert info.frame_id == "zed_left_left_camera_frame_optical"


def test_zed_rectified_parameters_have_zero_distortion() -> None:
    rectified = sdk_camera_parameters(np.zeros(12))
    info = zed_camera_info(zed_parameters_from_sdk(rectified), "ZED 2i")
    assert info.d == (0.0,) * 8


@pytest.mark.parametrize(
    ("model", "expected_model", "expected_d"),
    [
        ("ZED", "plumb_bob", DISTO_RAW[:5]),
        (SimpleNamespace(name="ZED2i"), "rational_polynomial", DISTO_RAW[:8]),
        ("ZED-M", "equidistant", DISTO_RAW[[0, 1, 4, 5]]),  # k4 != 0 and p1 = p2 = 0 below
        ("MODEL.ZED_X", "rational_polynomial", DISTO_RAW[:8]),
    ],
)
def test_zed_distortion_model_per_camera_model(
    model: object, expected_model: str, expected_d: np.ndarray
) -> None:
    disto = DISTO_RAW.copy()
    if expected_model == "equidistant":
        disto[2:4] = 0.0
        expected_d = disto[[0, 1, 4, 5]]
    info = zed_camera_info(zed_parameters_from_sdk(sdk_camera_parameters(disto)), model)
    assert info.distortion_model == expected_model
    assert np.allclose(info.d, expected_d)


def test_zed_sdk3_short_disto_is_padded_and_bad_inputs_are_named() -> None:
    params = zed_parameters_from_sdk(sdk_camera_parameters(np.array([0.1, 0.2, 0.0, 0.0, 0.3])))
    assert params.disto == (0.1, 0.2, 0.0, 0.0, 0.3) + (0.0,) * 7
    with pytest.raises(TypeError, match="sl.CameraParameters"):
        zed_parameters_from_sdk(SimpleNamespace(fx=1.0))
    with pytest.raises(ValueError, match="fx"):
        zed_parameters_from_sdk(SimpleNamespace(**{**vars(sdk_camera_parameters()), "fx": 0.0}))
    with pytest.raises(ValueError, match="camera_model"):
        zed_camera_info(zed_parameters_from_sdk(sdk_camera_parameters()), "kinect")


def test_zed_topics_and_frames_of_both_wrapper_generations() -> None:
    assert zed_rgb_topics("zed_left") == (
        "/zed_left/zed_node/rgb/color/rect/image",
        "/zed_left/zed_node/rgb/color/rect/camera_info",
    )
    assert zed_rgb_topics("zed_right", "legacy") == (
        "/zed_right/zed_node/rgb/image_rect_color",
        "/zed_right/zed_node/rgb/camera_info",
    )
    assert zed_optical_frame("zed_right", "legacy") == "zed_right_left_camera_optical_frame"
    with pytest.raises(ValueError, match="generation"):
        zed_rgb_topics("zed", "v4")


def test_zed_bgra_to_rgb8_and_bgra8() -> None:
    rng = np.random.default_rng(0)
    bgra = rng.integers(0, 256, (6, 8, 4), dtype=np.uint8)
    rgb = zed_frame_to_encoding(bgra, "rgb8")
    assert rgb.shape == (6, 8, 3) and rgb.flags.c_contiguous
    assert np.array_equal(rgb[..., 0], bgra[..., 2]) and np.array_equal(rgb[..., 2], bgra[..., 0])
    assert np.array_equal(rgb[..., 1], bgra[..., 1])
    same = zed_frame_to_encoding(bgra, "bgra8")
    assert np.array_equal(same, bgra) and not np.shares_memory(same, bgra)


def test_zed_padded_mat_view_becomes_tight() -> None:
    """sl.Mat.get_data() can be a view on rows padded to an aligned step."""
    rng = np.random.default_rng(1)
    padded = rng.integers(0, 256, (5, 16, 4), dtype=np.uint8)  # step 64 bytes
    view = padded[:, :10, :]  # width 10: 40 bytes used per 64-byte row
    out = zed_frame_to_encoding(view, "bgra8")
    assert out.strides[0] == 40 and np.array_equal(out, view)
    with pytest.raises(ValueError, match=r"\(H, W, 4\) uint8"):
        zed_frame_to_encoding(np.zeros((5, 10, 3), np.uint8), "rgb8")
    with pytest.raises(ValueError, match="encoding"):
        zed_frame_to_encoding(view, "mono8")


def test_time_conversions() -> None:
    assert ms_to_ns(1000.0) == 1_000_000_000
    # an epoch time in ms as a double carries ~0.2 us of resolution: rounding stays within it
    assert abs(ms_to_ns(1699999999123.456) - 1_699_999_999_123_456_000) < 1_000
    assert ms_to_ns(33.3) == 33_300_000
    assert ns_to_stamp(1_700_000_000_999_999_999) == (1_700_000_000, 999_999_999)
    with pytest.raises(ValueError):
        ns_to_stamp(-1)
    with pytest.raises(ValueError):
        ms_to_ns(float("inf"))


def test_camera_info_fields_validate_lengths() -> None:
    with pytest.raises(ValueError, match="k must have 9"):
        CameraInfoFields(10, 10, "plumb_bob", (0.0,) * 5, (1.0,) * 8, (0.0,) * 9, (0.0,) * 12)
