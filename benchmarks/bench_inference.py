"""Inference benchmark: engines, DDIM steps, FLOPs against a matmul peak, control compute per second.

CPU part (always), on random-init checkpoints of the small presets (Franka layout of the paper:
2 cameras of 640x360, state 7, action 10, chunk 16):
- ``predict_chunk`` latency p50/p99 per preset x engine x DDIM steps (1, 5, 10); engines: torch
  eager (fp32, and torch-bf16: bf16 autocast), ONNX Runtime with the NumPy DDIM loop (onnx-numpy) and with the fused in-graph update
  (onnx-fused), and onnx-int8 (the fused loop behind an int8-quantised encoder: precision int8,
  not fp32, so it is reported beside the fp32 speed-up with its chunk shift, never as the fastest
  ORT engine); with ``--graph`` also the whole unrolled loop (onnx-graph); with ``--compile``
  torch.compile (inductor: minutes of compilation per preset on a small CPU).
  Engines are timed round-robin, call after call, so that load from other processes on a shared
  machine hits them alike;
- the ONNX Runtime / torch speed-up;
- FLOPs per chunk counted from the model, achieved FLOP/s and a fp32 matmul peak measured in the
  same run with the same threads: the efficiency ratio, and the latency the peak would allow;
- control compute per second at the same control rate: our schedule (one inference per 8
  executed steps, overlap blending) against the official one (an inference every control step,
  temporal ensembling), with the executor's own cost measured on ChunkExecutor.
- the paper's speed claim as a ratio on one machine: our chunk against OpenVLA-style autoregressive
  decoding of discretised action tokens on a backbone of the same size (the same GPT-NeoX weights
  with a language-model head), greedy with a KV cache, 7 tokens per action step: "AR chunk" = one
  prefill + 16 x 7 = 112 decode steps (the kindest case for decoding), "AR per step" = OpenVLA's
  deployment, every action step re-observes (encode + prefill + 7 tokens) 16 times.
GPU part (when torch sees CUDA): tinyvla-s/-b/-h with random weights, per engine and precision,
against the paper's 14 ms per chunk (A6000), and the autoregressive comparison in fp16.

Writes benchmarks/results/inference.json and benchmarks/results/autoregressive.json (one process:
the checkpoints, exports and engines are shared). ``--quick``: fewer repeats, same figures.

    python benchmarks/bench_inference.py [--quick] [--threads 2] [--graph] [--compile] [--no-gpu]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
PAPER_CHUNK_MS = 14.0  # TinyVLA on an A6000 (paper)
SMALL_PRESETS = ("nano", "micro")
PAPER_PRESETS = ("tinyvla-s", "tinyvla-b", "tinyvla-h")
STEPS = (1, 5, 10)
CAMERAS = ("left", "right")
STATE_DIM, ACTION_DIM = 7, 10
IMAGE_HW = (360, 640)
INSTRUCTION = "pick up the red cube and put it in the bowl"
CONTROL_RATES = (50.0, 15.0)  # official deployment rate, and a typical ROS camera rate
OURS_EVERY = 8  # executed steps per inference with overlap blending (chunk_len // 2)
TOKENS_PER_STEP = 7  # OpenVLA: one token per action dimension (xyz, rpy, gripper)
CHUNK_STEPS = 16


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats (same figures)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch/ORT threads (default 1: one core, as the policy node on a shared 2-core machine; 0: all)",
    )
    p.add_argument(
        "--repeats", type=int, default=0, help="timed calls per configuration (0: 6 quick, 30 full)"
    )
    p.add_argument("--presets", nargs="+", default=list(SMALL_PRESETS))
    p.add_argument("--graph", action="store_true", help="also time the whole-loop graph (sampler_<n>.onnx)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile on CPU)")
    p.add_argument("--no-int8", dest="int8", action="store_false", help="skip the int8 encoder engine")
    p.add_argument("--no-bf16", dest="bf16", action="store_false", help="skip torch with bf16 autocast")
    p.add_argument("--no-gpu", action="store_true", help="skip the GPU part even when CUDA is available")
    p.add_argument(
        "--out", default=str(HERE / "results" / "inference.json"), help="(autoregressive.json goes beside it)"
    )
    args = p.parse_args(argv)
    args.threads = args.threads or os.cpu_count() or 1
    args.repeats = args.repeats or (5 if args.quick else 30)
    args.warmup = 1 if args.quick else 3
    args.ar_repeats = 4 if args.quick else 15
    args.control_seconds = 4.0 if args.quick else 20.0
    return args


# ---------------------------------------------------------------------------------- set-up
def make_checkpoint(directory: Path, preset: str, seed: int = 0, **overrides: Any) -> Path:
    """Random-init checkpoint of ``preset`` (Franka layout) with the tiny tokenizer; returns it."""
    import torch

    from tinyvla_ros.vla.config import get_config
    from tinyvla_ros.vla.normalize import Normalizer
    from tinyvla_ros.vla.policy import TinyVLAPolicy

    config = get_config(preset, camera_names=CAMERAS, state_dim=STATE_DIM, action_dim=ACTION_DIM, **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        policy = TinyVLAPolicy(
            config.replace(tokenizer="tiny"), normalizer=Normalizer.identity(ACTION_DIM, STATE_DIM)
        )
    return policy.save_pretrained(directory)


def policy_with_steps(checkpoint: Path, steps: int) -> Any:
    """The checkpoint's policy with ``steps`` DDIM steps (a fresh model, same weights)."""
    from tinyvla_ros.vla.policy import TinyVLAPolicy

    base = TinyVLAPolicy.from_pretrained(checkpoint)
    policy = TinyVLAPolicy(base.config.replace(num_inference_steps=steps), base.tokenizer, base.normalizer)
    policy.load_state_dict(base.state_dict())
    return policy.eval()


