"""``tinyvla-model``: inspect TinyVLA presets and checkpoints.

    tinyvla-model info nano
    tinyvla-model info tinyvla-h --set action_dim=14 --set 'camera_names=["l","r","top"]'
    tinyvla-model info path/to/checkpoint        (a TinyVLA checkpoint or a Llava-Pythia directory)
    tinyvla-model bench nano --cameras 3 --threads 1

``info`` prints a JSON summary: parameters in total and per part (vision, projector, llm, head),
trainable parameters with each LoRA variant, cameras, image size, image tokens, state/action
dimensions, chunk length. Models are built on the meta device (no memory, no weights read):
seconds on any machine.
``bench`` times ``predict_chunk`` (random weights, 640x480 camera images) and its phases
(preprocess, encode_observation, DDIM sampling) on the CPU and prints JSON (milliseconds).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tinyvla_ros.vla.config import LORA_VARIANTS, PAPER_PARAMETERS, PRESETS, TinyVLAConfig, get_config


def _parse_sets(items: list[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects field=value, got {item!r}")
        try:
            overrides[key] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key] = raw
    return overrides


def resolve_config(target: str, overrides: dict[str, Any]) -> tuple[TinyVLAConfig, str]:
    """(config, source) of a preset name, a TinyVLA checkpoint directory or a Llava-Pythia directory."""
    if target in PRESETS:
        return get_config(target, **overrides), "preset"
    path = Path(target)
    if not path.is_dir():
        raise ValueError(f"{target!r} is neither a preset ({', '.join(PRESETS)}) nor a directory")
    data = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
    if data.get("model_type") == "llava_pythia":
        from tinyvla_ros.vla.llava_pythia import config_from_llava_pythia

        return config_from_llava_pythia(data, **overrides), "llava-pythia"
    from tinyvla_ros.vla.checkpoint import read_checkpoint_config

    config, _ = read_checkpoint_config(path)
    return (config.replace(**overrides) if overrides else config), "checkpoint"


def _meta_policy(config: TinyVLAConfig, lora_variant: str | None) -> Any:
    import torch

    from tinyvla_ros.vla.policy import TinyVLAPolicy

    with torch.device("meta"):
        policy = TinyVLAPolicy(config, tokenizer=None)
        if lora_variant is not None:
            policy.apply_lora(lora_variant)
    return policy


def summarize(config: TinyVLAConfig, source: str = "preset") -> dict[str, Any]:
    """JSON-safe summary of ``config``'s model (built on the meta device)."""
    base = _meta_policy(config.replace(tokenizer="external"), None).parameter_summary()
    lora = {}
    for variant in LORA_VARIANTS:
        s = _meta_policy(config.replace(tokenizer="external"), variant).parameter_summary()
        lora[variant] = {
            "lora_parameters": s["lora"],
            "trainable": s["trainable"],
            "trainable_percent": s["trainable_percent"],
        }
    summary: dict[str, Any] = {
        "name": config.name,
        "source": source,
        "parameters": {"total": base["total"], **base["parts"]},
        "trainable": {"lora_variant": config.lora.variant, **lora[config.lora.variant]},
        "lora_variants": lora,
        "lora": {"r": config.lora.r, "alpha": config.lora.alpha, "dropout": config.lora.dropout},
        "camera_names": list(config.camera_names),
        "image_size": config.image_size,
        "image_tokens_per_camera": config.image_tokens_per_camera,
        "state_dim": config.state_dim,
        "action_dim": config.action_dim,
        "chunk_len": config.chunk_len,
        "num_inference_steps": config.num_inference_steps,
        "llm": {"hidden_size": config.llm.hidden_size, "layers": config.llm.num_layers},
        "head_down_dims": list(config.head.down_dims),
    }
    if config.name in PAPER_PARAMETERS:
        summary["paper_total"] = int(PAPER_PARAMETERS[config.name])
    return summary


def _median_ms(fn: Any, runs: int) -> float:
    import time

    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(1000.0 * sorted(times)[len(times) // 2], 2)


def bench(
    config: TinyVLAConfig, runs: int = 20, threads: int = 1, image_shape: tuple[int, int] = (480, 640)
) -> dict:
    """Median CPU latency (ms) of predict_chunk and its phases for ``config`` with random weights."""
    import numpy as np
    import torch

    from tinyvla_ros.vla.normalize import Normalizer
    from tinyvla_ros.vla.policy import TinyVLAPolicy

    torch.set_num_threads(threads)
    policy = TinyVLAPolicy(config, normalizer=Normalizer.identity(config.action_dim, config.state_dim)).eval()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (*image_shape, 3), dtype=np.uint8) for _ in config.camera_names]
    state = np.zeros(config.state_dim, dtype=np.float32)
    text = "pick up the red cube and put it in the bowl"
    predict = lambda: policy.predict_chunk(images, text, state, seed=0)  # noqa: E731
    for _ in range(3):
        predict()
    pixels = policy.preprocess_images(images)[None]
    ids, mask = policy.tokenize(text)
    zero_state = torch.zeros(1, config.state_dim)
    with torch.inference_mode():
        cond = policy.encode_observation(pixels, ids, mask, zero_state)
        noise = torch.randn(1, config.chunk_len, config.action_dim)
        phases = {
            "preprocess_ms": _median_ms(lambda: policy.preprocess_images(images), runs),
            "encode_observation_ms": _median_ms(
                lambda: policy.encode_observation(pixels, ids, mask, zero_state), runs
            ),
            "sample_ms": _median_ms(lambda: policy.sample(cond, noise), runs),
        }
    return {
        "name": config.name,
        "cameras": len(config.camera_names),
        "image_shape": list(image_shape),
        "num_inference_steps": config.num_inference_steps,
        "threads": threads,
        "predict_chunk_ms": _median_ms(predict, runs),
        **phases,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinyvla-model", description="Inspect TinyVLA presets and checkpoints."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print a JSON summary of a preset or checkpoint directory")
    info.add_argument("target", help=f"preset ({', '.join(PRESETS)}) or checkpoint directory")
    info.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help='override a config field (JSON value), e.g. action_dim=14 or \'lora={"variant": "paper"}\'',
    )
    timing = sub.add_parser("bench", help="time predict_chunk (random weights) on this CPU; JSON in ms")
    timing.add_argument("target", help=f"preset ({', '.join(PRESETS)}) or checkpoint directory (config only)")
    timing.add_argument("--cameras", type=int, default=0, help="number of cameras (0: as configured)")
    timing.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    timing.add_argument("--runs", type=int, default=20, help="timed runs per figure (median reported)")
    timing.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", help="override a config field"
    )
    return parser


def _run(args: argparse.Namespace) -> dict:
    config, source = resolve_config(args.target, _parse_sets(args.set))
    if args.command == "info":
        return summarize(config, source)
    if args.cameras < 0 or args.threads < 1 or args.runs < 1:
        raise ValueError(
            f"--cameras >= 0, --threads >= 1, --runs >= 1 expected, got {args.cameras}, {args.threads}, {args.runs}"
        )
    if args.cameras:
        config = config.replace(camera_names=tuple(f"cam{i}" for i in range(args.cameras)))
    if config.tokenizer == "external":
        config = config.replace(tokenizer="tiny")  # timing needs a tokenizer; text length barely matters
    return bench(config, runs=args.runs, threads=args.threads)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tinyvla-model``; returns the exit status (0 ok, 2 bad input)."""
    args = build_parser().parse_args(argv)
    try:
        summary = _run(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"tinyvla-model: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
