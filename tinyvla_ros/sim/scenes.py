"""Whole MJCF scenes per set-up: table, robot(s), task objects, cameras, lights.

Frames: world z is up, the table top is the plane z = 0, +x points away from the robot base(s)
into the workspace. Set-ups:

* ``franka``: one FR3 + Franka Hand at the origin; red/green/blue 4 cm cubes, a bowl, a cabinet
  with a sliding drawer; two ZED 2-like cameras fixed on both sides of the robot.
* ``ur5_bimanual``: two UR5 + 2F-85-like grippers side by side (left at +y, right at -y, both
  facing +x); a long box to lift with both arms, a red cube to hand over, green/blue cubes, a bin;
  a RealSense-like camera on each wrist and one above the table.

Shadows, reflections and textures other than the sky gradient are off: llvmpipe renders fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tinyvla_ros.core.robots import SETUPS
from tinyvla_ros.sim.robots import NO_COLLISION, ArmSpec, fmt, franka_arm, lookat_xyaxes, quat_z, ur5_arm

CUBE_HALF = 0.02  # Franka scene: 4 cm cubes (the Franka Hand opens 8 cm)
UR_CUBE_HALF = 0.025  # bimanual scene: 5 cm cubes, room for two grippers during a hand-over
CUBE_COLOURS = {"red": "0.85 0.12 0.1 1", "green": "0.1 0.7 0.2 1", "blue": "0.12 0.3 0.9 1"}
BOWL_RADIUS = 0.085  # inner radius of the bowl wall [m]
BOWL_HEIGHT = 0.05
BOX_HALF = (0.035, 0.19, 0.03)  # the long box lifted with both arms (x, y, z half sizes) [m]
BIN_HALF = (0.09, 0.09, 0.045)  # the bin's outer half sizes [m]
DRAWER_TRAVEL = 0.16  # drawer slide range [m]
WORLD = 'contype="1" conaffinity="3"'  # table, furniture: touch robots and objects
OBJECT = 'contype="1" conaffinity="7"'  # free objects: also touch bowl walls
BOWL_WALL = 'contype="4" conaffinity="2"'  # bowl walls: touch objects and robots, not the table


@dataclass(frozen=True)
class CameraSpec:
    """A simulated camera: MuJoCo camera name, the real sensor it imitates, its image encoding."""

    name: str
    model: str  # "zed2" | "d435i"
    encoding: str  # what the real driver publishes: "bgra8" (ZED) | "rgb8" (RealSense)


@dataclass(frozen=True)
class SceneSpec:
    """An MJCF scene and the facts the environment needs about it."""

    setup: str
    xml: str
    arms: dict[str, ArmSpec]
    cameras: tuple[CameraSpec, ...]


def build_scene(setup: str, image_width: int, image_height: int, physics_dt: float) -> SceneSpec:
    """Return the scene for ``setup`` ('franka' | 'ur5_bimanual')."""
    if setup == "franka":
        return _franka_scene(image_width, image_height, physics_dt)
    if setup == "ur5_bimanual":
        return _ur5_scene(image_width, image_height, physics_dt)
    raise ValueError(f"setup must be one of {SETUPS}, got {setup!r}")


# ----------------------------------------------------------------------------- shared pieces


def _header(name: str, width: int, height: int, physics_dt: float) -> str:
    return f"""<mujoco model="{name}">
<compiler angle="radian" autolimits="true"/>
<option timestep="{physics_dt:g}" integrator="implicitfast" cone="elliptic" impratio="10"/>
<visual>
  <global offwidth="{max(width, 64)}" offheight="{max(height, 64)}"/>
  <quality shadowsize="0" offsamples="0"/>
  <headlight ambient="0.45 0.45 0.45" diffuse="0.5 0.5 0.5" specular="0 0 0"/>
  <rgba haze="0.6 0.7 0.8 1"/>
</visual>
<asset>
  <texture name="sky" type="skybox" builtin="gradient" rgb1="0.75 0.8 0.86" rgb2="0.35 0.38 0.42"
    width="32" height="32"/>