def observation(seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (*IMAGE_HW, 3), dtype=np.uint8) for _ in CAMERAS]
    return images, rng.normal(size=STATE_DIM).astype(np.float32)


def cpu_engines(checkpoint: Path, steps: int, args: argparse.Namespace) -> dict[str, Any]:
    """label -> engine for one preset and step count (CPU)."""
    from tinyvla_ros.vla.engines.base import EngineConfig
    from tinyvla_ros.vla.engines.eager import TorchEngine
    from tinyvla_ros.vla.engines.onnx import OnnxEngine, OnnxEngineConfig

    engines: dict[str, Any] = {
        "torch": TorchEngine(policy_with_steps(checkpoint, steps), EngineConfig(num_threads=args.threads))
    }
    if args.bf16:
        cfg = EngineConfig(precision="bf16", num_threads=args.threads)
        engines["torch-bf16"] = TorchEngine(policy_with_steps(checkpoint, steps), cfg)
    loops = ["numpy", "fused"] + (["graph"] if args.graph else [])
    for loop in loops:
        cfg = OnnxEngineConfig(loop=loop, num_inference_steps=steps, num_threads=args.threads)
        engines[f"onnx-{loop}"] = OnnxEngine(checkpoint, cfg)
    if args.int8:
        cfg = OnnxEngineConfig(
            loop="fused", precision="int8", num_inference_steps=steps, num_threads=args.threads
        )
        engines["onnx-int8"] = OnnxEngine(checkpoint, cfg)
    if args.compile:
        from tinyvla_ros.vla.engines.compiled import TorchCompileEngine

        cfg = EngineConfig(engine="torch_compile", num_threads=args.threads)
        engines["torch_compile"] = TorchCompileEngine(policy_with_steps(checkpoint, steps), cfg)
    return engines


# ---------------------------------------------------------------------------------- timing
def time_round_robin(
    engines: dict[Any, Any], warmup: int, repeats: int, sync: Any = None
) -> dict[Any, np.ndarray]:
    """Seconds per predict_chunk call for each engine, the engines called in turn (rotating order)."""
    images, state = observation()
    sync = sync or (lambda: None)
    labels = list(engines)
    for label in labels:
        for i in range(warmup):
            engines[label].predict_chunk(images, INSTRUCTION, state, seed=i)
    times: dict[Any, list[float]] = {label: [] for label in labels}
    for rep in range(repeats):
        for label in labels[rep % len(labels) :] + labels[: rep % len(labels)]:
            sync()
            start = time.perf_counter()
            engines[label].predict_chunk(images, INSTRUCTION, state, seed=rep)
            sync()
            times[label].append(time.perf_counter() - start)
    return {label: np.asarray(v) for label, v in times.items()}


def p50_p99(seconds: np.ndarray) -> tuple[float, float]:
    """Milliseconds (p99 of fewer than 100 runs is close to the maximum)."""
    return float(np.percentile(seconds, 50) * 1e3), float(np.percentile(seconds, 99) * 1e3)


def r(x: float, digits: int = 2) -> float:
    """Rounded for the table: ``digits`` decimals, 3 significant digits below 1."""
    return float(f"{x:.3g}") if abs(x) < 1 else round(x, digits)


