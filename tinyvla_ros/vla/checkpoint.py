"""Checkpoint directories: JSON + safetensors, never pickle.

Layout written by ``save_policy`` / ``TinyVLAPolicy.save_pretrained``:
    config.json         TinyVLAConfig.to_dict() plus "format" and "lora_applied"
    model.safetensors   the state dict (LoRA adapters included while not merged)
    stats.json          Normalizer (action min-max, state z-score)
    tokenizer.json, tokenizer_config.json   the tokenizer (fast tokenizer format)
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from tinyvla_ros.vla.config import TinyVLAConfig
from tinyvla_ros.vla.normalize import Normalizer
from tinyvla_ros.vla.tokenizer import load_tokenizer

FORMAT = "tinyvla_ros.checkpoint/1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
STATS_FILE = "stats.json"
# Fields a robot can demand of a checkpoint through ``expected``.
EXPECTABLE = ("action_dim", "state_dim", "camera_names", "image_size", "chunk_len", "action_names")


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the robot or the model: names the field and both values."""

    def __init__(self, field: str, checkpoint_value: Any, expected_value: Any, where: str = "") -> None:
        self.field = field
        self.checkpoint_value = checkpoint_value
        self.expected_value = expected_value
        prefix = f"{where}: " if where else ""
        super().__init__(
            f"{prefix}{field} is {checkpoint_value!r} in the checkpoint but {expected_value!r} is expected"
        )


def _safetensors():
    try:
        from safetensors.torch import load_file, save_file
    except ImportError as exc:  # pragma: no cover - safetensors is in requirements/ml.txt
        raise ImportError("checkpoints need safetensors: pip install -r requirements/ml.txt") from exc
    return load_file, save_file


def _normalise_value(field: str, value: Any) -> Any:
    if field in ("camera_names", "action_names") and isinstance(value, list | tuple):
        return tuple(value)
    return value


def check_expected(config: TinyVLAConfig, expected: Mapping[str, Any] | None, where: str = "") -> None:
    """Raise CheckpointMismatchError for the first field of ``expected`` that ``config`` does not match."""
    if not expected:
        return
    unknown = sorted(set(expected) - set(EXPECTABLE))
    if unknown:
        raise ValueError(f"expected has unknown field(s) {unknown}; allowed: {list(EXPECTABLE)}")
    for field in EXPECTABLE:
        if field not in expected or expected[field] is None:
            continue
        want = _normalise_value(field, expected[field])
        have = getattr(config, field)
        if have != want:
            raise CheckpointMismatchError(field, have, want, where)


