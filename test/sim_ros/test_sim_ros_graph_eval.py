"""``tinyvla-graph-eval``: episodes through the real ROS graph (policy + executor + lockstep fake over DDS).

The shipped policy is checked through it in test_sim_ros_default_policy.py; this checks the
evaluation machinery with a random-init nano checkpoint (it must not succeed): every episode resets the fake to its task and seed, gives the policy
the task's instruction (or the override), re-enables actuation, runs until the sim-time limit (a
random policy does not succeed) and reports chunks, times and limit violations.
"""

from __future__ import annotations

import pytest
from sim_ros_support import running_evaluator

from tinyvla_ros.ros.graph_eval import GraphEvalConfig

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]

SEEDS = (1000, 1001)
TASK = "pick_red_cube"
LIMIT = 1.5  # sim seconds per episode


@pytest.fixture(scope="module")
def evaluator(module_tmp):
    import torch

    from tinyvla_ros.demo import random_checkpoint

    torch.set_num_threads(1)
    checkpoint = random_checkpoint("franka", module_tmp / "ckpt_random_franka")
    cfg = GraphEvalConfig(robot="franka", tasks=(TASK,), seeds=SEEDS, max_seconds=LIMIT, image_width=64,
                          image_height=48)  # fmt: skip
    with running_evaluator(checkpoint, cfg, module_tmp / "logs_graph_eval") as ev:
        yield ev


def test_every_episode_runs_to_its_sim_time_limit_with_fresh_chunks(evaluator):
    results = evaluator.run(progress=True)
    assert [(e.task, e.seed) for e in results.episodes] == [(TASK, s) for s in SEEDS]
    for episode in results.episodes:
        assert episode.instruction == "pick up the red cube"
        assert not episode.success, "a random-init policy lifted the cube"
        assert LIMIT <= episode.sim_seconds < LIMIT + 1.0, episode
        assert episode.chunks > 0, f"no chunk published during {episode}"
    assert results.limit_violations == 0, results.table()
    assert results.latency_p50_ms > 0
    assert "| pick_red_cube | pick up the red cube | 2 | 0/2 (0%)" in results.table()


def test_an_instruction_override_reaches_the_policy(evaluator):
    wrong = "close the drawer"
    evaluator.cfg = GraphEvalConfig(
        robot="franka", tasks=(TASK,), seeds=SEEDS, instruction=wrong, max_seconds=LIMIT
    )
    episode = evaluator.episode(TASK, SEEDS[0])
    assert episode.instruction == wrong
    evaluator.monitor.wait_for(
        lambda: evaluator.monitor.diag("tinyvla_policy").get("instruction") == wrong,
        30.0,
        "the policy to report the overriding instruction",
    )


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


def test_sigterm_stops_the_graph_it_started(module_tmp, tmp_path):
    """``timeout`` or a supervisor ends graph-eval with SIGTERM: its nodes (each in its own session)
    must not outlive it (they once ran on for 20 min after a timeout, loading the machine)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tinyvla_ros.demo import random_checkpoint

    checkpoint = random_checkpoint("franka", module_tmp / "ckpt_random_franka")
    logs = tmp_path / "logs"
    # its own ROS domain: the module's evaluator graph runs under the same node names in this one
    env = {**os.environ, "ROS_DOMAIN_ID": str(int(os.environ.get("ROS_DOMAIN_ID", "0")) % 101 + 102)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinyvla_ros.ros.graph_eval", str(checkpoint), "--robot", "franka",
         "--tasks", TASK, "--seeds", "1000-1009", "--max-seconds", "30", "--width", "64", "--height", "48",
         "--log-dir", str(logs)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip

    def children() -> list[int]:
        out = []
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if entry.isdigit() and int(fields[1]) == proc.pid:
                out.append(int(entry))
        return out

    try:
        deadline = time.monotonic() + 180.0
        executor_log = logs / "tinyvla_executor.log"
        while time.monotonic() < deadline and proc.poll() is None:
            if executor_log.is_file() and "mode run" in executor_log.read_text(errors="replace"):
                break  # an episode is running
            time.sleep(0.5)
        nodes = children()
        if proc.poll() is not None:
            pytest.fail(
                f"tinyvla-graph-eval exited {proc.returncode} early:\n{proc.communicate()[0][-3000:]}"
            )
        assert len(nodes) == 3, nodes
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out[-2000:]
    assert "interrupted: the graph was stopped" in out
    alive = [pid for pid in nodes if os.path.exists(f"/proc/{pid}")]
    assert not alive, f"node processes {alive} outlived tinyvla-graph-eval"
