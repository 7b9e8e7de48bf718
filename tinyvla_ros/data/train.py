"""``tinyvla-train``: fine-tune TinyVLA on an episode dataset and write a ready-to-deploy checkpoint.

Two starts:
    from scratch      a preset (``nano``, ``micro``: CPU sizes; any preset whose tokenizer ships
                      with the project) with random weights, every parameter trained at ``lr``;
    from Llava-Pythia ``--init DIR`` (an official VLM initialiser, e.g. Llava-Pythia-400M for
                      TinyVLA-B): backbone weights loaded, a new head, LoRA on the backbone
                      (official: r 64, alpha 256 on every Linear), LoRA at ``lr_lora`` (2e-4) and
                      projector + head at ``lr_base`` (2e-5). ``--lora`` also works from scratch.

Recipe (official): AdamW (0.9, 0.98), eps 1e-7, weight decay 0; linear warm-up then cosine decay;
the official image augmentations (tinyvla_ros.data.augment); bf16/fp16 autocast on CUDA;
``grad_accum`` micro-batches per optimizer step (global batch = batch_size x grad_accum).

Reproducible by construction: micro-batch m of step k draws its samples, augmentations and
diffusion noise from seeds derived from (seed, k, m), so a run resumed from a checkpoint
continues exactly as the uninterrupted run would.

One process or many (Hugging Face accelerate, tinyvla_ros.data.distributed): the same command
under ``accelerate launch`` trains on N GPUs / nodes (DDP) or sharded (FSDP2). ``--batch-size``
is the global micro-batch, split between the processes, so every world size trains on the same
batches; only the main process writes; checkpoints are unsharded and resume at any world size.

Output directory:
    train_config.json         the configuration, dataset and model description
    metrics.jsonl             one line per logged step (loss, gradient norm before clipping, lr,
                              samples/s, on CUDA the peak GPU memory) and per validation
    curves.png                training / validation loss and learning rate
    checkpoints/step_XXXXXXXX resumable checkpoints (weights, optimizer, scheduler; no pickle)
    final/                    merged (LoRA folded in), ready-to-deploy checkpoint + training.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tinyvla_ros.data.augment import AugmentConfig
from tinyvla_ros.data.checkpointing import latest_checkpoint, load_training_state, save_training_state
from tinyvla_ros.data.episodes import load_info, load_stats
from tinyvla_ros.data.samples import EpisodeDataset, SampleConfig, collate, split_episodes
from tinyvla_ros.vla.config import PRESETS, get_config
from tinyvla_ros.vla.normalize import Normalizer

PRECISIONS = ("fp32", "bf16", "fp16")
EMA_FILE = "ema.safetensors"


@dataclass
class TrainConfig:
    """Everything a training run needs (see the module docstring); validated on construction."""

    dataset: str
    output: str
    preset: str = "nano"
    init: str = ""
    lora: bool = False
    lora_variant: str = "official"
    steps: int = 2000
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-4
    lr_lora: float = 2e-4
    lr_base: float = 2e-5
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    precision: str = "fp32"
    device: str = "auto"
    val_fraction: float = 0.1
    val_every: int = 200
    val_batches: int = 8
    save_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    num_workers: int = 0
    num_threads: int = 0
    seed: int = 0
    resume: bool = False
    stop_after: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    progress: bool = True
    overrides: dict[str, Any] = field(default_factory=dict)
    cache_features: bool = True
    feature_cache: str = ""
    warm_start: str = ""
    feature_shift: int = 0
    ema: bool = False
    aux_objects: float = 0.0
    state_noise: float = 0.0
    image_noise: float = 0.0
    ema_power: float = 0.75
    ema_max_decay: float = 0.9999

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**self.augment)
        if not self.init and self.preset not in PRESETS:
            raise ValueError(f"TrainConfig.preset must be one of {list(PRESETS)}, got {self.preset!r}")
        if self.lora_variant not in ("official", "paper"):
            raise ValueError(
                f"TrainConfig.lora_variant must be 'official' or 'paper', got {self.lora_variant!r}"
            )
        for name in (
            "steps",
            "batch_size",
            "grad_accum",
            "log_every",
            "val_every",
            "save_every",
            "val_batches",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.warm_start and (self.init or self.overrides or self.lora):
            raise ValueError(
                "TrainConfig.warm_start continues a trained checkpoint as it is: no --init, --set or --lora"
            )
        if not (math.isfinite(self.state_noise) and 0 <= self.state_noise <= 10):
            raise ValueError(f"TrainConfig.state_noise must be in [0, 10], got {self.state_noise!r}")
        if not (math.isfinite(self.image_noise) and 0 <= self.image_noise <= 50):
            raise ValueError(f"TrainConfig.image_noise must be in [0, 50] levels, got {self.image_noise!r}")
        if not (math.isfinite(self.aux_objects) and 0 <= self.aux_objects <= 100):
            raise ValueError(f"TrainConfig.aux_objects must be in [0, 100], got {self.aux_objects!r}")
        if not (0 < self.ema_power <= 1 and 0 < self.ema_max_decay < 1):
            raise ValueError(
                f"TrainConfig: ema_power in (0, 1] and ema_max_decay in (0, 1) needed; got "
                f"{self.ema_power!r}, {self.ema_max_decay!r}"
            )
        for name in (
            "warmup_steps",
            "num_workers",
            "num_threads",
            "seed",
            "keep_checkpoints",
            "stop_after",
            "feature_shift",
        ):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("lr", "lr_lora", "lr_base"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 < value < 1):
                raise ValueError(f"TrainConfig.{name} must be in (0, 1), got {value!r}")
        if not (0 <= self.min_lr_ratio <= 1 and self.weight_decay >= 0 and self.max_grad_norm > 0):
            raise ValueError(
                f"TrainConfig: min_lr_ratio in [0, 1], weight_decay >= 0, max_grad_norm > 0 needed; got "
                f"{self.min_lr_ratio!r}, {self.weight_decay!r}, {self.max_grad_norm!r}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"TrainConfig.precision must be one of {list(PRECISIONS)}, got {self.precision!r}"
            )
        if not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            raise ValueError(f"TrainConfig.device must be auto, cpu or cuda[:i], got {self.device!r}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"TrainConfig.val_fraction must be in [0, 1), got {self.val_fraction!r}")

    @property
    def uses_lora(self) -> bool:
        return self.lora or bool(self.init)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- model, optimiser, schedule ----------------------------------------------------------------


def normalizer_from_stats(stats: dict[str, Any], margin: float = 0.01, eps: float = 1e-4) -> Normalizer:
    """Dataset stats.json -> Normalizer (actions min-max widened by margin * range + eps, as
    Normalizer.from_data does; states mean / std)."""
    lo = np.asarray(stats["action"]["min"], dtype=np.float64)
    hi = np.asarray(stats["action"]["max"], dtype=np.float64)
    widen = margin * (hi - lo) + eps
    return Normalizer(lo - widen, hi + widen, stats["state"]["mean"], stats["state"]["std"])


def build_policy(cfg: TrainConfig, info: Any, normalizer: Normalizer) -> Any:
    """A TinyVLAPolicy shaped for the dataset (cameras, state and action sizes), LoRA applied if asked."""
    robot = {
        "camera_names": tuple(info.camera_names),
        "state_dim": len(info.state_names),
        "action_dim": len(info.action_names),
        "action_names": tuple(info.action_names),
        # deployment sees the evaluation view of the training images (official recipe)
        "center_crop": cfg.augment.crop_ratio,
        **cfg.overrides,
    }
    if cfg.aux_objects:
        from tinyvla_ros.data.aux_targets import aux_dim

        dim = aux_dim(info.robot, cfg.overrides.get("object_targets", "scene"))
        robot.update(aux_dim=dim, aux_weight=cfg.aux_objects)
    if cfg.warm_start:  # a trained checkpoint, with its own config and normalisation
        from tinyvla_ros.vla.policy import TinyVLAPolicy

        expected = {k: robot[k] for k in ("camera_names", "state_dim", "action_dim")}
        policy = TinyVLAPolicy.from_pretrained(cfg.warm_start, expected=expected)
        if cfg.aux_objects and not policy.config.aux_dim:
            raise ValueError(
                f"--aux-objects: the warm-start checkpoint {cfg.warm_start} has no object readout"
            )
        if abs(float(policy.config.center_crop) - cfg.augment.crop_ratio) > 1e-9:
            raise ValueError(
                f"--crop-ratio {cfg.augment.crop_ratio} is not the warm-start checkpoint's centre crop "
                f"{policy.config.center_crop}: the deployed view would differ from the trained one"
            )
        if tuple(policy.config.action_names) != tuple(info.action_names):
            raise ValueError(
                f"the warm-start checkpoint's action names {list(policy.config.action_names)} are not the "
                f"dataset's {list(info.action_names)}"
            )
        old = policy.normalizer
        wider = [
            name
            for name, lo, hi, old_lo, old_hi in zip(
                info.action_names,
                normalizer.action_low,
                normalizer.action_high,
                old.action_low,
                old.action_high,
                strict=True,
            )
            if lo < old_lo or hi > old_hi
        ]
        if wider:  # the sampler clips to the checkpoint's range: such actions cannot be produced
            print(
                f"warning: the dataset's actions {wider} leave the warm-start checkpoint's range; "
                "its normalisation is kept, so the policy cannot reach them (train from scratch to widen it)",
                file=sys.stderr,
            )
        return policy
    if cfg.init:
        from tinyvla_ros.vla.llava_pythia import load_llava_pythia

        policy = load_llava_pythia(cfg.init, normalizer=normalizer, **robot)
    else:
        from tinyvla_ros.vla.policy import TinyVLAPolicy

        config = get_config(cfg.preset, **robot)
        if config.tokenizer != "tiny":
            raise ValueError(
                f"preset {cfg.preset!r} uses the Pythia tokenizer, which only comes with a Llava-Pythia "
                "initialiser: pass --init <Llava-Pythia directory> (or train nano / micro from scratch)"
            )
        policy = TinyVLAPolicy(config, normalizer=normalizer)
    if cfg.uses_lora:
        policy.apply_lora(cfg.lora_variant)
    return policy


def param_groups(policy: Any, cfg: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: LoRA weights at lr_lora and projector + head at lr_base, or one group at lr."""
    groups = policy.optimizer_param_groups(weight_decay=cfg.weight_decay)
    if len(groups) == 1:
        groups[0]["lr"] = cfg.lr
    else:
        groups[0]["lr"], groups[1]["lr"] = cfg.lr_lora, cfg.lr_base
    return groups


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``min_ratio`` at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but torch sees no CUDA device")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "fp32":
        return None
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device (use bf16 or fp32 on CPU)")
    return torch.bfloat16 if precision == "bf16" else torch.float16