# ---------------------------------------------------------------------------------- CPU part
def cpu_latency(args: argparse.Namespace, workdir: Path, notes: list[str]) -> tuple[dict, dict]:
    """({(preset, engine, steps): seconds per call}, the engines); all timed in one round-robin."""
    from tinyvla_ros.vla.export import ExportConfig, export_checkpoint

    engines: dict[tuple[str, str, int], Any] = {}
    for preset in args.presets:
        ckpt = make_checkpoint(workdir / preset, preset)
        start = time.perf_counter()
        manifest = export_checkpoint(ckpt, ExportConfig(graphs=("encoder", "denoiser", "denoise_step")))
        diffs = manifest["parity"]["encoder.onnx"]["max_abs_diff"]
        notes.append(
            f"{preset}: export of encoder/denoiser/denoise_step + parity check {time.perf_counter() - start:.1f} s; "
            f"max abs diff vs torch: condition {diffs['condition']:.1e}, chunk {diffs['chunk_numpy']:.1e}"
        )
        if args.int8:
            manifest = export_checkpoint(ckpt, ExportConfig(precision="int8", graphs=("encoder",)))
            parity = manifest["parity"]["encoder.int8.onnx"]
            notes.append(
                f"{preset}: int8 encoder ({manifest['graphs']['encoder.int8.onnx']['int8_matmuls']} MatMuls "
                f"quantised): condition relative error {parity['condition_rel']:.2%} on the export check"
            )
        for steps in STEPS:
            for label, engine in cpu_engines(ckpt, steps, args).items():
                engines[(preset, label, steps)] = engine
    return time_round_robin(engines, args.warmup, args.repeats), engines


def int8_shift(engines: dict, args: argparse.Namespace, samples: int = 8) -> dict[str, tuple[float, float]]:
    """preset -> (median, max) over seeded observations of the max abs difference between the
    onnx-int8 and the torch fp32 chunk (10 DDIM steps, same seed), in normalised action units
    (the action range is [-1, 1]); random-init weights, so an upper figure for a trained policy."""
    out = {}
    for preset in args.presets:
        fp32, int8 = engines[(preset, "torch", 10)], engines[(preset, "onnx-int8", 10)]
        normalise = int8.normalizer.normalize_action
        shifts = []
        for seed in range(samples):
            images, state = observation(seed)
            a = fp32.predict_chunk(images, INSTRUCTION, state, seed=seed)
            b = int8.predict_chunk(images, INSTRUCTION, state, seed=seed)
            shifts.append(float(np.max(np.abs(normalise(b) - normalise(a)))))
        out[preset] = (float(np.median(shifts)), max(shifts))
    return out


def latency_table(results: dict, args: argparse.Namespace) -> dict:
    rows = []
    for (preset, label, steps), secs in results.items():
        p50, p99 = p50_p99(secs)
        rows.append([preset, label, steps, r(p50, 1), r(p99, 1), len(secs)])
    return {
        "caption": f"predict_chunk latency on CPU (ms), {args.threads} threads, 2 cameras {IMAGE_HW[1]}x{IMAGE_HW[0]}",
        "columns": ["preset", "engine", "DDIM steps", "p50 ms", "p99 ms", "runs"],
        "rows": rows,
    }


def stage_calls(engine: Any) -> dict[str, Any]:
    """stage -> zero-argument call for one chunk of ``engine`` split in preprocessing (images to
    pixel values, prompt, state), encoder (-> condition) and the DDIM loop (-> normalised actions)."""
    import torch

    from tinyvla_ros.vla.engines.chunk_io import ChunkIO

    images, state = observation()
    if hasattr(engine, "graphs"):  # OnnxEngine
        ids, mask = engine._text_inputs([INSTRUCTION])
        feeds = {"pixel_values": engine.io.pixel_values([images]).copy(), "input_ids": ids}
        feeds.update(attention_mask=mask, state_norm=engine.io.states(state[None], 1))
        c = engine.config
        condition = engine.graphs.encode_value(
            feeds, engine.graphs.buffers(1, c.chunk_len, c.action_dim).condition
        )
        noise = engine.io.noise(1, 0, None)
        return {
            "preprocess": lambda: (engine.io.pixel_values([images]), engine._text_inputs([INSTRUCTION])),
            "encoder": lambda: engine.graphs.encode_value(feeds, condition),
            "DDIM loop": lambda: engine.graphs.sample(condition, noise, None),
        }
    policy = engine.policy
    pixels = policy.preprocess_images(images)[None]
    ids, mask = policy.tokenize(INSTRUCTION)
    state_norm = policy.normalizer.normalize_state(torch.from_numpy(state)[None])
    with torch.inference_mode():
        condition = policy.encode_observation(pixels, ids, mask, state_norm)
    noise = torch.from_numpy(ChunkIO(policy.config, policy.normalizer).noise(1, 0, None))

    def encode() -> Any:
        with torch.inference_mode():
            return policy.encode_observation(pixels, ids, mask, state_norm)

    def loop() -> Any:
        with torch.inference_mode():
            return policy.sample(condition, noise)

    return {
        "preprocess": lambda: (policy.preprocess_images(images), policy.tokenize(INSTRUCTION)),
        "encoder": encode,
        "DDIM loop": loop,
    }


