"""The evaluation harness executes a policy's chunks the way the demonstrations were recorded.

An oracle engine serves the recorded actions of a demonstration as chunks (the 16 steps from the
current sim time on); run through ``PolicyRunner`` (the robot's control loop: chunk executor, fault checks, safety
filter, gripper decisions; the sim) on the same scene seed, it must solve the task. So a trained policy that fails here fails by
what it predicts, not by how its chunks are timed or applied. Another seed's demonstration (the cube
elsewhere) played on this scene must fail: the check can fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml

pytest.importorskip("mujoco")

from tinyvla_ros.data.episodes import EpisodeFile, load_info  # noqa: E402
from tinyvla_ros.data.evaluate import PolicyRunner, graph_parameters  # noqa: E402
from tinyvla_ros.paths import config_dir  # noqa: E402

pytestmark = pytest.mark.sim


class OracleEngine:
    """predict_chunk -> the recorded actions from the env's time on."""

    def __init__(self, actions: np.ndarray, env, dt: float, chunk_len: int = 16) -> None:
        self.actions, self.env, self.dt = actions, env, dt
        self.config = type("Config", (), {"action_dim": actions.shape[1], "chunk_len": chunk_len})()

    def predict_chunk(self, images, instruction, state, seed=None) -> np.ndarray:
        start = int(round(self.env.time / self.dt))
        idx = np.minimum(np.arange(start, start + self.config.chunk_len), len(self.actions) - 1)
        return self.actions[idx]


@pytest.mark.parametrize(("played", "solved"), [("own", True), ("other seed", False)])
def test_recorded_actions_served_as_chunks_solve_the_recorded_scene(demo_dataset, played, solved):
    from tinyvla_ros.sim.env import make_env

    info = load_info(demo_dataset)
    picks = [e for e in info.episodes if e["task"] == "pick_red_cube"]
    assert len(picks) >= 2
    scene, source = picks[0], picks[0] if played == "own" else picks[1]
    seed = int(scene["source"].rsplit("seed", 1)[1])
    actions = np.asarray(EpisodeFile(demo_dataset / source["file"]).action)
    params = graph_parameters("franka")
    all_params = yaml.safe_load((config_dir() / "franka.yaml").read_text())
    executor = all_params["/**/tinyvla_executor"]["ros__parameters"]
    dt = float(params["action_dt"])
    period = 1.0 / float(executor["control_rate"])  # the control loop ticks the fake
    env = make_env("franka", image_width=64, image_height=48, control_dt=period)
    try:
        runner = PolicyRunner(OracleEngine(actions, env, dt), env, params, executor, "")
        outcome = runner.episode("pick_red_cube", seed, 0, 0.0)
    finally:
        env.close()
    assert outcome.success is solved, outcome
    assert outcome.chunks_refused == 0 and outcome.ticks_run > 0  # the recorded actions pass the checks
