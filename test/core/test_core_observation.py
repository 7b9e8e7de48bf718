"""Observation assembly: anchor choice, nearest frames, joint interpolation and every rejection."""

from __future__ import annotations

import numpy as np
import pytest

from tinyvla_ros.core.observation import Observation, ObservationAssembler, ObservationConfig, Rejection

CAMS = ("left", "right")
JOINTS = ("j1", "j2", "j3")


def frame(value: int) -> np.ndarray:
    img = np.zeros((4, 6, 3), dtype=np.uint8)
    img[...] = value % 256
    img[0, 0, 0] = value // 256  # keep frames distinct for > 256 values
    return img


def make(**kw: object) -> ObservationAssembler:
    return ObservationAssembler(ObservationConfig(CAMS, JOINTS, **kw))


def feed_state(asm: ObservationAssembler, t0: float, t1: float, rate: float = 100.0) -> None:
    """Joint positions q(t) = [t, 2t, -t] sampled at ``rate``."""
    for t in np.arange(t0, t1, 1.0 / rate):
        asm.add_joint_state(float(t), JOINTS, [t, 2 * t, -t])


def feed_cameras(
    asm: ObservationAssembler, t0: float, t1: float, offsets: dict[str, float], rate: float = 30.0
) -> None:
    n = 0
    for k in range(int((t1 - t0) * rate)):
        for cam in CAMS:
            stamp = t0 + k / rate + offsets.get(cam, 0.0)
            asm.add_image(cam, stamp, frame(n), now=stamp + 0.005)
            n += 1


def test_anchor_is_oldest_newest_stamp_and_state_is_interpolated() -> None:
    asm = make()
    feed_state(asm, 0.0, 1.02)
    feed_cameras(asm, 0.0, 1.0, {"left": 0.0, "right": 0.012})
    now = 0.99
    obs = asm.assemble(now)
    assert isinstance(obs, Observation), obs
    newest_left = 29 / 30
    assert obs.stamp == pytest.approx(newest_left)  # left's newest is older than right's
    assert obs.camera_stamps["left"] == pytest.approx(newest_left)
    assert obs.camera_stamps["right"] == pytest.approx(newest_left + 0.012)  # nearest to the anchor
    assert obs.skew == pytest.approx(0.012)
    assert obs.age == pytest.approx(now - newest_left)
    np.testing.assert_allclose(obs.state, [obs.stamp, 2 * obs.stamp, -obs.stamp], atol=1e-9)
    assert len(obs.images) == 2 and obs.images[0].shape == (4, 6, 3)
    assert asm.last_skew == pytest.approx(0.012)


def test_nearest_frame_not_newest_when_one_camera_runs_ahead() -> None:
    asm = make(max_skew=0.02)
    feed_state(asm, 0.0, 0.6)
    for k in range(10):  # right at 60 Hz, left at 20 Hz
        asm.add_image("left", k / 20, frame(k), now=k / 20)
    for k in range(28):
        asm.add_image("right", k / 60, frame(100 + k), now=k / 60)
    obs = asm.assemble(0.46)
    assert isinstance(obs, Observation), obs
    assert obs.stamp == pytest.approx(0.45)
    assert obs.camera_stamps["right"] == pytest.approx(27 / 60)  # 0.45 exactly among right's frames
    np.testing.assert_array_equal(obs.images[1], frame(127))


def test_no_frames_until_every_camera_has_one() -> None:
    asm = make()
    feed_state(asm, 0.0, 0.1)
    asm.add_image("left", 0.05, frame(1), now=0.05)
    result = asm.assemble(0.06)
    assert isinstance(result, Rejection) and result.code == "no_frames" and "right" in result.reason


def test_stale_camera_is_named() -> None:
    asm = make()
    feed_state(asm, 0.0, 2.0)
    feed_cameras(asm, 0.0, 1.0, {})
    for k in range(30, 60):  # only the left camera keeps going
        asm.add_image("left", k / 30, frame(1000 + k), now=k / 30)
    result = asm.assemble(1.97)
    assert isinstance(result, Rejection) and result.code == "stale" and "'right'" in result.reason
    assert asm.rejections.get("stale") == 1
    assert asm.last_rejection == result


def test_skew_rejection() -> None:
    asm = make(max_skew=0.03)
    feed_state(asm, 0.0, 1.1)
    feed_cameras(asm, 0.0, 1.0, {"right": 0.05}, rate=10.0)  # 100 ms period, 50 ms offset
    result = asm.assemble(1.0)
    assert isinstance(result, Rejection) and result.code == "skew", result
    assert "max_skew" in result.reason