def stage_table(engines: dict, args: argparse.Namespace) -> dict:
    """p50 ms of each stage of a 10-step chunk per preset x engine (stages timed round-robin)."""
    labels = ["torch", "onnx-fused"] + (["onnx-int8"] if args.int8 else [])
    rows = []
    for preset in args.presets:
        calls = {
            (label, stage): fn
            for label in labels
            for stage, fn in stage_calls(engines[(preset, label, 10)]).items()
        }
        keys = list(calls)
        for fn in calls.values():
            fn()
        times: dict[Any, list[float]] = {k: [] for k in keys}
        for rep in range(args.repeats):
            for key in keys[rep % len(keys) :] + keys[: rep % len(keys)]:
                start = time.perf_counter()
                calls[key]()
                times[key].append(time.perf_counter() - start)
        p50 = {k: float(np.median(v) * 1e3) for k, v in times.items()}
        torch_stage = {stage: p50[("torch", stage)] for _, stage in keys}
        for label in labels:
            stages = [p50[(label, stage)] for stage in ("preprocess", "encoder", "DDIM loop")]
            ratios = [
                torch_stage[stage] / p50[(label, stage)] for stage in ("preprocess", "encoder", "DDIM loop")
            ]
            rows.append(
                [preset, label, *(r(x, 2) for x in stages), r(sum(stages), 1), *(r(x) for x in ratios)]
            )
    return {
        "caption": "Where a chunk's time goes (p50 ms per stage, 10 DDIM steps, 1 observation) and torch / engine per stage",
        "columns": [
            "preset",
            "engine",
            "preprocess ms",
            "encoder ms",
            "DDIM loop ms",
            "sum ms",
            "torch/engine preprocess",
            "torch/engine encoder",
            "torch/engine loop",
        ],
        "rows": rows,
    }


def best_onnx(results: dict, preset: str, steps: int) -> tuple[str, float]:
    """(label, p50 ms) of the fastest ONNX Runtime engine."""
    cands = [
        (p50_p99(v)[0], k)
        for (p, k, s), v in results.items()
        if p == preset and s == steps and k.startswith("onnx") and k != "onnx-int8"
    ]
    p50, label = min(cands)
    return label, p50


def speedup_table(results: dict, args: argparse.Namespace, shift: dict | None = None) -> dict:
    """fp32 ORT against fp32 torch; with onnx-int8 timed, its p50, ratio and chunk shift beside."""
    rows = []
    int8 = bool(shift)
    for preset in args.presets:
        for steps in STEPS:
            torch_p50 = p50_p99(results[(preset, "torch", steps)])[0]
            label, ort_p50 = best_onnx(results, preset, steps)
            numpy_p50 = p50_p99(results[(preset, "onnx-numpy", steps)])[0]
            row = [preset, steps, r(torch_p50, 1), label, r(ort_p50, 1), r(torch_p50 / ort_p50)]
            row.append(r(torch_p50 / numpy_p50))
            if int8:
                int8_p50 = p50_p99(results[(preset, "onnx-int8", steps)])[0]
                median, worst = shift[preset]
                row += [r(int8_p50, 1), r(torch_p50 / int8_p50), f"{r(median, 3)} / {r(worst, 3)}"]
            rows.append(row)
    columns = ["preset", "DDIM steps", "torch p50 ms", "fastest fp32 ORT engine", "its p50 ms", "speed-up"]
    columns.append("onnx-numpy speed-up")
    if int8:
        columns += ["onnx-int8 p50 ms", "int8 speed-up", "int8 chunk shift median / max"]
    return {
        "caption": "ONNX Runtime speed-up over torch eager on CPU (p50 ratio; target >= 2x)",
        "columns": columns,
        "rows": rows,
    }


