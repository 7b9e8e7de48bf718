"""The fake robot's simulation loop (tinyvla_ros.ros.fake_robot.stepper) without ROS: clock, joint
states, camera cadence, commands and limits, lockstep waits, resets, failures."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("mujoco")

from tinyvla_ros.ros.fake_robot.config import FakeRobotConfig  # noqa: E402
from tinyvla_ros.ros.fake_robot.pacing import NS  # noqa: E402
from tinyvla_ros.ros.fake_robot.stepper import FakeRobotSim, SimOutputs, make_sim_env  # noqa: E402

pytestmark = pytest.mark.sim

STEP_NS = 10_000_000  # step_dt 0.01 s


class Recorder(SimOutputs):
    """Every output, in order: (kind, ...)."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self._lock = threading.Lock()

    def _add(self, *event) -> None:
        with self._lock:
            self.events.append(event)

    def clock(self, ns):
        self._add("clock", ns)

    def joint_states(self, ns, names, position, velocity, effort):
        self._add("joints", ns, list(names), np.array(position))

    def camera_frame(self, camera, rgb, ns):
        self._add("frame", camera, rgb.shape, rgb.dtype, ns)

    def episode(self, instruction, success, violations):
        self._add("episode", instruction, success, violations)

    def reset(self, message):
        self._add("reset", message)

    def success(self, task, success, episode_time):
        self._add("success", task, success)

    def lockstep_timeout(self, gate, timeout_s):
        self._add("lockstep_timeout", gate, timeout_s)

    def failed(self, message):
        self._add("failed", message)

    def of(self, kind: str) -> list[tuple]:
        with self._lock:
            return [e for e in self.events if e[0] == kind]


@pytest.fixture
def make_sim():
    """FakeRobotSim factory (franka, small images, sim clock from 0); stops and closes them after the test."""
    made: list[FakeRobotSim] = []

    def make(**overrides) -> tuple[FakeRobotSim, Recorder]:
        kw = dict(setup="franka", time_mode="fast", clock_origin="zero", image_width=32, image_height=24)
        cfg = FakeRobotConfig(**{**kw, **overrides})
        rec = Recorder()
        sim = FakeRobotSim(cfg, make_sim_env(cfg), rec)
        made.append(sim)
        return sim, rec

    yield make
    for sim in made:
        sim.stop()
        sim.env.close()


def arm_q(sim: FakeRobotSim) -> np.ndarray:
    return sim.env.joint_positions()[: len(sim.arms[0].limits.names)]