# --- data ------------------------------------------------------------------------------------


def _derive(*parts: int) -> int:
    """A 63-bit seed from integers (SeedSequence mixing)."""
    return int(
        np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1)
    )


class StepBatches(torch.utils.data.Sampler):
    """Yields, for optimizer steps start..total-1 and micro-batches 0..accum-1, a list of
    (sample index, augmentation seed): samples drawn without replacement within a micro-batch,
    everything derived from (seed, step, micro-batch).

    rank / world: data-parallel sharding. ``batch_size`` is the global micro-batch; rank r yields
    its rows [r b/W, (r+1) b/W) of it (same samples, same augmentation seeds), so the ranks'
    batches put together are the batch of one process."""

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int,
        start: int,
        total: int,
        accum: int,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        from tinyvla_ros.data.distributed import shard

        self.n, self.b, self.seed, self.start, self.total, self.accum = (
            num_samples,
            batch_size,
            seed,
            start,
            total,
            accum,
        )
        self.lo, self.hi = shard(batch_size, rank, world)

    def __len__(self) -> int:
        return (self.total - self.start) * self.accum

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.total):
            for micro in range(self.accum):
                rng = np.random.default_rng(_derive(self.seed, step, micro))
                idx = rng.choice(self.n, size=self.b, replace=self.n < self.b)
                yield [(int(idx[j]), _derive(self.seed, step, micro, j, 7)) for j in range(self.lo, self.hi)]


