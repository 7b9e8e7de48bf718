"""Faults before the loop runs: a malformed parameter file, a checkpoint that does not fit the robot,
and the engine fault hook's own guard rails (test-only, behind TINYVLA_ENABLE_FAULT_HOOKS=1)."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import Float64MultiArray

from tinyvla_ros.ros.graph import GraphArgs, GraphRunner, build_graph, main
from tinyvla_ros.ros.lifecycle_client import LifecycleError
from tinyvla_ros.ros.qos import reliable_qos
from tinyvla_ros.vla.engines.faults import ENV_FLAG, FaultEngine, corrupt_chunk, parse_fault_spec

pytestmark = [pytest.mark.ros]

BROKEN_YAML = """/**/tinyvla_executor:
  ros__parameters:
    robot: fr3
    control_rate: [100.0
"""
WRONG_TYPE = """/**/tinyvla_executor:
  ros__parameters:
    robot: fr3
    control_rate: fast
    forward_command_topics: [/forward_position_controller/commands]
    gripper_topics: [/fr3_gripper/opening_command]
"""


def test_a_malformed_params_file_is_refused_before_anything_starts(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN_YAML, encoding="utf-8")
    with pytest.raises(ValueError, match="not valid YAML"):
        build_graph(GraphArgs("franka", params_file=broken))
    assert main(["franka", "--params-file", str(broken), "--duration", "1"]) == 2
    assert "broken.yaml" in capsys.readouterr().err
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n", encoding="utf-8")
    with pytest.raises(ValueError, match="must map node names"):
        build_graph(GraphArgs("franka", params_file=scalar))


class _Listener:
    """Records /diagnostics and the Franka command topic in a private context."""

    def __init__(self) -> None:
        self.diagnostics: list[tuple[str, int, str]] = []
        self.commands = 0
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node("faults_startup_listener", context=self.context)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, reliable_qos(50))
        self.node.create_subscription(
            Float64MultiArray, "/forward_position_controller/commands", self._on_command, reliable_qos(50)
        )
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - the context goes away at close()
            pass

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for s in msg.status:
            level = s.level[0] if isinstance(s.level, bytes) else int(s.level)
            self.diagnostics.append((s.name, level, s.message))

    def _on_command(self, _msg) -> None:
        self.commands += 1

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.thread.join(timeout=5.0)


def test_a_wrong_parameter_type_stops_the_executor_with_a_clear_error(tmp_path):
    bad = tmp_path / "wrong_type.yaml"
    bad.write_text(WRONG_TYPE, encoding="utf-8")
    argv = [sys.executable, "-m", "tinyvla_ros.ros.executor_node", "--ros-args", "--params-file", str(bad)]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "control_rate" in run.stderr and "'fast'" in run.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN_YAML, encoding="utf-8")
    argv[-1] = str(broken)
    run = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "params file" in (run.stdout + run.stderr)


@pytest.mark.slow
def test_a_checkpoint_that_does_not_fit_the_robot_fails_configure_and_says_why(tmp_path):
    import torch

    from tinyvla_ros.vla.testing import make_tiny_checkpoint

    torch.set_num_threads(1)
    wrong_dim = make_tiny_checkpoint(tmp_path / "dim6", ["zed_left", "zed_right"], 8, 6, seed=0)
    wrong_cams = make_tiny_checkpoint(tmp_path / "cams", ["cam_a"], 8, 8, seed=0)
    listener = _Listener()
    try:
        for checkpoint, field in ((wrong_dim, "action_dim"), (wrong_cams, "camera_names")):
            specs = build_graph(
                GraphArgs(
                    "franka",
                    checkpoint=str(checkpoint),
                    extra_parameters={
                        "tinyvla_policy": {"warmup_runs": 1, "num_threads": 1, "diagnostics_period": 0.2}
                    },
                )
            )
            runner = GraphRunner(specs, log_dir=tmp_path / f"logs_{field}")
            runner.start()
            try:
                with pytest.raises(LifecycleError):
                    runner.activate_lifecycle_nodes(180.0)
                deadline = time.monotonic() + 30.0
                while time.monotonic() < deadline:
                    hits = [d for d in listener.diagnostics if d[1] == 2 and field in d[2]]
                    if hits:
                        break
                    time.sleep(0.05)
                assert hits, f"no /diagnostics ERROR naming {field}: {listener.diagnostics[-3:]}"
                assert "checkpoint" in hits[0][2]
            finally:
                runner.stop()
        assert listener.commands == 0, "a command went out although the policy never came up"
    finally:
        listener.close()


# --- the engine fault hook -------------------------------------------------------------------------


def test_fault_specs_are_parsed_and_checked():
    cfg = parse_fault_spec("fault:mode=jump,after_s=2,duration_s=0.5,magnitude=0.7")
    assert (cfg.mode, cfg.after_s, cfg.duration_s, cfg.magnitude, cfg.inner) == (
        "jump",
        2.0,
        0.5,
        0.7,
        "torch",
    )
    assert parse_fault_spec("fault:mode=huge").magnitude == 1000.0
    for bad, match in (
        ("torch", "fault:mode"),
        ("fault:mode=melt", "mode must be one of"),
        ("fault:mode=nan,speed=3", "key in"),
        ("fault:mode=stall,stall_s=x", "must be a number"),
        ("fault:mode=file", "needs trigger"),
        ("fault:mode=nan,inner=fault", "real engine"),
    ):
        with pytest.raises(ValueError, match=match):
            parse_fault_spec(bad)


def test_corrupted_chunks():
    chunk = np.tile(np.linspace(0.0, 0.7, 8, dtype=np.float32), (16, 1))
    assert np.all(np.isnan(corrupt_chunk(chunk, "nan", 0.0)))
    huge = corrupt_chunk(chunk, "huge", 1000.0)
    assert np.all(huge[:, :-1] == 1000.0) and np.array_equal(huge[:, -1], chunk[:, -1])
    jump = corrupt_chunk(chunk, "jump", 1.0)
    assert np.array_equal(jump[:8], chunk[:8]) and np.allclose(jump[8:], chunk[8:] + 1.0)


@pytest.mark.slow
def test_the_fault_engine_needs_the_env_flag_and_follows_its_trigger(tmp_path, monkeypatch):
    import torch

    from tinyvla_ros.vla.engines import load_engine
    from tinyvla_ros.vla.testing import make_tiny_checkpoint

    torch.set_num_threads(1)
    ckpt = make_tiny_checkpoint(tmp_path / "ckpt", ["zed_left"], 8, 8, seed=0)
    trigger = tmp_path / "trigger"
    spec = f"fault:mode=file,trigger={trigger},stall_s=0.3"
    monkeypatch.delenv(ENV_FLAG, raising=False)
    with pytest.raises(RuntimeError, match=ENV_FLAG):
        load_engine(ckpt, spec)
    monkeypatch.setenv(ENV_FLAG, "1")
    engine = load_engine(ckpt, spec, num_threads=1)
    assert isinstance(engine, FaultEngine) and engine.name == "fault[file](torch)"
    images = [np.zeros((48, 64, 3), np.uint8)]
    state = np.zeros(8, np.float32)
    clean = engine.predict_chunk(images, "go", state, seed=1)
    assert np.all(np.isfinite(clean))
    for mode, check in (
        ("nan", lambda c: np.all(np.isnan(c))),
        ("huge", lambda c: np.all(c[:, :-1] == 1000.0)),
        ("jump", lambda c: np.allclose(c[8:] - clean[8:], 1.0, atol=1e-5)),
    ):
        trigger.write_text(mode, encoding="utf-8")
        assert check(engine.predict_chunk(images, "go", state, seed=1)), mode
    trigger.write_text("stall", encoding="utf-8")
    start = time.perf_counter()
    stalled = engine.predict_chunk(images, "go", state, seed=1)
    assert time.perf_counter() - start >= 0.3 and np.allclose(stalled, clean)
    trigger.unlink()
    assert np.allclose(engine.predict_chunk(images, "go", state, seed=1), clean)
    assert engine.faulty_chunks == 3 and not math.isnan(float(clean.sum()))
