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


def _runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that runs (inside functions too), not those under ``if TYPE_CHECKING``."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    return [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) and id(n) not in skip]


def package_import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (``from a import b``: a.b when a module, else a)."""
    root = CORE.parent
    modules = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, (path, is_package) in modules.items():
        base = module if is_package else module.rpartition(".")[0]
        for node in _runtime_imports(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                source = node.module or ""
                if node.level:
                    prefix = base
                    for _ in range(node.level - 1):
                        prefix = prefix.rpartition(".")[0]
                    source = f"{prefix}.{source}" if source else prefix
                targets = [
                    f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names
                ]
            graph[module].update(
                t for t in map(known, targets) if t and t.startswith("tinyvla_ros") and t != module
            )
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_the_package_has_no_import_cycles() -> None:
    graph = package_import_graph()
    assert len(graph) > 50 and "tinyvla_ros.core.control" in graph["tinyvla_ros.data.evaluate"]
    assert import_cycles(graph) == [], "import cycles (runtime imports, TYPE_CHECKING blocks excluded)"
    # the checker finds a cycle when there is one
    assert import_cycles({**graph, "tinyvla_ros.core.stats": {"tinyvla_ros.data.evaluate"}})


def test_only_the_ros_layer_imports_rclpy() -> None:
    root = CORE.parent
    offenders = []
    for path in root.rglob("*.py"):
        if "ros" in path.relative_to(root).parts[:1]:
            continue
        names = {
            (a.name if isinstance(n, ast.Import) else n.module or "")
            for n in _runtime_imports(ast.parse(path.read_text()))
            for a in (n.names if isinstance(n, ast.Import) else [None])
        }
        if any(name.split(".")[0] == "rclpy" for name in names):
            offenders.append(str(path.relative_to(root)))
    assert not offenders, f"rclpy imported outside tinyvla_ros/ros: {offenders}"
