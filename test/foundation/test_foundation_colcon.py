"""`colcon build` (colcon-core + colcon-ros from PyPI) turns the package into a ROS 2 install tree."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE_CONTENT = [
    "package.xml",
    "setup.py",
    "setup.cfg",
    "resource",
    "tinyvla_ros",
    "launch",
    "config",
    "models",
]


@pytest.fixture(scope="module")
def install_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("colcon_ws")
    src = ws / "src" / "tinyvla_ros"
    src.mkdir(parents=True)
    for name in PACKAGE_CONTENT:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    colcon = Path(sys.executable).parent / "colcon"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(
        [str(colcon), "build", "--base-paths", "src"],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"colcon build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return ws / "install" / "tinyvla_ros"


def test_share_tree_holds_launch_config_and_models(install_tree: Path) -> None:
    share = install_tree / "share" / "tinyvla_ros"
    assert (share / "package.xml").is_file()
    for folder, pattern in (("launch", "*.launch.py"), ("config", "*.yaml")):
        installed = sorted(p.name for p in (share / folder).glob(pattern))
        expected = sorted(p.name for p in (REPO / folder).glob(pattern))
        assert installed == expected and installed, f"share/tinyvla_ros/{folder}: {installed} != {expected}"
    models_expected = sorted(
        p.relative_to(REPO).as_posix() for p in (REPO / "models").rglob("*") if p.is_file()
    )
    models_installed = sorted(
        p.relative_to(share).as_posix() for p in (share / "models").rglob("*") if p.is_file()
    )
    assert models_installed == models_expected


def test_ament_index_marker_and_executables(install_tree: Path) -> None:
    marker = install_tree / "share" / "ament_index" / "resource_index" / "packages" / "tinyvla_ros"
    assert marker.is_file()
    scripts = {p.name for p in (install_tree / "lib" / "tinyvla_ros").iterdir()}
    declared = {name for name, _ in declared_entry_points()}
    assert declared <= scripts, f"console scripts missing from lib/tinyvla_ros: {sorted(declared - scripts)}"
    # every node the graph starts has its executable installed (launch_ros looks them up by name)
    from tinyvla_ros.ros.graph import GraphArgs, build_graph

    for robot in ("franka", "ur5_bimanual"):
        for spec in build_graph(GraphArgs(robot, use_sim=True)):
            assert spec.console_script in scripts, f"{robot}: {spec.console_script} not installed"


def declared_entry_points() -> list[tuple[str, str]]:
    """(script name, "module:function") pairs declared in setup.py."""
    text = (REPO / "setup.py").read_text()
    pairs = re.findall(r'"([\w-]+) = ([\w.]+:\w+)"', text)
    assert pairs, "no console_scripts found in setup.py"
    return pairs


@pytest.mark.parametrize("name,target", declared_entry_points())
def test_every_entry_point_resolves(name: str, target: str) -> None:
    module, func = target.split(":")
    assert callable(getattr(importlib.import_module(module), func)), f"{name}: {target} is not callable"


def test_installed_package_imports_and_finds_its_share(install_tree: Path) -> None:
    site = next((install_tree / "lib").glob("python3*/site-packages"))
    code = "import tinyvla_ros.paths as p, sys; sys.stdout.write(str(p.share_dir()))"
    env = {**os.environ, "PYTHONPATH": str(site), "AMENT_PREFIX_PATH": str(install_tree)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, cwd=install_tree
    )
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout) == install_tree / "share" / "tinyvla_ros"
