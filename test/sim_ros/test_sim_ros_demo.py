"""`make demo` pieces that run without starting a graph: arguments, checkpoint choice, summary, pictures."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tinyvla_ros import demo


def test_demo_config_bounds_the_duration_and_names_bad_values():
    assert demo.DemoConfig().duration == 60.0
    with pytest.raises(ValueError, match="duration must be in"):
        demo.DemoConfig(duration=181.0)
    with pytest.raises(ValueError, match="robot must be one of"):
        demo.DemoConfig(robot="kuka")


def test_demo_cli_refuses_a_too_long_run_without_starting_anything(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "tinyvla_ros.demo", "--duration", "500", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "duration must be in (0, 180]" in out.stderr
    assert not (tmp_path / "o").exists()


def test_find_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a checkpoint directory"):
        demo.find_checkpoint("franka", str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert demo.find_checkpoint("franka", str(tmp_path)) == (str(tmp_path), "given")
    from tinyvla_ros.paths import models_dir

    # no --checkpoint: the shipped policy of the robot, where one ships (the Franka's does)
    assert demo.find_checkpoint("franka") == (str(models_dir() / "franka"), "embedded default")
    shipped = (models_dir() / "ur5_bimanual" / "config.json").is_file()
    assert demo.find_checkpoint("ur5_bimanual") == (
        (str(models_dir() / "ur5_bimanual"), "embedded default") if shipped else ("", "")
    )


def test_graph_command_starts_the_sim_graph_with_actuation(tmp_path):
    cfg = demo.DemoConfig(robot="ur5_bimanual", duration=12, time_mode="lockstep")
    argv = demo.graph_command(cfg, "/ck", "lift the box with both arms", "lift_box", tmp_path)
    joined = " ".join(argv)
    assert argv[1:4] == ["-m", "tinyvla_ros.ros.graph", "ur5_bimanual"]
    for part in ("--use-sim true", "--use-sim-time true", "--enable-actuation true", "--duration 12"):
        assert part in joined
    assert "tinyvla_fake_robot.task=lift_box" in argv and "tinyvla_fake_robot.time_mode=lockstep" in argv
    assert "tinyvla_executor.faults.max_observation_age=0.35" in argv  # the CPU demo's deadline
    shipped = demo.graph_command(demo.DemoConfig(observation_deadline=0.0), "/ck", "i", "t", tmp_path)
    assert not any("max_observation_age" in a for a in shipped)  # 0: the params file's
    with pytest.raises(ValueError, match="observation_deadline"):
        demo.DemoConfig(observation_deadline=-1.0)


class Recorded:
    """What a GraphMonitor holds after a run (plain data)."""

    def __init__(self) -> None:
        self.instruction = "pick up the red cube"
        self.success = [False, True, False]
        self.limit_violations = 0
        self.statuses = [(0.0, {"mode": m}) for m in ("hold", "run", "hold", "run", "hold", "hold", "run")]
        self.command_times = {"/cmd": [0.0, 0.5, 1.0]}
        self._diag = {
            "tinyvla_policy": {
                "inference_latency_p50_ms": 40.0,
                "inference_latency_p99_ms": 90.0,
                "chunks_published": 30,
            },
            "tinyvla_executor": {
                "control_rate_hz": 100,
                "control_period_p50_ms": 10.0,
                "safety_clamps_total": 7,
                "ticks_hold": 50,
                "ticks_run": 400,
            },
            "tinyvla_fake_robot": {
                "real_time_factor": 1.0,
                "render_rate_hz": 30.0,
                "realtime_slips": 0,
                "success_time_s": 4.25,
            },
        }

    def diag(self, prefix: str) -> dict:
        return self._diag.get(prefix, {})


def test_summary_counts_holds_and_uses_deltas_since_the_start():
    baseline = {
        "tinyvla_executor": {"ticks_hold": 20, "safety_clamps_total": 2},
        "tinyvla_policy": {"chunks_published": 5},
    }
    s = demo.summarize(
        Recorded(), demo.DemoConfig(), "pick_red_cube", "/ck", "RANDOM-INIT nano", "/cmd", baseline
    )
    assert s["holds"] == 2  # run -> hold twice (hold -> hold is the same hold)
    assert (s["ticks_hold"], s["ticks_run"], s["safety_clamps"], s["chunks_published"]) == (30, 400, 5, 25)
    assert s["success_ever"] and not s["success_final"]
    assert s["control_rate_ticks_hz"] == pytest.approx(100.0) and s["commands_per_s"] == pytest.approx(2.0)
    text = demo.format_summary(s)
    assert "RANDOM-INIT" in text and "p50 40.0 ms, p99 90.0 ms" in text
    assert "yes, at 4.2 s" in text and "no longer" in text  # succeeded, then lost it
    json.dumps(s)


def test_pictures_are_written(tmp_path):
    rng = np.random.default_rng(0)
    frames = {
        c: [(t * 0.5, rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)) for t in range(9)]
        for c in ("a", "b")
    }
    assert demo.save_camera_strip(frames, tmp_path / "strip.png")
    measured = [(t * 0.01, {"j1": np.sin(t / 10), "j2": 0.1}) for t in range(100)]
    commanded = [(t * 0.01, {"j1": np.sin(t / 10 + 0.2), "j2": 0.1}) for t in range(100)]
    assert demo.save_joint_plot(measured, commanded, ["j1", "j2"], tmp_path / "joints.png")
    from PIL import Image

    assert Image.open(tmp_path / "strip.png").size[0] > Image.open(tmp_path / "strip.png").size[1]
    assert Image.open(tmp_path / "joints.png").size[1] > 100
    assert not demo.save_camera_strip({}, tmp_path / "none.png")
    frames["b"] = frames["b"][::2]  # fewer frames in one camera: each GIF frame takes its nearest
    assert demo.save_animation(frames, tmp_path / "cams.gif", fps=5.0)
    gif = Image.open(tmp_path / "cams.gif")
    assert gif.n_frames == 9 and gif.size == (
        2 * 32 + 2,
        24,
    )  # a 2-pixel gap between cameras and gif.info["duration"] == 200
    assert not demo.save_animation({}, tmp_path / "none.gif")


@pytest.mark.parametrize("period", [10, "nan", None])
def test_summary_control_rate_is_a_number_whatever_the_period_figure(period):
    """An integral period, an unmeasured one ('nan') or none at all still gives a tick rate: from the
    period, else from the tick counters over the duration (the summary once printed 'nan Hz ticks')."""
    recorded = Recorded()
    executor = recorded._diag["tinyvla_executor"]
    if period is None:
        del executor["control_period_p50_ms"]
    else:
        executor["control_period_p50_ms"] = float(period) if period == "nan" else period
    cfg = demo.DemoConfig()
    s = demo.summarize(recorded, cfg, "pick_red_cube", "/ck", "RANDOM-INIT nano", "/cmd")
    expected = 100.0 if period == 10 else 450 / cfg.duration
    assert s["control_rate_ticks_hz"] == pytest.approx(expected)
    assert "nan Hz" not in demo.format_summary(s)
