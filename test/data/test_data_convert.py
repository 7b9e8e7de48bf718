"""Bags -> episodes: alignment on the control grid, stale steps, resizing, next-state actions, stats, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from data_helpers import write_synthetic_bag

from tinyvla_ros.data.bag import BagReader
from tinyvla_ros.data.convert import BagLayout, ConvertConfig, bag_to_episode, convert_bags, find_bags
from tinyvla_ros.data.episodes import DatasetError, EpisodeFile, load_info, load_stats
from tinyvla_ros.data.messages import image_rgb, stamp_ns

LAYOUT = BagLayout(
    cameras={"a": "/cam_a", "b": "/cam_b"},
    state_names=("j2", "j0"),
    action_names=("a1", "a0"),
    action_topic="/action",
    fps=10.0,
)


def test_synthetic_bag_aligns_on_the_grid(tmp_path):
    write_synthetic_bag(tmp_path / "bag", steps=12, dt=0.1)
    ep = bag_to_episode(tmp_path / "bag", LAYOUT)
    assert ep.length == 12 and ep.valid.all()
    np.testing.assert_allclose(ep.timestamp, np.arange(12) * 0.1, atol=1e-9)
    assert ep.images["a"][:, 0, 0, 0].tolist() == list(range(12))  # frame k at step k
    assert ep.images["b"][:, 0, 0, 0].tolist() == [100 + k for k in range(12)]
    np.testing.assert_allclose(ep.state, np.stack([np.arange(12) + 0.2, np.arange(12) + 0.0], 1), atol=1e-6)
    np.testing.assert_array_equal(ep.action, np.stack([-np.arange(12.0), 10.0 * np.arange(12)], 1))
    assert ep.instruction == "stack the blocks" and ep.success is True and ep.task == "stack"


def test_camera_gap_marks_stale_steps_invalid(tmp_path):
    write_synthetic_bag(tmp_path / "bag", steps=14, dt=0.1, gap=(5, 10))
    ep = bag_to_episode(tmp_path / "bag", LAYOUT, ConvertConfig(max_gap=0.25))
    # the last frame of camera a before the gap is step 4: 0.1 and 0.2 s old at steps 5, 6; too old at 7..9
    assert np.nonzero(~ep.valid)[0].tolist() == [7, 8, 9]
    assert ep.images["a"][5:10, 0, 0, 0].tolist() == [4] * 5
    assert ep.images["a"][10, 0, 0, 0] == 10
    assert ep.action.shape == (14, 2)  # the action sequence stays continuous


def test_resize_and_next_state_actions(tmp_path):
    write_synthetic_bag(tmp_path / "bag", steps=6, dt=0.1, size=(30, 40))
    layout = BagLayout(cameras={"a": "/cam_a"}, state_names=("j0",), action_names=("j1", "j2"), fps=10.0)
    ep = bag_to_episode(tmp_path / "bag", layout, ConvertConfig(max_side=20))
    assert ep.images["a"].shape == (6, 15, 20, 3)
    ep = bag_to_episode(tmp_path / "bag", layout, ConvertConfig(image_size=(8, 10)))
    assert ep.images["a"].shape == (6, 8, 10, 3)
    expected = np.stack([np.arange(1, 7) + 0.1, np.arange(1, 7) + 0.2], 1)
    expected[-1] = expected[-2]  # the last step repeats its predecessor's target
    np.testing.assert_allclose(ep.action, expected, atol=1e-6)


def test_conversion_errors_name_the_problem(tmp_path):
    write_synthetic_bag(tmp_path / "bag", steps=4)
    with pytest.raises(DatasetError, match="tinyvla_layout"):
        bag_to_episode(tmp_path / "bag")
    bad = BagLayout(cameras={"a": "/nope"}, state_names=("j0",), action_names=("a0",), action_topic="/action")
    with pytest.raises(DatasetError, match=r"lacks topic\(s\) \['/nope'\]"):
        bag_to_episode(tmp_path / "bag", bad)
    wrong_type = BagLayout(cameras={"a": "/joint_states"}, state_names=("j0",), action_names=("a0",))
    with pytest.raises(DatasetError, match="not an image"):
        bag_to_episode(tmp_path / "bag", wrong_type)
    missing_joint = BagLayout(
        cameras={"a": "/cam_a"}, state_names=("elbow",), action_names=("a0",), action_topic="/action"
    )
    with pytest.raises(ValueError, match="elbow"):
        bag_to_episode(tmp_path / "bag", missing_joint)
    with pytest.raises(ValueError, match="fps"):
        BagLayout(cameras={"a": "/cam_a"}, state_names=("j0",), action_names=("a0",), fps=0.0)
    with pytest.raises(DatasetError, match="neither a bag"):
        find_bags([tmp_path / "nothing_here"])


def test_demo_bags_convert_to_the_recorded_values(demo_bags, demo_dataset):
    info = load_info(demo_dataset)
    assert info.camera_names == ("zed_left", "zed_right") and info.fps == pytest.approx(20.0)
    assert info.action_names[-1] == "gripper" and len(info.state_names) == 8
    for entry, bag_path in zip(info.episodes, demo_bags, strict=True):
        ep = EpisodeFile(demo_dataset / entry["file"])
        with BagReader(bag_path) as bag:
            meta = bag.metadata
            actions = [m.decode() for m in bag.messages(["/tinyvla/action"])]
            frames = {
                stamp_ns(m.decode().header.stamp): m
                for m in bag.messages(["/zed_right/zed_node/rgb/color/rect/image"])
            }
            joints = [m.decode() for m in bag.messages(["/joint_states"])]
        assert ep.length == len(actions) == entry["length"] and ep.valid.all()
        assert ep.instruction == meta["instruction"] and entry["success"] is True
        np.testing.assert_allclose(ep.action, [list(a.position) for a in actions], atol=1e-6)
        cols = [list(joints[0].name).index(n) for n in info.state_names]
        np.testing.assert_allclose(ep.state, [np.asarray(j.position)[cols] for j in joints], atol=1e-6)
        for k in (0, ep.length // 2, ep.length - 1):
            stamp = stamp_ns(actions[k].header.stamp)
            np.testing.assert_array_equal(ep.frame("zed_right", k), image_rgb(frames[stamp].decode()))


def test_stats_are_computed_once_over_every_episode(demo_dataset):
    stats = load_stats(demo_dataset)
    files = [EpisodeFile(demo_dataset / e["file"]) for e in load_info(demo_dataset).episodes]
    actions = np.concatenate([f.action for f in files]).astype(np.float64)
    states = np.concatenate([f.state for f in files]).astype(np.float64)
    np.testing.assert_allclose(stats["action"]["min"], actions.min(0), atol=1e-6)
    np.testing.assert_allclose(stats["action"]["max"], actions.max(0), atol=1e-6)
    np.testing.assert_allclose(stats["state"]["mean"], states.mean(0), atol=1e-6)
    np.testing.assert_allclose(stats["state"]["std"], states.std(0), atol=1e-6)
    assert stats["action"]["count"] == actions.shape[0]
    json.dumps(stats, allow_nan=False)  # plain JSON, no pickle


def test_only_successful_bags_and_overwrite(tmp_path):
    write_synthetic_bag(tmp_path / "ok", steps=4)
    write_synthetic_bag(tmp_path / "also_ok", steps=5, storage="sqlite3")
    info = convert_bags(find_bags([tmp_path]), tmp_path / "ds", LAYOUT, ConvertConfig(only_success=True))
    assert [e["length"] for e in info.episodes] == [5, 4]
    with pytest.raises(DatasetError, match="exists already"):
        convert_bags([tmp_path / "ok"], tmp_path / "ds", LAYOUT)
    info = convert_bags([tmp_path / "ok"], tmp_path / "ds", LAYOUT, overwrite=True)
    assert len(info.episodes) == 1 and len(list((tmp_path / "ds" / "episodes").iterdir())) == 1


def test_convert_command_line(tmp_path, capsys):
    from tinyvla_ros.data.convert import main

    write_synthetic_bag(tmp_path / "bags" / "one", steps=5)
    (tmp_path / "layout.yaml").write_text(
        "cameras: {a: /cam_a}\nstate_names: [j0, j1]\naction_names: [a0, a1]\naction_topic: /action\nfps: 10\n"
    )
    argv = [
        str(tmp_path / "bags"),
        "--out",
        str(tmp_path / "ds"),
        "--layout",
        str(tmp_path / "layout.yaml"),
        "--image-size",
        "8x8",
    ]
    assert main(argv) == 0
    assert "1 episodes, 5 steps (5 valid) at 10 Hz" in capsys.readouterr().out
    assert load_info(tmp_path / "ds").image_shapes == {"a": [8, 8, 3]}
    assert main([str(tmp_path / "bags"), "--out", str(tmp_path / "ds2")]) == 2  # no layout: a clear error
    assert "tinyvla_layout" in capsys.readouterr().err
