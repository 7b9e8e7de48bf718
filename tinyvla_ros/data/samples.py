"""Training samples from an episode dataset: observation at step t + the T-step future-action window.

A sample for (episode e, valid step t):
    images       (N, 3, S, S) uint8   cameras in the policy's order, augmented (training) or
                                      centre-cropped (evaluation), then padded to square and
                                      resized to S exactly as the deployed policy does
    state        (Ds,) float32        robot units
    actions      (T, A) float32       actions t .. t+T-1; past the episode end the last action repeats
    action_pad   (T,) bool            True where the window ran past the end (excluded from the loss)
    instruction  str

Only valid steps (no stale camera or joint state) are sampled as observations; their action
windows may cover any later step. Episodes are split into training and validation sets by
episode, never by step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from tinyvla_ros.data.augment import AugmentConfig, augment_image, eval_image
from tinyvla_ros.data.episodes import DatasetError, EpisodeFile, load_info
from tinyvla_ros.vla.preprocess import prepare_image


def action_window(actions: np.ndarray, t: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """actions (L, A), start t -> (window (length, A) float32, pad (length,) bool).

    Steps past the end repeat the last action and are marked True in ``pad``.
    """
    n = actions.shape[0]
    idx = np.arange(t, t + length)  # (length,)
    pad = idx >= n
    window = actions[np.minimum(idx, n - 1)].astype(np.float32)
    return window, pad


def split_episodes(count: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Episode indices -> (train, validation), chosen by a seeded shuffle; at least one of each
    when ``val_fraction > 0`` and there are two or more episodes."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    order = np.random.default_rng(seed).permutation(count)
    n_val = int(round(count * val_fraction))
    if val_fraction > 0 and count >= 2:
        n_val = min(max(n_val, 1), count - 1)
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


@dataclass(frozen=True)
class SampleConfig:
    """camera_names: the policy's camera order (must exist in the dataset); image_size: S;
    chunk_len: T; train: augment (True) or evaluation view (False)."""

    camera_names: tuple[str, ...]
    image_size: int
    chunk_len: int = 16
    train: bool = True
    augment: AugmentConfig = AugmentConfig()


class EpisodeDataset(Dataset):
    """torch Dataset of samples (see the module docstring) over chosen episodes of a dataset."""

    def __init__(
        self, root: str | Path, cfg: SampleConfig, episodes: Sequence[int] | None = None, seed: int = 0
    ):
        self.root = Path(root)
        self.cfg = cfg
        self.info = load_info(root)
        missing = [c for c in cfg.camera_names if c not in self.info.camera_names]
        if missing:
            raise DatasetError(
                f"policy cameras {missing} are not in dataset {str(self.root)!r} (cameras: {list(self.info.camera_names)})"
            )
        chosen = list(range(len(self.info.episodes))) if episodes is None else list(episodes)
        self.episode_ids = chosen
        self._files: dict[int, EpisodeFile] = {}
        index = []
        for e in chosen:
            valid = self._file(e).valid  # (L,)
            index.extend((e, int(t)) for t in np.nonzero(valid)[0])
        if not index:
            raise DatasetError(f"dataset {str(self.root)!r}: no valid steps in episodes {chosen}")
        self.index = np.asarray(index, dtype=np.int64)  # (num_samples, 2)
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def __getstate__(self) -> dict[str, Any]:
        """Picklable for DataLoader workers started with spawn: open files are reopened there."""
        state = dict(self.__dict__)
        state["_files"] = {}
        return state

    def _file(self, e: int) -> EpisodeFile:
        if e not in self._files:
            self._files[e] = EpisodeFile(self.root / self.info.episodes[e]["file"])
        return self._files[e]

    def reseed(self, seed: int) -> None:
        """New augmentation stream (called per DataLoader worker and on resume)."""
        self._rng = np.random.default_rng(seed)

    def __getitem__(self, i: int) -> dict[str, Any]:
        e, t = (int(v) for v in self.index[i])
        ep = self._file(e)
        cfg = self.cfg
        frames = []
        for cam in cfg.camera_names:
            img = ep.frame(cam, t)  # (H, W, 3) uint8
            view = augment_image(img, cfg.augment, self._rng) if cfg.train else eval_image(img, cfg.augment)
            frames.append(prepare_image(view, cfg.image_size, name=f"camera {cam!r}").transpose(2, 0, 1))
        actions, pad = action_window(ep.action, t, cfg.chunk_len)
        return {
            "images": torch.from_numpy(np.stack(frames)),  # (N, 3, S, S) uint8
            "state": torch.from_numpy(np.asarray(ep.state[t], dtype=np.float32)),  # (Ds,)
            "actions": torch.from_numpy(actions),  # (T, A)
            "action_pad": torch.from_numpy(pad),  # (T,)
            "instruction": ep.instruction,
        }


def collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """List of samples -> batch: images (B, N, 3, S, S) uint8, state (B, Ds), actions (B, T, A),
    action_pad (B, T), instruction list[str]."""
    batch = {k: torch.stack([s[k] for s in samples]) for k in ("images", "state", "actions", "action_pad")}
    batch["instruction"] = [s["instruction"] for s in samples]
    return batch


def worker_init(worker_id: int) -> None:
    """DataLoader worker_init_fn: each worker gets its own augmentation stream."""
    info = torch.utils.data.get_worker_info()
    if info is not None and isinstance(info.dataset, EpisodeDataset):
        info.dataset.reseed(info.dataset.seed * 1000 + worker_id + 1 + int(info.seed % 100000))
