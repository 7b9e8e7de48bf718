"""``tinyvla-metaworld``: record MetaWorld expert demonstrations, evaluate a checkpoint by difficulty group.

    tinyvla-metaworld tasks                                   the 50 tasks, groups, instructions
    tinyvla-metaworld record --group easy --episodes 50 --out DATASET
    tinyvla-metaworld eval CHECKPOINT --group easy --episodes 10 --json results.json

(also ``python -m tinyvla_ros.metaworld ...``). Train between the two with ``tinyvla-train DATASET``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tinyvla_ros.metaworld.env import (
    CAMERA,
    CAMERAS,
    EVAL_SEED_START,
    IMAGE_SIZE,
    MAX_PATH_LENGTH,
    RenderConfig,
)
from tinyvla_ros.metaworld.tasks import GROUPS, TASKS


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", nargs="+", default=[], help="MetaWorld task names, e.g. reach-v3 push-v3")
    p.add_argument(
        "--group",
        nargs="+",
        default=[],
        choices=(*GROUPS, "all"),
        help="every task of these difficulty groups",
    )
    p.add_argument("--camera", default=CAMERA, choices=CAMERAS, help=f"metaworld camera (default {CAMERA})")
    p.add_argument(
        "--width", type=int, default=IMAGE_SIZE, help=f"image width in pixels (default {IMAGE_SIZE})"
    )
    p.add_argument("--height", type=int, default=IMAGE_SIZE, help=f"image height (default {IMAGE_SIZE})")
    p.add_argument(
        "--max-steps",
        type=int,
        default=MAX_PATH_LENGTH,
        help=f"episode limit in steps (<= {MAX_PATH_LENGTH})",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinyvla-metaworld", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("tasks", help="list the 50 tasks with their difficulty group and instruction")

    rec = sub.add_parser("record", help="record scripted-expert demonstrations into an episode dataset")
    _common(rec)
    rec.add_argument("--episodes", type=int, default=50, help="successful demonstrations per task")
    rec.add_argument("--seed-start", type=int, default=0, help="first layout seed tried per task")
    rec.add_argument(
        "--max-attempts", type=int, default=0, help="seeds tried per task at most (0: 2 x episodes)"
    )
    rec.add_argument("--out", required=True, help="dataset directory to write")
    rec.add_argument("--overwrite", action="store_true")

    ev = sub.add_parser("eval", help="evaluate a checkpoint: success per task, difficulty group, average")
    ev.add_argument("checkpoint", help="checkpoint directory (e.g. a training run's final/)")
    _common(ev)
    ev.add_argument("--episodes", type=int, default=10, help="episodes per task")
    ev.add_argument("--seed-start", type=int, default=EVAL_SEED_START, help="first layout seed per task")
    ev.add_argument("--execute-steps", type=int, default=8, help="actions of each chunk run open loop")
    ev.add_argument("--policy-seed", type=int, default=0, help="diffusion noise seed (-1: fresh noise)")
    ev.add_argument("--engine", default="torch", help="inference engine (torch, onnx, ...: see vla.engines)")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--num-threads", type=int, default=0, help="torch CPU threads (0: default)")
    ev.add_argument("--instruction", default="", help="give the policy this instruction in every episode")
    ev.add_argument("--json", default="", help="also write the results as JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "tasks":
        for task, (group, instruction) in TASKS.items():
            print(f"{group:9s}  {task:30s}  {instruction}")
        return 0
    from tinyvla_ros.metaworld.tasks import select_tasks

    try:
        tasks = tuple(select_tasks(args.tasks, args.group))
        render = RenderConfig(args.camera, args.width, args.height)
        if args.command == "record":
            from tinyvla_ros.data.episodes import dataset_size_bytes
            from tinyvla_ros.metaworld.record import RecordConfig, record

            cfg = RecordConfig(
                tasks, args.episodes, args.seed_start, args.max_attempts, args.max_steps, render
            )
            info, records = record(cfg, args.out, overwrite=args.overwrite)
            kept = sum(len(r.kept_seeds) for r in records)
            failed = sum(len(r.failed_seeds) for r in records)
            print(
                f"{args.out}: {len(info.episodes)} episodes of {len(tasks)} tasks ({kept} kept, {failed} expert "
                f"failures skipped), {info.total_steps} steps at {info.fps:g} Hz, camera {args.camera} "
                f"{args.width}x{args.height}, {dataset_size_bytes(args.out) / 1e6:.1f} MB"
            )
            return 0
        from tinyvla_ros.metaworld.evaluate import EvalConfig, evaluate

        cfg = EvalConfig(
            tasks,
            episodes=args.episodes,
            seed_start=args.seed_start,
            execute_steps=args.execute_steps,
            max_steps=args.max_steps,
            policy_seed=args.policy_seed,
            render=render,
            engine=args.engine,
            device=args.device,
            num_threads=args.num_threads,
            instruction=args.instruction,
        )
        results = evaluate(args.checkpoint, cfg, log=lambda line: print(line, file=sys.stderr))
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"tinyvla-metaworld: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(results.table())
    if args.json:
        Path(args.json).write_text(json.dumps(results.to_dict(), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
