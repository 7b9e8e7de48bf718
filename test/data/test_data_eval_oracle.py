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


def _oracle_runner(demo_dataset, source: int = 0, image_noise: float = 0.0):
    """(runner, env, scene seed): the fake on the first pick_red_cube demonstration's scene, the
    engine serving the recorded actions of pick demonstration ``source`` (0: that same one)."""
    from tinyvla_ros.sim.env import make_env

    info = load_info(demo_dataset)
    picks = [e for e in info.episodes if e["task"] == "pick_red_cube"]
    assert len(picks) > source
    seed = int(picks[0]["source"].rsplit("seed", 1)[1])
    actions = np.asarray(EpisodeFile(demo_dataset / picks[source]["file"]).action)
    params = graph_parameters("franka")
    executor = yaml.safe_load((config_dir() / "franka.yaml").read_text())["/**/tinyvla_executor"][
        "ros__parameters"
    ]
    period = 1.0 / float(executor["control_rate"])  # the control loop ticks the fake
    env = make_env("franka", image_width=64, image_height=48, control_dt=period)
    engine = OracleEngine(actions, env, float(params["action_dt"]))
    return PolicyRunner(engine, env, params, executor, "", image_noise), env, seed


@pytest.mark.parametrize(("played", "solved"), [("own", True), ("other seed", False)])
def test_recorded_actions_served_as_chunks_solve_the_recorded_scene(demo_dataset, played, solved):
    runner, env, seed = _oracle_runner(demo_dataset, source=0 if played == "own" else 1)
    try:
        outcome = runner.episode("pick_red_cube", seed, 0, 0.0)
    finally:
        env.close()
    assert outcome.success is solved, outcome
    assert outcome.chunks_refused == 0 and outcome.ticks_run > 0  # the recorded actions pass the checks


def test_latency_runs_the_policy_nodes_loop_and_its_chunks_arrive_late(demo_dataset):
    """With ``latency`` the runner infers continuously (as the policy node does) and each chunk
    reaches the loop that much later, stamped with its observation's time: time-aligned recorded
    actions still solve the scene; a latency past the executor's max_observation_age holds the arm
    on every tick (the chunks are too old), so the stamps are really the observations'."""
    runner, env, seed = _oracle_runner(demo_dataset)
    try:
        ok = runner.episode("pick_red_cube", seed, 0, 0.0, latency=0.1)
        late = runner.episode("pick_red_cube", seed, 0, 3.0, latency=0.25)  # shipped max age 0.18 s
    finally:
        env.close()
    assert ok.success and ok.chunks_refused == 0, ok
    # one inference per 0.1 s (inference_rate 15 Hz is not the bound): ~10 per sim second
    assert 8 * ok.sim_seconds <= ok.inferences <= 11 * ok.sim_seconds + 1, ok
    assert not late.success and late.ticks_run == 0 and late.ticks_hold > 250, late


def test_image_noise_reaches_the_policy_and_repeats_per_scene(demo_dataset):
    """The sensor noise the fake's cameras add (``image_noise``) is on the frames the engine gets,
    at the given std, and the same for the same scene seed (a rerun is the same evaluation)."""
    runner, env, seed = _oracle_runner(demo_dataset, image_noise=2.0)
    seen: list[np.ndarray] = []
    predict = runner.engine.predict_chunk
    runner.engine.predict_chunk = lambda images, *a, **k: (seen.append(images[0]), predict(images, *a, **k))[
        1
    ]
    try:
        env.reset("pick_red_cube", seed)
        clean = env.render("zed_left").astype(float)
        runner.episode("pick_red_cube", seed, 0, 0.1)
        per_episode = len(seen)
        runner.episode("pick_red_cube", seed, 0, 0.1)
    finally:
        env.close()
    first, again = seen[0], seen[per_episode]
    assert per_episode >= 1 and len(seen) == 2 * per_episode
    diff = first.astype(float) - clean
    assert 1.5 < diff.std() < 2.5, diff.std()  # 2 levels (a little less where clipped at 0 / 255)
    np.testing.assert_array_equal(first, again)
