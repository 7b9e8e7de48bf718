"""Frame timestamp mapping and per-camera health (plain Python: no ROS, no SDK)."""

from __future__ import annotations

import numpy as np
import pytest

from tinyvla_ros.ros.cameras.clock import FrameClock, FrameClockConfig
from tinyvla_ros.ros.cameras.frames import CapturedFrame
from tinyvla_ros.ros.cameras.health import CameraHealth
from tinyvla_ros.ros.cameras.worker import WorkerConfig

MS = 1_000_000
EPOCH = 1_750_000_000 * 1_000_000_000  # host time of the first frame, ns


def test_global_and_system_time_pass_through() -> None:
    clock = FrameClock()
    for i, domain in enumerate(["global_time", "system_time", "global_time"]):
        device = EPOCH + i * 33 * MS
        assert clock.stamp_ns(device, domain, arrival_ns=device + 7 * MS) == device
    assert clock.adjustments == 0 and clock.clamped == 0


def test_hardware_clock_offset_uses_the_least_delayed_frame() -> None:
    rng = np.random.default_rng(0)
    clock = FrameClock(FrameClockConfig(offset_window_s=2.0))
    device0 = 5_000 * MS  # device clock: 5 s since it powered up
    delays = rng.uniform(2, 12, size=60) * MS  # USB transport + driver delay per frame
    delays[10] = 1 * MS  # one frame came through almost at once
    stamps, arrivals, devices = [], [], []
    for i, delay in enumerate(delays):
        device = device0 + i * 33 * MS
        true_capture = EPOCH + i * 33 * MS
        arrival = true_capture + int(delay)
        stamps.append(clock.stamp_ns(device, "hardware_clock", arrival))
        arrivals.append(arrival)
        devices.append(device)
    stamps, arrivals = np.array(stamps), np.array(arrivals)
    assert np.all(stamps <= arrivals), "a stamp must never lie after its frame's arrival"
    assert np.all(np.diff(stamps) > 0)
    # from the 1 ms frame on (within its window) every stamp is the capture time + 1 ms
    true = EPOCH + np.arange(60) * 33 * MS
    assert np.allclose(stamps[10:60] - true[10:60], 1 * MS, atol=1_000)
    # device spacing is preserved exactly once the offset estimate is stable
    assert np.array_equal(np.diff(stamps[10:60]), np.diff(np.array(devices[10:60])))


def test_hardware_clock_window_forgets_old_minimum() -> None:
    clock = FrameClock(FrameClockConfig(offset_window_s=1.0))
    clock.stamp_ns(0, "hardware_clock", EPOCH + 1 * MS)  # delay 1 ms
    late = clock.stamp_ns(2_000 * MS, "hardware_clock", EPOCH + 2_000 * MS + 9 * MS)  # 2 s later, 9 ms delay
    assert late == EPOCH + 2_000 * MS + 9 * MS  # the 1 ms sample left the 1 s window


def test_device_clock_reset_restarts_the_estimate_and_stays_monotonic() -> None:
    clock = FrameClock()
    a = clock.stamp_ns(9_000 * MS, "hardware_clock", EPOCH + 3 * MS)
    b = clock.stamp_ns(10 * MS, "hardware_clock", EPOCH + 40 * MS)  # device rebooted: clock restarted
    assert clock.resets == 1
    assert b > a and b <= EPOCH + 40 * MS


def test_non_increasing_stamps_are_nudged_and_future_stamps_clamped() -> None:
    clock = FrameClock()
    first = clock.stamp_ns(EPOCH, "global_time", EPOCH + MS)
    again = clock.stamp_ns(EPOCH, "global_time", EPOCH + 2 * MS)  # duplicate device time
    assert again == first + 1_000 and clock.adjustments == 1
    future = clock.stamp_ns(EPOCH + 5_000 * MS, "system_time", EPOCH + 40 * MS)
    assert future == EPOCH + 40 * MS and clock.clamped == 1


