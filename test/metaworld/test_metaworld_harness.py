"""The MetaWorld harness: the task split, seeded layouts, the upright image, action clipping, and
the whole path on one task (record expert demonstrations -> dataset -> nano training with
tinyvla-train -> evaluation through the engine, table and JSON by difficulty group).

metaworld is a test requirement (requirements/sim.txt): without it these tests fail, never skip.
"""

from __future__ import annotations

import json

import metaworld  # noqa: F401 - fails the module when metaworld is missing (CI installs it)
import numpy as np
import pytest
import torch
from metaworld.policies import ENV_POLICY_MAP

from tinyvla_ros.data.episodes import EpisodeFile, load_info, load_stats
from tinyvla_ros.data.train import main as train_main
from tinyvla_ros.metaworld.cli import main as cli_main
from tinyvla_ros.metaworld.env import (
    ACTION_NAMES,
    STATE_NAMES,
    MetaWorldEnv,
    RenderConfig,
    clip_action,
    registry_tasks,
    upright,
)
from tinyvla_ros.metaworld.evaluate import EvalConfig, evaluate, run_episode
from tinyvla_ros.metaworld.record import RECORD_FILE, RecordConfig
from tinyvla_ros.metaworld.tasks import GROUP_SIZES, GROUPS, TASKS, select_tasks, tasks_in

pytestmark = pytest.mark.sim

TASK = "reach-v3"
SMALL = RenderConfig(width=64, height=64)


