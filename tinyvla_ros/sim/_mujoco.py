"""Guarded MuJoCo import with headless OpenGL back-end selection.

MuJoCo reads ``MUJOCO_GL`` once, when it is first imported, so the back-end must be chosen
before that. Order: an explicit ``MUJOCO_GL`` is always respected; otherwise EGL (the
default, GPU or llvmpipe) is used when an EGL display can be created, and OSMesa (pure
software, Debian package ``libosmesa6``) is the fallback. The probe runs once in a child
process (so a failing EGL cannot poison this interpreter's PyOpenGL state) and its answer is
stored in ``os.environ`` so that child processes inherit it without probing again.
"""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys
from types import ModuleType

_PROBE = "import mujoco\nctx = mujoco.GLContext(16, 16)\nctx.make_current()\nctx.free()\n"


def _backend_works(backend: str) -> bool:
    """Return True when a MuJoCo GL context can be created with ``backend`` (child process)."""
    env = dict(os.environ, MUJOCO_GL=backend)
    env.pop("PYOPENGL_PLATFORM", None)
    try:
        result = subprocess.run(
            [sys.executable, "-c", _PROBE], env=env, capture_output=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def select_gl_backend() -> str:
    """Choose and export ``MUJOCO_GL`` (``egl`` first, ``osmesa`` as fallback); return it.

    Returns the existing value untouched when ``MUJOCO_GL`` is already set or mujoco is
    already imported (too late to change). When neither back-end works, ``egl`` is kept so that
    physics still runs and rendering raises a clear error later.
    """
    chosen = os.environ.get("MUJOCO_GL", "").strip().lower()
    if chosen or "mujoco" in sys.modules:
        return chosen
    candidates = [
        name for name, lib in (("egl", "EGL"), ("osmesa", "OSMesa")) if ctypes.util.find_library(lib)
    ]
    chosen = next((name for name in candidates if _backend_works(name)), "egl")
    os.environ["MUJOCO_GL"] = chosen
    return chosen


def import_mujoco() -> ModuleType:
    """Import mujoco after selecting a headless GL back-end; clear error when it is missing."""
    if "mujoco" not in sys.modules:
        select_gl_backend()
    try:
        import mujoco
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise ImportError(
            "tinyvla_ros.sim needs the 'mujoco' package (pip install mujoco==3.3.0, see requirements/sim.txt)"
        ) from err
    return mujoco
