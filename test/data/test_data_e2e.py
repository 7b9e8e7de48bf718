"""End to end on CPU: scripted episodes -> bags -> dataset -> nano training -> merged checkpoint ->
the policy node replaying a bag through it; then the same checkpoint in the evaluation command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from data_helpers import FRANKA, SEED, observation_at, play, start_policy

torch = pytest.importorskip("torch")
pytest.importorskip("rclpy")
pytest.importorskip("mujoco")
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from tinyvla_ros.data.bag import BagReader  # noqa: E402
from tinyvla_ros.data.evaluate import EvalConfig, evaluate  # noqa: E402
from tinyvla_ros.data.evaluate import main as eval_main  # noqa: E402
from tinyvla_ros.data.messages import stamp_ns  # noqa: E402
from tinyvla_ros.data.train import main as train_main  # noqa: E402
from tinyvla_ros.ros.conversions import trajectory_to_chunk  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]


@pytest.fixture(scope="module")
def trained(demo_dataset, tmp_path_factory):
    """A nano policy trained for a few steps by the ``tinyvla-train`` command line."""
    run = tmp_path_factory.mktemp("run") / "nano"
    argv = [str(demo_dataset), "--out", str(run), "--preset", "nano", "--steps", "12", "--batch-size", "8",
            "--lr", "3e-4", "--warmup-steps", "2", "--val-every", "6", "--save-every", "6", "--log-every", "1",
            "--num-threads", "1", "--no-progress"]  # fmt: skip
    assert train_main(argv) == 0
    return run


def test_trained_checkpoint_drives_the_policy_node_from_a_replayed_bag(ros, trained, demo_bags):
    torch.set_num_threads(1)
    final = trained / "final"
    metrics = [json.loads(x) for x in (trained / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert len(losses) == 12 and all(np.isfinite(losses))
    assert np.mean(losses[-4:]) < np.mean(losses[:4]), f"the training loss did not go down: {losses}"
    assert (trained / "curves.png").is_file() and json.loads((final / "config.json").read_text())[
        "name"
    ] == "nano"

    chunks = ros.collect(JointTrajectory, "/tinyvla_policy/chunk")
    node = start_policy(ros, final)
    play(ros, demo_bags[1], duration=1.5, rate=0.5)
    node.trigger_deactivate()
    assert len(chunks) >= 2, f"only {len(chunks)} chunks"
    from tinyvla_ros.vla.engines import load_engine

    engine = load_engine(final, num_threads=1)
    with BagReader(demo_bags[1]) as reader:
        instruction = reader.metadata["instruction"]
    stats = json.loads((final / "stats.json").read_text())
    for msg, _ in chunks:
        _, chunk, _ = trajectory_to_chunk(msg, FRANKA.action_names)
        images, state = observation_at(demo_bags[1], stamp_ns(msg.header.stamp))
        np.testing.assert_array_equal(chunk, engine.predict_chunk(images, instruction, state, seed=SEED))
        assert np.all(chunk >= np.asarray(stats["action_low"]) - 1e-6)
        assert np.all(chunk <= np.asarray(stats["action_high"]) + 1e-6)


def test_evaluation_runs_the_checkpoint_in_the_fake(trained, tmp_path, capsys):
    cfg = EvalConfig(setup="franka", tasks=("pick_red_cube",), seeds=(0,), max_seconds=1.0,
                     execution_mode="open_loop", image_width=64, image_height=48, num_threads=1)  # fmt: skip
    results = evaluate(trained / "final", cfg)
    (episode,) = results.episodes
    assert episode.task == "pick_red_cube" and episode.sim_seconds == pytest.approx(1.0, abs=0.06)
    # the robot's fault checks refuse this 12-step policy's chunks (joint steps faster than 3x the
    # velocity limits): the loop holds and asks again at every 20 Hz step, as on the robot
    assert episode.inferences == 20 and episode.chunks_refused == 20
    assert episode.ticks_run == 0 and episode.ticks_hold == 100  # 1 s of 100 Hz control periods
    assert set(results.success_rates()) == {"pick_red_cube"}
    assert "| pick_red_cube | 1 |" in results.table()
    out = tmp_path / "eval.json"
    argv = [str(trained / "final"), "--tasks", "close_drawer", "--seeds", "0", "--max-seconds", "0.5",
            "--execution-mode", "open_loop", "--width", "64", "--height", "48", "--json", str(out)]  # fmt: skip
    assert eval_main(argv) == 0
    assert "| close_drawer | 1 |" in capsys.readouterr().out
    assert json.loads(out.read_text())["episodes"][0]["task"] == "close_drawer"
    assert eval_main([str(trained), "--seeds", "0"]) == 2  # not a checkpoint: clear error, exit 2
