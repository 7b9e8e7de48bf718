"""The paper's speed claim as a ratio on one machine: our chunk against autoregressive action tokens.

TinyVLA's chunk = one backbone pass (vision tower + GPT-NeoX over image and text tokens) + 10 DDIM
steps of the UNet head -> 16 actions. The OpenVLA-style alternative on a backbone of the SAME size
(the same GPT-NeoX weights with a language-model head over its vocabulary) decodes discretised
action tokens greedily with a KV cache, 7 tokens per action step:
- AR chunk: one prefill + 16 x 7 = 112 cached decode steps (the kindest case for decoding);
- AR per step (OpenVLA's deployment): every action step re-observes: encode + prefill + 7 tokens,
  16 times for the same 16 actions (one step is timed and multiplied by 16).
Both run with torch eager, like our torch engine; our ONNX Runtime chunk is given too.
CPU: the small presets. GPU (when torch sees CUDA): tinyvla-s/-b/-h in fp16.

Writes benchmarks/results/autoregressive.json.

    python benchmarks/bench_autoregressive.py [--quick] [--threads 1] [--no-gpu]
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
sys.path.insert(0, str(HERE))
from bench_inference import (  # noqa: E402
    INSTRUCTION,
    PAPER_PRESETS,
    SMALL_PRESETS,
    make_checkpoint,
    observation,
    p50_p99,
    policy_with_steps,
    r,
)

TOKENS_PER_STEP = 7  # OpenVLA: one token per action dimension (xyz, rpy, gripper)
CHUNK_STEPS = 16


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats (same figures)")
    p.add_argument("--threads", type=int, default=1, help="torch/ORT threads (default 1; 0: all cores)")
    p.add_argument("--repeats", type=int, default=0, help="timed calls (0: 4 quick, 15 full)")
    p.add_argument("--presets", nargs="+", default=list(SMALL_PRESETS))
    p.add_argument("--no-gpu", action="store_true")
    p.add_argument("--out", default=str(HERE / "results" / "autoregressive.json"))
    args = p.parse_args(argv)
    args.threads = args.threads or os.cpu_count() or 1
    args.repeats = args.repeats or (4 if args.quick else 15)
    return args


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
        """Image tokens spliced into the prompt, as for our chunk: (1, L', H)."""
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


def time_calls(fns: dict[str, Any], repeats: int, sync: Any) -> dict[str, np.ndarray]:
    """Seconds per call of each function, called in turn (one warm-up each)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    labels = list(fns)
    for i in range(repeats):
        for label in labels[i % len(labels) :] + labels[: i % len(labels)]:
            sync()
            start = time.perf_counter()
            fns[label]()
            sync()
            times[label].append(time.perf_counter() - start)
    return {k: np.asarray(v) for k, v in times.items()}


def compare(
    policy: Any, baseline: AutoregressiveBaseline, engines: dict[str, Any], repeats: int, sync: Any
) -> dict:
    """p50 ms of our engines, the AR chunk and one AR step (x16 = the per-step deployment)."""
    images, state = observation()
    fns = {
        name: (lambda e=e: e.predict_chunk(images, INSTRUCTION, state, seed=0)) for name, e in engines.items()
    }
    fns["ar_chunk"] = lambda: baseline.decode(images, INSTRUCTION, CHUNK_STEPS * TOKENS_PER_STEP)
    fns["ar_step"] = lambda: baseline.decode(images, INSTRUCTION, TOKENS_PER_STEP)
    out = {k: p50_p99(v)[0] for k, v in time_calls(fns, repeats, sync).items()}
    out["ar_per_step_x16"] = CHUNK_STEPS * out["ar_step"]
    return out


def rows_for(preset: str, where: str, figures: dict, ours: list[str]) -> list[list]:
    rows = []
    for name in ours:
        rows.append(
            [
                preset,
                where,
                name,
                r(figures[name], 1),
                r(figures["ar_chunk"], 1),
                r(figures["ar_per_step_x16"], 1),
                r(figures["ar_chunk"] / figures[name]),
                r(figures["ar_per_step_x16"] / figures[name]),
            ]
        )
    return rows


def cpu_part(args: argparse.Namespace, workdir: Path) -> list[list]:
    from tinyvla_ros.vla.engine_onnx import OnnxEngine, OnnxEngineConfig
    from tinyvla_ros.vla.engines import EngineConfig, TorchEngine

    rows = []
    for preset in args.presets:
        ckpt = make_checkpoint(workdir / preset, preset)
        policy = policy_with_steps(ckpt, 10)
        engines = {
            "ours: torch eager": TorchEngine(policy, EngineConfig(num_threads=args.threads)),
            "ours: onnx": OnnxEngine(ckpt, OnnxEngineConfig(num_threads=args.threads)),
        }
        figures = compare(policy, AutoregressiveBaseline(policy), engines, args.repeats, lambda: None)
        print(preset, {k: round(v, 1) for k, v in figures.items()}, flush=True)
        rows += rows_for(preset, f"CPU, {args.threads} thread(s)", figures, list(engines))
    return rows


def gpu_part(args: argparse.Namespace, workdir: Path) -> list[list]:
    import torch

    from tinyvla_ros.vla.engines import EngineConfig, TorchEngine

    rows = []
    name = torch.cuda.get_device_name(0)
    for preset in PAPER_PRESETS:
        ckpt = make_checkpoint(workdir / preset, preset)
        policy = policy_with_steps(ckpt, 10).to("cuda")
        engines = {"ours: torch fp16": TorchEngine(policy, EngineConfig(device="cuda", precision="fp16"))}
        baseline = AutoregressiveBaseline(policy_with_steps(ckpt, 10).to("cuda").half())  # fp16 throughout
        figures = compare(policy, baseline, engines, args.repeats, torch.cuda.synchronize)
        rows += rows_for(preset, f"GPU {name}, fp16", figures, list(engines))
        del policy, baseline, engines
        torch.cuda.empty_cache()
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tinyvla-bench-ar-") as tmp:
        rows = cpu_part(args, Path(tmp))
        gpu = torch.cuda.is_available() and not args.no_gpu
        if gpu:
            rows += gpu_part(args, Path(tmp))
    notes = [
        f"same GPT-NeoX weights for both; AR decoding: {TOKENS_PER_STEP} tokens per action step, greedy, KV cache, "
        "full-vocabulary LM head; 'AR chunk' = 1 prefill + 112 decode steps; 'AR per step x16' = 16 x "
        "(encode + prefill + 7 tokens), OpenVLA's deployment; ours = 1 encode + 10 DDIM UNet steps",
        "paper: TinyVLA 14 ms vs OpenVLA-7B 292 ms per chunk (~20x; different model sizes); the target here is "
        ">= 10x at the same size",
        f"{args.repeats} timed calls per figure, called in turn; p50 in ms"
        + ("" if gpu else "; GPU part not run: torch sees no CUDA device"),
        f"total benchmark time {time.perf_counter() - started:.0f} s",
    ]
    out = {
        "title": "Chunk vs autoregressive action tokens on the same backbone (bench_autoregressive.py)",
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "tables": [
            {
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
        ],
        "notes": notes,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
