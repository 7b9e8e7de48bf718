"""The on-disk episode dataset: one safetensors file per episode plus JSON metadata and statistics.

Layout of a dataset directory (format ``tinyvla-episodes``, version 1)::

    info.json                       fps, camera names and image shapes, state/action names,
                                    one entry per episode (file, length, instruction, success...)
    stats.json                      normalisation statistics over all valid steps (no pickle)
    episodes/episode_000000.safetensors

Each episode file holds, for T control steps at ``fps``:

    images.<camera>   (T, H, W, 3) uint8 RGB    (one tensor per camera; sizes may differ per camera)
    state             (T, Ds) float32           robot units (joint positions, gripper...)
    action            (T, A)  float32           robot units, the command issued at step t
    timestamp         (T,)    float64           seconds since the episode's first step
    valid             (T,)    bool              False where an observation was stale (camera gap)

safetensors files are memory-mapped: a training sample reads one frame per camera, never the
whole episode. Nothing here uses pickle.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "tinyvla-episodes"
VERSION = 1
INFO_FILE = "info.json"
STATS_FILE = "stats.json"
EPISODE_DIR = "episodes"


class DatasetError(ValueError):
    """A dataset or episode that does not fit the format (the file and the field are named)."""


def _safetensors_numpy():
    try:
        from safetensors import safe_open
        from safetensors.numpy import save_file
    except ImportError as exc:  # pragma: no cover - safetensors comes with the ML requirements
        raise ImportError("episode datasets need safetensors: pip install -r requirements/ml.txt") from exc
    return safe_open, save_file


@dataclass
class Episode:
    """One episode in memory (shapes in the module docstring)."""

    images: dict[str, np.ndarray]
    state: np.ndarray
    action: np.ndarray
    timestamp: np.ndarray
    instruction: str
    valid: np.ndarray | None = None
    success: bool | None = None
    task: str = ""
    source: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state = np.ascontiguousarray(self.state, dtype=np.float32)
        self.action = np.ascontiguousarray(self.action, dtype=np.float32)
        self.timestamp = np.ascontiguousarray(self.timestamp, dtype=np.float64)
        n = self.length
        if self.valid is None:
            self.valid = np.ones(n, dtype=bool)
        self.valid = np.ascontiguousarray(self.valid, dtype=bool)
        self._check(n)

    @property
    def length(self) -> int:
        return int(self.action.shape[0]) if self.action.ndim >= 1 else 0

    def _check(self, n: int) -> None:
        if n < 1:
            raise DatasetError(f"episode must have at least one step, got action shape {self.action.shape}")
        if self.action.ndim != 2:
            raise DatasetError(f"episode action must be (T, A), got shape {self.action.shape}")
        if self.state.ndim != 2 or self.state.shape[0] != n:
            raise DatasetError(f"episode state must be (T={n}, Ds), got shape {self.state.shape}")
        if self.timestamp.shape != (n,) or self.valid.shape != (n,):
            raise DatasetError(
                f"episode timestamp/valid must be (T={n},), got {self.timestamp.shape} / {self.valid.shape}"
            )
        if not self.images:
            raise DatasetError("episode has no camera images")
        for cam, frames in self.images.items():
            if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[0] != n or frames.shape[3] != 3:
                raise DatasetError(
                    f"episode images[{cam!r}] must be (T={n}, H, W, 3) uint8, got {frames.shape} {frames.dtype}"
                )
        if not np.all(np.isfinite(self.action)) or not np.all(np.isfinite(self.state)):
            raise DatasetError("episode state/action contain non-finite values")
        if not isinstance(self.instruction, str) or not self.instruction.strip():
            raise DatasetError(f"episode instruction must be a non-empty string, got {self.instruction!r}")


# --- statistics -----------------------------------------------------------------------------


@dataclass
class RunningStats:
    """Per-dimension min, max, mean, std (Chan's parallel update, float64) over rows of (N, D)."""

    dim: int
    count: int = 0
    mean: np.ndarray = field(default=None)  # type: ignore[assignment]
    m2: np.ndarray = field(default=None)  # type: ignore[assignment]
    minimum: np.ndarray = field(default=None)  # type: ignore[assignment]
    maximum: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.mean = np.zeros(self.dim) if self.mean is None else self.mean
        self.m2 = np.zeros(self.dim) if self.m2 is None else self.m2
        self.minimum = np.full(self.dim, np.inf) if self.minimum is None else self.minimum
        self.maximum = np.full(self.dim, -np.inf) if self.maximum is None else self.maximum

    def update(self, rows: np.ndarray) -> None:
        """Add rows (N, D)."""
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, self.dim)
        n = rows.shape[0]
        if n == 0:
            return
        batch_mean = rows.mean(axis=0)
        batch_m2 = ((rows - batch_mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + batch_m2 + delta**2 * self.count * n / total
        self.count = total
        self.minimum = np.minimum(self.minimum, rows.min(axis=0))
        self.maximum = np.maximum(self.maximum, rows.max(axis=0))

    def to_dict(self) -> dict[str, Any]:
        std = np.sqrt(self.m2 / max(self.count, 1))
        return {
            "count": int(self.count),
            "min": self.minimum.tolist(),
            "max": self.maximum.tolist(),
            "mean": self.mean.tolist(),
            "std": std.tolist(),
        }


def compute_stats(episodes: Sequence[Episode]) -> dict[str, Any]:
    """{"action": {...}, "state": {...}} over the valid steps of ``episodes`` (see RunningStats)."""
    if not episodes:
        raise DatasetError("cannot compute statistics of zero episodes")
    action = RunningStats(episodes[0].action.shape[1])
    state = RunningStats(episodes[0].state.shape[1])
    for ep in episodes:
        action.update(ep.action)  # every commanded action is a valid target
        state.update(ep.state[ep.valid])
    return {"action": action.to_dict(), "state": state.to_dict()}


# --- writing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetInfo:
    """info.json: what every episode of a dataset shares, and the list of episodes."""

    fps: float
    camera_names: tuple[str, ...]
    state_names: tuple[str, ...]
    action_names: tuple[str, ...]
    robot: str = ""
    episodes: tuple[dict[str, Any], ...] = ()
    image_shapes: dict[str, list[int]] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        if not (isinstance(self.fps, int | float) and math.isfinite(self.fps) and self.fps > 0):
            raise DatasetError(f"dataset fps must be a finite number > 0, got {self.fps!r}")
        for name in ("camera_names", "state_names", "action_names"):
            values = getattr(self, name)
            if (
                not values
                or len(set(values)) != len(values)
                or not all(isinstance(v, str) and v for v in values)
            ):
                raise DatasetError(f"dataset {name} must be unique non-empty names, got {list(values)!r}")

    @property
    def total_steps(self) -> int:
        return int(sum(int(e["length"]) for e in self.episodes))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "fps": float(self.fps),
            "robot": self.robot,
            "source": self.source,
            "camera_names": list(self.camera_names),
            "image_shapes": {k: list(v) for k, v in self.image_shapes.items()},
            "state_names": list(self.state_names),
            "action_names": list(self.action_names),
            "total_steps": self.total_steps,
            "episodes": [dict(e) for e in self.episodes],
        }

    @staticmethod
    def from_dict(data: dict[str, Any], where: str = INFO_FILE) -> DatasetInfo:
        if data.get("format") != FORMAT:
            raise DatasetError(f"{where}: format must be {FORMAT!r}, got {data.get('format')!r}")
        if data.get("version") != VERSION:
            raise DatasetError(
                f"{where}: version {data.get('version')!r} is not supported (expected {VERSION})"
            )
        try:
            return DatasetInfo(
                fps=data["fps"],
                camera_names=tuple(data["camera_names"]),
                state_names=tuple(data["state_names"]),
                action_names=tuple(data["action_names"]),
                robot=data.get("robot", ""),
                episodes=tuple(data["episodes"]),
                image_shapes={k: list(v) for k, v in data.get("image_shapes", {}).items()},
                source=data.get("source", ""),
            )
        except KeyError as exc:
            raise DatasetError(f"{where}: missing field {exc}") from exc


class DatasetWriter:
    """Writes episodes one by one, then info.json and stats.json on ``close()``.

    >>> with DatasetWriter(root, fps=10, camera_names=..., state_names=..., action_names=...) as out:
    ...     out.add(episode)
    """

    def __init__(
        self,
        root: str | Path,
        fps: float,
        camera_names: Sequence[str],
        state_names: Sequence[str],
        action_names: Sequence[str],
        robot: str = "",
        source: str = "",
        overwrite: bool = False,
    ) -> None:
        self.root = Path(root)
        if (self.root / INFO_FILE).exists() and not overwrite:
            raise DatasetError(
                f"dataset {str(self.root)!r} exists already (pass overwrite=True to replace it)"
            )
        (self.root / EPISODE_DIR).mkdir(parents=True, exist_ok=True)
        if overwrite:
            for old in (self.root / EPISODE_DIR).glob("episode_*.safetensors"):
                old.unlink()
        self.info = DatasetInfo(
            fps, tuple(camera_names), tuple(state_names), tuple(action_names), robot, (), {}, source
        )
        self._entries: list[dict[str, Any]] = []
        self._shapes: dict[str, list[int]] = {}
        self._action = RunningStats(len(action_names))
        self._state = RunningStats(len(state_names))

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()

    def add(self, episode: Episode) -> Path:
        """Check an episode against the dataset and write it; returns its file."""
        self._check(episode)
        index = len(self._entries)
        rel = f"{EPISODE_DIR}/episode_{index:06d}.safetensors"
        write_episode(self.root / rel, episode)
        self._entries.append(
            {
                "file": rel,
                "length": episode.length,
                "instruction": episode.instruction,
                "success": episode.success,
                "task": episode.task,
                "source": episode.source,
                "valid_steps": int(episode.valid.sum()),
            }
        )
        for cam in self.info.camera_names:
            self._shapes.setdefault(cam, list(episode.images[cam].shape[1:]))
        self._action.update(episode.action)
        self._state.update(episode.state[episode.valid])
        return self.root / rel

    def _check(self, episode: Episode) -> None:
        info = self.info
        missing = [c for c in info.camera_names if c not in episode.images]
        if missing:
            raise DatasetError(
                f"episode lacks cameras {missing}; dataset cameras are {list(info.camera_names)}"
            )
        if episode.state.shape[1] != len(info.state_names):
            raise DatasetError(
                f"episode state has {episode.state.shape[1]} dims, dataset has {len(info.state_names)}"
            )
        if episode.action.shape[1] != len(info.action_names):
            raise DatasetError(
                f"episode action has {episode.action.shape[1]} dims, dataset has {len(info.action_names)}"
            )

    def close(self) -> DatasetInfo:
        """Write info.json and stats.json; returns the final DatasetInfo."""
        if not self._entries:
            raise DatasetError(f"dataset {str(self.root)!r}: no episodes were added")
        info = DatasetInfo(
            self.info.fps,
            self.info.camera_names,
            self.info.state_names,
            self.info.action_names,
            self.info.robot,
            tuple(self._entries),
            dict(self._shapes),
            self.info.source,
        )
        stats = {"action": self._action.to_dict(), "state": self._state.to_dict()}
        stats["action"]["names"] = list(info.action_names)
        stats["state"]["names"] = list(info.state_names)
        _write_json(self.root / STATS_FILE, stats)
        _write_json(self.root / INFO_FILE, info.to_dict())
        self.info = info
        return info


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")
    tmp.replace(path)


def write_episode(path: str | Path, episode: Episode) -> None:
    """One Episode -> a safetensors file (tensors listed in the module docstring)."""
    _, save_file = _safetensors_numpy()
    tensors: dict[str, np.ndarray] = {
        f"images.{cam}": np.ascontiguousarray(v) for cam, v in episode.images.items()
    }
    tensors.update(
        state=episode.state,
        action=episode.action,
        timestamp=episode.timestamp,
        valid=episode.valid,
    )
    meta = {
        "instruction": episode.instruction,
        "success": json.dumps(episode.success),
        "task": episode.task,
        "source": episode.source,
        "extra": json.dumps(episode.extra),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)


# --- reading --------------------------------------------------------------------------------


class EpisodeFile:
    """A memory-mapped episode file: frames are read on demand (``frame``), arrays in full otherwise."""

    def __init__(self, path: str | Path) -> None:
        safe_open, _ = _safetensors_numpy()
        self.path = Path(path)
        if not self.path.is_file():
            raise DatasetError(f"episode file {str(self.path)!r} does not exist")
        self._file = safe_open(str(self.path), framework="numpy")
        self.metadata = dict(self._file.metadata() or {})
        keys = set(self._file.keys())
        for need in ("state", "action", "timestamp", "valid"):
            if need not in keys:
                raise DatasetError(f"episode file {str(self.path)!r} lacks tensor {need!r}")
        self.camera_names = sorted(k[len("images.") :] for k in keys if k.startswith("images."))
        self.state = self._file.get_tensor("state")  # (T, Ds)
        self.action = self._file.get_tensor("action")  # (T, A)
        self.timestamp = self._file.get_tensor("timestamp")  # (T,)
        self.valid = self._file.get_tensor("valid")  # (T,)
        self._slices = {cam: self._file.get_slice(f"images.{cam}") for cam in self.camera_names}

    @property
    def length(self) -> int:
        return int(self.action.shape[0])

    @property
    def instruction(self) -> str:
        return self.metadata.get("instruction", "")

    def frame(self, camera: str, t: int) -> np.ndarray:
        """(H, W, 3) uint8 frame of ``camera`` at step ``t``."""
        if camera not in self._slices:
            raise DatasetError(
                f"episode {str(self.path)!r} has no camera {camera!r}; it has {self.camera_names}"
            )
        return self._slices[camera][t : t + 1][0]

    def images(self, camera: str) -> np.ndarray:
        """(T, H, W, 3) uint8: all frames of ``camera``."""
        return self._file.get_tensor(f"images.{camera}")

    def load(self) -> Episode:
        """The whole episode in memory."""
        success = json.loads(self.metadata.get("success", "null"))
        return Episode(
            images={cam: self.images(cam) for cam in self.camera_names},
            state=self.state,
            action=self.action,
            timestamp=self.timestamp,
            instruction=self.instruction,
            valid=self.valid,
            success=success,
            task=self.metadata.get("task", ""),
            source=self.metadata.get("source", ""),
            extra=json.loads(self.metadata.get("extra", "{}")),
        )


def load_info(root: str | Path) -> DatasetInfo:
    """info.json of a dataset directory."""
    path = Path(root) / INFO_FILE
    if not path.is_file():
        raise DatasetError(f"{str(Path(root))!r} is not an episode dataset: {INFO_FILE} is missing")
    return DatasetInfo.from_dict(json.loads(path.read_text()), str(path))


def load_stats(root: str | Path) -> dict[str, Any]:
    """stats.json of a dataset directory: {"action": {min, max, mean, std, count, names}, "state": {...}}."""
    path = Path(root) / STATS_FILE
    if not path.is_file():
        raise DatasetError(f"dataset {str(Path(root))!r} has no {STATS_FILE}")
    return json.loads(path.read_text())


def iter_episodes(root: str | Path) -> Iterator[EpisodeFile]:
    """Every episode of a dataset, memory-mapped."""
    info = load_info(root)
    for entry in info.episodes:
        yield EpisodeFile(Path(root) / entry["file"])


def dataset_size_bytes(root: str | Path) -> int:
    """Bytes on disk of a dataset directory."""
    return int(sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file()))