def read_checkpoint_config(directory: str | Path) -> tuple[TinyVLAConfig, bool]:
    """(config, lora_applied) of a checkpoint directory, without loading weights."""
    path = Path(directory)
    cfg_path = path / CONFIG_FILE
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory not found: {str(directory)!r}")
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{path} is not a TinyVLA checkpoint: no {CONFIG_FILE}")
    try:
        data = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{cfg_path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        is_vlm = isinstance(data, dict) and data.get("model_type") == "llava_pythia"
        hint = " (a Llava-Pythia VLM: load it with tinyvla_ros.vla.load_llava_pythia)" if is_vlm else ""
        raise ValueError(f"{cfg_path}: format is {found!r}, expected {FORMAT!r}{hint}")
    data = dict(data)
    data.pop("format")
    lora_applied = bool(data.pop("lora_applied", False))
    try:
        return TinyVLAConfig.from_dict(data), lora_applied
    except ValueError as exc:
        raise ValueError(f"{cfg_path}: {exc}") from exc


def save_policy(policy: Any, directory: str | Path, state_dict: Mapping[str, Any] | None = None) -> Path:
    """Write ``policy`` (a TinyVLAPolicy) to ``directory`` (created if needed). ``state_dict``:
    the weights to write instead of ``policy.state_dict()`` (e.g. gathered from FSDP shards)."""
    _, save_file = _safetensors()
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    if policy.normalizer is None:
        raise RuntimeError(
            "cannot save a checkpoint without normalisation statistics: set policy.normalizer first"
        )
    if policy.tokenizer is None:
        raise RuntimeError(
            "cannot save a checkpoint without a tokenizer: the checkpoint must carry its tokenizer"
        )
    meta = {"format": FORMAT, "lora_applied": policy.lora_applied, **policy.config.to_dict()}
    source = policy.state_dict() if state_dict is None else state_dict
    state = {k: v.detach().contiguous().cpu() for k, v in source.items()}
    # One metadata entry only: safetensors writes its metadata map in hash order, so several
    # entries would make identical weights give different bytes from run to run.
    save_file(state, str(path / WEIGHTS_FILE), metadata={"format": "pt"})
    (path / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    policy.normalizer.save(path / STATS_FILE)
    policy.tokenizer.save_pretrained(str(path))
    return path


def check_state_dict(
    model_state: Mapping[str, torch.Tensor], loaded_shapes: Mapping[str, tuple], where: str
) -> None:
    """Raise CheckpointMismatchError when the keys or shapes in ``loaded_shapes`` ({key: shape})
    differ from ``model_state``'s."""
    missing = sorted(set(model_state) - set(loaded_shapes))
    unexpected = sorted(set(loaded_shapes) - set(model_state))
    if missing or unexpected:
        raise CheckpointMismatchError(
            "weights",
            f"{len(unexpected)} unexpected key(s) {unexpected[:5]}",
            f"{len(missing)} missing key(s) {missing[:5]}",
            where,
        )
    for key, shape in loaded_shapes.items():
        want = tuple(model_state[key].shape)
        if tuple(shape) != want:
            raise CheckpointMismatchError(f"shape of {key}", tuple(shape), want, where)


@contextlib.contextmanager
def skip_weight_init() -> Iterator[None]:
    """Build modules without random initialisation (every weight is loaded right after).

    Uses transformers' ``no_init_weights`` (it patches torch.nn.init for the duration: do not build
    other models in another thread at the same time). Cuts building tinyvla-s from ~15 s to < 1 s.
    """
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # pragma: no cover - older/newer transformers: fall back to a normal build
        yield
        return
    with no_init_weights():
        yield


def load_weights(policy: Any, weights: Path, where: str) -> None:
    """Copy a safetensors file into ``policy`` tensor by tensor (peak memory: model + one tensor)."""
    from safetensors import safe_open

    model_state = policy.state_dict()
    with safe_open(str(weights), framework="pt", device="cpu") as f:
        shapes = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
        check_state_dict(model_state, shapes, where)
        with torch.no_grad():
            for key, target in model_state.items():
                target.copy_(f.get_tensor(key))


def load_policy(
    cls: type,
    directory: str | Path,
    map_location: str | torch.device = "cpu",
    expected: Mapping | None = None,
) -> Any:
    """Build ``cls`` (TinyVLAPolicy) from a checkpoint directory; see TinyVLAPolicy.from_pretrained."""
    path = Path(directory)
    config, lora_applied = read_checkpoint_config(path)
    check_expected(config, expected, where=str(path))
    for name in (WEIGHTS_FILE, STATS_FILE):
        if not (path / name).is_file():
            raise FileNotFoundError(f"checkpoint {path} lacks {name}")
    normalizer = Normalizer.load(path / STATS_FILE)
    if (normalizer.action_dim, normalizer.state_dim) != (config.action_dim, config.state_dim):
        raise CheckpointMismatchError(
            "stats.json (action_dim, state_dim)",
            (normalizer.action_dim, normalizer.state_dim),
            (config.action_dim, config.state_dim),
            str(path),
        )
    tokenizer = load_tokenizer(path)
    with skip_weight_init():
        policy = cls(config, tokenizer=tokenizer, normalizer=normalizer, pretrained_tower=False)
        if lora_applied:
            policy.apply_lora()
    load_weights(policy, path / WEIGHTS_FILE, str(path))
    return policy.to(map_location)
