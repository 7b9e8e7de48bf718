"""tinyvla_ros.core stays plain Python + NumPy: no rclpy, no torch, no ROS message packages."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import tinyvla_ros.core

CORE = Path(tinyvla_ros.core.__file__).parent
FORBIDDEN = ("rclpy", "torch", "sensor_msgs", "std_msgs", "geometry_msgs", "trajectory_msgs", "mujoco", "cv2")
FORBIDDEN_LAYERS = ("tinyvla_ros.ros", "tinyvla_ros.vla", "tinyvla_ros.sim", "tinyvla_ros.data")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_forbidden_imports_in_source() -> None:
    offenders = {}
    for path in sorted(CORE.glob("*.py")):
        bad = [
            m
            for m in imported_modules(path)
            if m.split(".")[0] in FORBIDDEN
            or any(m == layer or m.startswith(layer + ".") for layer in FORBIDDEN_LAYERS)
        ]
        if bad:
            offenders[path.name] = bad
    assert not offenders, f"core must not import ROS, torch or upper layers: {offenders}"


def test_importing_core_loads_neither_rclpy_nor_torch() -> None:
    modules = sorted(p.stem for p in CORE.glob("*.py") if p.stem != "__init__")
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module('tinyvla_ros.core.' + m)\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "", f"importing tinyvla_ros.core pulled in: {out.stdout.strip()}"
