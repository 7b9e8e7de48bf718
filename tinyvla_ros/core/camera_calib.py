"""Camera calibration -> sensor_msgs/CameraInfo fields, and frame helpers for the camera drivers.

Plain functions on numbers and NumPy arrays: no rclpy, no pyrealsense2, no ZED SDK. The ROS
camera nodes (tinyvla_ros/ros/cameras/) turn the results into messages; tests feed values shaped
as the vendors' SDKs return them.

What the vendors' ROS wrappers publish, and therefore what these functions reproduce:

RealSense (realsense2_camera): K = [fx 0 ppx; 0 fy ppy; 0 0 1], R = identity,
P = [fx 0 ppx 0; 0 fy ppy 0; 0 0 1 0]; ``equidistant`` with the first 4 coefficients for the
Kannala-Brandt model, ``plumb_bob`` with 5 coefficients for every other model; frame id
``<camera_name>_<stream>_optical_frame``.

ZED (zed_wrapper, left/rgb image): K and P from the left camera's fx, fy, cx, cy, R = identity;
distortion from the SDK's 12 coefficients [k1, k2, p1, p2, k3, k4, k5, k6, s1, s2, s3, s4]:
``rational_polynomial`` (first 8) for ZED 2 / 2i / X family, ``plumb_bob`` (first 5) for the
first ZED, ``equidistant`` [k1, k2, k3, k4] for a ZED Mini with fisheye coefficients. For the
rectified image the SDK returns all-zero coefficients. Frame id
``<camera_name>_left_camera_frame_optical`` (wrapper >= 5.1: "current") or
``<camera_name>_left_camera_optical_frame`` (older: "legacy").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "equidistant")
_D_LENGTH = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}

ZED_TOPIC_GENERATIONS = ("current", "legacy")
ZED_ENCODINGS = ("bgra8", "rgb8")


@dataclass(frozen=True)
class CameraInfoFields:
    """The fields of one sensor_msgs/CameraInfo, as plain values.

    k: 3x3 intrinsics row-major (9), r: 3x3 rectification rotation (9), p: 3x4 projection (12),
    d: distortion coefficients in the order of ``distortion_model``.
    """

    width: int
    height: int
    distortion_model: str
    d: tuple[float, ...]
    k: tuple[float, ...]
    r: tuple[float, ...]
    p: tuple[float, ...]
    frame_id: str = ""

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
                raise ValueError(f"CameraInfoFields.{name} must be a positive int, got {value!r}")
        if self.distortion_model not in DISTORTION_MODELS:
            raise ValueError(
                f"CameraInfoFields.distortion_model must be one of {list(DISTORTION_MODELS)}, "
                f"got {self.distortion_model!r}"
            )
        _check_vector("d", self.d, _D_LENGTH[self.distortion_model])
        _check_vector("k", self.k, 9)
        _check_vector("r", self.r, 9)
        _check_vector("p", self.p, 12)
        if self.k[0] <= 0 or self.k[4] <= 0:
            raise ValueError(
                f"CameraInfoFields.k needs focal lengths fx, fy > 0, got fx={self.k[0]} fy={self.k[4]}"
            )

    def as_dict(self) -> dict[str, Any]:
        """JSON/YAML-friendly dict with the CameraInfo field names."""
        return {
            "width": int(self.width),
            "height": int(self.height),
            "distortion_model": self.distortion_model,
            "d": list(self.d),
            "k": list(self.k),
            "r": list(self.r),
            "p": list(self.p),
            "frame_id": self.frame_id,
        }


def _check_vector(name: str, values: Sequence[float], length: int) -> None:
    if len(values) != length:
        raise ValueError(f"CameraInfoFields.{name} must have {length} values, got {len(values)}: {values!r}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"CameraInfoFields.{name} must be finite, got {values!r}")


def pinhole_camera_info(
    width: int,
    height: int,
    fx: float,
    fy: float,
    cx: float,
    cy: float,
    *,
    distortion_model: str = "plumb_bob",
    d: Sequence[float] | None = None,
    frame_id: str = "",
) -> CameraInfoFields:
    """CameraInfo of a monocular pinhole camera: K from (fx, fy, cx, cy), R = I, P = [K | 0].

    ``d`` defaults to zeros of the model's length (5 plumb_bob, 8 rational_polynomial, 4 equidistant).
    """
    if distortion_model not in DISTORTION_MODELS:
        raise ValueError(
            f"distortion_model must be one of {list(DISTORTION_MODELS)}, got {distortion_model!r}"
        )
    coeffs = tuple(float(v) for v in (d if d is not None else [0.0] * _D_LENGTH[distortion_model]))
    fx, fy, cx, cy = float(fx), float(fy), float(cx), float(cy)
    return CameraInfoFields(
        width=int(width),
        height=int(height),
        distortion_model=distortion_model,
        d=coeffs,
        k=(fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0),
        r=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
        p=(fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0),
        frame_id=frame_id,
    )


# --- RealSense --------------------------------------------------------------------------------


def realsense_model_name(model: object) -> str:
    """librealsense distortion model name without prefix: rs.distortion.brown_conrady -> 'brown_conrady'."""
    return str(model).rsplit(".", 1)[-1].strip().lower()


def realsense_camera_info(
    width: int,
    height: int,
    fx: float,
    fy: float,
    ppx: float,
    ppy: float,
    model: object,
    coeffs: Sequence[float],
    frame_id: str = "",
) -> CameraInfoFields:
    """CameraInfo from a librealsense ``rs2_intrinsics`` (as realsense2_camera fills it).

    ``model``: an ``rs.distortion`` value or its name; ``coeffs``: the 5 librealsense coefficients.
    Kannala-Brandt -> equidistant (first 4 coefficients), any other model -> plumb_bob (5).
    """
    coeffs = [float(c) for c in coeffs]
    if len(coeffs) < 5:
        raise ValueError(f"RealSense intrinsics carry 5 distortion coefficients, got {len(coeffs)}: {coeffs}")
    name = realsense_model_name(model)
    if name == "kannala_brandt4":
        return pinhole_camera_info(
            width, height, fx, fy, ppx, ppy, distortion_model="equidistant", d=coeffs[:4], frame_id=frame_id
        )
    return pinhole_camera_info(
        width, height, fx, fy, ppx, ppy, distortion_model="plumb_bob", d=coeffs[:5], frame_id=frame_id
    )


def realsense_optical_frame(camera_name: str, stream: str = "color") -> str:
    """realsense2_camera's optical frame id: ``<camera_name>_<stream>_optical_frame``."""
    return f"{camera_name}_{stream}_optical_frame"


