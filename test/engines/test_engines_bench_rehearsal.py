"""The GPU part of benchmarks/bench_inference.py rehearsed on the CPU (bf16 for fp16, CPU provider for
CUDA): no GPU is lent to CI, and the first GPU run must not fail on a Python error."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        import bench_inference

        yield bench_inference
    finally:
        sys.path.remove(str(BENCH))


def test_gpu_part_runs_on_the_cpu_and_fills_its_tables(bench, tmp_path):
    args = bench.parse_args(["--quick", "--repeats", "2", "--threads", "1"])
    args.ar_repeats = 1
    notes: list[str] = []
    ar: list[list] = []
    tables = bench.gpu_part(args, tmp_path, notes, ar, device="cpu", presets=("nano",))
    assert not [n for n in notes if "not measured" in n], notes
    (table,) = tables
    assert table["columns"][-1] == "of bf16 matmul peak"
    rows = {row[1]: row for row in table["rows"]}
    assert set(rows) == {"torch bf16", "onnx fp32"}
    for row in rows.values():
        assert row[0] == "nano" and 0 < row[2] <= row[3]  # p50 <= p99, both positive
        assert float(row[6].rstrip("%")) > 0
    (ar_row,) = ar
    assert ar_row[:3] == ["nano", "GPU CPU rehearsal, bf16", "ours: torch bf16"]
    assert ar_row[3] > 0 and ar_row[4] > 0 and ar_row[6] > 0  # ours, AR chunk, ratio
