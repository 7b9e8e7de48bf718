"""Export a TinyVLA checkpoint to ONNX and check it against torch: ``tinyvla-export``.

    tinyvla-export <checkpoint_dir> [--opset 18] [--check] [--precision fp32|fp16]
                   [--graphs encoder denoiser denoise_step sampler] [--exporter torchscript|dynamo]

Graphs (written beside the checkpoint; LoRA adapters are merged first). Glossary: B batch (dynamic),
N cameras, S image side, L prompt tokens (dynamic), Ds state, T chunk, Da action, C condition.

    encoder.onnx       pixel_values (B, N, 3, S, S) f32 in [0, 1], input_ids (B, L) i64,
                       attention_mask (B, L) i64, state_norm (B, Ds) f32  -> condition (B, C)
    denoiser.onnx      noisy (B, T, Da) f32, timestep (B,) i64, condition (B, C) -> eps (B, T, Da) f32
    denoise_step.onnx  denoiser + one DDIM update inside the graph: sample (B, T, Da), timestep (B,),
                       condition (B, C), coefficients (4,) f32 -> prev_sample (B, T, Da) f32
                       (lets an engine keep the whole loop on the device: no host copies per step)
    sampler_<n>.onnx   the whole n-step DDIM loop unrolled: condition (B, C), noise (B, T, Da)
                       -> normalised actions (B, T, Da)
    denoise_step_inpaint.onnx   denoise_step + the inpainting blend (vla/inpaint.py) after the
                       update: + prefix (B, T, Da) normalised, prefix_weight (B, T), prefix_noise
                       (B, T, Da) -> prev_sample (the committed prefix and mask are graph inputs)
    sampler_inpaint_<n>.onnx    the inpainting loop unrolled: condition, noise, prefix (B, T, Da),
                       prefix_weight (B, T), prefix_noises (n, B, T, Da) -> actions (B, T, Da)

fp16 graphs are named ``encoder.fp16.onnx`` etc. (for the CUDA execution provider). int8 (CPU
provider): ``encoder.int8.onnx`` is the fused fp32 encoder with its weight MatMuls dynamically
quantised (int8 weights per output channel, activations quantised per call); the loop graphs
stay fp32 (their convolutions gain nothing from ORT's int8 kernels), so precision int8 uses
``denoiser.onnx`` etc. beside it. Its parity check bounds the condition's relative error
(INT8_CONDITION_TOLERANCE) and reports, without a bound, how far the chunk moves. ``onnx.json``
(the manifest) records the weights' sha256, the graph-relevant config, versions, the DDIM plan
and the parity figures; engines use it to refuse ONNX files that no longer match the weights.
The DDIM loop around the graphs is ``tinyvla_ros.vla.engines.ddim.DDIMPlan`` (diffusers' numbers);
the parity checks (one per graph) are ``tinyvla_ros.vla.engines.parity``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tinyvla_ros.vla.checkpoint import WEIGHTS_FILE, read_checkpoint_config
from tinyvla_ros.vla.engines.ddim import DDIMPlan
from tinyvla_ros.vla.engines.parity import parity_report
from tinyvla_ros.vla.inpaint import blend_torch

FORMAT = "tinyvla_ros.onnx/1"
MANIFEST_FILE = "onnx.json"
GRAPHS = ("encoder", "denoiser", "denoise_step", "sampler", "denoise_step_inpaint", "sampler_inpaint")
UNROLLED = ("sampler", "sampler_inpaint")  # graphs holding the whole loop: their file names carry n
DEFAULT_GRAPHS = ("encoder", "denoiser")
EXPORTERS = ("auto", "torchscript", "dynamo")
EXPORT_PRECISIONS = ("fp32", "fp16", "int8")
INT8_GRAPHS = ("encoder",)  # precision int8 quantises these; the loop graphs stay fp32
EXTERNAL_DATA = ("auto", "always", "never")
# Config fields that only the loop around the graphs uses (the sampler graph records its own steps).
SCHEDULE_FIELDS = ("num_inference_steps",)
PARITY_TOLERANCE = 1e-4
# int8 encoder: relative L2 error allowed on its condition, ||c_int8 - c_torch|| / ||c_torch||
# (measured 0.8-1.4% on the small presets; a saturating int8 kernel gives far more).
INT8_CONDITION_TOLERANCE = 0.05
EXTERNAL_DATA_BYTES = 1_500_000_000  # protobuf's hard limit is 2 GiB
IO_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "encoder": (("pixel_values", "input_ids", "attention_mask", "state_norm"), ("condition",)),
    "denoiser": (("noisy", "timestep", "condition"), ("eps",)),
    "denoise_step": (("sample", "timestep", "condition", "coefficients"), ("prev_sample",)),
    "sampler": (("condition", "noise"), ("actions",)),
    "denoise_step_inpaint": (
        ("sample", "timestep", "condition", "coefficients", "prefix", "prefix_weight", "prefix_noise"),
        ("prev_sample",),
    ),
    "sampler_inpaint": (("condition", "noise", "prefix", "prefix_weight", "prefix_noises"), ("actions",)),
}
# Dynamic axes per input/output name: batch everywhere, prompt length on the text inputs.
_DYNAMIC = {
    "pixel_values": {0: "batch"},
    "input_ids": {0: "batch", 1: "text"},
    "attention_mask": {0: "batch", 1: "text"},
    "state_norm": {0: "batch"},
    "condition": {0: "batch"},
    "noisy": {0: "batch"},
    "timestep": {0: "batch"},
    "eps": {0: "batch"},
    "sample": {0: "batch"},
    "prev_sample": {0: "batch"},
    "noise": {0: "batch"},
    "actions": {0: "batch"},
    "prefix": {0: "batch"},
    "prefix_weight": {0: "batch"},
    "prefix_noise": {0: "batch"},
    "prefix_noises": {1: "batch"},
}


class ExportError(RuntimeError):
    """Export or its parity check failed (the message says which graph and by how much)."""


def file_precision(graph: str, precision: str) -> str:
    """Precision of ``graph``'s file when a checkpoint is run in ``precision`` (int8: the encoder only)."""
    return "fp32" if precision == "int8" and graph not in INT8_GRAPHS else precision