# --- ZED ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZedCameraParameters:
    """One ZED camera's calibration as ``sl.CameraParameters`` holds it (left_cam / right_cam).

    disto: the SDK's 12 coefficients [k1, k2, p1, p2, k3, k4, k5, k6, s1, s2, s3, s4]
    (shorter vectors from old SDKs are zero-padded).
    """

    fx: float
    fy: float
    cx: float
    cy: float
    disto: tuple[float, ...]
    width: int
    height: int

    def __post_init__(self) -> None:
        for name in ("fx", "fy"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"ZedCameraParameters.{name} must be finite and > 0, got {value!r}")
        for name in ("cx", "cy"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"ZedCameraParameters.{name} must be finite, got {getattr(self, name)!r}")
        if len(self.disto) != 12 or not all(math.isfinite(v) for v in self.disto):
            raise ValueError(f"ZedCameraParameters.disto must be 12 finite values, got {self.disto!r}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(
                f"ZedCameraParameters image size must be positive, got {self.width}x{self.height}"
            )


def zed_parameters_from_sdk(cam: Any) -> ZedCameraParameters:
    """Read an ``sl.CameraParameters`` (or anything with the same attributes) into plain values.

    Uses ``fx, fy, cx, cy`` (floats), ``disto`` (array of 12, or 5 from SDK 3) and
    ``image_size.width / image_size.height``.
    """
    try:
        disto = [float(v) for v in np.asarray(cam.disto, dtype=np.float64).reshape(-1)]
        size = cam.image_size
        values = dict(fx=float(cam.fx), fy=float(cam.fy), cx=float(cam.cx), cy=float(cam.cy))
        width, height = int(size.width), int(size.height)
    except AttributeError as exc:
        raise TypeError(
            f"expected ZED sl.CameraParameters (fx, fy, cx, cy, disto, image_size), got {cam!r}"
        ) from exc
    if len(disto) > 12:
        raise ValueError(f"ZED disto has at most 12 coefficients, got {len(disto)}")
    disto = disto + [0.0] * (12 - len(disto))
    return ZedCameraParameters(disto=tuple(disto), width=width, height=height, **values)


def zed_model_key(camera_model: object) -> str:
    """sl.MODEL.ZED2i / 'MODEL.ZED2i' / 'ZED 2i' / 'ZED-M' / 'zed_m' -> 'zed2i' / 'zedm'."""
    text = getattr(camera_model, "name", None) or str(camera_model).rsplit(".", 1)[-1]
    return "".join(ch for ch in str(text).lower() if ch.isalnum())