class SeededDataset(torch.utils.data.Dataset):
    """Wraps EpisodeDataset so that item (i, aug_seed) uses its own augmentation stream."""

    def __init__(self, base: EpisodeDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        i, aug_seed = key
        self.base.reseed(aug_seed)
        return self.base[i]


def make_cached_loaders(
    cfg: TrainConfig, policy: Any, out: Path, start: int, rank: int = 0, world: int = 1, writer: bool = True
) -> tuple:
    """make_loaders for a frozen tower: samples carry its cached feature maps (data/features.py);
    ``writer``: this process computes and writes the missing cache files (others only read)."""
    from tinyvla_ros.data.features import CACHE_DIR, CachedFeatureDataset, build_cache, collate_features

    info = load_info(cfg.dataset)
    train_eps, val_eps = split_episodes(len(info.episodes), cfg.val_fraction, cfg.seed)
    root = Path(cfg.feature_cache) if cfg.feature_cache else out / CACHE_DIR
    cache = build_cache(
        policy, cfg.dataset, train_eps + val_eps, cfg.augment.crop_ratio, root, writer, cfg.image_noise
    )
    chunk = policy.config.chunk_len
    aux = None
    if policy.config.aux_dim:  # sim-only object coordinates (data/aux_targets.py)
        from tinyvla_ros.data.aux_targets import dataset_targets, instructed

        aux = dataset_targets(cfg.dataset)
        named = {e: info.episodes[e].get("task", "") for e in aux}
        if policy.config.object_targets == "instructed":  # the named object and its destination
            aux = {e: (instructed(t, info.robot, named[e]), steps) for e, (t, steps) in aux.items()}
        elif policy.config.object_targets == "selected":  # every object, then the selection's targets
            aux = {
                e: (np.concatenate([t, instructed(t, info.robot, named[e])]), steps)
                for e, (t, steps) in aux.items()
            }
    train_ds = CachedFeatureDataset(
        cfg.dataset, cache, train_eps, chunk, shift=cfg.feature_shift, seed=cfg.seed, aux=aux
    )
    sampler = StepBatches(
        len(train_ds), cfg.batch_size, cfg.seed, start, cfg.steps, cfg.grad_accum, rank, world
    )
    loader = torch.utils.data.DataLoader(
        SeededDataset(train_ds), batch_sampler=sampler, collate_fn=collate_features, num_workers=0
    )
    val_ds = CachedFeatureDataset(cfg.dataset, cache, val_eps, chunk, aux=aux) if val_eps else None
    return loader, val_ds, train_eps, val_eps


def make_loaders(
    cfg: TrainConfig,
    image_size: int,
    chunk_len: int,
    camera_names,
    start: int,
    rank: int = 0,
    world: int = 1,
) -> tuple:
    """(train DataLoader from ``start`` (rank ``rank``'s share of each batch), validation dataset
    or None, train/val episode ids)."""
    info = load_info(cfg.dataset)
    train_eps, val_eps = split_episodes(len(info.episodes), cfg.val_fraction, cfg.seed)
    sample = SampleConfig(tuple(camera_names), image_size, chunk_len, train=True, augment=cfg.augment)
    train_ds = EpisodeDataset(cfg.dataset, sample, train_eps, seed=cfg.seed)
    sampler = StepBatches(
        len(train_ds), cfg.batch_size, cfg.seed, start, cfg.steps, cfg.grad_accum, rank, world
    )
    loader = torch.utils.data.DataLoader(
        SeededDataset(train_ds),
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=cfg.num_workers,
        persistent_workers=cfg.num_workers > 0,
    )
    val_ds = None
    if val_eps:
        val_cfg = SampleConfig(tuple(camera_names), image_size, chunk_len, train=False, augment=cfg.augment)
        val_ds = EpisodeDataset(cfg.dataset, val_cfg, val_eps, seed=cfg.seed)
    return loader, val_ds, train_eps, val_eps


# --- training loop ---------------------------------------------------------------------------


class Trainer:
    """One training run (see the module docstring); ``run()`` returns the final checkpoint path.

    Runs in one process or in each process of a multi-process launch (accelerate launch,
    torchrun): see tinyvla_ros.data.distributed for what happens where.
    """

    def __init__(self, cfg: TrainConfig) -> None:
        from tinyvla_ros.data.distributed import make_accelerator, shard

        self.cfg = cfg
        self.out = Path(cfg.output)
        self.amp = autocast_dtype(cfg.precision, resolve_device(cfg.device))  # checks both names
        self.accelerator = make_accelerator(cfg.precision, cfg.device, cfg.grad_accum)
        acc = self.accelerator
        self.device = acc.device
        self.rank, self.world = acc.process_index, acc.num_processes
        self.is_main = acc.is_main_process
        self.rows = shard(cfg.batch_size, self.rank, self.world)  # this rank's rows of each batch
        if cfg.num_threads > 0:
            torch.set_num_threads(cfg.num_threads)
        self.info = load_info(cfg.dataset)
        self.stats = load_stats(cfg.dataset)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            policy = build_policy(cfg, self.info, normalizer_from_stats(self.stats)).to(self.device)
        if self.world > 1:  # each rank its own (reproducible) dropout stream
            torch.manual_seed(_derive(cfg.seed, self.rank, 13))
        optimizer = torch.optim.AdamW(
            param_groups(policy, cfg), betas=(0.9, 0.98), eps=1e-7, weight_decay=cfg.weight_decay
        )
        # the schedule steps once per optimizer step; accelerate's wrapper would step it once per
        # process, so it stays a plain LambdaLR on the (same) optimizer
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_factor(s, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)
        )
        self.model, self.optimizer = acc.prepare(policy, optimizer)
        self.policy = acc.unwrap_model(self.model)
        self.scaler = acc.scaler  # fp16 on CUDA only, else None
        # the weights the optimizer trains (fixed from here on): what the EMA averages
        self.trainable = [p for p in self.policy.parameters() if p.requires_grad]
        self.ema = self._make_ema() if cfg.ema else None
        self.step = 0
        self.metrics: list[dict[str, Any]] = []
        self.collate = collate

    def _make_ema(self) -> Any:
        """diffusers' EMAModel over the trainable weights (Diffusion Policy's warm-up: power 0.75)."""
        from diffusers.training_utils import EMAModel

        return EMAModel(
            self.trainable, decay=self.cfg.ema_max_decay, use_ema_warmup=True, power=self.cfg.ema_power
        )

    @contextlib.contextmanager
    def _ema_weights(self) -> Iterator[None]:
        """The EMA weights in the policy for the duration (validation); the raw ones restored after."""
        if self.ema is None:
            yield
            return
        self.ema.store(self.trainable)
        self.ema.copy_to(self.trainable)
        try:
            yield
        finally:
            self.ema.restore(self.trainable)

    # ------------------------------------------------------------------ bookkeeping
    def _prepare_output(self) -> None:
        acc = self.accelerator
        ckpt = latest_checkpoint(self.out / "checkpoints") if self.cfg.resume else None
        if ckpt is None and (self.out / "train_config.json").exists() and not self.cfg.resume:
            raise ValueError(
                f"output {str(self.out)!r} already holds a run: pass --resume or choose a new directory"
            )
        acc.wait_for_everyone()  # every rank has looked before the main one writes
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        if ckpt is not None:
            self._resume(ckpt)
        elif self.is_main:
            (self.out / "metrics.jsonl").unlink(missing_ok=True)
        if not self.is_main:
            return
        description = {
            "train": self.cfg.to_dict(),
            "model": self.policy.config.to_dict(),
            "parameters": self.policy.parameter_summary(),
            "dataset": {
                "episodes": len(self.info.episodes),
                "steps": self.info.total_steps,
                "fps": self.info.fps,
            },
            "distributed": {
                "processes": self.world,
                "type": str(acc.distributed_type).rsplit(".", 1)[-1],
                "global_batch": self.cfg.batch_size * self.cfg.grad_accum,
                "per_process_batch": self.rows[1] - self.rows[0],
                "mixed_precision": acc.mixed_precision,
            },
        }
        (self.out / "train_config.json").write_text(json.dumps(description, indent=1, default=str) + "\n")
        if self.world > 1:
            print(
                f"training on {self.world} processes ({description['distributed']['type']}): "
                f"{self.rows[1] - self.rows[0]} samples each per micro-batch of {self.cfg.batch_size}",
                file=sys.stderr,
            )

    def _resume(self, ckpt: Path) -> None:
        from safetensors.torch import load_file

        from tinyvla_ros.data.distributed import load_full_model_state, load_full_optimizer_state

        acc = self.accelerator
        state = load_file(str(ckpt / "model.safetensors"), device="cpu")
        load_full_model_state(acc, self.model, self.policy, state)
        trainer_state = load_training_state(
            ckpt,
            self.optimizer.optimizer,
            self.scheduler,
            self.scaler,
            load_optimizer=lambda sd: load_full_optimizer_state(
                acc, self.model, self.optimizer, self.policy, sd
            ),
        )
        self.step = int(trainer_state["step"])
        if self.ema is not None:
            self._load_ema(ckpt, trainer_state)
        if not self.is_main:
            return
        self.metrics = [m for m in self._read_metrics() if m["step"] <= self.step]
        lines = "".join(json.dumps(m) + "\n" for m in self.metrics)
        (self.out / "metrics.jsonl").write_text(lines)  # drop what was logged after the checkpoint
        print(f"resumed from {ckpt} at step {self.step}", file=sys.stderr)

    def _load_ema(self, ckpt: Path, trainer_state: dict[str, Any]) -> None:
        from safetensors.torch import load_file

        from tinyvla_ros.data.distributed import copy_full_into

        path = ckpt / EMA_FILE
        if not path.is_file() or "ema_step" not in trainer_state:
            raise ValueError(f"{ckpt} has no EMA weights ({EMA_FILE}): it was trained without --ema")
        shadow = load_file(str(path))
        if len(shadow) != len(self.ema.shadow_params):
            raise ValueError(
                f"{path}: {len(shadow)} EMA tensors, the model trains {len(self.ema.shadow_params)}"
            )
        for i, tensor in enumerate(self.ema.shadow_params):
            copy_full_into(tensor, shadow[f"shadow.{i}"])
        self.ema.optimization_step = int(trainer_state["ema_step"])

    def _read_metrics(self) -> list[dict[str, Any]]:
        path = self.out / "metrics.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def _log(self, entry: dict[str, Any]) -> None:
        if not self.is_main:
            return
        self.metrics.append(entry)
        with (self.out / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(entry) + "\n")

    def _save(self) -> None:
        """A training checkpoint: gathered on every rank (FSDP), written by the main process."""
        from tinyvla_ros.data.distributed import full_model_state, full_optimizer_state, gathered

        acc = self.accelerator
        model_state = full_model_state(acc, self.model, self.policy)
        optimizer_state = full_optimizer_state(acc, self.model, self.optimizer, self.policy)
        shadow = list(gathered(self.ema.shadow_params)) if self.ema is not None else []
        if not self.is_main:
            return
        root = self.out / "checkpoints"
        extra: dict[str, Any] = {"seed": self.cfg.seed, "processes": self.world}
        if self.ema is not None:
            extra["ema_step"] = int(self.ema.optimization_step)
        path = save_training_state(
            root / f"step_{self.step:08d}",
            self.policy,
            self.optimizer.optimizer,
            self.scheduler,
            self.scaler,
            self.step,
            extra,
            model_state=model_state,
            optimizer_state=optimizer_state,
        )
        if self.ema is not None:
            from safetensors.torch import save_file

            save_file({f"shadow.{i}": t.contiguous() for i, t in enumerate(shadow)}, str(path / EMA_FILE))
        done = sorted(p for p in root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))
        for old in done[: max(0, len(done) - max(1, self.cfg.keep_checkpoints))]:
            shutil.rmtree(old)

    # ------------------------------------------------------------------ steps
    def _generator(self, *parts: int) -> torch.Generator:
        gen = torch.Generator(device=self.device)
        gen.manual_seed(_derive(self.cfg.seed, *parts))
        return gen

    def _micro_loss(
        self, batch: dict[str, Any], generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(this rank's loss to backpropagate, its share of the global batch's loss) for one
        micro-batch: the global batch's diffusion noise drawn from ``generator`` and this rank's
        rows taken, the loss sums divided by the global batch's counts (an all-reduce), times the
        world size (DDP / FSDP average the gradients over the ranks)."""
        noise, steps = self.policy.training_noise(self.cfg.batch_size, generator)
        lo, hi = self.rows
        batch = {**batch, "noise": noise[lo:hi], "timesteps": steps[lo:hi]}
        c, b = self.policy.config, self.cfg.batch_size
        if c.object_slots:  # drawn after the diffusion noise: other runs keep their random streams
            slot = torch.randn((b, c.slot_dim), generator=generator, device=self.device)
            batch["slot_noise"] = slot[lo:hi]
        if self.cfg.state_noise:
            state = torch.randn((b, c.state_dim), generator=generator, device=self.device)
            batch["state_noise"] = self.cfg.state_noise * state[lo:hi]
        terms = self.model(batch, return_terms=True)
        names = sorted(k for k in terms if k.endswith("_count"))
        counts = torch.stack([terms[k].detach().float() for k in names])
        counts = dict(zip(names, self.accelerator.reduce(counts, "sum"), strict=True))
        share = self.policy.loss_from_terms(terms, counts)
        return share * self.world, share.detach()

    def _optimizer_step(self, micro_batches: list[dict[str, Any]]) -> tuple[float, float]:
        """One optimizer step over ``grad_accum`` micro-batches (accelerate's ``accumulate``: the
        gradients are all-reduced on the last one only); returns the global batch's mean loss and
        the gradient norm before clipping."""
        from tinyvla_ros.data.distributed import full_tensor

        acc = self.accelerator
        self.model.train()
        total, norm = 0.0, math.nan
        for m, batch in enumerate(micro_batches):
            with acc.accumulate(self.model):
                loss, share = self._micro_loss(batch, self._generator(self.step, m, 11))
                acc.backward(loss)  # divides by grad_accum
                total += float(share / len(micro_batches))
                if not acc.sync_gradients:
                    continue
                if self.world > 1:
                    total = float(
                        acc.reduce(torch.tensor([total], dtype=torch.float64, device=self.device), "sum")[0]
                    )
                if not math.isfinite(total):
                    raise FloatingPointError(
                        f"training loss became {total} at step {self.step}: lower the learning rate"
                    )
                norm = float(
                    full_tensor(acc.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm))
                )
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
        if not acc.sync_gradients:
            raise RuntimeError(f"{len(micro_batches)} micro-batches ended between optimizer steps")
        if self.ema is not None:
            self.ema.step(self.trainable)
        return total, norm

    @torch.no_grad()
    def validate(self, val_ds: EpisodeDataset) -> float:
        """Mean loss over the first ``val_batches`` batches of the validation episodes (fixed noise);
        every rank evaluates all of them (identically: the same result on every rank)."""
        self.model.eval()
        b = self.cfg.batch_size
        count = min(len(val_ds), self.cfg.val_batches * b)
        picks = np.linspace(0, len(val_ds) - 1, count).round().astype(int)  # spread over the episodes
        losses = []
        with self._ema_weights():
            for k in range(0, count, b):
                batch = self.collate([val_ds[int(i)] for i in picks[k : k + b]])
                losses.append(float(self.model(batch, generator=self._generator(10_000_019, k))))
        self.model.train()
        return float(np.mean(losses))

    def run(self) -> Path:
        """Train to ``steps`` (or ``stop_after``: save and return the training checkpoint, to be
        continued with ``resume``); returns the final merged checkpoint directory."""
        cfg = self.cfg
        acc = self.accelerator
        self._prepare_output()
        config = self.policy.config
        if config.aux_dim and not (config.vision.frozen and cfg.cache_features):
            raise ValueError(
                "--aux-objects needs a frozen tower with cached features (e.g. --preset cpu-lite0)"
            )
        if cfg.image_noise and not (config.vision.frozen and cfg.cache_features):
            raise ValueError(
                "--image-noise is applied where the feature cache is written: it needs a frozen tower "
                "with cached features (e.g. --preset cpu-lite0)"
            )
        if config.vision.frozen and cfg.cache_features:
            from tinyvla_ros.data.distributed import is_fsdp
            from tinyvla_ros.data.features import collate_features

            if is_fsdp(acc):
                raise ValueError("the feature cache (CPU presets) runs without FSDP: use DDP or one process")

            self.collate = collate_features
            with acc.main_process_first():  # the main process computes the cache, the others read it
                loader, val_ds, _, _ = make_cached_loaders(
                    cfg, self.policy, self.out, self.step, self.rank, self.world, writer=self.is_main
                )
        else:
            loader, val_ds, _, _ = make_loaders(
                cfg,
                config.image_size,
                config.chunk_len,
                config.camera_names,
                self.step,
                self.rank,
                self.world,
            )
        bar = None
        if cfg.progress and self.is_main:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        pending: list[dict[str, Any]] = []
        tick, samples = time.perf_counter(), 0
        for batch in loader:
            pending.append(batch)
            if len(pending) < cfg.grad_accum:
                continue
            loss, grad_norm = self._optimizer_step(pending)
            samples += sum(len(b["instruction"]) for b in pending) * self.world
            pending = []
            self.step += 1
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                elapsed = time.perf_counter() - tick
                rate = samples / max(elapsed, 1e-9)
                lrs = [g["lr"] for g in self.optimizer.param_groups]
                entry = {"step": self.step, "loss": loss, "grad_norm": grad_norm, "lr": lrs}
                entry["samples_per_s"] = rate
                if self.device.type == "cuda":  # this process's peak (README: memory per GPU)
                    entry["gpu_peak_gb"] = torch.cuda.max_memory_allocated(self.device) / 1e9
                self._log(entry)
                tick, samples = time.perf_counter(), 0
                if bar is not None:
                    bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{rate:.1f}", lr=f"{lrs[0]:.2e}")
            if val_ds is not None and (self.step % cfg.val_every == 0 or self.step == cfg.steps):
                val = self.validate(val_ds)
                self._log({"step": self.step, "val_loss": val})
                if bar is not None:
                    bar.write(f"step {self.step}: validation loss {val:.4f}")
            interrupted = cfg.stop_after and self.step >= cfg.stop_after and self.step < cfg.steps
            if self.step % cfg.save_every == 0 or self.step == cfg.steps or interrupted:
                self._save()
            if bar is not None:
                bar.update(1)
            if interrupted:
                break
        if bar is not None:
            bar.close()
        if self.is_main:
            plot_curves(self.metrics, self.out / "curves.png")
        if self.step < cfg.steps:
            acc.wait_for_everyone()
            return latest_checkpoint(self.out / "checkpoints")
        final = self.finish()
        acc.wait_for_everyone()
        return final

    def finish(self) -> Path:
        """Merge LoRA (if any) into a copy of the weights and write ``final/`` (main process; under
        FSDP every rank first helps gather the weights)."""
        from tinyvla_ros.data.distributed import gathered, is_fsdp

        final = self.out / "final"
        policy = self.policy
        if is_fsdp(self.accelerator):  # whole weights into an unsharded copy on the main process
            from tinyvla_ros.data.distributed import full_model_state

            state = full_model_state(self.accelerator, self.model, policy)
            shadow = list(gathered(self.ema.shadow_params)) if self.ema is not None else []
            if not self.is_main:
                return final
            with torch.random.fork_rng(devices=[]):
                policy = build_policy(self.cfg, self.info, normalizer_from_stats(self.stats))
            policy.load_state_dict(state, strict=True)
            with torch.no_grad():
                for param, value in zip(
                    (p for p in policy.parameters() if p.requires_grad), shadow, strict=True
                ):
                    param.copy_(value)
        else:
            if not self.is_main:
                return final
            if self.ema is not None:  # deploy the averaged weights
                self.ema.copy_to(self.trainable)
        if final.exists():
            shutil.rmtree(final)
        if policy.lora_applied:
            policy.merge_lora()
        policy.to("cpu").eval()
        policy.save_pretrained(final)
        summary = {
            "steps": self.step,
            "dataset": str(Path(self.cfg.dataset).resolve()),
            "preset": policy.config.name,
            "augment": asdict(self.cfg.augment),
            "eval_center_crop": self.cfg.augment.crop_ratio,
            "fps": self.info.fps,
            "action_dt": 1.0 / self.info.fps,
            "ema": self.ema is not None,
            "processes": self.world,
            "last_loss": next((m["loss"] for m in reversed(self.metrics) if "loss" in m), None),
            "last_val_loss": next((m["val_loss"] for m in reversed(self.metrics) if "val_loss" in m), None),
        }
        (final / "training.json").write_text(json.dumps(summary, indent=1) + "\n")
        return final


def plot_curves(metrics: list[dict[str, Any]], path: Path) -> Path | None:
    """Training loss, validation loss and learning rate against step -> PNG (matplotlib, Agg)."""
    train = [(m["step"], m["loss"]) for m in metrics if "loss" in m]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    val = [(m["step"], m["val_loss"]) for m in metrics if "val_loss" in m]
    lr = [(m["step"], m["lr"][0]) for m in metrics if "lr" in m]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(*zip(*train, strict=True), label="train loss", lw=1)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("noise MSE")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(*zip(*lr, strict=True), color="grey", ls="--", lw=0.8, label="lr")
    ax2.set_ylabel("learning rate")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [ln.get_label() for ln in lines], loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig(dataset="", output="")
    p = argparse.ArgumentParser(prog="tinyvla-train", description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", help="episode dataset directory (tinyvla-convert / tinyvla-import output)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, metrics, final/)")
    p.add_argument(
        "--preset", default=d.preset, choices=PRESETS, help="model preset when training from scratch"
    )
    p.add_argument(
        "--init", default="", help="Llava-Pythia initialiser directory (large presets; implies LoRA)"
    )
    p.add_argument(
        "--warm-start",
        default="",
        metavar="CHECKPOINT",
        help="start from this trained checkpoint (its config and normalisation; fresh optimizer and "
        "schedule), e.g. to fine-tune on added data",
    )
    p.add_argument("--lora", action="store_true", help="LoRA on the backbone also from scratch")
    p.add_argument("--lora-variant", default=d.lora_variant, choices=("official", "paper"))
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--grad-accum", type=int, default=d.grad_accum, help="micro-batches per optimizer step")
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate without LoRA")
    p.add_argument("--lr-lora", type=float, default=d.lr_lora, help="LoRA learning rate")
    p.add_argument(
        "--lr-base", type=float, default=d.lr_base, help="projector + head learning rate with LoRA"
    )
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument(
        "--max-grad-norm", type=float, default=d.max_grad_norm, help="gradient clipping (global L2 norm)"
    )
    p.add_argument(
        "--precision", default=d.precision, choices=PRECISIONS, help="bf16/fp16 autocast (fp16: CUDA)"
    )
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda[:i]")
    p.add_argument(
        "--val-fraction", type=float, default=d.val_fraction, help="episodes held out for validation"
    )
    p.add_argument("--val-every", type=int, default=d.val_every)
    p.add_argument("--save-every", type=int, default=d.save_every)
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--num-workers", type=int, default=d.num_workers, help="DataLoader worker processes")
    p.add_argument("--num-threads", type=int, default=d.num_threads, help="torch CPU threads (0: default)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--stop-after", type=int, default=0, help="save and stop at this step (resume later)")
    p.add_argument("--no-augment", action="store_true", help="train without augmentation (centre crop only)")
    p.add_argument(
        "--crop-ratio", type=float, default=0.95, help="random/centre crop side fraction (1: none)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--ema", action="store_true", help="keep an EMA of the weights (diffusers EMAModel) and deploy it"
    )
    p.add_argument("--ema-power", type=float, default=d.ema_power, help="EMA warm-up power (0.75: DP)")
    p.add_argument(
        "--no-feature-cache",
        action="store_true",
        help="run a frozen tower on every step instead of caching its features once",
    )
    p.add_argument(
        "--feature-cache",
        default=d.feature_cache,
        metavar="DIR",
        help="the frozen tower's feature cache (default <out>/feature_cache); share one between runs: "
        "files are named by episode content, so datasets holding the same episodes reuse them",
    )
    p.add_argument(
        "--feature-shift", type=int, default=d.feature_shift, help="cached features: random shift (cells)"
    )
    p.add_argument(
        "--aux-objects",
        type=float,
        default=0.0,
        metavar="WEIGHT",
        help="sim-only: add an object-position loss on the condition with this weight (data/aux_targets.py)",
    )
    p.add_argument(
        "--state-noise",
        type=float,
        default=0.0,
        metavar="STD",
        help="Gaussian noise of this std (normalised state units) added to the training states, so the "
        "policy cannot read the demonstrator's target from the arm's own motion (the copycat problem)",
    )
    p.add_argument(
        "--image-noise",
        type=float,
        default=0.0,
        metavar="STD",
        help="frozen tower with cached features: Gaussian sensor noise on every frame before the tower, "
        "std uniform in [0, STD] intensity levels per frame (the fake's cameras add 2.0; a policy trained "
        "on clean frames alone can break on it)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model config override when training from scratch, e.g. image_size=128 or vision.patch_size=8",
    )
    return p


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """["image_size=128", "vision.patch_size=8"] -> {"image_size": 128, "vision": {"patch_size": 8}}
    (values parsed as YAML); ValueError naming the item when one is not KEY=VALUE."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE (e.g. image_size=128), got {item!r}")
        *parents, leaf = key.strip().split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {item!r}: {part!r} is already set to a value")
        node[leaf] = yaml.safe_load(text)
    return out


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``tinyvla-train DATASET --out RUN [options]``."""
    args = build_parser().parse_args(argv)
    try:
        cfg = TrainConfig(
            dataset=args.dataset, output=args.out, preset=args.preset, init=args.init, lora=args.lora,
            lora_variant=args.lora_variant, steps=args.steps, batch_size=args.batch_size,
            grad_accum=args.grad_accum, lr=args.lr, lr_lora=args.lr_lora, lr_base=args.lr_base,
            warmup_steps=args.warmup_steps, max_grad_norm=args.max_grad_norm, precision=args.precision,
            device=args.device,
            val_fraction=args.val_fraction, val_every=args.val_every, save_every=args.save_every,
            log_every=args.log_every, num_workers=args.num_workers, num_threads=args.num_threads,
            seed=args.seed, resume=args.resume, stop_after=args.stop_after, progress=not args.no_progress,
            augment=AugmentConfig(enabled=not args.no_augment, crop_ratio=args.crop_ratio),
            overrides=parse_overrides(args.set), ema=args.ema, ema_power=args.ema_power,
            cache_features=not args.no_feature_cache, feature_cache=args.feature_cache,
            warm_start=args.warm_start,
            feature_shift=args.feature_shift,
            aux_objects=args.aux_objects, state_noise=args.state_noise, image_noise=args.image_noise,
        )  # fmt: skip
        trainer = Trainer(cfg)
        final = trainer.run()
    except (ValueError, FileNotFoundError, FloatingPointError) as exc:
        print(f"tinyvla-train: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if trainer.is_main:
        what = "ready-to-deploy checkpoint" if final.name == "final" else "stopped; resume from"
        print(f"{what}: {final}")
    trainer.accelerator.end_training()  # a launched run: its process group closes here
    return 0


if __name__ == "__main__":
    sys.exit(main())
