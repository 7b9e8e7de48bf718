"""tinyvla-diagnose: teacher-forced chunks along the scripted expert's path, scored by hand position."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinyvla_ros.data.demos import graph_parameters, setup_layout
from tinyvla_ros.data.diagnose import diagnose, expert_path, first_grasp, main, table

pytestmark = pytest.mark.sim

SEED = 3


class ReplayExpert:
    """Answers every request with the expert's own next 16 commands (a perfect policy)."""

    def __init__(self, actions: np.ndarray, every: int) -> None:
        self.actions, self.every, self.calls = actions, every, 0

    def predict_chunk(self, images, instruction, state, seed=None):
        k = self.every * self.calls
        self.calls += 1
        return self.actions[k : k + 16]


class Freeze:
    """Holds the current joints (a policy that does not move)."""

    def predict_chunk(self, images, instruction, state, seed=None):
        return np.tile(np.r_[state[:7], 1.0], (16, 1))


@pytest.fixture(scope="module")
def expert_actions():
    from tinyvla_ros.sim.env import make_env

    params = graph_parameters("franka")
    layout, _ = setup_layout("franka")
    env = make_env("franka", image_width=32, image_height=24, control_dt=1.0 / layout.fps)
    try:
        cols = [list(env.joint_names).index(n) for n in params["state_joint_names"]]
        _, actions = expert_path(env, "pick_red_cube", SEED, params["action_names"], cols, ["zed_left"])
    finally:
        env.close()
    return actions


def test_the_expert_itself_scores_zero_and_a_frozen_arm_does_not(expert_actions):
    names = graph_parameters("franka")["action_names"]
    grasp = first_grasp(expert_actions, names)
    assert 20 < grasp < len(expert_actions)
    perfect = diagnose(ReplayExpert(expert_actions, 8), "franka", ["pick_red_cube"], [SEED], 8, 32, 24)
    (episode,) = perfect
    assert episode.grasp_step == grasp and len(episode.chunks) == -(-grasp // 8)
    assert max(c.hand_error_cm for c in episode.chunks) < 1e-6
    frozen = diagnose(Freeze(), "franka", ["pick_red_cube"], [SEED], 8, 32, 24)[0]
    assert max(c.hand_error_cm for c in frozen.chunks) > 5.0  # the expert travels tens of cm
    assert "| 1 | 0 | 1 |" in table([frozen])


def test_first_grasp_needs_an_open_gripper_first():
    names = ["j", "gripper"]
    acts = np.array([[0, 1], [0, 1], [0, 0], [0, 1]], dtype=float)
    assert first_grasp(acts, names) == 2
    assert first_grasp(np.array([[0, 0], [0, 0], [0, 1]], dtype=float), names) == 3  # closed from the start
    two = np.array([[0, 1, 1], [0, 1, 0], [0, 0, 0]], dtype=float)
    assert first_grasp(two, ["j", "left_gripper", "right_gripper"]) == 1


def test_command_runs_a_checkpoint_and_writes_json(tmp_path, capsys):
    from tinyvla_ros.vla.testing import make_tiny_checkpoint

    params = graph_parameters("franka")
    ckpt = make_tiny_checkpoint(tmp_path / "ckpt", params["camera_names"], 8, 8, seed=1,
                                action_names=params["action_names"])  # fmt: skip
    out = tmp_path / "diag.json"
    assert (
        main([str(ckpt), "--seeds", str(SEED), "--every", "16", "--num-threads", "1", "--json", str(out)])
        == 0
    )
    assert "hand error mean" in capsys.readouterr().out
    (row,) = json.loads(out.read_text())
    assert row["task"] == "pick_red_cube" and row["chunks"][0]["step"] == 0
    assert all(np.isfinite(c["hand_error_cm"]) for c in row["chunks"])
    assert main([str(ckpt), "--every", "0"]) == 2
