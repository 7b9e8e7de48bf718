"""Where the package's shared files (config/, launch/, models/) live.

Three layouts are supported, tried in this order:
1. an ament/colcon install: ``<prefix>/share/tinyvla_ros`` found through ament_index_python;
2. a source checkout (editable install): the repository root beside this package;
3. a pip install: ``<sys.prefix>/share/tinyvla_ros``.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

PACKAGE = "tinyvla_ros"


@lru_cache(maxsize=1)
def share_dir() -> Path:
    """Return the directory that holds ``config/``, ``launch/`` and ``models/``."""
    try:  # a sourced ROS 2 / colcon install
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except Exception:  # noqa: BLE001 - ament_index is optional; any failure falls through
        pass
    repo_root = Path(__file__).resolve().parent.parent
    if (repo_root / "config").is_dir() and (repo_root / "package.xml").is_file():
        return repo_root
    prefix_share = Path(sys.prefix) / "share" / PACKAGE
    if prefix_share.is_dir():
        return prefix_share
    raise FileNotFoundError(
        f"cannot find the {PACKAGE} share directory (config/, launch/, models/): "
        "not in an ament index, not beside the source tree, not in "
        f"{prefix_share}"
    )


def config_dir() -> Path:
    return share_dir() / "config"


def launch_dir() -> Path:
    return share_dir() / "launch"


def models_dir() -> Path:
    return share_dir() / "models"
