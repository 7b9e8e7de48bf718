"""Regression test of the shipped Franka policy (models/franka) through the real ROS graph.

Policy node + executor node + MuJoCo fake robot as separate processes over DDS, lockstep on sim
time capped at real time (tinyvla_ros.ros.graph_eval), the shipped params file (ONNX engine,
temporal_ensemble) with the executor's observation deadline at 0.35 s as ``make demo`` uses on a
CPU. It solves 21/50 held-out pick scenes through the graph (models/README.md, run 20), and the
graph is not deterministic (timing), so one scene is a coin with p ~ 0.6-0.8 even where it was
solved before (this test's own runs: 3/6 and 2/3). The eight seeds below are held-out scenes
(the policy trained on pick seeds 500-699) it solved in at least one graph evaluation recorded at
commit time, and the test asserts 2 of 8: with p = 0.5 per scene it fails 1 run in 28, with 0.6
1 in 120; a broken policy solves none (run 19, which sensor noise breaks, solved 0/10; a random-init
one 0). It does not assert "most of them" (issue 16 asks that): at 42% the policy would make such a
test fail as often as pass. A change to the runtime, the model code,
the preprocessing, the engine or the checkpoint that breaks real behaviour makes the arm miss the
cube. The same graph then gets another task's instruction on one of those scenes: the red cube
must stay on the table, so the policy reads the instruction.
"""

from __future__ import annotations

import pytest
from sim_ros_support import running_evaluator

from tinyvla_ros.demo import DemoConfig
from tinyvla_ros.ros.graph import shipped_checkpoint
from tinyvla_ros.ros.graph_eval import GraphEvalConfig

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]

SEEDS = (1000, 1001, 1002, 1004, 1006, 1011, 1016, 1019)
TASK = "pick_red_cube"
DEADLINE = (
    DemoConfig.observation_deadline
)  # s: the executor's max_observation_age on a CPU, as make demo runs it


@pytest.fixture(scope="module")
def evaluator(module_tmp):
    checkpoint = shipped_checkpoint("franka")
    assert checkpoint, "the shipped Franka policy (models/franka/config.json) is missing"
    cfg = GraphEvalConfig(robot="franka", tasks=(TASK,), seeds=SEEDS, observation_deadline=DEADLINE)
    with running_evaluator(checkpoint, cfg, module_tmp / "logs_default_policy") as ev:
        yield ev


def test_shipped_franka_policy_picks_the_red_cube_through_the_graph(evaluator):
    results = evaluator.run(progress=True)
    successes = sum(e.success for e in results.episodes)
    assert successes >= 2, results.table()
    assert results.limit_violations == 0, results.table()
    assert results.latency_p50_ms > 0


def test_another_instruction_leaves_the_red_cube_on_the_table(evaluator):
    from tinyvla_ros.sim.tasks import get_task

    other = get_task("franka", "close_drawer").instruction
    evaluator.cfg = GraphEvalConfig(
        robot="franka", tasks=(TASK,), seeds=SEEDS, instruction=other, observation_deadline=DEADLINE
    )
    episode = evaluator.episode(TASK, SEEDS[0])
    assert episode.instruction == other
    assert not episode.success, f"seed {SEEDS[0]}: red cube lifted although told {other!r}"