def efficiency_table(results: dict, args: argparse.Namespace, workdir: Path) -> tuple[dict, dict[str, float]]:
    """FLOPs per chunk (10 steps), achieved FLOP/s, matmul peak, efficiency; also returns peak."""
    import torch

    from tinyvla_ros.vla.flops import count_policy_flops, matmul_peak

    torch.set_num_threads(args.threads)
    # fp32, and what the CPU offers beyond it (AMX/AVX512-BF16 on recent Xeons): a bf16 model's ceiling
    peak, bf16_peak = (
        matmul_peak(
            "cpu", dtype, size=1024, min_seconds=0.1 if args.quick else 0.3, repeats=3 if args.quick else 5
        )
        for dtype in (torch.float32, torch.bfloat16)
    )
    rows = []
    for preset in args.presets:
        policy = policy_with_steps(workdir / preset, 10)
        text = policy.tokenize(INSTRUCTION)[0].shape[1] - 1
        flops = count_policy_flops(policy, steps=10, text_tokens=text)
        for label in ("torch", best_onnx(results, preset, 10)[0]):
            p50 = p50_p99(results[(preset, label, 10)])[0]
            achieved = flops.total / (p50 / 1e3)
            rows.append(
                [
                    preset,
                    r(flops.total / 1e9, 3),
                    r(flops.encoder / 1e9, 3),
                    r(flops.denoiser / 1e6, 2),
                    label,
                    r(p50, 1),
                    r(achieved / 1e9),
                    r(peak / 1e9),
                    f"{100 * achieved / peak:.1f}%",
                    r(flops.total / peak * 1e3),
                ]
            )
    table = {
        "caption": "FLOPs per chunk (10 DDIM steps) against a fp32 matmul peak measured in the same run (CPU)",
        "columns": [
            "preset",
            "GFLOP/chunk",
            "encoder GFLOP",
            "denoiser MFLOP/step",
            "engine",
            "p50 ms",
            "achieved GFLOP/s",
            "matmul peak GFLOP/s",
            "efficiency",
            "peak-bound ms",
        ],
        "rows": rows,
    }
    return table, {"peak": peak, "bf16_peak": bf16_peak}


def executor_cost(mode: str, rate: float, chunk: np.ndarray, seconds: float = 10.0) -> tuple[int, float]:
    """Simulate ``seconds`` of control at ``rate`` Hz: (inferences requested, executor CPU s)."""
    from tinyvla_ros.core.chunking import ChunkExecutor, ChunkExecutorConfig

    kwargs = {"refill_steps": chunk.shape[0] - OURS_EVERY} if mode == "overlap_blend" else {}
    executor = ChunkExecutor(
        ChunkExecutorConfig(mode, 1.0 / rate, action_dim=chunk.shape[1], chunk_len=chunk.shape[0], **kwargs)
    )
    inferences, cost = 0, 0.0
    for tick in range(int(seconds * rate)):
        t = tick / rate
        start = time.perf_counter()
        if executor.needs_chunk(t):
            cost += time.perf_counter() - start
            inferences += 1  # the chunk arrives before the next tick (latency is accounted as compute)
            start = time.perf_counter()
            executor.add_chunk(chunk, obs_stamp=t, now=t)
        executor.action_at(t)
        cost += time.perf_counter() - start
    return inferences, cost


def control_table(results: dict, args: argparse.Namespace) -> dict:
    """Compute seconds per second of control: ours vs the official schedule, same rate and engine."""
    rows = []
    chunk = np.zeros((16, ACTION_DIM))
    sim = args.control_seconds
    for preset in args.presets:
        label, p50 = best_onnx(results, preset, 10)
        for rate in CONTROL_RATES:
            figures = {}
            for name, mode in (
                ("ours: 1 inference / 8 steps, overlap blend", "overlap_blend"),
                ("official: every step, temporal ensembling", "temporal_ensemble"),
            ):
                n, cost = executor_cost(mode, rate, chunk, sim)
                per_s = n / sim
                compute = per_s * p50 / 1e3 + cost / sim
                figures[mode] = compute
                rows.append(
                    [
                        preset,
                        label,
                        int(rate),
                        name,
                        r(per_s, 1),
                        r(compute, 3),
                        r(cost / sim * 1e3, 2),
                        "yes" if compute < 1.0 else "no: needs > 1 core",
                    ]
                )
            rows.append(
                [
                    preset,
                    label,
                    int(rate),
                    "ratio official / ours",
                    "",
                    r(figures["temporal_ensemble"] / figures["overlap_blend"]),
                    "",
                    "",
                ]
            )
    return {
        "caption": "Control compute per second (inference p50 at 10 DDIM steps x inferences/s + executor cost)",
        "columns": [
            "preset",
            "engine",
            "control Hz",
            "schedule",
            "inferences/s",
            "compute s per s",
            "executor ms per s",
            "fits one core",
        ],
        "rows": rows,
    }


