"""Training checkpoints without pickle: optimizer and scheduler state as safetensors + JSON.

A training checkpoint directory holds the policy (``save_pretrained``: config.json,
model.safetensors with LoRA adapters while unmerged, stats.json, tokenizer) plus:
    optimizer.safetensors   every tensor of ``optimizer.state_dict()["state"]`` as ``state.<i>.<key>``
    trainer_state.json      step, the optimizer's param_groups and non-tensor state entries,
                            the LR scheduler's state, the fp16 grad scaler's state, metrics so far
Weights and optimizer state are whole (a multi-process run gathers FSDP shards and its main process
writes them), so a checkpoint resumes at any number of processes.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"
FORMAT = "tinyvla_ros.train_state/1"


def _jsonable(value: Any) -> Any:
    """Scheduler / scaler state -> JSON-safe values (floats stay floats, inf as a string)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": str(value)}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot store {type(value).__name__} in a training checkpoint without pickle")


def _restore(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__float__"}:
            return float(value["__float__"])
        return {k: _restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v) for v in value]
    return value


def optimizer_to_files(
    optimizer: torch.optim.Optimizer | dict[str, Any],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """optimizer.state_dict() (or that dict itself) -> (tensors for safetensors, JSON-safe rest)."""
    sd = optimizer if isinstance(optimizer, dict) else optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in sd["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value.detach().cpu().clone()  # never aliases live state
            else:
                scalars.setdefault(str(index), {})[key] = _jsonable(value)
    return tensors, {"param_groups": _jsonable(sd["param_groups"]), "scalars": scalars}


def optimizer_from_files(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    """Inverse of optimizer_to_files -> a dict for ``optimizer.load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    for index, entries in rest.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(_restore(entries))
    return {"state": state, "param_groups": _restore(rest["param_groups"])}


def save_training_state(
    directory: str | Path,
    policy: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    step: int,
    extra: dict[str, Any],
    model_state: dict[str, torch.Tensor] | None = None,
    optimizer_state: dict[str, Any] | None = None,
) -> Path:
    """Write a complete, resumable training checkpoint to ``directory`` (replaced atomically).

    model_state / optimizer_state: the full (unsharded) weights and optimizer state dict to write
    instead of ``policy.state_dict()`` / ``optimizer.state_dict()`` (FSDP gathers them first).
    """
    from safetensors.torch import save_file

    final = Path(directory)
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    policy.save_pretrained(tmp, state_dict=model_state)
    tensors, rest = optimizer_to_files(optimizer if optimizer_state is None else optimizer_state)
    save_file(tensors, str(tmp / OPTIMIZER_FILE), metadata={"format": FORMAT})
    state = {
        "format": FORMAT,
        "step": int(step),
        "optimizer": rest,
        "scheduler": _jsonable(scheduler.state_dict()) if scheduler is not None else None,
        "scaler": _jsonable(scaler.state_dict()) if scaler is not None and scaler.is_enabled() else None,
        **_jsonable(extra),
    }
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return final


def read_training_state(directory: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(trainer_state.json's dict, the optimizer state dict) of a checkpoint, loaded on the CPU."""
    from safetensors.torch import load_file

    path = Path(directory)
    state_path = path / STATE_FILE
    if not state_path.is_file():
        raise FileNotFoundError(f"{path} is not a training checkpoint: {STATE_FILE} is missing")
    state = json.loads(state_path.read_text())
    if state.get("format") != FORMAT:
        raise ValueError(f"{state_path}: format {state.get('format')!r}, expected {FORMAT!r}")
    tensors = load_file(str(path / OPTIMIZER_FILE), device="cpu")
    return state, optimizer_from_files(tensors, state["optimizer"])


def load_training_state(
    directory: str | Path,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    load_optimizer: Callable[[dict[str, Any]], None] | None = None,
) -> dict:
    """Restore optimizer / scheduler / scaler from a checkpoint; returns trainer_state.json's dict.

    load_optimizer: loads the (full) optimizer state dict instead of ``optimizer.load_state_dict``
    (FSDP shards it onto the ranks)."""
    path = Path(directory)
    state, sd = read_training_state(path)
    if len(sd["param_groups"]) != len(optimizer.param_groups):
        raise ValueError(
            f"{path}: checkpoint has {len(sd['param_groups'])} parameter groups, the optimizer "
            f"{len(optimizer.param_groups)} (LoRA on in one, off in the other?)"
        )
    (optimizer.load_state_dict if load_optimizer is None else load_optimizer)(sd)
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(_restore(state["scheduler"]))
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(_restore(state["scaler"]))
    return state


def latest_checkpoint(root: str | Path) -> Path | None:
    """The highest ``step_XXXXXXXX`` directory under ``root`` that is complete, or None."""
    root = Path(root)
    if not root.is_dir():
        return None
    done = [
        p
        for p in root.glob("step_*")
        if p.is_dir() and (p / STATE_FILE).is_file() and not p.name.endswith(".tmp")
    ]
    return max(done, key=lambda p: int(p.name.split("_")[1])) if done else None
