"""LoRA through peft on the LLM and the vision tower; merge back into plain Linear layers.

``inject_lora(backbone, settings)`` adds LoRA adapters in place (module paths stay the same;
an adapted Linear becomes peft's ``lora.Linear`` with ``base_layer``/``lora_A``/``lora_B``),
freezes the LLM and vision tower except the adapters, and leaves projector and head trainable.
``merge_lora_layers(module)`` folds W + (alpha / r) * B A into each base Linear and puts the
plain Linear back, so a merged model has exactly the parameters of the model without LoRA.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from tinyvla_ros.vla.config import LoraSettings


def _peft():
    try:
        import peft
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError as exc:  # pragma: no cover - peft is in requirements/ml.txt
        raise ImportError("LoRA needs peft: pip install -r requirements/ml.txt") from exc
    return peft, BaseTunerLayer


def has_lora(module: nn.Module) -> bool:
    """True if any LoRA layer is present in ``module``."""
    _, base_tuner = _peft()
    return any(isinstance(m, base_tuner) for m in module.modules())


def _inject(part: nn.Module, targets: tuple[str, ...], settings: LoraSettings) -> int:
    """Inject adapters into ``part`` for module names ending in ``targets``; returns #adapted layers."""
    if not targets:
        return 0
    peft, base_tuner = _peft()
    wanted = [
        n for n, m in part.named_modules() if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in targets
    ]
    if not wanted:
        raise ValueError(f"LoRA targets {list(targets)} match no Linear layer of {type(part).__name__}")
    lora_config = peft.LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(targets),
        bias="none",
    )
    peft.inject_adapter_in_model(lora_config, part)
    if hasattr(part, "peft_config"):
        del part.peft_config
    return sum(isinstance(m, base_tuner) for m in part.modules())


def inject_lora(backbone: nn.Module, settings: LoraSettings) -> dict[str, int]:
    """Add LoRA to ``backbone.llm`` and ``backbone.vision`` (a CLIP tower); freeze their base weights.

    Returns the number of adapted Linear layers per part, e.g. {"llm": 24, "vision": 138}.
    """
    if has_lora(backbone):
        raise RuntimeError("LoRA is already applied; merge_lora() first to apply it again")
    counts = {}
    training = backbone.training
    # A conv tower has no transformer Linears: it keeps its own trainability (vision.frozen).
    parts = ("llm", "vision") if backbone.config.vision.tower == "clip" else ("llm",)
    for part_name in parts:
        part = getattr(backbone, part_name)
        counts[part_name] = _inject(part, settings.targets(part_name), settings)
        for name, param in part.named_parameters():
            param.requires_grad_("lora_" in name)
    backbone.train(training)  # new adapter modules (dropout) follow the model's train/eval mode
    return counts


def merge_lora_layers(module: nn.Module) -> int:
    """Merge every LoRA layer under ``module`` into its base layer and unwrap it; returns the count."""
    _, base_tuner = _peft()
    found = [(name, m) for name, m in module.named_modules() if isinstance(m, base_tuner)]
    for name, layer in found:
        layer.merge(safe_merge=True)
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        base = layer.get_base_layer()
        setattr(parent, child, base)
    return len(found)


def lora_parameter_count(module: nn.Module) -> int:
    """Number of LoRA adapter parameters in ``module``."""
    return sum(p.numel() for n, p in module.named_parameters() if "lora_" in n)


def lora_state(module: nn.Module) -> dict[str, Any]:
    """{"layers": adapted layer count, "parameters": adapter parameter count}."""
    _, base_tuner = _peft()
    return {
        "layers": sum(isinstance(m, base_tuner) for m in module.modules()),
        "parameters": lora_parameter_count(module),
    }