@pytest.fixture(autouse=True)
def one_thread():
    """torch on one thread (the machine is shared), the previous count restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_difficulty_split_has_28_11_6_5_tasks_that_metaworld_knows():
    sizes = {group: len(tasks_in(group)) for group in GROUPS}
    assert sizes == GROUP_SIZES == {"easy": 28, "medium": 11, "hard": 6, "very_hard": 5}
    assert len(TASKS) == 50 and sorted(TASKS) == sorted(registry_tasks()) == sorted(ENV_POLICY_MAP)
    instructions = [instruction for _, instruction in TASKS.values()]
    assert len(set(instructions)) == 50 and all(i == i.strip().lower() and i for i in instructions)
    assert select_tasks(["push-v3"], ["very_hard"]) == ["push-v3", *tasks_in("very_hard")]
    assert len(select_tasks(groups=["all"])) == 50
    with pytest.raises(ValueError, match="unknown MetaWorld task"):
        select_tasks(["reach-v2"])
    with pytest.raises(ValueError, match="no MetaWorld task"):
        select_tasks([], [])


def test_a_seed_gives_the_same_layout_whatever_ran_before():
    with MetaWorldEnv(TASK, SMALL) as env, MetaWorldEnv(TASK, SMALL) as fresh:
        first = env.reset(3).copy()
        env.reset(5)
        for _ in range(5):
            env.step(np.ones(4))
        np.testing.assert_array_equal(env.reset(3), first)
        np.testing.assert_array_equal(fresh.reset(3), first)
        assert not np.allclose(env.reset(4)[-3:], first[-3:])  # another seed, another goal
        assert first[-3:].any(), "the goal must be in the observation (the experts read it)"
        np.testing.assert_array_equal(env.reset(3)[:4].astype(np.float32), env.state())
        assert env.state().dtype == np.float32 and env.max_steps == 500 and env.fps == 80.0


def test_the_camera_image_is_upright_and_not_mirrored():
    with MetaWorldEnv(TASK, SMALL) as env:
        env.reset(0)
        frame = env.render()
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(upright(upright(frame)), frame)
    np.testing.assert_array_equal(upright(frame), np.rot90(frame, 2))
    f = frame.astype(int)
    wood = (f[..., 0] - f[..., 2] > 25) & (f[..., 1] - f[..., 2] > 5) & (f[..., 0] < 200)
    robot = (f[..., 0] > 1.6 * f[..., 1]) & (f[..., 0] > 1.6 * f[..., 2]) & (f[..., 0] > 60)
    # the table fills the bottom rows and none of the top ones (upside down: the reverse)
    assert wood[-8:].mean() > 0.3 and wood[:8].mean() < 0.05, (wood[:8].mean(), wood[-8:].mean())
    # the red Sawyer stands at the left (a flip of the rows alone would put it at the right)
    assert robot[:, :32].mean() > 3 * robot[:, 32:].mean(), (robot[:, :32].mean(), robot[:, 32:].mean())


def test_actions_are_clipped_to_the_unit_box_before_stepping():
    np.testing.assert_array_equal(clip_action([2.0, -3.0, 0.5, 1.5]), [1.0, -1.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="not finite"):
        clip_action([np.nan, 0, 0, 0])
    with pytest.raises(ValueError, match="4 values"):
        clip_action([0, 0, 0])
    hands = []
    with MetaWorldEnv(TASK, SMALL) as env:
        for action in ([1.0, -1.0, 1.0, 0.0], [9.0, -9.0, 9.0, 0.0]):
            env.reset(0)
            for _ in range(3):
                obs, _, _ = env.step(action)
            hands.append(obs[:3].copy())
    np.testing.assert_array_equal(hands[0], hands[1])


class ExpertEngine:
    """An engine from outside the checkpoint format: the task's scripted expert, one action per chunk."""

    def __init__(self, env: MetaWorldEnv) -> None:
        self.env, self.policy, self.calls = env, env.expert(), 0

    def predict_chunk(self, images, instruction, state, seed=None):
        assert images[0].shape == (64, 64, 3) and state.shape == (4,)
        assert instruction == "reach the red target"
        self.calls += 1
        return np.repeat(self.env.expert_action(self.policy)[None], 16, axis=0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Two reach-v3 expert demonstrations at 64 x 64, recorded by the command line."""
    out = tmp_path_factory.mktemp("metaworld") / "reach"
    argv = ["record", "--tasks", TASK, "--episodes", "2", "--width", "64", "--height", "64",
            "--out", str(out)]  # fmt: skip
    assert cli_main(argv) == 0
    return out


@pytest.mark.slow
def test_record_train_evaluate_on_one_task(dataset, tmp_path, capsys):
    info = load_info(dataset)
    assert info.camera_names == ("corner4",) and info.image_shapes == {"corner4": [64, 64, 3]}
    assert info.state_names == STATE_NAMES and info.action_names == ACTION_NAMES
    assert info.robot == "metaworld_sawyer" and info.fps == 80.0 and len(info.episodes) == 2
    assert all(e["success"] is True and e["task"] == TASK for e in info.episodes)
    assert {e["instruction"] for e in info.episodes} == {"reach the red target"}
    record = json.loads((dataset / RECORD_FILE).read_text())["tasks"][TASK]
    assert record["kept_seeds"] == [0, 1] and record["failed"] == 0 and record["expert_success_rate"] == 1.0
    assert load_stats(dataset)["action"]["names"] == list(ACTION_NAMES)
    with MetaWorldEnv(TASK, SMALL) as env:
        for entry, seed in zip(info.episodes, (0, 1), strict=True):
            ep = EpisodeFile(dataset / entry["file"])
            n = ep.length
            assert ep.images("corner4").shape == (n, 64, 64, 3)
            assert ep.state.shape == ep.action.shape == (n, 4)
            assert np.all(np.abs(ep.action) <= 1.0) and ep.metadata["task"] == TASK
            assert json.loads(ep.metadata["extra"])["seed"] == str(seed)
            np.testing.assert_array_equal(ep.state[0], env.reset(seed)[:4].astype(np.float32))
            np.testing.assert_allclose(ep.timestamp[1], 1 / 80)
            # the recorded actions replay to success exactly at the last step (successes only, cut there)
            successes = [env.step(a)[1] for a in ep.action]
            assert successes[-1] and not any(successes[:-1])
    with pytest.raises(ValueError, match="evaluation"):
        RecordConfig((TASK,), episodes=10, seed_start=995)

    run = tmp_path / "run"
    argv = [str(dataset), "--out", str(run), "--preset", "nano", "--steps", "4", "--batch-size", "4",
            "--warmup-steps", "1", "--val-every", "4", "--save-every", "4", "--log-every", "1",
            "--num-threads", "1", "--no-progress"]  # fmt: skip
    assert train_main(argv) == 0
    final = run / "final"
    assert json.loads((final / "config.json").read_text())["camera_names"] == ["corner4"]

    out = tmp_path / "eval.json"
    argv = ["eval", str(final), "--tasks", TASK, "--episodes", "2", "--max-steps", "12", "--width", "64",
            "--height", "64", "--num-threads", "1", "--json", str(out)]  # fmt: skip
    assert cli_main(argv) == 0
    table = capsys.readouterr().out
    assert "| easy | reach-v3 | 2 |" in table and "| **easy** | 1 of 28 tasks |" in table
    assert "| **average** | 1 tasks | 2 |" in table
    result = json.loads(out.read_text())
    assert set(result) == {"checkpoint", "config", "tasks", "groups", "average", "episodes"}
    assert result["tasks"][TASK]["group"] == "easy" and result["groups"]["easy"]["of"] == 28
    assert result["config"]["seeds"] == [1000, 1001] and result["config"]["execute_steps"] == 8
    for episode in result["episodes"]:  # 12 steps: chunks of 16 predicted, 8 run, then 4 of the next
        assert episode["seed"] in (1000, 1001) and episode["inferences"] == -(-episode["steps"] // 8)
        assert episode["steps"] == 12 or (episode["success"] and episode["steps"] < 12)
    assert 0.0 <= result["average"] == result["groups"]["easy"]["success_rate"] <= 1.0
    assert cli_main(["eval", str(run), "--tasks", TASK]) == 2  # not a checkpoint: a clear error

    # any engine evaluates: success is metaworld's and ends the episode
    cfg = EvalConfig((TASK,), episodes=1, seed_start=0, execute_steps=1, render=SMALL)
    with MetaWorldEnv(TASK, SMALL) as env:
        expert = ExpertEngine(env)
        episode = run_episode(expert, env, 0, cfg)
    assert episode.success and episode.steps == info.episodes[0]["length"] == expert.calls
    cfg = EvalConfig((TASK,), episodes=2, max_steps=8, render=SMALL)
    results = evaluate("still", cfg, engine=StillEngine())
    outcomes = [(e.seed, e.success, e.steps, e.inferences) for e in results.episodes]
    assert outcomes == [(1000, False, 8, 1), (1001, False, 8, 1)]
    assert results.to_dict()["checkpoint"] == "still" and results.group_rates()["easy"]["success_rate"] == 0.0


class StillEngine:
    """A policy that never moves."""

    def predict_chunk(self, images, instruction, state, seed=None):
        return np.zeros((16, 4), np.float32)
