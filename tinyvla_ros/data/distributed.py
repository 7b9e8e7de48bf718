"""``tinyvla-train`` on one process or many, through Hugging Face accelerate.

The same command runs
    in one process                 ``tinyvla-train DATASET --out RUN ...``
    on N GPUs / nodes (DDP)        ``accelerate launch --config_file config/accelerate/multi_gpu.yaml
                                   -m tinyvla_ros.data.train DATASET --out RUN ...``
    sharded (FSDP2)                ``... --config_file config/accelerate/fsdp.yaml ...``

What accelerate does: starts the process group (NCCL on GPUs, gloo on CPUs), places each rank on
its device, wraps the model (DDP with ``find_unused_parameters``: CLIP's last layer never gets a
gradient, the selected hidden state is the second-to-last; FSDP2 from the launcher's config),
bf16 / fp16 autocast (and the fp16 grad scaler), gradient accumulation (``accumulate``: no
all-reduce on the micro-batches before the last; ``backward`` divides by ``grad_accum``),
gradient clipping over the sharded or replicated gradients, and the collectives below.

What the trainer keeps (data/train.py): the data order (StepBatches), the learning-rate schedule
(stepped once per optimizer step, not once per process as accelerate's scheduler wrapper would),
its own checkpoint format (safetensors + JSON, no pickle), validation, EMA, LoRA and the merge.

Conventions of a run on W processes:
    --batch-size         the global micro-batch: rank r takes rows [r b/W, (r+1) b/W) of the batch
                         one process would draw for (seed, step, micro-batch), with the same
                         augmentation seeds and the same rows of the diffusion noise, so W
                         processes train on exactly the batches of one (b must divide by W);
    loss                 every rank divides its sums by the global batch's counts (one all-reduce
                         of two numbers) and multiplies by W (DDP / FSDP average the gradients):
                         the gradient of the one-process loss, whatever the split;
    checkpoints          full, unsharded weights and optimizer state (FSDP gathers them), written
                         by the main process only: they resume at any world size;
    EMA                  updated identically on every rank from its weights (replicated, or its
                         shards under FSDP; no communication); saved by the main process;
    validation           every rank evaluates the whole (small) validation set, identically;
    writes               only the main process writes (checkpoints, metrics, curves, final/,
                         the feature cache); the others wait where they need its files;
    dropout              (LoRA's) each rank draws from its own stream, seeded from (seed, rank),
                         so dropout masks (only) differ from a one-process run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import torch

MIXED_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


def _launched() -> bool:
    """True in a process started by a launcher for a multi-process run (accelerate, torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def make_accelerator(precision: str, device: str, grad_accum: int) -> Any:
    """An ``accelerate.Accelerator`` for a run: mixed precision from ``precision`` (fp32 / bf16 /
    fp16), ``device`` (auto | cpu | cuda[:i]; a launched process takes its local rank's device),
    ``grad_accum`` micro-batches per optimizer step. Raises ValueError for combinations the
    trainer does not support (DeepSpeed, FSDP1, a launcher asking for another precision)."""
    import torch.distributed as dist
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import DistributedType

    launcher_precision = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if launcher_precision not in ("no", MIXED_PRECISION[precision]):
        raise ValueError(
            f"the launcher asks for mixed precision {launcher_precision!r} but --precision is "
            f"{precision!r}: pass --precision {'bf16' if launcher_precision == 'bf16' else 'fp16'}"
        )
    if not (dist.is_available() and dist.is_initialized()):
        # a fresh accelerate state for each run of this process (tests, notebooks run several)
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but torch sees no CUDA device")
    cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    pinned = None
    if device.startswith("cuda:"):
        if _launched():
            raise ValueError(
                f"--device {device} picks a GPU for one process; under a launcher every process "
                "takes the GPU of its local rank (use --device auto and CUDA_VISIBLE_DEVICES)"
            )
        pinned = os.environ.get("ACCELERATE_TORCH_DEVICE")
        os.environ["ACCELERATE_TORCH_DEVICE"] = device
    try:
        accelerator = Accelerator(
            cpu=cpu,
            mixed_precision=MIXED_PRECISION[precision],
            gradient_accumulation_steps=grad_accum,
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
    finally:
        if device.startswith("cuda:"):
            if pinned is None:
                os.environ.pop("ACCELERATE_TORCH_DEVICE", None)
            else:
                os.environ["ACCELERATE_TORCH_DEVICE"] = pinned
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        raise ValueError(
            "DeepSpeed is not supported (its checkpoints are pickles): shard with FSDP2 instead "
            "(config/accelerate/fsdp.yaml)"
        )
    if is_fsdp(accelerator) and not accelerator.is_fsdp2:
        raise ValueError("FSDP1 is not supported: set fsdp_version: 2 (config/accelerate/fsdp.yaml)")
    return accelerator


def is_fsdp(accelerator: Any) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


def shard(batch_size: int, rank: int, world: int) -> tuple[int, int]:
    """Rows [lo, hi) of a global batch of ``batch_size`` that rank ``rank`` of ``world`` takes."""
    if batch_size % world:
        raise ValueError(
            f"--batch-size {batch_size} (the global micro-batch) must divide by the {world} processes"
        )
    per = batch_size // world
    return rank * per, (rank + 1) * per


# --- full (unsharded) state: what checkpoints hold ------------------------------------------------


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a DTensor (FSDP2 shard: a collective, every rank must call it), else itself."""
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def copy_full_into(destination: torch.Tensor, full: torch.Tensor) -> None:
    """Copy a whole tensor into ``destination`` (this rank's shard of it under FSDP2)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    with torch.no_grad():
        if isinstance(destination, DTensor):
            sharded = distribute_tensor(
                full.to(destination.device, destination.dtype),
                destination.device_mesh,
                destination.placements,
            )
            destination.copy_(sharded)
        else:
            destination.copy_(full)


def _options(**kw: bool) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def full_model_state(accelerator: Any, model: Any, policy: Any) -> dict[str, torch.Tensor]:
    """The whole state dict (on the main process; FSDP: gathered, a collective)."""
    if not is_fsdp(accelerator):
        return policy.state_dict()
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_options(cpu_offload=True))


def load_full_model_state(
    accelerator: Any, model: Any, policy: Any, state: Mapping[str, torch.Tensor]
) -> None:
    """Load a whole state dict on every rank (FSDP: each rank keeps its shards)."""
    if not is_fsdp(accelerator):
        policy.load_state_dict(state, strict=True)
        return
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    set_model_state_dict(model, dict(state), options=_options(strict=True))


def parameter_order(optimizer: torch.optim.Optimizer, policy: Any) -> list[str]:
    """Names of the optimizer's parameters in the order of its groups: index i of
    ``optimizer.state_dict()`` is parameter ``parameter_order(...)[i]``."""
    names = {id(p): n for n, p in policy.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


def by_index(named: Mapping[str, Any], order: list[str]) -> dict[str, Any]:
    """An optimizer state dict keyed by parameter names (torch.distributed.checkpoint) -> keyed by
    index (``optimizer.state_dict()``, what checkpoints store)."""
    index = {name: i for i, name in enumerate(order)}
    groups = [{**g, "params": [index[n] for n in g["params"]]} for g in named["param_groups"]]
    return {"state": {index[n]: v for n, v in named["state"].items()}, "param_groups": groups}


def by_name(indexed: Mapping[str, Any], order: list[str]) -> dict[str, Any]:
    """Inverse of by_index."""
    groups = [{**g, "params": [order[int(i)] for i in g["params"]]} for g in indexed["param_groups"]]
    return {"state": {order[int(i)]: v for i, v in indexed["state"].items()}, "param_groups": groups}


def full_optimizer_state(accelerator: Any, model: Any, optimizer: Any, policy: Any) -> dict[str, Any]:
    """The whole optimizer state dict, keyed by index (on the main process; FSDP: gathered)."""
    inner = getattr(optimizer, "optimizer", optimizer)
    if not is_fsdp(accelerator):
        return inner.state_dict()
    state = gather_optimizer_state(model, inner, policy)
    return state if accelerator.is_main_process else {}


def load_full_optimizer_state(
    accelerator: Any, model: Any, optimizer: Any, policy: Any, state: Mapping[str, Any]
) -> None:
    """Load a whole optimizer state dict (keyed by index) on every rank."""
    inner = getattr(optimizer, "optimizer", optimizer)
    if not is_fsdp(accelerator):
        inner.load_state_dict(dict(state))
        return
    scatter_optimizer_state(model, inner, policy, state)


def gather_optimizer_state(model: Any, optimizer: torch.optim.Optimizer, policy: Any) -> dict[str, Any]:
    """torch.distributed.checkpoint's whole optimizer state (FSDP2: gathered from the shards, a
    collective; on the CPU of rank 0 only) keyed by index like ``optimizer.state_dict()``."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    named = get_optimizer_state_dict(model, optimizer, options=_options(cpu_offload=True))
    if not named.get("param_groups"):  # the other ranks get nothing
        return {}
    return by_index(named, parameter_order(optimizer, policy))


def scatter_optimizer_state(
    model: Any, optimizer: torch.optim.Optimizer, policy: Any, state: Mapping[str, Any]
) -> None:
    """Load a whole optimizer state keyed by index through torch.distributed.checkpoint (FSDP2:
    each rank keeps its shards). Weights that never had a gradient (CLIP's unused last layer)
    have no state: strict=False."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    named = by_name(state, parameter_order(optimizer, policy))
    set_optimizer_state_dict(model, optimizer, named, options=_options(strict=False))


def gathered(tensors: list[torch.Tensor]) -> Iterator[torch.Tensor]:
    """Whole tensors of a list of (possibly FSDP-sharded) tensors, one at a time, on the CPU."""
    for tensor in tensors:
        yield full_tensor(tensor.detach()).cpu()
