"""The localisation probe table of models/README.md: pooled-only vs spatial condition, per vision tower.

Renders one set of Franka scenes per image size and runs ``tinyvla-probe``'s readouts and
training on each configuration; prints a Markdown table and writes benchmarks/results/probe.json.

    python benchmarks/probe_table.py [--scenes 600 --held-out 150 --steps 400]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from tinyvla_ros.data.probe import ProbeConfig, build_policy, render_scenes, run_probe

ROWS = (
    ("nano (paper's pooled condition, 3-layer ViT, 64 px)", "nano", {}),
    ("cpu-conv pooled only", "cpu-conv", {"spatial_keypoints": 0}),
    ("cpu-conv + 32 keypoints/camera", "cpu-conv", {}),
    ("cpu-lite0 pooled only", "cpu-lite0", {"spatial_keypoints": 0}),
    ("cpu-lite0 + 32 keypoints/camera", "cpu-lite0", {}),
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenes", type=int, default=600)
    p.add_argument("--held-out", type=int, default=150)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "probe.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    scenes_by_size: dict[int, object] = {}
    results = []
    for label, preset, overrides in ROWS:
        cfg = ProbeConfig(
            target=preset, scenes=args.scenes, held_out=args.held_out, steps=args.steps, overrides=overrides
        )
        policy = build_policy(cfg)[0]
        size = policy.config.image_size
        if size not in scenes_by_size:
            scenes_by_size[size] = render_scenes(cfg, policy)
        result = run_probe(dataclasses.replace(cfg), scenes_by_size[size])
        result["label"] = label
        results.append(result)
        print(json.dumps(result), flush=True)
    write_table(results, Path(args.out))


COLUMNS = ["condition", "mean predictor (cm)", "linear readout, untrained (cm)", "pathway trained (cm)",
           "keypoints alone after training (cm)", "s"]  # fmt: skip


def write_table(results: list[dict], out: Path) -> None:
    """Print the Markdown table and write it in run_all.py's results format (rendered into RESULTS.md)."""
    rows = []
    for r in results:
        kp = r.get("after_training_keypoints_linear_cm")
        rows.append([r["label"], f"{r['mean_predictor_cm']:.2f}", f"{r['condition_linear_cm']:.2f}",
                     f"{r['condition_trained_cm']:.2f}", "-" if kp is None else f"{kp:.2f}", f"{r['seconds']:.0f}"])  # fmt: skip
    first = results[0]
    table = {
        "caption": f"held-out error of the red cube's xy, {first['scenes_fit']} scenes fitted, "
        f"{first['scenes_held_out']} held out, {first['trained_steps']} training steps",
        "columns": COLUMNS,
        "rows": rows,
    }
    notes = ["tinyvla-probe's readouts on one set of rendered Franka scenes per image size, one CPU thread."]
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"title": "Localisation probe (benchmarks/probe_table.py)", "tables": [table], "notes": notes}
    out.write_text(json.dumps({**payload, "raw": results}, indent=1) + "\n")
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
