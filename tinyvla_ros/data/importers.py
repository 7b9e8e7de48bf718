"""Importers: the official TinyVLA / ACT HDF5 episodes and LeRobot datasets -> an episode dataset.

TinyVLA / ACT (ALOHA) HDF5, one file per episode::

    /action                       (T, A) float
    /observations/qpos            (T, Ds) float          -> state
    /observations/qvel            (T, Ds) float          (read, not used for training)
    /observations/images/<cam>    (T, H, W, 3) uint8     or (T, L) uint8 JPEG/PNG bytes with
    /compress_len                 (n_cams, T)            (ALOHA "compressed" variant)
    /language_raw                 string, bytes, or an array of them (the instruction)

LeRobot (``meta/info.json`` ``codebase_version``):
    v2.0 / v2.1  data/chunk-XXX/episode_XXXXXX.parquet, meta/episodes.jsonl, meta/tasks.jsonl
    v3.0         data/chunk-XXX/file-XXX.parquet (several episodes per file),
                 meta/episodes/chunk-XXX/file-XXX.parquet, meta/tasks.parquet
Image features (``dtype: image``) are PNG/JPEG bytes in the parquet (or a file path); video
features (``dtype: video``) are MP4 files decoded with PyAV (``pip install av``), a clear
ImportError naming the package otherwise.

Every importer writes the same on-disk format as the bag converter (tinyvla_ros.data.episodes).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinyvla_ros.data.convert import resize_rgb, target_size
from tinyvla_ros.data.episodes import DatasetError, DatasetInfo, DatasetWriter, Episode

LEROBOT_VERSIONS = ("v2.0", "v2.1", "v3.0")


@dataclass(frozen=True)
class ImportConfig:
    """Options shared by the importers.

    max_side: frames are downscaled so that the longer side is at most this (0 keeps them).
    camera_names: rename cameras (source key -> dataset camera name); keys not listed keep
        their name (LeRobot keys lose the ``observation.images.`` prefix).
    instruction: used when a file carries none (or to override it when ``force_instruction``).
    """

    max_side: int = 320
    camera_names: dict[str, str] | None = None
    instruction: str = ""
    force_instruction: bool = False
    state_names: tuple[str, ...] | None = None
    action_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.max_side < 0 or 0 < self.max_side < 8:
            raise ValueError(f"ImportConfig.max_side must be 0 or >= 8, got {self.max_side!r}")

    def camera(self, key: str) -> str:
        if self.camera_names and key in self.camera_names:
            return self.camera_names[key]
        return key.removeprefix("observation.images.")


def _h5py():
    try:
        import h5py
    except ImportError as exc:
        raise ImportError("reading HDF5 episodes needs h5py: pip install h5py") from exc
    return h5py


def _resize_all(frames: np.ndarray, max_side: int) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, H', W', 3) uint8 with the longer side <= max_side."""
    from tinyvla_ros.data.convert import ConvertConfig

    size = target_size(frames.shape[1], frames.shape[2], ConvertConfig(max_side=max_side))
    if size == tuple(frames.shape[1:3]):
        return np.ascontiguousarray(frames)
    return np.stack([resize_rgb(f, size) for f in frames])


def _decode_bytes(data: bytes, where: str) -> np.ndarray:
    """PNG/JPEG bytes -> (H, W, 3) uint8 RGB."""
    from tinyvla_ros.core.images import decode_compressed

    kind = "png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "jpeg"
    try:
        return decode_compressed(kind, data)
    except ValueError as exc:
        raise DatasetError(f"{where}: cannot decode image bytes: {exc}") from exc


def _names(given: tuple[str, ...] | None, prefix: str, dim: int, what: str) -> tuple[str, ...]:
    if given is None:
        return tuple(f"{prefix}_{i}" for i in range(dim))
    if len(given) != dim:
        raise DatasetError(f"{len(given)} {what} names given for {dim} {what} dimensions: {list(given)}")
    return tuple(given)


# --- TinyVLA / ACT HDF5 -----------------------------------------------------------------------