</asset>
<default>
  <geom solref="0.004 1" solimp="0.95 0.99 0.001"/>
</default>
"""


def _table(x_range: tuple[float, float], y_half: float) -> str:
    """Table with its top at z = 0, four legs, and a floor 0.75 m below."""
    cx, hx = (x_range[0] + x_range[1]) / 2, (x_range[1] - x_range[0]) / 2
    legs = "".join(
        f'<geom type="box" pos="{cx + sx * (hx - 0.04):.3f} {sy * (y_half - 0.04):.3f} -0.39" '
        f'size="0.03 0.03 0.36" rgba="0.45 0.33 0.22 1" {WORLD}/>'
        for sx in (-1, 1)
        for sy in (-1, 1)
    )
    return (
        f'<geom name="floor" type="plane" pos="0 0 -0.75" size="3 3 0.1" rgba="0.5 0.5 0.52 1" {WORLD}/>'
        f'<geom name="table" type="box" pos="{cx:.3f} 0 -0.02" size="{hx:.3f} {y_half:.3f} 0.02" '
        f'rgba="0.72 0.58 0.42 1" friction="0.8 0.005 0.0001" {WORLD}/>' + legs
    )


def _light() -> str:
    return '<light name="sun" pos="0.4 0 2.0" dir="0 0 -1" directional="true" castshadow="false" diffuse="0.5 0.5 0.5"/>'


def _cube(colour: str, pos: tuple[float, float, float], half: float) -> str:
    """A free cube named '<colour>_cube' with half size ``half`` (50 g)."""
    return (
        f'<body name="{colour}_cube" pos="{fmt(pos)}"><freejoint name="{colour}_cube_joint"/>'
        f'<geom name="{colour}_cube_geom" type="box" size="{half} {half} {half}" '
        f'rgba="{CUBE_COLOURS[colour]}" mass="0.05" friction="1.2 0.01 0.0002" condim="4" {OBJECT}/></body>'
    )


def _fixed_camera(name: str, pos: np.ndarray, target: np.ndarray, fovy: float, up=(0.0, 0.0, 1.0)) -> str:
    axes = lookat_xyaxes(pos, target, np.asarray(up, float))
    return f'<camera name="{name}" pos="{fmt(pos)}" xyaxes="{fmt(axes)}" fovy="{fovy:g}"/>'


def _assemble(name: str, header: str, world: list[str], actuators: list[str], equality: list[str]) -> str:
    return (
        header
        + "<worldbody>\n"
        + "\n".join(world)
        + "\n</worldbody>\n<actuator>\n"
        + "\n".join(actuators)
        + "\n</actuator>\n<equality>\n"
        + "\n".join(equality)
        + "\n</equality>\n</mujoco>\n"
    )


# ----------------------------------------------------------------------------- Franka scene


def _bowl() -> str:
    """A free bowl: a disc and a ring of 12 wall segments (300 g)."""
    n, thick = 12, 0.008
    half_len = (BOWL_RADIUS + thick) * math.tan(math.pi / n) + 0.002
    walls = []
    for k in range(n):
        ang = 2 * math.pi * k / n
        r = BOWL_RADIUS + thick / 2
        walls.append(
            f'<geom type="box" pos="{r * math.cos(ang):.4f} {r * math.sin(ang):.4f} {BOWL_HEIGHT / 2:.4f}" '
            f'quat="{fmt(quat_z(ang))}" size="{thick / 2} {half_len:.4f} {BOWL_HEIGHT / 2}" '
            f'rgba="0.95 0.85 0.35 1" mass="0.02" {BOWL_WALL}/>'
        )
    return (
        '<body name="bowl" pos="0.45 0.25 0"><freejoint name="bowl_joint"/>'
        f'<geom name="bowl_bottom" type="cylinder" pos="0 0 0.004" size="{BOWL_RADIUS + thick} 0.004" '
        f'rgba="0.95 0.85 0.35 1" mass="0.06" {BOWL_WALL}/>'
        # Only this inscribed square foot touches the table: box-box contacts are few and stable.
        f'<geom name="bowl_foot" type="box" pos="0 0 0.004" size="0.06 0.06 0.004" rgba="0 0 0 0" '
        f'mass="0.02" {OBJECT}/>' + "".join(walls) + "</body>"
    )


def _cabinet() -> str:
    """A static cabinet (front faces local -x) with a drawer on a slide joint (0 = closed)."""
    hx, hy, hz = 0.11, 0.13, 0.08  # cabinet outer half sizes
    t = 0.008
    wood = 'rgba="0.55 0.42 0.3 1"'
    front = 'rgba="0.82 0.78 0.7 1"'
    shell = "".join(
        f'<geom type="box" pos="{p}" size="{s}" {wood} {WORLD}/>'
        for p, s in (
            (f"0 0 {t / 2}", f"{hx} {hy} {t / 2}"),
            (f"0 0 {2 * hz - t / 2}", f"{hx} {hy} {t / 2}"),
            (f"0 {hy - t / 2} {hz}", f"{hx} {t / 2} {hz}"),
            (f"0 {-hy + t / 2} {hz}", f"{hx} {t / 2} {hz}"),
            (f"{hx - t / 2} 0 {hz}", f"{t / 2} {hy} {hz}"),
        )
    )
    dx, dy, dz = hx - 0.012, hy - t - 0.004, hz - t - 0.01  # drawer half sizes
    drawer = "".join(
        f'<geom type="box" pos="{p}" size="{s}" {wood} mass="0.1" {WORLD}/>'
        for p, s in (
            (f"0 0 {-dz + t / 2}", f"{dx} {dy} {t / 2}"),
            (f"0 {dy - t / 2} 0", f"{dx} {t / 2} {dz}"),
            (f"0 {-dy + t / 2} 0", f"{dx} {t / 2} {dz}"),
            (f"{dx - t / 2} 0 0", f"{t / 2} {dy} {dz}"),
        )
    )
    drawer += (
        f'<geom name="drawer_front" type="box" pos="{-dx - t / 2} 0 0.004" size="{t / 2} {hy - 0.002} {hz - 0.006}" '
        f'{front} mass="0.2" {WORLD}/>'
        f'<geom name="drawer_handle" type="capsule" fromto="{-dx - 0.03} -0.05 0.02 {-dx - 0.03} 0.05 0.02" '
        f'size="0.008" rgba="0.3 0.3 0.32 1" mass="0.05" {WORLD}/>'
        f'<geom type="box" pos="{-dx - 0.018} -0.05 0.02" size="0.014 0.005 0.005" rgba="0.3 0.3 0.32 1" '
        f'mass="0.01" {WORLD}/>'
        f'<geom type="box" pos="{-dx - 0.018} 0.05 0.02" size="0.014 0.005 0.005" rgba="0.3 0.3 0.32 1" '
        f'mass="0.01" {WORLD}/>'
    )
    return (
        f'<body name="cabinet" pos="0.65 -0.35 0">{shell}'
        # At 0 the front panel's inner face is 1 mm in front of the cabinet's front edge.
        f'<body name="drawer" pos="{-(hx - dx - t) - 0.001:.4f} 0 {hz + 0.002}">'
        f'<joint name="drawer_joint" type="slide" axis="-1 0 0" range="0 {DRAWER_TRAVEL}" damping="8" '
        f'frictionloss="0.5" armature="0.05"/>{drawer}</body></body>'
    )


def _franka_scene(width: int, height: int, physics_dt: float) -> SceneSpec:
    body, act, eq, arm = franka_arm("fr3")
    world = [
        _light(),
        _table((-0.3, 1.0), 0.75),
        body,
        *(_cube(c, (0.5, 0.1 * k - 0.1, CUBE_HALF), CUBE_HALF) for k, c in enumerate(CUBE_COLOURS)),
        _bowl(),
        _cabinet(),
        # ZED 2-like views fixed on both sides of the robot, looking at the workspace.
        _fixed_camera("zed_left", np.array([0.85, 0.5, 0.6]), np.array([0.4, 0.0, 0.12]), 62),
        _fixed_camera("zed_right", np.array([0.85, -0.5, 0.6]), np.array([0.4, 0.0, 0.12]), 62),
    ]
    xml = _assemble("franka_fr3_tabletop", _header("franka", width, height, physics_dt), world, [act], [eq])
    cameras = (CameraSpec("zed_left", "zed2", "bgra8"), CameraSpec("zed_right", "zed2", "bgra8"))
    return SceneSpec("franka", xml, {arm.name: arm}, cameras)


# ----------------------------------------------------------------------------- bimanual UR5 scene


def _long_box() -> str:
    """The long box lifted with both arms (400 g), with darker grip zones near its ends."""
    hx, hy, hz = BOX_HALF
    grips = "".join(
        f'<geom type="box" pos="0 {s * (hy - 0.04):.3f} 0" size="{hx + 0.001} 0.03 {hz + 0.001}" '
        f'rgba="0.35 0.22 0.12 1" mass="0" {NO_COLLISION}/>'
        for s in (-1, 1)
    )
    return (
        f'<body name="box" pos="0.45 0 {hz}"><freejoint name="box_joint"/>'
        f'<geom name="box_geom" type="box" size="{hx} {hy} {hz}" rgba="0.75 0.55 0.3 1" mass="0.4" '
        f'friction="1.2 0.01 0.0002" condim="4" {OBJECT}/>{grips}</body>'
    )


def _bin() -> str:
    """A static open bin (moved at reset), walls 8 mm thick."""
    hx, hy, hz = BIN_HALF
    t = 0.004
    grey = 'rgba="0.35 0.45 0.55 1"'
    geoms = "".join(
        f'<geom type="box" pos="{p}" size="{s}" {grey} {WORLD}/>'
        for p, s in (
            (f"0 0 {t}", f"{hx} {hy} {t}"),
            (f"{hx - t} 0 {hz}", f"{t} {hy} {hz}"),
            (f"{-hx + t} 0 {hz}", f"{t} {hy} {hz}"),
            (f"0 {hy - t} {hz}", f"{hx} {t} {hz}"),
            (f"0 {-hy + t} {hz}", f"{hx} {t} {hz}"),
        )
    )
    return f'<body name="bin" pos="0.5 -0.3 0">{geoms}</body>'


def _ur5_scene(width: int, height: int, physics_dt: float) -> SceneSpec:
    arms, world, acts, eqs = {}, [_light(), _table((-0.3, 1.0), 0.8)], [], []
    for prefix, y in (("left", 0.35), ("right", -0.35)):
        body, act, eq, arm = ur5_arm(prefix)
        # The DH base frame's x axis points away from the workspace: mount it turned by 180 deg.
        world.append(f'<body name="{prefix}_mount" pos="0 {y} 0" quat="{fmt(quat_z(math.pi))}">{body}</body>')
        acts.append(act)
        eqs.append(eq)
        arms[prefix] = arm
    world += [
        _long_box(),
        _cube("red", (0.4, 0.2, UR_CUBE_HALF), UR_CUBE_HALF),
        _cube("green", (0.35, -0.15, UR_CUBE_HALF), UR_CUBE_HALF),
        _cube("blue", (0.35, -0.25, UR_CUBE_HALF), UR_CUBE_HALF),
        _bin(),
        # RealSense-like top view above the middle of the table, image top = far side (+x).
        _fixed_camera("top", np.array([0.45, 0.0, 1.05]), np.array([0.45, 0.0, 0.0]), 58, up=(1.0, 0.0, 0.0)),
    ]
    xml = _assemble(
        "ur5_bimanual_tabletop", _header("ur5_bimanual", width, height, physics_dt), world, acts, eqs
    )
    cameras = (
        CameraSpec("wrist_left", "d435i", "rgb8"),
        CameraSpec("wrist_right", "d435i", "rgb8"),
        CameraSpec("top", "d435i", "rgb8"),
    )
    return SceneSpec("ur5_bimanual", xml, arms, cameras)