def graph_file(graph: str, precision: str = "fp32", steps: int | None = None) -> str:
    """File name of ``graph``: encoder.onnx, denoiser.fp16.onnx, encoder.int8.onnx, sampler_10.onnx ...
    (precision int8 names the fp32 files of the graphs it does not quantise)."""
    if graph not in GRAPHS:
        raise ValueError(f"graph must be one of {list(GRAPHS)}, got {graph!r}")
    if precision not in EXPORT_PRECISIONS:
        raise ValueError(f"precision must be one of {list(EXPORT_PRECISIONS)}, got {precision!r}")
    precision = file_precision(graph, precision)
    stem = graph if graph not in UNROLLED else f"{graph}_{_steps(steps)}"
    return f"{stem}.onnx" if precision == "fp32" else f"{stem}.{precision}.onnx"


def _steps(steps: Any) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"the sampler graph needs num_inference_steps >= 1, got {steps!r}")
    return steps


@dataclass(frozen=True)
class ExportConfig:
    """What to export and how.

    opset: ONNX opset (>= 18: the backbone's LayerNorm/attention need it); exporter: "torchscript"
    (torch.onnx's tracing exporter: ~1 s per graph for the small presets), "dynamo" (torch.export
    based: ~30-80 s per small graph here) or "auto": torchscript for fp32, dynamo for fp16 (the
    tracing exporter left some fp16 layers in fp32); precision: "fp32", "fp16" (CUDA only at run
    time) or "int8" (CPU provider; int8 encoder weights, fp32 loop graphs); graphs: subset of GRAPHS;
    sampler_steps: DDIM steps unrolled in the sampler graph (None = the checkpoint's);
    check: compare every exported graph with torch (max abs diff <= tolerance for fp32, at least
    2e-2 for fp16; an int8 encoder: relative error <= INT8_CONDITION_TOLERANCE);
    external_data: "auto" stores weights in ``<file>.data`` when a graph exceeds ~1.5 GB;
    fuse: rewrite the fp32 encoder with ONNX Runtime's transformer optimizer (LayerNorm,
    SkipLayerNorm, BiasGelu, QuickGelu patterns -> one contrib op each, run by the CPU and CUDA
    providers): ~25% less encoder time on CPU at unchanged outputs (parity check as usual).
    """

    opset: int = 18
    exporter: str = "auto"
    precision: str = "fp32"
    graphs: tuple[str, ...] = DEFAULT_GRAPHS
    sampler_steps: int | None = None
    check: bool = True
    tolerance: float = PARITY_TOLERANCE
    external_data: str = "auto"
    fuse: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.opset, bool) or not isinstance(self.opset, int) or not 18 <= self.opset <= 23:
            raise ValueError(f"opset must be an integer in [18, 23], got {self.opset!r}")
        if self.exporter not in EXPORTERS:
            raise ValueError(f"exporter must be one of {list(EXPORTERS)}, got {self.exporter!r}")
        if self.precision not in EXPORT_PRECISIONS:
            raise ValueError(f"precision must be one of {list(EXPORT_PRECISIONS)}, got {self.precision!r}")
        bad = [g for g in self.graphs if g not in GRAPHS]
        if not self.graphs or bad or len(set(self.graphs)) != len(self.graphs):
            raise ValueError(f"graphs must be distinct names from {list(GRAPHS)}, got {self.graphs!r}")
        if self.sampler_steps is not None:
            _steps(self.sampler_steps)
        if not (isinstance(self.tolerance, int | float) and 0 < self.tolerance < 1):
            raise ValueError(f"tolerance must be a number in (0, 1), got {self.tolerance!r}")
        if self.external_data not in EXTERNAL_DATA:
            raise ValueError(
                f"external_data must be one of {list(EXTERNAL_DATA)}, got {self.external_data!r}"
            )


