"""Cached feature maps of a frozen vision tower: computed once per frame, reused every training step.

With a frozen tower (``config.vision.frozen``, e.g. the ImageNet EfficientNet-Lite0 of the
``cpu-lite0`` preset) the tower's output for a frame never changes during training, so
``tinyvla-train`` runs the tower once over every frame of the chosen episodes (evaluation view:
the centre crop of ``crop_ratio``, pad to square, resize: what deployment feeds the tower) and
trains the rest of the model on the stored maps. The cache is written to
``<run>/feature_cache/`` (or the directory ``tinyvla-train --feature-cache`` names) as one
safetensors file per episode (float16 maps (L, N, C, h, w)), named by the sha256 of the episode
file's content (``episode_key``): reused on ``--resume``, and by any dataset holding the same episode (a dataset
converted again with more bags, several runs on one dataset) when the cache's description
(tower weights, image size, crop, cameras) matches.

A sample (``CachedFeatureDataset``) is the episode sample of ``EpisodeDataset`` with
``features`` (N, C, h, w) float32 in place of ``images`` (and, with sim-only auxiliary targets,
``aux`` (aux_dim,) and ``aux_mask``: data/aux_targets.py).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tinyvla_ros.core.images import add_sensor_noise
from tinyvla_ros.data.augment import center_crop
from tinyvla_ros.data.episodes import EpisodeFile, load_info
from tinyvla_ros.data.samples import action_window
from tinyvla_ros.vla.preprocess import prepare_image

CACHE_DIR = "feature_cache"
MANIFEST = "manifest.json"


def tower_fingerprint(policy: Any) -> str:
    """sha256 (16 hex digits) of the frozen tower's weights and buffers."""
    digest = hashlib.sha256()
    for name, tensor in sorted(policy.backbone.vision.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def episode_key(path: str | Path) -> str:
    """sha256 (24 hex digits) of an episode file's content: its cache file's name.

    The safetensors header (tensor names, shapes, offsets, metadata) is hashed with its keys
    sorted, then the data bytes: a file's metadata order is not stable between writes of the
    same episode (converting a bag again gives the same key).
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        size = f.read(8)
        if len(size) != 8:
            raise ValueError(f"{path} is not a safetensors file (too short)")
        header = json.loads(f.read(int.from_bytes(size, "little")))
        digest.update(json.dumps(header, sort_keys=True).encode())
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()[:24]


def describe(policy: Any, crop_ratio: float, image_noise: float = 0.0) -> dict[str, Any]:
    c = policy.config
    desc = {
        "tower": c.vision.tower,
        "weights": tower_fingerprint(policy),
        "image_size": c.image_size,
        "crop_ratio": crop_ratio,
        "camera_names": list(c.camera_names),
    }
    if image_noise > 0:  # absent for clean caches, so the caches written before it stay valid
        desc["image_noise"] = image_noise
    return desc


def frame_noise_rng(key: str) -> np.random.Generator:
    """The sensor-noise generator of one episode's cache (seeded by its content key): a cache
    written again is the same."""
    return np.random.default_rng(int(key[:16], 16))


@torch.no_grad()
def episode_features(
    policy: Any,
    episode: EpisodeFile,
    crop_ratio: float,
    batch: int = 32,
    image_noise: float = 0.0,
    rng: np.random.Generator | None = None,
) -> torch.Tensor:
    """Every frame of one episode -> float16 feature maps (L, N, C, h, w).

    ``image_noise`` > 0: each camera frame gets Gaussian sensor noise (core.images.add_sensor_noise)
    of a std drawn uniformly from [0, image_noise] per frame, from ``rng``, before the tower."""
    c = policy.config
    if image_noise > 0 and rng is None:
        raise ValueError("episode_features: image_noise needs an rng")

    def view(cam: str, t: int) -> np.ndarray:
        frame = episode.frame(cam, t)
        if image_noise > 0:
            frame = add_sensor_noise(frame, float(rng.uniform(0.0, image_noise)), rng)
        return prepare_image(center_crop(frame, crop_ratio), c.image_size).transpose(2, 0, 1)

    out = []
    for start in range(0, episode.length, batch):
        stop = min(start + batch, episode.length)
        frames = np.stack(
            [np.stack([view(cam, t) for cam in c.camera_names]) for t in range(start, stop)]
        )  # (b, N, 3, S, S) uint8
        pixels = torch.from_numpy(frames).to(policy.device, torch.float32) / 255.0
        out.append(policy.backbone.tower_features(pixels).to("cpu", torch.float16))
    return torch.cat(out)


def build_cache(
    policy: Any,
    dataset: str | Path,
    episodes: Sequence[int],
    crop_ratio: float,
    root: str | Path,
    write: bool = True,
    image_noise: float = 0.0,
) -> dict[int, torch.Tensor]:
    """Feature maps of ``episodes`` ({episode: (L, N, C, h, w) float16}), read from ``root`` when a
    matching cache is there, otherwise computed and written. ``write=False`` (the other processes
    of a multi-process run, after the main one built it): read only, a missing file is an error.
    ``image_noise``: sensor noise on the frames (see episode_features), part of the cache's
    description: a clean cache and a noisy one live in different directories."""
    from safetensors.torch import load_file, save_file

    root = Path(root)
    info = load_info(dataset)
    desc = describe(policy, crop_ratio, image_noise)
    manifest = root / MANIFEST
    if any(root.glob("episode_*.safetensors")):
        raise ValueError(
            f"feature cache {root} has the older layout (files named by episode index); delete it"
        )
    if manifest.is_file() and json.loads(manifest.read_text()) != desc:
        raise ValueError(f"feature cache {root} was made for another tower or view ({manifest}); delete it")
    files = {e: Path(dataset) / info.episodes[e]["file"] for e in episodes}
    keys = {e: episode_key(files[e]) for e in episodes}
    paths = {e: root / f"{keys[e]}.safetensors" for e in episodes}
    if not write:
        missing = [e for e in episodes if not paths[e].is_file()]
        if missing or not manifest.is_file():
            raise FileNotFoundError(f"feature cache {root} lacks episodes {missing} (or its manifest)")
        return {e: load_file(str(paths[e]))["features"] for e in episodes}
    root.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps(desc, indent=1) + "\n")
    policy.eval()
    cache: dict[int, torch.Tensor] = {}
    todo = [e for e in episodes if not paths[e].is_file()]
    tick = time.perf_counter()
    for k, e in enumerate(episodes):
        path = paths[e]
        if path.is_file():
            cache[e] = load_file(str(path))["features"]
            continue
        maps = episode_features(
            policy, EpisodeFile(files[e]), crop_ratio, image_noise=image_noise, rng=frame_noise_rng(keys[e])
        )
        partial = path.with_suffix(".partial")  # a stop mid-write leaves no truncated cache file
        save_file({"features": maps.contiguous()}, str(partial))
        partial.replace(path)
        cache[e] = maps
        if k % 20 == 0:
            print(f"feature cache: {k + 1}/{len(episodes)} episodes", file=sys.stderr)
    if todo:
        frames = sum(int(cache[e].shape[0]) for e in todo)
        took = time.perf_counter() - tick
        print(f"feature cache: {frames} frames x {len(policy.config.camera_names)} cameras in {took:.0f} s",
              file=sys.stderr)  # fmt: skip
    policy.train()
    return cache


class CachedFeatureDataset(torch.utils.data.Dataset):
    """Samples of ``EpisodeDataset`` with cached ``features`` (N, C, h, w) instead of images.

    shift: random translation of each camera's map by up to ``shift`` cells (edge cells
    repeated), a geometric augmentation in feature space; 0 in evaluation.
    """

    def __init__(
        self,
        dataset: str | Path,
        cache: dict[int, torch.Tensor],
        episodes: Sequence[int],
        chunk_len: int,
        shift: int = 0,
        seed: int = 0,
        aux: dict[int, tuple[np.ndarray, int]] | None = None,
    ) -> None:
        self.root = Path(dataset)
        self.info = load_info(dataset)
        self.cache = cache
        self.chunk_len = chunk_len
        self.shift = shift
        self.aux = aux
        self._rng = np.random.default_rng(seed)
        self.meta: dict[int, tuple[np.ndarray, np.ndarray, str]] = {}
        index = []
        for e in episodes:
            ep = EpisodeFile(self.root / self.info.episodes[e]["file"])
            self.meta[e] = (np.asarray(ep.action), np.asarray(ep.state, dtype=np.float32), ep.instruction)
            index.extend((e, int(t)) for t in np.nonzero(ep.valid)[0])
        self.index = np.asarray(index, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def reseed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def _shifted(self, maps: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) -> the same with each camera's map moved by up to ``shift`` cells."""
        s = self.shift
        padded = torch.nn.functional.pad(maps, (s, s, s, s), mode="replicate")  # (N, C, h+2s, w+2s)
        h, w = maps.shape[-2:]
        out = torch.empty_like(maps)
        for i in range(maps.shape[0]):
            dy, dx = (int(v) for v in self._rng.integers(0, 2 * s + 1, size=2))
            out[i] = padded[i, :, dy : dy + h, dx : dx + w]
        return out

    def __getitem__(self, i: int) -> dict[str, Any]:
        e, t = (int(v) for v in self.index[i])
        actions, states, instruction = self.meta[e]
        window, pad = action_window(actions, t, self.chunk_len)
        maps = self.cache[e][t].float()  # (N, C, h, w)
        if self.shift:
            maps = self._shifted(maps)
        sample = {
            "features": maps,
            "state": torch.from_numpy(states[t]),
            "actions": torch.from_numpy(window),
            "action_pad": torch.from_numpy(pad),
            "instruction": instruction,
        }
        if self.aux is not None:  # sim-only object coordinates, valid before anything moved
            targets, steps = self.aux[e]
            sample["aux"] = torch.from_numpy(targets)
            sample["aux_mask"] = torch.tensor(t < steps)
        return sample


def collate_features(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """List of cached-feature samples -> batch (features (B, N, C, h, w), state, actions, action_pad, instruction)."""
    keys = ("features", "state", "actions", "action_pad") + (
        ("aux", "aux_mask") if "aux" in samples[0] else ()
    )
    batch = {k: torch.stack([s[k] for s in samples]) for k in keys}
    batch["instruction"] = [s["instruction"] for s in samples]
    return batch