# ---------------------------------------------------------------------------------- autoregressive baseline
class AutoregressiveBaseline:
    """OpenVLA-style decoding on the policy's own backbone: GPT-NeoX + LM head, greedy, KV cache."""

    def __init__(self, policy: Any) -> None:
        import torch
        from transformers import GPTNeoXForCausalLM

        from tinyvla_ros.vla.backbone import llm_model_config

        self.policy = policy
        cfg = llm_model_config(policy.config)
        cfg.use_cache = True
        with torch.device(policy.device):
            self.lm = GPTNeoXForCausalLM(cfg)
        self.lm.gpt_neox.load_state_dict(policy.backbone.llm.state_dict())
        self.lm = self.lm.to(policy.dtype).eval()

    def _prompt(self, images: list[np.ndarray], instruction: str) -> Any:
        """Image tokens spliced into the prompt, exactly as for our chunk: (1, L', H)."""
        p = self.policy
        pixels = p.preprocess_images(images)[None].to(p.device)
        ids, mask = p.tokenize(instruction)
        tokens = p.backbone.encode_images(pixels)
        embeds, _ = p.backbone.splice(tokens, ids.to(p.device), mask.to(p.device), p.image_position)
        return embeds.to(self.lm.dtype)

    def decode(self, images: list[np.ndarray], instruction: str, n_tokens: int) -> Any:
        """Encode the observation, prefill, then ``n_tokens`` greedy tokens -> ids (1, n_tokens)."""
        import torch

        with torch.inference_mode():
            out = self.lm(inputs_embeds=self._prompt(images, instruction), use_cache=True)
            token = out.logits[:, -1].argmax(-1, keepdim=True)  # (1, 1)
            generated = [token]
            for _ in range(n_tokens - 1):
                out = self.lm(input_ids=token, past_key_values=out.past_key_values, use_cache=True)
                token = out.logits[:, -1].argmax(-1, keepdim=True)
                generated.append(token)
        return torch.cat(generated, dim=1)


def compare_autoregressive(
    ours: dict[str, Any], baseline: AutoregressiveBaseline, repeats: int, sync: Any
) -> dict:
    """p50 ms of our engines, the AR chunk and one AR step (x16: the per-step deployment), timed in turn."""
    images, state = observation()

    class _Call:  # time_round_robin calls predict_chunk
        def __init__(self, fn: Any) -> None:
            self.predict_chunk = lambda *_a, **_k: fn()

    calls = {name: engine for name, engine in ours.items()}
    calls["ar_chunk"] = _Call(lambda: baseline.decode(images, INSTRUCTION, CHUNK_STEPS * TOKENS_PER_STEP))
    calls["ar_step"] = _Call(lambda: baseline.decode(images, INSTRUCTION, TOKENS_PER_STEP))
    out = {k: p50_p99(v)[0] for k, v in time_round_robin(calls, 1, repeats, sync).items()}
    out["ar_per_step_x16"] = CHUNK_STEPS * out["ar_step"]
    return out


def ar_rows(preset: str, where: str, figures: dict, ours: list[str]) -> list[list]:
    rows = []
    for name in ours:
        ar_chunk, ar_step = figures["ar_chunk"], figures["ar_per_step_x16"]
        rows.append(
            [
                preset,
                where,
                name,
                r(figures[name], 1),
                r(ar_chunk, 1),
                r(ar_step, 1),
                r(ar_chunk / figures[name]),
                r(ar_step / figures[name]),
            ]
        )
    return rows


def cpu_autoregressive(args: argparse.Namespace, results: dict, engines: dict) -> list[list]:
    """AR vs our torch engine (same framework) and our fastest ORT engine, 10 DDIM steps, per preset."""
    rows = []
    for preset in args.presets:
        torch_engine = engines[(preset, "torch", 10)]
        label = best_onnx(results, preset, 10)[0]
        ours = {"ours: torch eager": torch_engine, f"ours: {label}": engines[(preset, label, 10)]}
        figures = compare_autoregressive(
            ours, AutoregressiveBaseline(torch_engine.policy), args.ar_repeats, None
        )
        print(preset, {k: round(v, 1) for k, v in figures.items()}, flush=True)
        rows += ar_rows(preset, f"CPU, {args.threads} thread(s)", figures, list(ours))
    return rows


