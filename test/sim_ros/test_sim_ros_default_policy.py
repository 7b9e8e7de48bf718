"""Regression test of the shipped Franka policy (models/franka) through the real ROS graph.

Policy node + executor node + MuJoCo fake robot as separate processes over DDS, lockstep on sim
time (tinyvla_ros.ros.graph_eval). Held-out scene seeds (training used seeds 0-99). A change to the
runtime, the model code or the checkpoint that breaks real behaviour makes the arm miss the cube.
The same graph then gets the wrong instruction on the same scenes: the red cube must stay on the
table, which shows that the policy reads the instruction (not only the scene).
"""

from __future__ import annotations

import pytest

from tinyvla_ros.paths import models_dir
from tinyvla_ros.ros.graph_eval import GraphEvalConfig, GraphEvaluator

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]

SEEDS = (1000, 1001, 1002)
TASK = "pick_red_cube"


@pytest.fixture(scope="module")
def evaluator(module_tmp):
    checkpoint = models_dir() / "franka"
    assert (checkpoint / "config.json").is_file(), f"the shipped Franka policy is missing: {checkpoint}"
    cfg = GraphEvalConfig(robot="franka", tasks=(TASK,), seeds=SEEDS)
    ev = GraphEvaluator(checkpoint, cfg, module_tmp / "logs_default_policy")
    try:
        ev.start()
        yield ev
    finally:
        codes = ev.stop()
    assert all(c == 0 for c in codes.values()), codes


def test_shipped_franka_policy_picks_the_red_cube_through_the_graph(evaluator):
    results = evaluator.run(progress=True)
    successes = sum(e.success for e in results.episodes)
    assert successes >= len(SEEDS) - 1, results.table()
    assert results.limit_violations == 0, results.table()
    assert results.latency_p50_ms > 0


def test_wrong_instruction_leaves_the_red_cube_on_the_table(evaluator):
    from tinyvla_ros.sim.tasks import get_task

    wrong = get_task("franka", "close_drawer").instruction
    for seed in SEEDS[:2]:
        evaluator.cfg = GraphEvalConfig(robot="franka", tasks=(TASK,), seeds=SEEDS, instruction=wrong)
        episode = evaluator.episode(TASK, seed)
        assert episode.instruction == wrong
        assert not episode.success, f"seed {seed}: red cube lifted although told {wrong!r}"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("robot", "panda", "robot must be one of"),
        ("seeds", (), "seeds must be non-negative"),
        ("seeds", (-1,), "seeds must be non-negative"),
        ("max_seconds", float("nan"), "max_seconds must be >= 0"),
        ("image_width", 4, "image size must be at least"),
    ],
)
def test_graph_eval_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        GraphEvalConfig(**{field: value})