# ---------------------------------------------------------------------------------- graph modules
class EncoderGraph(nn.Module):
    """(pixel_values, input_ids, attention_mask, state_norm) -> condition (B, C) in the model dtype."""

    def __init__(self, policy: Any) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, pixel_values, input_ids, attention_mask, state_norm):  # noqa: D102
        return self.policy.encode_observation(pixel_values, input_ids, attention_mask, state_norm)


class DenoiserGraph(nn.Module):
    """(noisy (B, T, Da) f32, timestep (B,) i64, condition (B, C)) -> eps (B, T, Da) f32."""

    def __init__(self, policy: Any) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, noisy, timestep, condition):  # noqa: D102
        return self.policy.denoise(noisy, timestep, condition).float()


class DenoiseStepGraph(nn.Module):
    """Denoiser + one DDIM update (coefficients as in DDIMPlan): -> prev_sample (B, T, Da) f32."""

    def __init__(self, policy: Any, plan: DDIMPlan) -> None:
        super().__init__()
        self.policy = policy
        self.clip = plan.clip
        self.clip_range = plan.clip_range

    def forward(self, sample, timestep, condition, coefficients):  # noqa: D102
        eps = self.policy.denoise(sample, timestep, condition).float()  # (B, T, Da)
        x0 = (sample - coefficients[1] * eps) / coefficients[0]
        if self.clip:
            x0 = x0.clamp(-self.clip_range, self.clip_range)
        return coefficients[2] * x0 + coefficients[3] * eps


