"""Benchmark data-parallel training on this CPU: tinyvla-train samples/s with 1 and 2 processes.

The same command (nano preset, fp32, global batch 8, data loading included, no validation) in
    1 process, 1 thread           ``python -m tinyvla_ros.data.train ...``
    1 process, 2 threads          the same with --num-threads 2
    2 processes, 1 thread each    ``accelerate launch --multi_gpu --num_processes 2 -m tinyvla_ros.data.train
                                  ... --device cpu`` (torchrun underneath, gloo all-reduce)
samples/s per run: the median of the logged per-step rates after the first 2 steps (warm-up),
as the main process logs them (global batch / step time). Writes
benchmarks/results/train_scaling.json.

Usage::

    MUJOCO_GL=egl .venv/bin/python benchmarks/bench_train_scaling.py           # 20 steps per run
    MUJOCO_GL=egl .venv/bin/python benchmarks/bench_train_scaling.py --quick   # 8 steps
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MUJOCO_GL", "egl")

BATCH = 8
PRESET = "nano"

# --- GPU estimates (README "Multi-GPU training"): arithmetic, not measurements --------------------
# The paper's recipe: global batch 256, 10k steps, bf16. tinyvla-train's bf16 is autocast over
# fp32 weights (accelerate), AdamW moments in fp32.
GLOBAL_BATCH, PAPER_STEPS = 256, 10_000
GPU_MEMORY_GB = 80.0  # H100 / A100 80 GB
GPU_BF16_PEAK = 989e12  # H100 SXM dense bf16 FLOP/s
MFU = 0.40  # assumed fraction of that peak a training step reaches (an assumption, not measured)
ALLREDUCE_BYTES_PER_S = 200e9  # assumed NCCL ring bus bandwidth on one NVLink box
# Activations kept for the backward pass, bytes per token x hidden size per transformer layer:
# ~31 (Korthikanti et al. 2022, bf16, no dropout, SDPA attention: no s^2 scores kept) + ~21 for
# the inputs LoRA's dropout keeps (mask + dropped input of qkv, dense, fc1, fc2: 7h x 3 bytes).
ACT_BYTES = 50


def make_dataset(work: Path) -> Path:
    from tinyvla_ros.data.convert import convert_bags
    from tinyvla_ros.data.demos import DemoConfig, record_demos

    cfg = DemoConfig(setup="franka", tasks=["pick_red_cube", "close_drawer"], seeds=[0],
                     image_width=64, image_height=48)  # fmt: skip
    results = record_demos(cfg, work / "bags")
    root = work / "dataset"
    convert_bags([r.path for r in results], root)
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(dataset: Path, out: Path, steps: int, processes: int, threads: int) -> dict:
    """One tinyvla-train run; returns its per-step rates and wall time."""
    args = [str(dataset), "--out", str(out), "--preset", PRESET, "--steps", str(steps), "--batch-size", str(BATCH),
            "--warmup-steps", "1", "--val-fraction", "0", "--save-every", str(10**6), "--log-every", "1",
            "--device", "cpu", "--num-threads", str(threads), "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    if processes == 1:
        cmd = [sys.executable, "-m", "tinyvla_ros.data.train", *args]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--num_cpu_threads_per_process", str(threads), "--main_process_port", str(_free_port()),
               "-m", "tinyvla_ros.data.train", *args]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed:\n{done.stderr[-2000:]}")
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [m["samples_per_s"] for m in metrics if "samples_per_s" in m]
    return {"processes": processes, "threads_per_process": threads, "rates": rates, "wall_s": wall,
            "samples_per_s": float(np.median(rates[2:] if len(rates) > 4 else rates))}  # fmt: skip


def gpu_estimates() -> tuple[list[list], dict]:
    """Memory per GPU and step time for TinyVLA-B / -H LoRA training (official LoRA, 2 cameras,
    the paper's batch) on 1 and 8 GPUs, from parameter counts (meta device), FLOPs counted from
    the model (vla/flops.py, fake tensors) and the activation estimate above."""
    from tinyvla_ros.vla.cli import summarize
    from tinyvla_ros.vla.config import get_config
    from tinyvla_ros.vla.flops import count_chunk_flops

    rows, raw = [], {}
    for preset in ("tinyvla-b", "tinyvla-h"):
        c = get_config(preset)
        info = summarize(c)
        lora = info["trainable"]["lora_parameters"]
        stored, trainable = info["parameters"]["total"] + lora, info["trainable"]["trainable"]
        f = count_chunk_flops(c, steps=1, batch=1)  # one observation + one denoiser call
        forward = f.vision + f.llm + f.condition + f.denoiser
        # backward through the frozen tower and LLM (input gradients only: their weights are
        # frozen) ~ the forward again; weight gradients of LoRA, projector and head are small
        train_flops = 2 * forward + 2 * f.denoiser
        cams = len(c.camera_names)
        act = ACT_BYTES * (
            c.vision.layers_used * cams * (c.image_tokens_per_camera + 1) * c.vision.hidden_size
            + c.llm.num_layers * f.tokens * c.llm.hidden_size
        )  # bytes per sample
        ddp_static = 4 * stored + 12 * trainable + 4 * trainable  # weights, grads + AdamW, DDP buckets
        for gpus, mode in ((1, "1 GPU"), (8, "8 GPUs, DDP"), (8, "8 GPUs, FSDP2")):
            static = ddp_static if mode != "8 GPUs, FSDP2" else (4 * stored + 12 * trainable) / gpus
            per_gpu = GLOBAL_BATCH // gpus
            micro = per_gpu
            while micro > 1 and (static + micro * act) / 1e9 > 0.9 * GPU_MEMORY_GB:
                micro //= 2
            compute = GLOBAL_BATCH * train_flops / (gpus * GPU_BF16_PEAK * MFU)
            comm = 0.0 if gpus == 1 else 2 * (gpus - 1) / gpus * 4 * trainable / ALLREDUCE_BYTES_PER_S
            step = compute + comm  # all-reduce not overlapped with the backward: an upper bound
            rows.append([preset, mode, f"{trainable / 1e6:.0f}M / {stored / 1e6:.0f}M",
                         f"{(static + micro * act) / 1e9:.0f}", f"{micro} x {per_gpu // micro}",
                         f"{step:.2f}", f"{step * PAPER_STEPS / 3600:.1f}"])  # fmt: skip
            raw[f"{preset} {mode}"] = {
                "stored_parameters": stored,
                "trainable_parameters": trainable,
                "forward_flops_per_sample": forward,
                "train_flops_per_sample": train_flops,
                "activation_bytes_per_sample": act,
                "static_bytes_per_gpu": static,
                "micro_batch_per_gpu": micro,
                "grad_accum": per_gpu // micro,
                "step_s": step,
            }
    return rows, raw


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    steps = 8 if args.quick else 20
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print("recording a dataset", flush=True)
        dataset = make_dataset(tmp)
        for processes, threads in ((1, 1), (2, 1), (1, 2)):
            print(f"training: {processes} process(es) x {threads} thread(s)", flush=True)
            result = run(dataset, tmp / f"run_{processes}x{threads}", steps, processes, threads)
            print(f"  {result['samples_per_s']:.1f} samples/s", flush=True)
            runs.append(result)
    print("GPU estimates", flush=True)
    est_rows, est_raw = gpu_estimates()
    one = runs[0]["samples_per_s"]
    rows = [
        [f"{r['processes']}", f"{r['threads_per_process']}", f"{r['samples_per_s']:.1f}",
         f"{r['samples_per_s'] / one:.2f}", f"{r['wall_s']:.0f}"]
        for r in runs
    ]  # fmt: skip
    result = {
        "title": "Training on 1 and 2 processes (accelerate, CPU, gloo)",
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "tables": [
            {
                "caption": f"tinyvla-train {PRESET}, fp32, global batch {BATCH}, {steps} steps, data loading included",
                "columns": [
                    "processes",
                    "threads / process",
                    "samples/s",
                    "x 1 process",
                    "wall s (with start-up)",
                ],
                "rows": rows,
            },
            {
                "caption": f"ESTIMATES (arithmetic, not measured): LoRA training, official LoRA, 2 cameras, "
                f"global batch {GLOBAL_BATCH}, bf16 autocast, {PAPER_STEPS} steps, {GPU_MEMORY_GB:.0f} GB GPUs "
                f"at {MFU:.0%} of {GPU_BF16_PEAK / 1e12:.0f} TFLOP/s",
                "columns": [
                    "preset",
                    "GPUs",
                    "trainable / stored params",
                    "memory per GPU (GB)",
                    "micro-batch x grad-accum per GPU",
                    "step (s)",
                    "10k steps (h)",
                ],
                "rows": est_rows,
            },
        ],
        "notes": [
            "One run each, on a shared 2-core machine with other work running beside it: the ratio is "
            "a rough figure, not a measurement of the method.",
            "2 processes split every global batch (4 samples each) and all-reduce the gradients (DDP, "
            "gloo); on 2 cores they compete with 1 process using both cores through intra-op threads, "
            "the configuration most exposed to other work on the machine (see the per-step rates in raw).",
            "samples/s: median of the per-step rates logged by the main process after 2 warm-up steps.",
            f"Estimates: memory = 4 B x stored weights + 16 B x trainable (fp32 gradient, AdamW moments, "
            f"DDP bucket; FSDP2: the first three / GPUs) + {ACT_BYTES} B x tokens x hidden x layers of "
            "activations per sample (CLIP: 23 layers used x 2 x 577 tokens; GPT-NeoX: 1168 tokens), "
            "micro-batch halved until it fits 90% of the GPU; step = 2 x forward FLOPs (frozen weights "
            "need no weight gradient) x 256 / (GPUs x peak x MFU) + a ring all-reduce of the fp32 "
            "trainable gradients. No activation checkpointing. Uncertain by +-50%: check with "
            "gpu_peak_gb and samples_per_s in metrics.jsonl of a short run.",
        ],
        "raw": {
            "runs": {f"{r['processes']}x{r['threads_per_process']}": r for r in runs},
            "estimates": est_raw,
        },
    }
    out = ROOT / "benchmarks" / "results" / "train_scaling.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    for table in result["tables"]:
        print(table["caption"])
        for row in [table["columns"], *table["rows"]]:
            print("  " + " | ".join(str(v) for v in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