def ar_result(rows: list[list], repeats: int, gpu: bool) -> dict:
    notes = [
        f"same GPT-NeoX weights for both; AR decoding: {TOKENS_PER_STEP} tokens per action step, greedy, KV cache, "
        "full-vocabulary LM head; 'AR chunk' = encode + 1 prefill + 112 decode steps; 'AR per step x16' = 16 x "
        "(encode + prefill + 7 tokens), OpenVLA's deployment; ours = 1 encode + 10 DDIM UNet steps",
        "paper: TinyVLA 14 ms vs OpenVLA-7B 292 ms per chunk (~20x, different model sizes); target here: >= 10x "
        "at the same size",
        f"{repeats} timed calls per figure (after one warm-up), called in turn; p50 in ms"
        + ("" if gpu else "; GPU part not run: torch sees no CUDA device"),
    ]
    table = {
        "caption": "p50 ms per 16 actions and the ratio AR / ours (the paper's speed claim, same backbone size)",
        "columns": [
            "preset",
            "device",
            "ours",
            "ours p50 ms",
            "AR chunk ms",
            "AR per step x16 ms",
            "AR chunk / ours",
            "AR per step / ours",
        ],
        "rows": rows,
    }
    return {
        "title": "Chunk vs autoregressive action tokens on the same backbone (bench_inference.py)",
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "tables": [table],
        "notes": notes,
    }


