"""Importers on small files written here in the official TinyVLA/ACT HDF5 and LeRobot v2.1 / v3.0 layouts."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from tinyvla_ros.data.episodes import DatasetError, EpisodeFile, load_info, load_stats
from tinyvla_ros.data.importers import ImportConfig, import_hdf5, import_lerobot

h5py = pytest.importorskip("h5py")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
PIL = pytest.importorskip("PIL.Image")


def _frames(n: int, h: int, w: int, base: int) -> np.ndarray:
    """(n, h, w, 3) uint8: frame k is a flat colour (base + 17 k, 255 - 17 k, 40) mod 256 plus a small gradient."""
    out = np.zeros((n, h, w, 3), np.uint8)
    for k in range(n):
        out[k] = ((base + 17 * k) % 256, (255 - 17 * k) % 256, 40)
        out[k, :, :, 2] += np.arange(w, dtype=np.uint8)[None, :] % 8
    return out


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PIL.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _write_act_hdf5(path: Path, n: int, compressed: bool, language: str | None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(len(str(path)))
    data = {
        "action": rng.normal(size=(n, 10)).astype(np.float32),
        "qpos": rng.normal(size=(n, 7)).astype(np.float32),
        "left": _frames(n, 18, 32, 0),
        "right": _frames(n, 18, 32, 50),
    }
    with h5py.File(path, "w") as f:
        f.attrs["sim"] = False
        f["action"] = data["action"]
        f["observations/qpos"] = data["qpos"]
        f["observations/qvel"] = np.zeros_like(data["qpos"])
        if language is not None:
            f["language_raw"] = np.array([language.encode()])
        if compressed:
            encoded = [[_png(img) for img in data[cam]] for cam in ("left", "right")]
            length = max(len(b) for rows in encoded for b in rows)
            f["compress_len"] = np.array([[len(b) for b in rows] for rows in encoded])
            for cam, rows in zip(("left", "right"), encoded, strict=True):
                padded = np.zeros((n, length), np.uint8)
                for t, b in enumerate(rows):
                    padded[t, : len(b)] = np.frombuffer(b, np.uint8)
                f[f"observations/images/{cam}"] = padded
        else:
            for cam in ("left", "right"):
                f[f"observations/images/{cam}"] = data[cam]
    return data


@pytest.mark.parametrize("compressed", [False, True])
def test_act_hdf5_episodes_import(tmp_path, compressed):
    originals = [
        _write_act_hdf5(tmp_path / f"episode_{i}.hdf5", n, compressed, "put the cup on the plate")
        for i, n in enumerate((6, 9))
    ]
    info = import_hdf5(sorted(tmp_path.glob("*.hdf5")), tmp_path / "ds", fps=50.0)
    assert info.camera_names == ("left", "right") and info.fps == 50.0
    assert [e["length"] for e in info.episodes] == [6, 9]
    assert info.action_names[0] == "action_0" and len(info.state_names) == 7
    for entry, data in zip(info.episodes, originals, strict=True):
        ep = EpisodeFile(tmp_path / "ds" / entry["file"]).load()
        assert ep.instruction == "put the cup on the plate"
        np.testing.assert_array_equal(ep.action, data["action"])
        np.testing.assert_array_equal(ep.state, data["qpos"])
        np.testing.assert_array_equal(ep.images["right"], data["right"])  # PNG is lossless
        np.testing.assert_allclose(ep.timestamp, np.arange(len(ep.action)) / 50.0)
    stats = load_stats(tmp_path / "ds")
    both = np.concatenate([d["action"] for d in originals])
    np.testing.assert_allclose(stats["action"]["max"], both.max(0), atol=1e-6)


def test_act_hdf5_without_language_needs_an_instruction(tmp_path):
    _write_act_hdf5(tmp_path / "ep.hdf5", 4, False, None)
    with pytest.raises(DatasetError, match="instruction"):
        import_hdf5([tmp_path / "ep.hdf5"], tmp_path / "ds")
    info = import_hdf5(
        [tmp_path / "ep.hdf5"], tmp_path / "ds2", cfg=ImportConfig(instruction="wipe the table")
    )
    assert info.episodes[0]["instruction"] == "wipe the table"
    with h5py.File(tmp_path / "bad.hdf5", "w") as f:
        f["action"] = np.zeros((3, 2))
    with pytest.raises(DatasetError, match="qpos"):
        import_hdf5([tmp_path / "bad.hdf5"], tmp_path / "ds3")


def _lerobot_info(version: str, fps: int, features: dict, **paths: str) -> dict:
    base = {"state": {"dtype": "float32", "shape": [3], "names": ["x", "y", "z"]},
            "action": {"dtype": "float32", "shape": [2], "names": None}}  # fmt: skip
    feats = {"observation.state": base["state"], "action": base["action"], **features}
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        feats[key] = {"dtype": "float32" if key == "timestamp" else "int64", "shape": [1], "names": None}
    return {
        "codebase_version": version,
        "fps": fps,
        "robot_type": "so100",
        "chunks_size": 1000,
        "features": feats,
        **paths,
    }


def _table(ep: int, n: int, fps: int, start: int, task_index: int, extra: dict) -> dict:
    rng = np.random.default_rng(ep)
    return {
        "observation.state": rng.normal(size=(n, 3)).astype(np.float32).tolist(),
        "action": rng.normal(size=(n, 2)).astype(np.float32).tolist(),
        "timestamp": (np.arange(n) / fps).astype(np.float32).tolist(),
        "frame_index": list(range(n)),
        "episode_index": [ep] * n,
        "index": list(range(start, start + n)),
        "task_index": [task_index] * n,
        **extra,
    }


def test_lerobot_v21_with_images_in_parquet(tmp_path):
    root = tmp_path / "lerobot21"
    (root / "meta").mkdir(parents=True)
    (root / "data" / "chunk-000").mkdir(parents=True)
    image_feature = {
        "observation.images.top": {"dtype": "image", "shape": [12, 16, 3], "names": ["h", "w", "c"]}
    }
    info = _lerobot_info("v2.1", 10, image_feature,
                         data_path="data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet")  # fmt: skip
    (root / "meta" / "info.json").write_text(json.dumps(info))
    (root / "meta" / "tasks.jsonl").write_text('{"task_index": 0, "task": "fold the towel"}\n')
    tables, frames, start = [], [], 0
    for ep, n in enumerate((5, 7)):
        imgs = _frames(n, 12, 16, 10 * ep)
        cells = [{"bytes": _png(img), "path": None} for img in imgs]
        table = _table(ep, n, 10, start, 0, {"observation.images.top": cells})
        pq.write_table(pa.table(table), root / "data" / "chunk-000" / f"episode_{ep:06d}.parquet")
        tables.append(table)
        frames.append(imgs)
        start += n
    lines = [
        json.dumps({"episode_index": ep, "tasks": ["fold the towel"], "length": n})
        for ep, n in enumerate((5, 7))
    ]
    (root / "meta" / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    out = import_lerobot(root, tmp_path / "ds")
    assert out.camera_names == ("top",) and out.state_names == ("x", "y", "z") and out.fps == 10.0
    assert out.action_names == ("action_0", "action_1") and out.robot == "so100"
    for entry, table, imgs in zip(out.episodes, tables, frames, strict=True):
        ep = EpisodeFile(tmp_path / "ds" / entry["file"]).load()
        assert ep.instruction == "fold the towel"
        np.testing.assert_array_equal(ep.images["top"], imgs)
        np.testing.assert_allclose(ep.state, table["observation.state"])
        np.testing.assert_allclose(ep.action, table["action"])


def _write_video(path: Path, frames: np.ndarray, fps: int) -> None:
    av = pytest.importorskip("av")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"qp": "0"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv444p"
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_lerobot_v30_with_video_holding_two_episodes(tmp_path):
    pytest.importorskip("av")
    root = tmp_path / "lerobot30"
    fps, lengths = 10, (6, 8)
    video_feature = {
        "observation.images.wrist": {"dtype": "video", "shape": [16, 32, 3], "names": ["h", "w", "c"]}
    }
    info = _lerobot_info(
        "v3.0", fps, video_feature,
        data_path="data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        video_path="videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
    )  # fmt: skip
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    (root / "data" / "chunk-000").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info))
    pq.write_table(
        pa.table({"task_index": [0, 1], "task": ["open the box", "close the box"]}),
        root / "meta" / "tasks.parquet",
    )
    all_frames = _frames(sum(lengths), 16, 32, 0)
    _write_video(root / "videos" / "observation.images.wrist" / "chunk-000" / "file-000.mp4", all_frames, fps)
    columns: dict[str, list] = {}
    rows, start = [], 0
    for ep, n in enumerate(lengths):
        for key, values in _table(ep, n, fps, start, ep, {}).items():
            columns.setdefault(key, []).extend(values)
        key = "videos/observation.images.wrist"
        rows.append({"episode_index": ep, "tasks": [["open the box", "close the box"][ep]], "length": n,
                     "data/chunk_index": 0, "data/file_index": 0, "dataset_from_index": start,
                     "dataset_to_index": start + n, f"{key}/chunk_index": 0, f"{key}/file_index": 0,
                     f"{key}/from_timestamp": start / fps, f"{key}/to_timestamp": (start + n) / fps})  # fmt: skip
        start += n
    pq.write_table(pa.table(columns), root / "data" / "chunk-000" / "file-000.parquet")
    pq.write_table(pa.Table.from_pylist(rows), root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    out = import_lerobot(
        root, tmp_path / "ds", cfg=ImportConfig(camera_names={"observation.images.wrist": "wrist_cam"})
    )
    assert out.camera_names == ("wrist_cam",) and [e["length"] for e in out.episodes] == list(lengths)
    assert [e["instruction"] for e in out.episodes] == ["open the box", "close the box"]
    offset = 0
    for entry, n in zip(out.episodes, lengths, strict=True):
        ep = EpisodeFile(tmp_path / "ds" / entry["file"]).load()
        diff = np.abs(ep.images["wrist_cam"].astype(int) - all_frames[offset : offset + n].astype(int))
        assert diff.max() <= 4, "each episode must get its own frames (consecutive frames differ by 17)"
        offset += n
    assert load_info(tmp_path / "ds").source == "lerobot v3.0"


def test_lerobot_errors(tmp_path):
    with pytest.raises(DatasetError, match="meta/info.json"):
        import_lerobot(tmp_path, tmp_path / "ds")
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "info.json").write_text(
        json.dumps({"codebase_version": "v1.6", "fps": 10, "features": {}})
    )
    with pytest.raises(DatasetError, match="v1.6"):
        import_lerobot(tmp_path, tmp_path / "ds")


def test_import_command_line(tmp_path, capsys):
    from tinyvla_ros.data.importers import main

    (tmp_path / "raw").mkdir()
    _write_act_hdf5(tmp_path / "raw" / "episode_0.hdf5", 5, False, "stack cups")
    argv = [
        "hdf5",
        str(tmp_path / "raw"),
        "--out",
        str(tmp_path / "ds"),
        "--fps",
        "30",
        "--camera",
        "left=cam_high",
    ]
    assert main(argv) == 0
    assert "1 episodes, 5 steps at 30 Hz" in capsys.readouterr().out
    assert load_info(tmp_path / "ds").camera_names == ("cam_high", "right")
    assert main(["lerobot", str(tmp_path / "raw"), "--out", str(tmp_path / "ds2")]) == 2
    assert "meta/info.json" in capsys.readouterr().err