def _language(f: Any, path: Path) -> str:
    if "language_raw" not in f:
        return ""
    value = f["language_raw"][()]
    arr = np.asarray(value)
    item = arr.reshape(-1)[0] if arr.ndim > 0 and arr.size else value
    if isinstance(item, bytes | np.bytes_):
        return bytes(item).decode("utf-8").strip()
    return str(item).strip()


def _hdf5_images(f: Any, path: Path, cfg: ImportConfig) -> dict[str, np.ndarray]:
    if "observations/images" not in f:
        raise DatasetError(f"{path}: no /observations/images group")
    group = f["observations/images"]
    lengths = np.asarray(f["compress_len"]) if "compress_len" in f else None
    out: dict[str, np.ndarray] = {}
    for c, key in enumerate(group.keys()):
        data = np.asarray(group[key])
        if data.ndim == 4 and data.shape[3] == 3 and data.dtype == np.uint8:
            frames = data  # (T, H, W, 3)
        elif data.ndim == 2 and data.dtype == np.uint8:  # (T, L) encoded bytes
            rows = [
                bytes(row[: int(lengths[c, t])] if lengths is not None else row) for t, row in enumerate(data)
            ]
            frames = np.stack(
                [_decode_bytes(r, f"{path}:/observations/images/{key}[{t}]") for t, r in enumerate(rows)]
            )
        else:
            raise DatasetError(
                f"{path}: /observations/images/{key} must be (T, H, W, 3) uint8 or (T, L) encoded bytes, "
                f"got {data.shape} {data.dtype}"
            )
        out[cfg.camera(key)] = _resize_all(frames, cfg.max_side)
    return out


def read_hdf5_episode(path: str | Path, fps: float, cfg: ImportConfig | None = None) -> Episode:
    """One TinyVLA/ACT HDF5 file -> Episode (timestamps = step / fps)."""
    cfg = cfg or ImportConfig()
    path = Path(path)
    h5py = _h5py()
    with h5py.File(path, "r") as f:
        for need in ("action", "observations/qpos"):
            if need not in f:
                raise DatasetError(f"{path}: missing dataset /{need} (not an ACT/TinyVLA episode file)")
        action = np.asarray(f["action"], dtype=np.float32)  # (T, A)
        state = np.asarray(f["observations/qpos"], dtype=np.float32)  # (T, Ds)
        if action.ndim != 2 or state.ndim != 2 or action.shape[0] != state.shape[0]:
            raise DatasetError(
                f"{path}: /action {action.shape} and /observations/qpos {state.shape} do not align"
            )
        images = _hdf5_images(f, path, cfg)
        language = _language(f, path)
        sim = bool(f.attrs.get("sim", False))
    for cam, frames in images.items():
        if frames.shape[0] != action.shape[0]:
            raise DatasetError(
                f"{path}: camera {cam!r} has {frames.shape[0]} frames for {action.shape[0]} actions"
            )
    instruction = cfg.instruction if (cfg.force_instruction or not language) else language
    return Episode(
        images=images,
        state=state,
        action=action,
        timestamp=np.arange(action.shape[0]) / float(fps),
        instruction=instruction,
        source=path.name,
        extra={"sim": json.dumps(sim)},
    )


def import_hdf5(
    files: Sequence[str | Path],
    out_dir: str | Path,
    fps: float = 50.0,
    cfg: ImportConfig | None = None,
    overwrite: bool = False,
) -> DatasetInfo:
    """TinyVLA/ACT HDF5 episode files -> an episode dataset directory."""
    cfg = cfg or ImportConfig()
    if not files:
        raise DatasetError("no HDF5 files to import")
    writer: DatasetWriter | None = None
    for path in sorted(map(Path, files)):
        episode = read_hdf5_episode(path, fps, cfg)
        if writer is None:
            writer = DatasetWriter(
                out_dir,
                fps,
                sorted(episode.images),
                _names(cfg.state_names, "qpos", episode.state.shape[1], "state"),
                _names(cfg.action_names, "action", episode.action.shape[1], "action"),
                source="hdf5",
                overwrite=overwrite,
            )
        writer.add(episode)
    return writer.close()


# --- LeRobot ----------------------------------------------------------------------------------