class DenoiseStepInpaintGraph(DenoiseStepGraph):
    """DenoiseStepGraph + the inpainting blend at the next noise level (coefficients[2], [3])."""

    def forward(self, sample, timestep, condition, coefficients, prefix, prefix_weight, prefix_noise):  # noqa: D102
        x = super().forward(sample, timestep, condition, coefficients)  # (B, T, Da)
        return blend_torch(x, prefix, prefix_weight, prefix_noise, coefficients[2], coefficients[3])


class SamplerInpaintGraph(nn.Module):
    """The inpainting DDIM loop of ``plan`` unrolled (vla/inpaint.py): -> x_0 (B, T, Da)."""

    def __init__(self, policy: Any, plan: DDIMPlan) -> None:
        super().__init__()
        self.step = DenoiseStepInpaintGraph(policy, plan)
        self.timesteps = [int(t) for t in plan.timesteps]
        self.register_buffer("coefficients", torch.from_numpy(plan.coefficients.copy()), persistent=False)

    def forward(self, condition, noise, prefix, prefix_weight, prefix_noises):  # noqa: D102
        x = noise.float()
        c = self.coefficients
        x = blend_torch(x, prefix, prefix_weight, x, c[0, 0], c[0, 1])
        zeros = torch.zeros_like(noise[:, 0, 0], dtype=torch.long)  # (B,): keeps the batch dynamic
        for i, t in enumerate(self.timesteps):
            x = self.step(x, zeros + t, condition, c[i], prefix, prefix_weight, prefix_noises[i])
        return x


class SamplerGraph(nn.Module):
    """The whole DDIM loop of ``plan`` unrolled: (condition (B, C), noise (B, T, Da)) -> x_0 (B, T, Da)."""

    def __init__(self, policy: Any, plan: DDIMPlan) -> None:
        super().__init__()
        self.step = DenoiseStepGraph(policy, plan)
        self.timesteps = [int(t) for t in plan.timesteps]
        self.register_buffer("coefficients", torch.from_numpy(plan.coefficients.copy()), persistent=False)

    def forward(self, condition, noise):  # noqa: D102
        x = noise.float()
        zeros = torch.zeros_like(noise[:, 0, 0], dtype=torch.long)  # (B,): keeps the batch dynamic
        for i, t in enumerate(self.timesteps):
            x = self.step(x, zeros + t, condition, self.coefficients[i])
        return x


# ---------------------------------------------------------------------------------- manifest
def weights_digest(directory: str | Path) -> str:
    """sha256 (hex) of the checkpoint's model.safetensors."""
    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {directory} lacks {WEIGHTS_FILE}")
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 23):
            digest.update(block)
    return digest.hexdigest()


def graph_config(config: Any) -> dict[str, Any]:
    """The config fields baked into the encoder/denoiser graphs (JSON-safe); the centre crop is
    preprocessing, done before the graphs."""
    return {k: v for k, v in config.to_dict().items() if k not in SCHEDULE_FIELDS and k != "center_crop"}


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    """The ONNX manifest of a checkpoint directory, or None when there is none or it is unreadable."""
    path = Path(directory) / MANIFEST_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def manifest_problem(directory: str | Path, files: list[str], digest: str | None = None) -> str | None:
    """Why the ONNX ``files`` of ``directory`` cannot be used with its weights (None: they can)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest is None:
        return f"no valid {MANIFEST_FILE} in {directory}"
    config, _ = read_checkpoint_config(directory)
    if manifest.get("graph_config") != graph_config(config):
        return f"{MANIFEST_FILE} was written for another model configuration"
    if manifest.get("weights_sha256") != (digest or weights_digest(directory)):
        return f"{MANIFEST_FILE} was written for other weights ({WEIGHTS_FILE} changed since the export)"
    for name in files:
        if name not in manifest.get("graphs", {}) or not (directory / name).is_file():
            return f"{name} has not been exported in {directory}"
    return None


def _versions() -> dict[str, str]:
    out = {"torch": torch.__version__}
    for mod in ("onnx", "onnxruntime"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = "missing"
    return out


# ---------------------------------------------------------------------------------- export
def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("ONNX export needs the onnx package: pip install onnx==1.23.2") from exc
    return onnx


def load_export_policy(directory: str | Path, precision: str = "fp32") -> Any:
    """The checkpoint's TinyVLAPolicy on CPU, LoRA merged, eval mode, in ``precision``."""
    from tinyvla_ros.vla.policy import TinyVLAPolicy

    policy = TinyVLAPolicy.from_pretrained(directory, map_location="cpu")
    if policy.lora_applied:
        policy.merge_lora()
    policy = policy.eval().requires_grad_(False)
    return policy.half() if precision == "fp16" else policy