def test_arrival_mode_and_playback_use_host_time() -> None:
    arrival_clock = FrameClock(FrameClockConfig(mode="arrival"))
    assert arrival_clock.stamp_ns(123, "global_time", EPOCH) == EPOCH
    playback = FrameClock()
    old = 1_600_000_000 * 1_000_000_000  # a recording made years ago, in global time
    s0 = playback.stamp_ns(old, "global_time", EPOCH + 2 * MS, is_playback=True)
    s1 = playback.stamp_ns(old + 33 * MS, "global_time", EPOCH + 35 * MS, is_playback=True)
    assert s0 == EPOCH + 2 * MS and s1 == s0 + 33 * MS


def test_clock_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="timestamp_mode"):
        FrameClockConfig(mode="device")
    with pytest.raises(ValueError, match="domain"):
        FrameClock().stamp_ns(0, "ptp", 0)


class ManualClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_health_counts_gaps_as_drops_and_ignores_repeats() -> None:
    health = CameraHealth(frame_timeout_s=1.0, clock=ManualClock())
    health.opened("123", "D435I", [])
    assert [health.is_new("color", n) for n in (0, 1, 1, 2, 5, 6)] == [True, True, False, True, True, True]
    assert health.drops == 2
    health.opened("123", "D435I", [])  # reconnection: the device's counter restarts
    assert health.is_new("color", 0) and health.drops == 2


def test_health_levels_through_an_outage() -> None:
    clock = ManualClock()
    health = CameraHealth(frame_timeout_s=1.0, clock=clock)
    assert health.report().level == "warn"  # waiting for the first frame
    clock.t += 1.5
    assert health.report().level == "error"  # never got one
    health.opened("123", "D435I", [])
    for _ in range(30):
        clock.t += 1 / 30
        health.frame("global_time", latency_ms=3.0)
    report = health.report()
    assert (report.level, report.values["state"]) == ("ok", "streaming")
    assert 28.0 < float(report.values["frame_rate_hz"]) < 31.0
    clock.t += 1.2  # unplugged: no more frames
    report = health.report()
    assert (report.level, report.values["state"]) == ("error", "no_frames")
    health.error("open failed: no device")
    assert health.report().values["state"] == "disconnected"
    health.opened("123", "D435I", [])  # back, but no frame yet: still an outage
    assert health.report().level == "error"
    health.frame("global_time", latency_ms=3.0)
    assert health.report().level == "ok"


def test_health_warns_about_drops_once_and_about_source_warnings() -> None:
    health = CameraHealth(frame_timeout_s=1.0, clock=ManualClock())
    health.opened("1", "D435I", [])
    health.is_new("color", 0)
    health.is_new("color", 3)
    health.frame("global_time", 1.0)
    first, second = health.report(), health.report()
    assert first.level == "warn" and "2 frame(s) dropped" in first.message
    assert second.level == "ok" and second.values["frames_dropped"] == "2"
    health.opened("1", "D435I", ["inter_cam_sync_mode=1 (master) not supported"])
    health.frame("global_time", 1.0)
    assert health.report().level == "warn"


def test_worker_config_and_frames_validate() -> None:
    with pytest.raises(ValueError, match="reconnect_timeout_s"):
        WorkerConfig("cam", frame_timeout_s=2.0, reconnect_timeout_s=1.0)
    with pytest.raises(ValueError, match="poll_timeout_s"):
        WorkerConfig("cam", poll_timeout_s=0)
    with pytest.raises(ValueError, match="rgb8 must be uint8 with 3"):
        CapturedFrame("color", np.zeros((4, 4), np.uint8), "rgb8", 0, 0, "global_time", 0)
    with pytest.raises(ValueError, match="domain"):
        CapturedFrame("color", np.zeros((4, 4, 3), np.uint8), "rgb8", 0, 0, "gps", 0)