def _pyarrow_parquet():
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError("reading LeRobot datasets needs pyarrow: pip install pyarrow") from exc
    return pq


def _av():
    try:
        import av
    except ImportError as exc:
        raise ImportError(
            "this LeRobot dataset stores cameras as video: decoding needs PyAV (pip install av)"
        ) from exc
    return av


@dataclass
class _LeRobotEpisode:
    index: int
    length: int
    tasks: list[str]
    row: dict[str, Any]


class LeRobotSource:
    """A LeRobot dataset directory (v2.0, v2.1 or v3.0) read without the lerobot package."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        info_path = self.root / "meta" / "info.json"
        if not info_path.is_file():
            raise DatasetError(f"{str(self.root)!r} is not a LeRobot dataset: meta/info.json is missing")
        self.info = json.loads(info_path.read_text())
        self.version = str(self.info.get("codebase_version", ""))
        if self.version not in LEROBOT_VERSIONS:
            raise DatasetError(
                f"{info_path}: codebase_version {self.version!r} is not supported (supported: {list(LEROBOT_VERSIONS)})"
            )
        self.fps = float(self.info["fps"])
        self.features: dict[str, dict[str, Any]] = self.info["features"]
        self.camera_keys = [k for k, v in self.features.items() if v.get("dtype") in ("image", "video")]
        self.episodes = self._episodes()

    # ------------------------------------------------------------------ metadata
    def _episodes(self) -> list[_LeRobotEpisode]:
        if self.version == "v3.0":
            pq = _pyarrow_parquet()
            files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
            if not files:
                raise DatasetError(f"{self.root}: meta/episodes/chunk-*/file-*.parquet not found")
            rows = [r for p in files for r in pq.read_table(p).to_pylist()]
        else:
            path = self.root / "meta" / "episodes.jsonl"
            if not path.is_file():
                raise DatasetError(f"{self.root}: meta/episodes.jsonl not found")
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [
            _LeRobotEpisode(int(r["episode_index"]), int(r["length"]), list(r.get("tasks") or []), r)
            for r in sorted(rows, key=lambda r: int(r["episode_index"]))
        ]

    def _tasks(self) -> dict[int, str]:
        """task_index -> task text."""
        if self.version == "v3.0":
            path = self.root / "meta" / "tasks.parquet"
            if not path.is_file():
                return {}
            table = _pyarrow_parquet().read_table(path).to_pydict()
            text = table.get("task") or table.get("__index_level_0__") or []
            return {int(i): str(t) for i, t in zip(table["task_index"], text, strict=True)}
        path = self.root / "meta" / "tasks.jsonl"
        if not path.is_file():
            return {}
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return {int(r["task_index"]): str(r["task"]) for r in rows}

    # ------------------------------------------------------------------ data
    def _data_table(self, ep: _LeRobotEpisode) -> dict[str, list]:
        pq = _pyarrow_parquet()
        chunks = int(self.info.get("chunks_size", 1000))
        if self.version == "v3.0":
            rel = self.info["data_path"].format(
                chunk_index=int(ep.row["data/chunk_index"]), file_index=int(ep.row["data/file_index"])
            )
        else:
            rel = self.info["data_path"].format(episode_chunk=ep.index // chunks, episode_index=ep.index)
        path = self.root / rel
        if not path.is_file():
            raise DatasetError(f"{self.root}: data file {rel} of episode {ep.index} is missing")
        table = pq.read_table(path, filters=[("episode_index", "=", ep.index)]).to_pydict()
        order = np.argsort(np.asarray(table["frame_index"]))
        table = {k: [v[i] for i in order] for k, v in table.items()}
        if len(table["frame_index"]) != ep.length:
            raise DatasetError(
                f"{path}: episode {ep.index} has {len(table['frame_index'])} rows, metadata says {ep.length}"
            )
        return table

    def _image_column(self, key: str, values: list) -> np.ndarray:
        frames = []
        for t, v in enumerate(values):
            where = f"{self.root}: {key}[{t}]"
            if isinstance(v, dict) and v.get("bytes"):
                frames.append(_decode_bytes(bytes(v["bytes"]), where))
            elif isinstance(v, dict) and v.get("path"):
                frames.append(_decode_bytes((self.root / v["path"]).read_bytes(), where))
            else:
                raise DatasetError(f"{where}: image cell has neither bytes nor path")
        return np.stack(frames)

    def _video(self, key: str, ep: _LeRobotEpisode, timestamps: np.ndarray) -> np.ndarray:
        """Frames of ``key`` nearest to each timestamp (episode time, s) -> (T, H, W, 3) uint8."""
        chunks = int(self.info.get("chunks_size", 1000))
        if self.version == "v3.0":
            rel = self.info["video_path"].format(
                video_key=key,
                chunk_index=int(ep.row[f"videos/{key}/chunk_index"]),
                file_index=int(ep.row[f"videos/{key}/file_index"]),
            )
            offset = float(ep.row.get(f"videos/{key}/from_timestamp", 0.0))
        else:
            rel = self.info["video_path"].format(
                episode_chunk=ep.index // chunks, video_key=key, episode_index=ep.index
            )
            offset = 0.0
        path = self.root / rel
        if not path.is_file():
            raise DatasetError(f"{self.root}: video {rel} of episode {ep.index} is missing")
        return decode_video_frames(path, offset + timestamps, tolerance=0.5 / self.fps)

    def episode(
        self, ep: _LeRobotEpisode, cfg: ImportConfig, state_key: str, action_key: str, tasks: dict
    ) -> Episode:
        table = self._data_table(ep)
        for key in (state_key, action_key):
            if key not in table:
                raise DatasetError(
                    f"{self.root}: episode {ep.index} has no column {key!r}; columns: {sorted(table)}"
                )
        timestamps = np.asarray(table.get("timestamp", np.arange(ep.length) / self.fps), dtype=np.float64)
        images = {}
        for key in self.camera_keys:
            if self.features[key]["dtype"] == "video":
                frames = self._video(key, ep, timestamps)
            else:
                frames = self._image_column(key, table[key])
            images[cfg.camera(key)] = _resize_all(frames, cfg.max_side)
        task = (
            ep.tasks[0]
            if ep.tasks
            else tasks.get(int(table["task_index"][0]), "")
            if "task_index" in table
            else ""
        )
        instruction = cfg.instruction if (cfg.force_instruction or not task) else task
        return Episode(
            images=images,
            state=np.asarray(table[state_key], dtype=np.float32).reshape(ep.length, -1),
            action=np.asarray(table[action_key], dtype=np.float32).reshape(ep.length, -1),
            timestamp=timestamps - timestamps[0],
            instruction=instruction,
            task=task,
            source=f"lerobot:{self.version}:episode_{ep.index:06d}",
        )

    def feature_names(self, key: str) -> tuple[str, ...] | None:
        names = self.features.get(key, {}).get("names")
        if isinstance(names, dict):  # {"motors": [...]}
            names = next(iter(names.values()), None)
        if (
            isinstance(names, list)
            and names
            and all(isinstance(n, str) for n in names)
            and len(set(names)) == len(names)
        ):
            return tuple(names)
        return None


def decode_video_frames(path: str | Path, times: np.ndarray, tolerance: float) -> np.ndarray:
    """Frames of the first video stream of ``path`` nearest to ``times`` (s) -> (N, H, W, 3) uint8.

    Raises DatasetError when a requested time has no frame within ``tolerance`` seconds.
    """
    av = _av()
    times = np.asarray(times, dtype=np.float64)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start = float(times.min()) - tolerance
        if start > 0 and stream.time_base is not None:
            container.seek(
                int(start / float(stream.time_base)), stream=stream, backward=True, any_frame=False
            )
        stamps: list[float] = []
        frames: list[np.ndarray] = []
        stop = float(times.max()) + tolerance
        for frame in container.decode(stream):
            t = float(frame.time)
            if t < start:
                continue
            if t > stop:
                break
            stamps.append(t)
            frames.append(frame.to_ndarray(format="rgb24"))
    if not frames:
        raise DatasetError(f"{path}: no video frames between {times.min():.3f} s and {times.max():.3f} s")
    stamp_arr = np.asarray(stamps)
    nearest = np.abs(stamp_arr[None, :] - times[:, None]).argmin(axis=1)  # (N,)
    worst = float(np.abs(stamp_arr[nearest] - times).max())
    if worst > tolerance:
        raise DatasetError(
            f"{path}: a requested frame time is {worst:.3f} s from any decoded frame (> {tolerance:.3f})"
        )
    return np.stack([frames[i] for i in nearest])


def import_lerobot(
    root: str | Path,
    out_dir: str | Path,
    cfg: ImportConfig | None = None,
    state_key: str = "observation.state",
    action_key: str = "action",
    episodes: Sequence[int] | None = None,
    overwrite: bool = False,
) -> DatasetInfo:
    """A LeRobot v2.0/v2.1/v3.0 dataset directory -> an episode dataset directory."""
    cfg = cfg or ImportConfig()
    source = LeRobotSource(root)
    if not source.camera_keys:
        raise DatasetError(f"{root}: the LeRobot dataset has no image or video feature")
    chosen = [e for e in source.episodes if episodes is None or e.index in set(episodes)]
    if not chosen:
        raise DatasetError(f"{root}: no episodes selected (asked {episodes!r})")
    tasks = source._tasks()
    writer: DatasetWriter | None = None
    for ep in chosen:
        episode = source.episode(ep, cfg, state_key, action_key, tasks)
        if writer is None:
            state_names = cfg.state_names or source.feature_names(state_key)
            action_names = cfg.action_names or source.feature_names(action_key)
            writer = DatasetWriter(
                out_dir,
                source.fps,
                [cfg.camera(k) for k in source.camera_keys],
                _names(state_names, "state", episode.state.shape[1], "state"),
                _names(action_names, "action", episode.action.shape[1], "action"),
                robot=str(source.info.get("robot_type") or ""),
                source=f"lerobot {source.version}",
                overwrite=overwrite,
            )
        writer.add(episode)
    return writer.close()


def main(argv: list[str] | None = None) -> int:
    """``tinyvla-import hdf5 FILE ... --out DATASET`` or ``tinyvla-import lerobot ROOT --out DATASET``"""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="tinyvla-import", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="kind", required=True)
    h5 = sub.add_parser("hdf5", help="TinyVLA / ACT episode files")
    h5.add_argument("files", nargs="+", help="episode_*.hdf5 files (or directories holding them)")
    h5.add_argument("--fps", type=float, default=50.0, help="control rate of the recordings (Hz)")
    lr = sub.add_parser("lerobot", help="a LeRobot v2.0 / v2.1 / v3.0 dataset directory")
    lr.add_argument("root")
    lr.add_argument("--state-key", default="observation.state")
    lr.add_argument("--action-key", default="action")
    lr.add_argument("--episodes", type=int, nargs="+", default=None, help="episode indices (default: all)")
    for s in (h5, lr):
        s.add_argument("--out", required=True, help="dataset directory to write")
        s.add_argument(
            "--max-side", type=int, default=320, help="downscale frames so the longer side fits (0: keep)"
        )
        s.add_argument("--instruction", default="", help="instruction where the data has none")
        s.add_argument("--force-instruction", action="store_true", help="use --instruction for every episode")
        s.add_argument("--camera", action="append", default=[], metavar="KEY=NAME", help="rename a camera")
        s.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    try:
        renames = dict(item.split("=", 1) for item in args.camera)
        cfg = ImportConfig(args.max_side, renames or None, args.instruction, args.force_instruction)
        if args.kind == "hdf5":
            files = [
                f for x in map(Path, args.files) for f in (sorted(x.glob("*.hdf5")) if x.is_dir() else [x])
            ]
            info = import_hdf5(files, args.out, args.fps, cfg, overwrite=args.overwrite)
        else:
            info = import_lerobot(
                args.root,
                args.out,
                cfg,
                args.state_key,
                args.action_key,
                args.episodes,
                overwrite=args.overwrite,
            )
    except (ValueError, OSError, ImportError) as exc:
        print(f"tinyvla-import: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(
        f"{args.out}: {len(info.episodes)} episodes, {info.total_steps} steps at {info.fps:g} Hz, cameras {info.camera_names}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
