"""Run the CPU benchmark suite and rewrite benchmarks/RESULTS.md.

Each benchmark is a script ``benchmarks/bench_<name>.py`` that accepts ``--quick`` and writes
``benchmarks/results/<name>.json``: {"title": str, "tables": [{"caption", "columns", "rows"}],
"notes": [str]}. This runner calls every script in its own process (so one crash does not stop the
others), then renders all result files, with a description of the machine, into RESULTS.md.
Figures from one run only are compared with each other: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"


def machine_description() -> list[str]:
    lines = [f"- Python {platform.python_version()} on {platform.platform()}"]
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        lines.append(f"- CPU: {model}, {os.cpu_count()} logical cores")
    except (OSError, StopIteration):
        lines.append(f"- CPU: {platform.processor() or 'unknown'}, {os.cpu_count()} logical cores")
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        lines.append(f"- Memory: {mem_kb / 2**20:.1f} GiB")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
        lines.append(f"- torch {torch.__version__}, GPU: {gpu}")
    except ImportError:
        lines.append("- torch not installed")
    return lines


def render_table(table: dict) -> list[str]:
    cols = table["columns"]
    out = [f"**{table.get('caption', '')}**", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in table["rows"]:
        out.append("| " + " | ".join(str(v) for v in row) + " |")
    return [*out, ""]


def flatten(data: object, prefix: str = "") -> list[tuple[str, object]]:
    if isinstance(data, dict):
        return [kv for k, v in data.items() for kv in flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(data, list) and len(data) > 8:
        return [(prefix, f"[{len(data)} values]")]
    return [(prefix, data)]


def generic_result(res: dict) -> dict:
    title = res.get("title") or res.get("name") or "results"
    rows = [[k, v] for k, v in flatten({k: v for k, v in res.items() if k not in ("title", "name")})]
    return {"title": title, "tables": [{"caption": "", "columns": ["figure", "value"], "rows": rows}]}


def render(results: list[dict], started: str) -> str:
    lines = ["# Benchmark results", "", f"Written by `make bench` on {started}.", "", "## Machine", ""]
    lines += machine_description() + [""]
    for res in results:
        if "tables" not in res:  # a benchmark that wrote plain figures: show them as a key/value table
            res = generic_result(res)
        lines += [f"## {res['title']}", ""]
        if res.get("generated"):
            lines += [f"_run: {res['generated']}_", ""]
        for table in res.get("tables", []):
            lines += render_table(table)
        for note in res.get("notes", []):
            lines.append(f"- {note}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats; same figures")
    parser.add_argument("--only", nargs="*", help="names of benchmarks to run (default: all)")
    parser.add_argument("--render-only", action="store_true", help="only rebuild RESULTS.md from results/")
    args = parser.parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.only]
    failed = []
    if not args.render_only:
        for script in scripts:
            print(f"== {script.name}", flush=True)
            cmd = [sys.executable, str(script)] + (["--quick"] if args.quick else [])
            start = time.perf_counter()
            if subprocess.run(cmd, cwd=HERE.parent).returncode != 0:
                failed.append(script.name)
            print(f"== {script.name}: {time.perf_counter() - start:.0f} s", flush=True)
    results = [{"title": p.stem, **json.loads(p.read_text())} for p in sorted(RESULTS_DIR.glob("*.json"))]
    (HERE / "RESULTS.md").write_text(render(results, started))
    print(f"wrote {HERE / 'RESULTS.md'} from {len(results)} result files")
    if failed:
        print("FAILED: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