def zed_distortion(camera_model: object, disto: Sequence[float]) -> tuple[str, tuple[float, ...]]:
    """(distortion_model, d) for a ZED model from the SDK's 12 coefficients, as zed_wrapper does."""
    key = zed_model_key(camera_model)
    k = [float(v) for v in disto]
    if key == "zed":
        return "plumb_bob", tuple(k[:5])
    if key == "zedm":
        if k[5] != 0.0 and k[2] == 0.0 and k[3] == 0.0:
            return "equidistant", (k[0], k[1], k[4], k[5])
        return "plumb_bob", tuple(k[:5])
    if key.startswith("zed2") or key.startswith("zedx") or key.startswith("virtualzedx"):
        return "rational_polynomial", tuple(k[:8])
    raise ValueError(
        f"unknown ZED camera_model {camera_model!r}: expected ZED, ZED_M, ZED2, ZED2i, ZED_X, ZED_XM, ZED_X_NANO"
    )


def zed_camera_info(
    params: ZedCameraParameters, camera_model: object, frame_id: str = ""
) -> CameraInfoFields:
    """CameraInfo of the ZED left (= rgb) image from its calibration, as zed_wrapper publishes it."""
    model, d = zed_distortion(camera_model, params.disto)
    return pinhole_camera_info(
        params.width,
        params.height,
        params.fx,
        params.fy,
        params.cx,
        params.cy,
        distortion_model=model,
        d=d,
        frame_id=frame_id,
    )


def zed_optical_frame(camera_name: str, generation: str = "current") -> str:
    """zed_wrapper's left optical frame id for a wrapper generation ("current" = wrapper >= 5.1, or "legacy")."""
    _check_generation(generation)
    suffix = "_left_camera_frame_optical" if generation == "current" else "_left_camera_optical_frame"
    return camera_name + suffix


def zed_rgb_topics(
    camera_name: str, generation: str = "current", node_name: str = "zed_node"
) -> tuple[str, str]:
    """(image topic, camera_info topic) of zed_wrapper's rectified left colour image.

    current (>= 5.1): /<name>/zed_node/rgb/color/rect/image (+ .../rect/camera_info);
    legacy:         /<name>/zed_node/rgb/image_rect_color (+ .../rgb/camera_info).
    """
    _check_generation(generation)
    root = f"/{camera_name.strip('/')}/{node_name}/rgb"
    if generation == "current":
        return f"{root}/color/rect/image", f"{root}/color/rect/camera_info"
    return f"{root}/image_rect_color", f"{root}/camera_info"


def _check_generation(generation: str) -> None:
    if generation not in ZED_TOPIC_GENERATIONS:
        raise ValueError(
            f"ZED topic generation must be one of {list(ZED_TOPIC_GENERATIONS)}, got {generation!r}"
        )


def zed_frame_to_encoding(bgra: np.ndarray, encoding: str) -> np.ndarray:
    """A ZED ``sl.Mat`` U8_C4 image (H, W, 4) uint8 BGRA -> contiguous (H, W, 4) bgra8 or (H, W, 3) rgb8.

    Works on padded (strided) views as ``sl.Mat.get_data()`` may return; always returns a copy
    that owns its memory, so the SDK may reuse its buffer.
    """
    if encoding not in ZED_ENCODINGS:
        raise ValueError(f"ZED encoding must be one of {list(ZED_ENCODINGS)}, got {encoding!r}")
    if not isinstance(bgra, np.ndarray) or bgra.dtype != np.uint8 or bgra.ndim != 3 or bgra.shape[2] != 4:
        shape = getattr(bgra, "shape", None)
        dtype = getattr(bgra, "dtype", None)
        raise ValueError(f"ZED frame must be a (H, W, 4) uint8 BGRA array, got shape {shape} dtype {dtype}")
    if encoding == "bgra8":
        return np.array(bgra, dtype=np.uint8, order="C", copy=True)
    return np.ascontiguousarray(bgra[:, :, 2::-1])


# --- time ---------------------------------------------------------------------------------------


def ms_to_ns(timestamp_ms: float) -> int:
    """A librealsense timestamp in milliseconds (float) -> integer nanoseconds, rounded."""
    if not math.isfinite(timestamp_ms):
        raise ValueError(f"timestamp must be finite, got {timestamp_ms!r}")
    whole = math.floor(timestamp_ms)
    return int(whole) * 1_000_000 + round((timestamp_ms - whole) * 1_000_000)


def ns_to_stamp(ns: int) -> tuple[int, int]:
    """Nanoseconds since the epoch -> (sec, nanosec) of a builtin_interfaces/Time (ns >= 0)."""
    if ns < 0:
        raise ValueError(f"a ROS stamp cannot be negative, got {ns} ns")
    return int(ns // 1_000_000_000), int(ns % 1_000_000_000)