def test_the_stepper_imports_no_ros():
    code = (
        "import sys, tinyvla_ros.ros.fake_robot.stepper\n"
        "print(','.join(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'std_msgs', 'sensor_msgs')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == ""


def test_each_step_advances_the_clock_and_joint_states_come_before_it_at_their_rate(make_sim):
    sim, rec = make_sim(joint_state_rate=50.0)  # every second step
    for _ in range(10):
        sim.step()
    clocks = [e[1] for e in rec.of("clock")]
    assert clocks == [STEP_NS * k for k in range(1, 11)] and sim.now_ns() == 10 * STEP_NS
    joints = rec.of("joints")
    assert [e[1] for e in joints] == [STEP_NS * k for k in (2, 4, 6, 8, 10)]
    assert joints[0][2][:7] == list(sim.arms[0].limits.names)  # the drivers' names, gripper joints after
    order = [e for e in rec.events if e[0] in ("joints", "clock")]
    for i, event in enumerate(order):
        if event[0] == "joints":  # a tick triggered by the clock must see the state of its time
            assert order[i + 1] == ("clock", event[1])


def test_cameras_follow_their_rate_with_noise_and_a_paused_camera_sends_nothing(make_sim):
    sim, rec = make_sim(camera_rate=10.0)
    for _ in range(100):
        sim.step()
    assert sim.frames == {"zed_left": 11, "zed_right": 11}  # at 0.01 s, then every 0.1 s up to 1.0 s
    stamps = [e[4] for e in rec.of("frame") if e[1] == "zed_left"]
    assert stamps[1:] == [k * NS // 10 for k in range(1, 11)]
    assert rec.of("frame")[0][2:4] == ((24, 32, 3), np.uint8)
    a, b = (
        sim._add_noise(np.full((24, 32, 3), 128, np.uint8)),
        sim._add_noise(np.full((24, 32, 3), 128, np.uint8)),
    )
    assert not np.array_equal(a, b)  # no two frames identical: frozen-camera checks rely on it
    sim.cfg.cameras_paused = ["zed_right"]  # the node's parameter, shared
    for _ in range(50):
        sim.step()
    assert sim.frames == {"zed_left": 16, "zed_right": 11}
    assert sim.report().values["cameras_paused"] == "zed_right"
    with pytest.raises(ValueError, match="unknown cameras"):
        sim.check_cameras(["wrist"])
    with pytest.raises(ValueError, match="unknown cameras"):
        make_sim(cameras_paused=["wrist"])


def test_a_forward_command_drives_the_arm_and_bad_ones_are_rejected_or_clamped(make_sim):
    sim, _ = make_sim()
    home = arm_q(sim).copy()
    target = home + np.array([0.3, -0.2, 0.0, 0.2, 0.0, 0.0, 0.0])
    result = sim.forward(0, target.tolist())
    assert not result.rejected and not result.violated and result.violations == 0
    for _ in range(150):
        sim.step()
    assert np.abs(arm_q(sim) - target).max() < 0.03
    short = sim.forward(0, [0.0] * 3)
    assert short.rejected and "7" in short.rejected and short.violations == 0
    for _ in range(20):
        sim.step()
    assert np.abs(arm_q(sim) - target).max() < 0.03  # a rejected command leaves the previous one
    upper = sim.arms[0].limits.upper
    beyond = target.copy()
    beyond[0] = upper[0] + 1.0
    result = sim.forward(0, beyond.tolist())
    assert result.violated and result.violations == 1 and sim.violations == 1
    assert sim.gripper(0, [1.5]).violated is False  # clamped and counted, not a joint-limit violation
    for _ in range(200):
        sim.step()
    assert arm_q(sim)[0] == pytest.approx(upper[0], abs=0.03)  # clamped to the limit, not past it
    values = sim.report().values
    assert values["commands.fr3.forward.accepted"] == 2 and values["commands.fr3.forward.rejected"] == 1
    assert values["commands.fr3.gripper.out_of_range"] == 1 and values["limit_violations"] == 1
    assert values["active_controller.fr3"] == "forward"


def test_lockstep_waits_for_the_executors_tick_and_runs_on_after_the_timeout(make_sim):
    sim, rec = make_sim(
        time_mode="lockstep", lockstep_period=0.02, lockstep_timeout=0.3, lockstep_chunk_budget=0.0
    )
    assert list(sim.gates) == ["executor"]
    start = time.monotonic()
    for _ in range(5):
        sim.step()  # never heard of the executor: no wait
    assert time.monotonic() - start < 0.25 and sim.lockstep_waits == 0
    sim.gate_message("executor", sim.now_ns())  # a tick at the current time: one period may pass
    sim.step()
    sim.step()
    assert sim.lockstep_waits == 0
    # the third step waits for the next tick: one from another thread releases it at once
    threading.Timer(0.05, lambda: sim.gate_message("executor", sim.now_ns())).start()
    start = time.monotonic()
    sim.step()
    assert 0.04 < time.monotonic() - start < 0.28 and sim.lockstep_waits == 1
    assert rec.of("lockstep_timeout") == []
    sim.step()
    start = time.monotonic()
    sim.step()  # no tick comes: after lockstep_timeout the sim runs on without the executor
    assert time.monotonic() - start >= 0.29
    assert rec.of("lockstep_timeout") == [("lockstep_timeout", "executor", 0.3)]
    gate = sim.gates["executor"]
    assert gate.timeouts == 1 and not gate.following
    resent = [e[1] for e in rec.of("clock")]
    assert resent.count(resent[-2]) >= 3  # the clock was re-sent while waiting (best effort /clock)
    start = time.monotonic()
    sim.step()
    assert time.monotonic() - start < 0.25  # not followed any more: no wait until its next message


def test_reset_from_another_thread_starts_a_new_episode_and_a_bad_task_fails(make_sim):
    sim, rec = make_sim()
    sim.forward(0, (arm_q(sim) + 0.2).tolist())
    sim.start()
    ok, message = sim.request_reset("close_drawer", 3, timeout=10.0)
    assert ok, message
    assert message == f"reset: task 'close_drawer' ({sim.env.instruction!r}), seed 3"
    assert sim.task == "close_drawer" and sim.episode == 1 and sim.arms[0].active == "none"
    ok, message = sim.request_reset("no_such_task", 0, timeout=10.0)
    assert not ok and message.startswith("reset failed:")
    assert sim.task == "close_drawer" and sim.episode == 1
    sim.stop()
    assert not sim._thread.is_alive() and sim.fatal == "" and rec.of("failed") == []
    episodes = rec.of("episode")
    assert [e[1] for e in episodes] == ["pick up the red cube", sim.env.instruction]
    assert len(rec.of("reset")) == 1 and "'close_drawer'" in rec.of("reset")[0][1]  # only the one that worked


def test_a_failing_step_is_fatal_and_reported_once(make_sim):
    sim, rec = make_sim()

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    sim.env.step = broken
    sim.start()
    sim._thread.join(10.0)
    assert not sim._thread.is_alive()
    assert sim.fatal == "RuntimeError: boom" and rec.of("failed") == [("failed", "RuntimeError: boom")]
    ok, message = sim.request_reset("", 0, timeout=0.2)
    assert not ok and "timed out" in message


def test_realtime_follows_the_wall_clock_and_slips_when_late(make_sim):
    sim, rec = make_sim(time_mode="realtime", clock_origin="wall", max_lag=0.1)
    assert abs(sim.now_ns() - time.time_ns()) < 0.5 * NS  # stamps ~ wall time without use_sim_time
    start = time.monotonic()
    for _ in range(20):
        sim.step()
    assert time.monotonic() - start >= 0.18  # 0.2 s of sim time take 0.2 s
    before, slips = sim.now_ns(), sim.pacer.slips  # (the first render, opening the renderer, may slip)
    time.sleep(0.4)  # an overloaded machine: the sim falls behind
    sim.step()
    assert sim.pacer.slips == slips + 1 and sim.report().values["realtime_slips"] == slips + 1
    assert sim.now_ns() - before >= STEP_NS + 0.25 * NS  # the clock jumped forward with the wall clock