def test_frozen_stamp_detected_while_frames_keep_coming() -> None:
    asm = make(max_age=1.0, frozen_timeout=0.3)
    feed_state(asm, 0.0, 2.0)
    feed_cameras(asm, 0.0, 1.0, {})
    last = 29 / 30
    for k in range(30, 45):  # left keeps going; right republishes its last stamp
        asm.add_image("left", k / 30, frame(2000 + k), now=k / 30)
        asm.add_image("right", last, frame(3000 + k), now=k / 30)
    result = asm.assemble(44 / 30)
    assert isinstance(result, Rejection) and result.code == "frozen" and "'right'" in result.reason
    assert asm.camera_status(44 / 30)["right"]["duplicates"] == 15


def test_identical_pixels_with_new_stamps_count_as_frozen_unless_disabled() -> None:
    for detect, expected in ((True, "frozen"), (False, None)):
        asm = make(frozen_timeout=0.3, detect_identical_frames=detect)
        feed_state(asm, 0.0, 1.1)
        still = frame(7)
        for k in range(30):
            asm.add_image("left", k / 30, frame(k), now=k / 30)
            asm.add_image("right", k / 30, still.copy(), now=k / 30)
        result = asm.assemble(29 / 30 + 0.001)
        if expected is None:
            assert isinstance(result, Observation), result
        else:
            assert isinstance(result, Rejection) and result.code == expected and "identical" in result.reason


def test_future_stamp_rejected() -> None:
    asm = make()
    feed_state(asm, 0.0, 1.0)
    asm.add_image("left", 0.5, frame(1), now=0.5)
    asm.add_image("right", 0.9, frame(2), now=0.5)
    result = asm.assemble(0.5)
    assert isinstance(result, Rejection) and result.code == "future"


def test_out_of_order_frames_are_inserted_by_stamp() -> None:
    asm = make()
    feed_state(asm, 0.0, 1.0)
    for stamp in (0.10, 0.30, 0.20):
        asm.add_image("left", stamp, frame(int(stamp * 100)), now=0.31)
        asm.add_image("right", stamp, frame(int(stamp * 100) + 50), now=0.31)
    obs = asm.assemble(0.31)
    assert isinstance(obs, Observation) and obs.stamp == pytest.approx(0.30)
    assert asm.input_errors.get("frame_out_of_order") == 2


def test_unknown_camera_and_bad_stamp_raise() -> None:
    asm = make()
    with pytest.raises(ValueError, match="unknown camera 'top'"):
        asm.add_image("top", 0.0, frame(0), now=0.0)
    with pytest.raises(ValueError, match="non-finite stamp"):
        asm.add_image("left", float("nan"), frame(0), now=0.0)
    with pytest.raises(ValueError, match="ndarray"):
        asm.add_image("left", 0.0, b"raw bytes", now=0.0)


def cameras_at(asm: ObservationAssembler, stamp: float) -> None:
    asm.add_image("left", stamp, frame(int(stamp * 1000)), now=stamp)
    asm.add_image("right", stamp, frame(int(stamp * 1000) + 1), now=stamp)


def test_joint_state_reordered_and_extra_joints_ignored() -> None:
    asm = make()
    asm.add_joint_state(0.0, ["j3", "gripper", "j1", "j2"], [3.0, 9.0, 1.0, 2.0])
    asm.add_joint_state(0.1, ["j3", "gripper", "j1", "j2"], [3.0, 9.0, 1.0, 2.0])
    cameras_at(asm, 0.05)
    obs = asm.assemble(0.06)
    assert isinstance(obs, Observation)
    np.testing.assert_allclose(obs.state, [1.0, 2.0, 3.0])


def test_missing_joint_is_no_state() -> None:
    asm = make()
    asm.add_joint_state(0.0, ["j1", "j2"], [1.0, 2.0])
    cameras_at(asm, 0.0)
    result = asm.assemble(0.01)
    assert isinstance(result, Rejection) and result.code == "no_state" and "j3" in result.reason


def test_nan_joint_state_rejects_until_a_good_one_arrives() -> None:
    asm = make()
    feed_state(asm, 0.0, 0.2)
    asm.add_joint_state(0.2, JOINTS, [0.2, float("nan"), -0.2])
    cameras_at(asm, 0.19)
    result = asm.assemble(0.2)
    assert isinstance(result, Rejection) and result.code == "bad_state" and "j2" in result.reason
    asm.add_joint_state(0.21, JOINTS, [0.21, 0.42, -0.21])
    assert isinstance(asm.assemble(0.21), Observation)
    assert asm.input_errors.get("bad_state") == 1