# ---------------------------------------------------------------------------------- GPU part
def gpu_part(
    args: argparse.Namespace,
    workdir: Path,
    notes: list[str],
    ar: list[list],
    device: str = "cuda",
    presets: tuple[str, ...] = PAPER_PRESETS,
) -> list[dict]:
    """tinyvla-s/-b/-h latency per engine and precision on the first CUDA device; AR rows go to ``ar``.

    ``device="cpu"`` rehearses the same code on the CPU (tests: no GPU here), with bf16 standing in for
    fp16 and the CPU provider for CUDA, so that the first GPU run does not fail on a Python error.
    """
    import torch

    from tinyvla_ros.vla.checkpoint import read_checkpoint_config
    from tinyvla_ros.vla.engines.base import EngineConfig
    from tinyvla_ros.vla.engines.eager import TorchEngine
    from tinyvla_ros.vla.engines.onnx import OnnxEngine, OnnxEngineConfig
    from tinyvla_ros.vla.engines.ort import available_providers
    from tinyvla_ros.vla.flops import count_chunk_flops, matmul_peak

    gpu = device != "cpu"
    half, half_dtype = ("fp16", torch.float16) if gpu else ("bf16", torch.bfloat16)
    provider = "cuda" if gpu else "cpu"
    name = torch.cuda.get_device_name(0) if gpu else "CPU rehearsal"
    sync = torch.cuda.synchronize if gpu else None
    peak16 = matmul_peak(device, half_dtype, size=4096 if gpu else 512, min_seconds=0.2 if gpu else 0.05)
    notes.append(
        f"GPU: {name}; {half} matmul peak {peak16 / 1e12:.1f} TFLOP/s (measured); providers {available_providers()}"
    )
    variants = [("torch", half, None), ("torch", "bf16", None), ("onnx", "fp32", provider)]
    if gpu:
        variants.append(("onnx", "fp16", "cuda"))
        if "TensorrtExecutionProvider" in available_providers():
            variants.append(("onnx_tensorrt", "fp16", "tensorrt"))
    if args.compile:
        variants.append(("torch_compile", half, None))
    variants = list(dict.fromkeys(variants))  # the CPU rehearsal's torch bf16 appears once
    rows = []
    for preset in presets:
        ckpt = make_checkpoint(workdir / f"{device}-{preset}", preset)
        flops = count_chunk_flops(read_checkpoint_config(ckpt)[0], steps=10)
        engines: dict[str, Any] = {}
        for engine, precision, prov in variants:
            label = f"{engine} {precision}"
            try:
                if prov is None:
                    policy = policy_with_steps(ckpt, 10)
                    cfg = EngineConfig(engine=engine, device=device, precision=precision)
                    if engine == "torch_compile":
                        from tinyvla_ros.vla.engines.compiled import TorchCompileEngine

                        engines[label] = TorchCompileEngine(policy, cfg)
                    else:
                        engines[label] = TorchEngine(policy, cfg)
                else:
                    cfg = OnnxEngineConfig(provider=prov, device=device, precision=precision)
                    engines[label] = OnnxEngine(ckpt, cfg)
            except Exception as exc:  # noqa: BLE001 - record why an engine could not run, go on with the rest
                notes.append(f"{preset} {label}: not measured ({type(exc).__name__}: {str(exc)[:200]})")
        for label, secs in time_round_robin(engines, args.warmup + 2, args.repeats, sync=sync).items():
            p50, p99 = p50_p99(secs)
            achieved = flops.total / (p50 / 1e3)
            rows.append(
                [
                    preset,
                    label,
                    r(p50, 2),
                    r(p99, 2),
                    r(p50 / PAPER_CHUNK_MS),
                    r(achieved / 1e12, 2),
                    f"{100 * achieved / peak16:.1f}%",
                ]
            )
        ours = f"torch {half}"
        if ours in engines:
            baseline = AutoregressiveBaseline(policy_with_steps(ckpt, 10).to(device).to(half_dtype))
            figures = compare_autoregressive(
                {f"ours: {ours}": engines[ours]}, baseline, args.ar_repeats, sync
            )
            ar.extend(ar_rows(preset, f"GPU {name}, {half}", figures, [f"ours: {ours}"]))
            del baseline
        del engines
        if gpu:
            torch.cuda.empty_cache()
    return [
        {
            "caption": f"GPU ({name}): chunk latency, 10 DDIM steps, random weights, against the paper's 14 ms (A6000)",
            "columns": [
                "preset",
                "engine precision",
                "p50 ms",
                "p99 ms",
                "p50 / 14 ms",
                "achieved TFLOP/s",
                f"of {half} matmul peak",
            ],
            "rows": rows,
        }
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    notes: list[str] = []
    tables: list[dict] = []
    started, load = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tinyvla-bench-") as tmp:
        workdir = Path(tmp)
        results, engines = cpu_latency(args, workdir, notes)
        for (preset, label, steps), secs in results.items():
            print(f"{preset:6s} {label:14s} steps {steps:2d}: p50 {p50_p99(secs)[0]:7.1f} ms", flush=True)
        shift = int8_shift(engines, args, 4 if args.quick else 8) if args.int8 else None
        tables += [
            latency_table(results, args),
            speedup_table(results, args, shift),
            stage_table(engines, args),
        ]
        eff, extra = efficiency_table(results, args, workdir)
        tables += [eff, control_table(results, args)]
        ar = cpu_autoregressive(args, results, engines)
        del engines
        gpu = torch.cuda.is_available() and not args.no_gpu
        if gpu:
            tables += gpu_part(args, workdir, notes, ar)
        else:
            notes.append("GPU part not run: torch sees no CUDA device on this machine")
    notes += [
        f"CPU: {args.threads} threads for torch and ONNX Runtime; {args.repeats} timed calls per configuration "
        f"after {args.warmup} warm-up calls; engines timed round-robin (shared machine: figures of one run compare)",
        f"matmul peak: best of fp32 1024x1024 matmuls, {extra['peak'] / 1e9:.1f} GFLOP/s; the same in bf16: "
        f"{extra['bf16_peak'] / 1e9:.1f} GFLOP/s (a bf16 model's ceiling on this CPU; ONNX Runtime's CPU provider "
        "has no bf16 MatMul kernels; torch-bf16 in the latency table is torch eager under bf16 autocast)",
        "DDIM with 1 step runs diffusers' 'leading' timestep 0 (as DDIMScheduler does); 10 is the model's setting",
        "onnx-numpy: denoiser.onnx + NumPy DDIM update; onnx-fused: denoise_step.onnx (update inside the graph, "
        "IOBinding, no host copies in the loop)",
        "onnx-int8: the fused loop behind encoder.int8.onnx (weight MatMuls int8 per output channel, activations "
        "quantised per call, the DDIM loop fp32); int8 chunk shift = max abs difference from the torch fp32 chunk "
        "(same seed, 10 steps) in normalised action units ([-1, 1] range), over seeded observations of "
        "random-init weights",
        "stages: preprocess = the cameras' pad + bicubic resize to the model's side and scaling (PIL/NumPy, the "
        "same function for every engine) + the cached prompt; encoder = vision tower, projector, LLM, pooling, "
        "state; DDIM loop = the denoiser calls and updates (torch: diffusers' DDIMScheduler.step)",
        f"total benchmark time {time.perf_counter() - started:.0f} s; 1-min load average {load:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end ({os.cpu_count()} logical cores)",
    ]
    out = {
        "title": "Inference: engines, FLOPs, control compute (bench_inference.py)",
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "tables": tables,
        "notes": notes,
    }
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=2) + "\n")
    ar_path = out_path.with_name("autoregressive.json")
    ar_path.write_text(json.dumps(ar_result(ar, args.ar_repeats, gpu), indent=2) + "\n")
    print(f"wrote {out_path} and {ar_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