def example_inputs(policy: Any, batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded inputs for every graph: ``batch`` observations, prompts of different lengths (padding)."""
    c = policy.config
    gen = torch.Generator().manual_seed(seed)
    texts = ["pick up the red cube", "put the small blue bowl into the top drawer and close it slowly"]
    ids, mask = policy.tokenize_batch([texts[i % 2] for i in range(batch)])
    with torch.inference_mode():
        pixels = torch.rand((batch, c.num_cameras, 3, c.image_size, c.image_size), generator=gen)
        state = torch.randn((batch, c.state_dim), generator=gen)
        condition = policy.encode_observation(pixels, ids, mask, state)
    return {
        "pixel_values": pixels,
        "input_ids": ids,
        "attention_mask": mask,
        "state_norm": state,
        "condition": condition.clone(),
        "noisy": torch.randn((batch, c.chunk_len, c.action_dim), generator=gen),
        "timestep": torch.randint(0, c.num_train_steps, (batch,), generator=gen),
        **example_prefix(batch, c.chunk_len, c.action_dim, c.num_inference_steps, gen),
    }


def example_prefix(batch: int, chunk: int, action_dim: int, steps: int, gen: torch.Generator) -> dict:
    """Seeded inpainting inputs: prefix (B, T, Da) normalised (zero past k), prefix_weight (B, T)
    (1 on 3 steps, a decay over 2, 0 after), prefix_noise (B, T, Da), prefix_noises (n, B, T, Da)."""
    hard, soft = min(3, chunk), min(2, max(chunk - 3, 0))
    weight = torch.zeros((batch, chunk))
    weight[:, :hard] = 1.0
    weight[:, hard : hard + soft] = torch.tensor([2.0 / 3.0, 1.0 / 3.0])[:soft]
    prefix = (torch.rand((batch, chunk, action_dim), generator=gen) * 2.0 - 1.0) * (weight > 0).unsqueeze(-1)
    return {
        "prefix": prefix,
        "prefix_weight": weight,
        "prefix_noise": torch.randn((batch, chunk, action_dim), generator=gen),
        "prefix_noises": torch.randn((steps, batch, chunk, action_dim), generator=gen),
    }


def _module_and_args(graph: str, policy: Any, plan: DDIMPlan, ex: dict[str, torch.Tensor]) -> tuple:
    if graph == "encoder":
        return EncoderGraph(policy), tuple(ex[k] for k in IO_NAMES["encoder"][0])
    if graph == "denoiser":
        return DenoiserGraph(policy), (ex["noisy"], ex["timestep"], ex["condition"])
    coefficients = torch.from_numpy(plan.coefficients[0].copy())
    if graph == "denoise_step":
        return DenoiseStepGraph(policy, plan), (ex["noisy"], ex["timestep"], ex["condition"], coefficients)
    if graph == "denoise_step_inpaint":
        args = (ex["noisy"], ex["timestep"], ex["condition"], coefficients)
        return DenoiseStepInpaintGraph(policy, plan), (
            *args,
            ex["prefix"],
            ex["prefix_weight"],
            ex["prefix_noise"],
        )
    if graph == "sampler_inpaint":
        noises = ex["prefix_noises"][:1].expand(len(plan), -1, -1, -1).contiguous()  # (n, B, T, Da)
        args = (ex["condition"], ex["noisy"], ex["prefix"], ex["prefix_weight"], noises)
        return SamplerInpaintGraph(policy, plan), args
    return SamplerGraph(policy, plan), (ex["condition"], ex["noisy"])


def resolved_exporter(cfg: ExportConfig) -> str:
    """The exporter "auto" stands for: torchscript (fast tracing) for fp32 and int8 (traced in
    fp32, quantised after), dynamo for fp16."""
    if cfg.exporter != "auto":
        return cfg.exporter
    return "dynamo" if cfg.precision == "fp16" else "torchscript"


def _trace_to_file(
    module: nn.Module, args: tuple, path: Path, graph: str, cfg: ExportConfig, text: int
) -> None:
    """Trace ``module`` on ``args`` into the ONNX file ``path``; ``text``: largest prompt length."""
    inputs, outputs = IO_NAMES[graph]
    names = dict(input_names=list(inputs), output_names=list(outputs), opset_version=cfg.opset)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python branches on constant shapes
        if resolved_exporter(cfg) == "torchscript":
            dyn = {n: _DYNAMIC[n] for n in (*inputs, *outputs) if n in _DYNAMIC}
            torch.onnx.export(module, args, str(path), dynamo=False, dynamic_axes=dyn, **names)
            return
        dims = {
            "batch": torch.export.Dim("batch", min=1, max=1024),
            "text": torch.export.Dim("text", min=2, max=text),
        }
        shapes = tuple({axis: dims[dim] for axis, dim in _DYNAMIC.get(name, {}).items()} for name in inputs)
        program = torch.onnx.export(module, args, dynamo=True, dynamic_shapes=shapes, optimize=True, **names)
        program.save(str(path), external_data=True)


def _finalise(tmp: Path, final: Path, cfg: ExportConfig) -> int:
    """Validate the traced file and write it to ``final`` (weights external when large); returns bytes."""
    onnx = _onnx()
    model = onnx.load(str(tmp), load_external_data=True)
    size = sum(t.ByteSize() for t in model.graph.initializer)
    external = cfg.external_data == "always" or (cfg.external_data == "auto" and size > EXTERNAL_DATA_BYTES)
    data_name = final.name + ".data"
    (final.parent / data_name).unlink(missing_ok=True)
    part = final.with_name(final.name + ".tmp")
    if external:
        onnx.save_model(model, str(part), save_as_external_data=True, location=data_name, size_threshold=1024)
    else:
        onnx.save_model(model, str(part))
    onnx.checker.check_model(str(part))
    os.replace(part, final)
    return size


def export_graph(policy: Any, graph: str, out_dir: Path, cfg: ExportConfig, plan: DDIMPlan) -> dict[str, Any]:
    """Trace one graph to ``out_dir``; returns its manifest entry."""
    steps = len(plan) if graph in UNROLLED else None
    name = graph_file(graph, cfg.precision, steps)
    precision = file_precision(graph, cfg.precision)
    example = example_inputs(policy)
    module, args = _module_and_args(graph, policy, plan, example)
    tmp_dir = out_dir / f".export-{os.getpid()}-{graph}"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        _trace_to_file(module.eval(), args, tmp_dir / name, graph, cfg, policy.config.max_text_tokens)
        fused = quantised = None
        if graph == "encoder" and cfg.fuse and precision in ("fp32", "int8"):
            fused = fuse_transformer_ops(tmp_dir / name, policy.config)
        if precision == "int8":
            quantised = quantize_int8(tmp_dir / name)
        size = _finalise(tmp_dir / name, out_dir / name, cfg)
    finally:
        for item in tmp_dir.iterdir():
            item.unlink()
        tmp_dir.rmdir()
    inputs, outputs = IO_NAMES[graph]
    entry = {"graph": graph, "precision": precision, "inputs": list(inputs), "outputs": list(outputs)}
    entry.update(bytes=size, seconds=round(time.perf_counter() - start, 3), exporter=resolved_exporter(cfg))
    if steps is not None:
        entry["num_inference_steps"] = steps
    if fused is not None:
        entry["fused_ops"] = fused
    if quantised is not None:
        entry["int8_matmuls"] = quantised
    return {name: entry}


def fuse_transformer_ops(path: Path, config: Any) -> dict[str, int]:
    """Rewrite the traced fp32 encoder at ``path`` in place with ONNX Runtime's transformer
    optimizer (pattern fusions only, no ORT-level pre-optimisation, so the file does not depend on
    the machine it was written on); returns {fused op: count} of the ops it made."""
    try:
        from onnxruntime.transformers.optimizer import optimize_model
    except ImportError as exc:  # the onnxruntime(-gpu) wheel ships it; a stripped build may not
        raise ImportError(f"fuse=True needs onnxruntime.transformers ({exc}); export with --no-fuse") from exc
    vision = config.vision
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = optimize_model(
            str(path),
            model_type="clip",
            num_heads=vision.num_heads,
            hidden_size=vision.hidden_size,
            opt_level=0,
        )
    model.save_model_to_file(str(path))
    return {op: n for op, n in model.get_fused_operator_statistics().items() if n}


def quantize_int8(path: Path) -> int:
    """Rewrite the fp32 graph at ``path`` in place with its weight MatMuls dynamically quantised
    (int8 weights per output channel, uint8 activations quantised per call; MatMuls of two
    activations, e.g. attention scores, stay fp32); returns how many MatMuls were quantised.

    MLAS runs these u8 x s8 products with VNNI (AVX512-VNNI, AVX-VNNI) or AMX; on an x86 CPU with
    AVX2 only, its u8 x s8 kernel can saturate 16-bit sums (ONNX Runtime's quantisation notes), so
    the engine warns there and fp32 is the safe choice."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise ImportError(f"precision int8 needs onnxruntime.quantization ({exc})") from exc
    onnx = _onnx()
    out = path.with_name(path.stem + ".int8-tmp.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)  # its advice to run shape pre-processing (the graph is fused)
        try:
            quantize_dynamic(
                str(path),
                str(out),
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=["MatMul"],
                # the fused contrib ops defeat ONNX shape inference: their outputs are float tensors
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True},
            )
        finally:
            logging.disable(logging.NOTSET)
    count = sum(
        node.op_type == "MatMulInteger" for node in onnx.load(str(out), load_external_data=False).graph.node
    )
    if count == 0:
        out.unlink()
        raise ExportError(f"int8 quantisation found no weight MatMul to quantise in {path.name}")
    os.replace(out, path)
    return count


def export_checkpoint(
    directory: str | Path, cfg: ExportConfig | None = None, log: Any = None, policy: Any = None
) -> dict[str, Any]:
    """Export ``cfg.graphs`` of the checkpoint in ``directory`` beside it; returns the manifest.

    Existing graphs of the same weights are kept in the manifest (export adds to it). With
    ``cfg.check`` every new graph is compared with torch and ExportError is raised (files are
    left for inspection, the manifest is not updated) when a difference exceeds cfg.tolerance.
    """
    cfg = cfg or ExportConfig()
    out = Path(directory)
    log = log or (lambda _msg: None)
    read_checkpoint_config(out)  # a clear error for a missing directory or a foreign config.json
    digest = weights_digest(out)
    policy = policy if policy is not None else load_export_policy(out, cfg.precision)
    plan = DDIMPlan.from_config(policy.config, cfg.sampler_steps)
    entries: dict[str, Any] = {}
    for graph in cfg.graphs:
        entry = export_graph(policy, graph, out, cfg, plan)
        log(f"exported {next(iter(entry))} in {next(iter(entry.values()))['seconds']:.1f} s")
        entries.update(entry)
    parity = None
    if cfg.check:
        examples = example_inputs(policy, batch=2, seed=1)
        parity = parity_report(
            out, policy, list(entries), plan, cfg.tolerance, examples, INT8_CONDITION_TOLERANCE
        )
        log("parity (max abs diff vs torch): " + json.dumps(parity["max_abs_diff"]))
        if "condition_rel" in parity:
            log(f"int8 encoder: condition relative error {parity['condition_rel']:.4f}")
        if not parity["ok"]:
            bound = f"{parity['tolerance']}"
            if "condition_rel" in parity:
                bound += f" (int8 condition: relative error {parity['condition_rel_tolerance']})"
            raise ExportError(f"ONNX output differs from torch by more than {bound}: {parity}")
    return _write_manifest(out, policy.config, digest, entries, cfg, plan, parity)


def _write_manifest(
    out: Path, config: Any, digest: str, entries: dict, cfg: ExportConfig, plan: DDIMPlan, parity: Any
) -> dict[str, Any]:
    old = read_manifest(out)
    same = (
        old is not None
        and old.get("weights_sha256") == digest
        and old.get("graph_config") == graph_config(config)
    )
    graphs = {**(old.get("graphs", {}) if same else {}), **entries}
    checks = {**(old.get("parity", {}) if same else {}), **{name: parity for name in entries}}
    manifest = {
        "format": FORMAT,
        "weights_sha256": digest,
        "graph_config": graph_config(config),
        "opset": cfg.opset,
        "versions": _versions(),
        "ddim": plan.to_dict(),
        "graphs": graphs,
        "parity": checks,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp = out / (MANIFEST_FILE + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out / MANIFEST_FILE)
    return manifest


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tinyvla-export", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "checkpoint_dir", help="TinyVLA checkpoint directory (config.json, model.safetensors)"
    )
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    check = parser.add_mutually_exclusive_group()
    check.add_argument(
        "--check", dest="check", action="store_true", default=True, help="parity vs torch (default)"
    )
    check.add_argument("--no-check", dest="check", action="store_false", help="skip the parity check")
    parser.add_argument("--precision", choices=EXPORT_PRECISIONS, default="fp32")
    parser.add_argument("--graphs", nargs="+", choices=GRAPHS, default=list(DEFAULT_GRAPHS))
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps of the sampler graph")
    parser.add_argument(
        "--exporter", choices=EXPORTERS, default="auto", help="auto: torchscript fp32, dynamo fp16"
    )
    parser.add_argument("--tolerance", type=float, default=PARITY_TOLERANCE, help="max abs diff (fp32)")
    parser.add_argument(
        "--no-fuse",
        dest="fuse",
        action="store_false",
        help="keep the fp32 encoder as traced (default: fuse LayerNorm/GELU patterns into ORT contrib ops)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status (0 ok, 1 parity failure, 2 bad input)."""
    args = _parse(argv)
    try:
        cfg = ExportConfig(
            opset=args.opset,
            exporter=args.exporter,
            precision=args.precision,
            graphs=tuple(args.graphs),
            sampler_steps=args.steps,
            check=args.check,
            tolerance=args.tolerance,
            fuse=args.fuse,
        )
        manifest = export_checkpoint(args.checkpoint_dir, cfg, log=lambda m: print(m, flush=True))
    except ExportError as exc:
        print(f"tinyvla-export: {exc}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"tinyvla-export: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {', '.join(sorted(manifest['graphs']))} and {MANIFEST_FILE} in {args.checkpoint_dir}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = [
    "DEFAULT_GRAPHS",
    "GRAPHS",
    "MANIFEST_FILE",
    "ExportConfig",
    "ExportError",
    "example_inputs",
    "export_checkpoint",
    "graph_file",
    "main",
    "manifest_problem",
    "read_manifest",
    "weights_digest",
]