def test_length_mismatch_is_bad_state_not_an_exception() -> None:
    asm = make()
    assert asm.add_joint_state(0.0, JOINTS, [1.0, 2.0]) is False
    cameras_at(asm, 0.0)
    result = asm.assemble(0.0)
    assert isinstance(result, Rejection) and result.code == "bad_state"


def test_arm_and_gripper_from_separate_sources_are_combined() -> None:
    asm = ObservationAssembler(ObservationConfig(CAMS, ("a1", "a2", "finger")))
    for k in range(11):
        t = k * 0.01
        asm.add_joint_state(t, ["a1", "a2"], [t, -t])
        asm.add_joint_state(t + 0.003, ["finger"], [0.04])
    cameras_at(asm, 0.05)
    obs = asm.assemble(0.1)
    assert isinstance(obs, Observation), obs
    np.testing.assert_allclose(obs.state, [0.05, -0.05, 0.04], atol=1e-12)


def test_state_nearest_within_max_age_then_stale() -> None:
    asm = make(max_age=0.2)
    feed_state(asm, 0.0, 0.5)  # last sample at 0.49
    cameras_at(asm, 0.55)
    obs = asm.assemble(0.56)
    assert isinstance(obs, Observation)
    np.testing.assert_allclose(obs.state, [0.49, 0.98, -0.49], atol=1e-9)  # nearest, not extrapolated
    cameras_at(asm, 0.75)
    result = asm.assemble(0.76)
    assert isinstance(result, Rejection) and result.code == "stale" and "joint state" in result.reason


def test_state_from_none_and_state_fn() -> None:
    asm = ObservationAssembler(ObservationConfig(CAMS, (), state_from="none"))
    cameras_at(asm, 0.1)
    obs = asm.assemble(0.1)
    assert isinstance(obs, Observation) and obs.state.shape == (0,)
    asm = ObservationAssembler(ObservationConfig(CAMS, JOINTS), state_fn=lambda q: np.append(q, q.sum()))
    feed_state(asm, 0.0, 0.2)
    cameras_at(asm, 0.1)
    obs = asm.assemble(0.1)
    assert isinstance(obs, Observation)
    np.testing.assert_allclose(obs.state, [0.1, 0.2, -0.1, 0.2], atol=1e-9)


def test_reset_forgets_everything() -> None:
    asm = make()
    feed_state(asm, 0.0, 0.2)
    cameras_at(asm, 0.1)
    asm.reset()
    assert isinstance(asm.assemble(0.1), Rejection)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"camera_names": ()},
        {"camera_names": ("a", "a")},
        {"camera_names": "left"},
        {"joint_names": ()},
        {"max_age": 0.0},
        {"max_skew": -0.1},
        {"frozen_timeout": float("nan")},
        {"buffer_len": 0},
        {"state_from": "pose"},
    ],
)
def test_config_validation_names_the_field(kwargs: dict) -> None:
    args = {"camera_names": CAMS, "joint_names": JOINTS} | kwargs
    field = next(iter(kwargs))
    with pytest.raises(ValueError, match=field):
        ObservationConfig(**args)


def test_an_observation_is_returned_once_then_waits_for_newer_frames() -> None:
    asm = make()
    feed_state(asm, 0.0, 1.5)
    feed_cameras(asm, 0.0, 1.0, {})
    first = asm.assemble(0.99)
    assert isinstance(first, Observation)
    again = asm.assemble(1.0)  # no camera has a newer frame: the same observation is not given twice
    assert isinstance(again, Rejection) and again.code == "already_used"
    asm.add_image("left", 1.0, frame(500), now=1.005)
    partial = asm.assemble(1.01)  # only one camera moved on: the anchor (oldest newest) did not
    assert isinstance(partial, Rejection) and partial.code == "already_used"
    asm.add_image("right", 1.0, frame(501), now=1.006)
    fresh = asm.assemble(1.01)
    assert isinstance(fresh, Observation) and fresh.stamp == pytest.approx(1.0) and fresh.stamp > first.stamp
    assert asm.rejections.get("already_used") == 2


def test_a_stopped_camera_reads_as_stale_not_as_already_used() -> None:
    asm = make(max_age=0.2)
    feed_state(asm, 0.0, 2.0)
    feed_cameras(asm, 0.0, 1.0, {})
    assert isinstance(asm.assemble(0.99), Observation)
    late = asm.assemble(1.5)
    assert isinstance(late, Rejection) and late.code == "stale"
