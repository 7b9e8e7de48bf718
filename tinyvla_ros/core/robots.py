"""Robot specifications (manufacturers' limits, kinematics, grippers) and action layouts.

Specs live in ``config/robots/<name>.yaml`` (``fr3.yaml``, ``ur5.yaml``), each value cited to the
manufacturer's published data in YAML comments; ``load_robot_spec`` reads and validates them.
Forward kinematics uses the published Denavit-Hartenberg tables: Craig's modified convention
for the Franka FR3, the standard convention for the UR5.

``ActionLayout`` says how an action vector maps onto robot commands:
    franka_joint        7 joints + gripper                         (8,)
    franka_ee           xyz + 6-D rotation + gripper               (10,)
    ur5_bimanual_joint  left 6 + left gripper + right 6 + right gripper  (14,)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from tinyvla_ros.core.rotations import euler_to_matrix, rot6d_to_matrix

__all__ = [
    "Kinematics",
    "GripperSpec",
    "CartesianLimits",
    "SafetyProfile",
    "RobotSpec",
    "load_robot_spec",
    "available_robot_specs",
    "ArmSlot",
    "ArmAction",
    "ActionLayout",
    "make_action_layout",
    "ACTION_LAYOUTS",
    "FR3_JOINT_NAMES",
    "UR_JOINT_NAMES",
]

FR3_JOINT_NAMES = tuple(f"fr3_joint{i}" for i in range(1, 8))
UR_JOINT_NAMES = (
    "shoulder_pan_joint",
    "shoulder_lift_joint",
    "elbow_joint",
    "wrist_1_joint",
    "wrist_2_joint",
    "wrist_3_joint",
)
ACTION_LAYOUTS = ("franka_joint", "franka_ee", "ur5_bimanual_joint")
# the robot set-ups the package ships (config/<setup>.yaml, launch/<setup>.launch.py, the fakes)
SETUPS = ("franka", "ur5_bimanual")


def _vec(name: str, value: object, n: int | None = None, positive: bool = False) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a list of numbers, got {value!r}") from exc
    if n is not None and arr.size != n:
        raise ValueError(f"{name} must have {n} entries, got {arr.size}: {value!r}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and np.any(arr <= 0):
        raise ValueError(f"{name} must be > 0, got {value!r}")
    arr.setflags(write=False)
    return arr


def _transform(xyz: Sequence[float], rpy: Sequence[float]) -> np.ndarray:
    """4x4 transform from a translation and roll-pitch-yaw (extrinsic xyz)."""
    t = np.eye(4)
    t[:3, :3] = euler_to_matrix(np.asarray(rpy, dtype=np.float64), "xyz")
    t[:3, 3] = _vec("xyz", xyz, 3)
    return t


# --------------------------------------------------------------------------- kinematics
@dataclass(frozen=True, eq=False)
class Kinematics:
    """Serial-chain forward kinematics from a DH table.

    Attributes:
        convention: "modified" (Craig: row i holds a_{i-1}, alpha_{i-1}, d_i, theta_i) or
            "standard" (row i holds a_i, alpha_i, d_i, theta_i).
        a, d, alpha, theta_offset: (n,) DH parameters (m, m, rad, rad); joint angle adds to theta.
        flange: 4x4 fixed transform from the last joint frame to the flange.
        tool: 4x4 fixed transform from the flange to the tool centre point (TCP).
    """

    convention: str
    a: np.ndarray
    d: np.ndarray
    alpha: np.ndarray
    theta_offset: np.ndarray
    flange: np.ndarray = field(default_factory=lambda: np.eye(4))
    tool: np.ndarray = field(default_factory=lambda: np.eye(4))

    def __post_init__(self) -> None:
        if self.convention not in ("modified", "standard"):
            raise ValueError(
                f"Kinematics.convention must be 'modified' or 'standard', got {self.convention!r}"
            )
        n = len(self.a)
        for name in ("d", "alpha", "theta_offset"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Kinematics.{name} has {len(getattr(self, name))} rows, a has {n}")
        for name in ("flange", "tool"):
            m = np.asarray(getattr(self, name))
            if m.shape != (4, 4) or not np.all(np.isfinite(m)):
                raise ValueError(f"Kinematics.{name} must be a finite 4x4 matrix, got shape {m.shape}")

    @property
    def dof(self) -> int:
        return len(self.a)

    def _const(self, i: int) -> np.ndarray:
        """The joint-independent 4x4 factor of link i: RotX(alpha) TransX(a)."""
        ca, sa = math.cos(self.alpha[i]), math.sin(self.alpha[i])
        return np.array(
            [[1.0, 0.0, 0.0, self.a[i]], [0.0, ca, -sa, 0.0], [0.0, sa, ca, 0.0], [0.0, 0.0, 0.0, 1.0]]
        )

    @staticmethod
    def _apply_z(pose: np.ndarray, theta: np.ndarray, d: float) -> np.ndarray:
        """pose (..., 4, 4) @ RotZ(theta) @ TransZ(d), updating columns instead of building matrices."""
        c, s = np.cos(theta)[..., None], np.sin(theta)[..., None]
        p0, p1, p2, p3 = pose[..., :, 0], pose[..., :, 1], pose[..., :, 2], pose[..., :, 3]
        out = np.empty_like(pose)
        out[..., :, 0] = c * p0 + s * p1
        out[..., :, 1] = c * p1 - s * p0
        out[..., :, 2] = p2
        out[..., :, 3] = p3 + d * p2
        return out

    def _link(self, i: int, theta: np.ndarray) -> np.ndarray:
        """(..., 4, 4) transform of link i for joint angles theta (...)."""
        eye = np.broadcast_to(np.eye(4), np.shape(theta) + (4, 4))
        return self._chain(eye, i, np.asarray(theta, dtype=np.float64))

    def _chain(self, pose: np.ndarray, i: int, theta: np.ndarray) -> np.ndarray:
        """pose @ T_i(theta) for either DH convention."""
        th = theta + self.theta_offset[i]
        if self.convention == "modified":  # RotX(alpha_{i-1}) TransX(a_{i-1}) RotZ(theta_i) TransZ(d_i)
            return self._apply_z(pose @ self._consts[i], th, self.d[i])
        return self._apply_z(pose, th, self.d[i]) @ self._consts[i]  # RotZ TransZ TransX(a) RotX(alpha)

    @property
    def _consts(self) -> list[np.ndarray]:
        cached = self.__dict__.get("_const_cache")
        if cached is None:
            cached = [self._const(i) for i in range(self.dof)]
            object.__setattr__(self, "_const_cache", cached)
        return cached

    def fk(self, q: np.ndarray, tcp: bool = True) -> np.ndarray:
        """Joint positions (..., n) -> pose (..., 4, 4) of the TCP (or the flange) in the base frame."""
        q = np.asarray(q, dtype=np.float64)
        if q.shape[-1:] != (self.dof,):
            raise ValueError(f"fk: expected joint positions (..., {self.dof}), got {q.shape}")
        pose = np.broadcast_to(np.eye(4), q.shape[:-1] + (4, 4))
        for i in range(self.dof):
            pose = self._chain(pose, i, q[..., i])
        pose = pose @ self.flange
        return pose @ self.tool if tcp else pose

    def fk_xyz(self, q: np.ndarray) -> np.ndarray:
        """Joint positions (..., n) -> TCP position (..., 3) in metres, base frame."""
        return self.fk(q)[..., :3, 3]

    @classmethod
    def from_dict(cls, data: dict) -> Kinematics:
        rows = np.asarray(data["dh"], dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != 4:
            raise ValueError(
                f"kinematics.dh must be rows of [a, d, alpha, theta_offset], got shape {rows.shape}"
            )
        conv = data.get("convention")
        flange_row = data.get("flange")
        flange = np.eye(4)
        if flange_row is not None:
            tmp = cls(conv, *(_vec("kinematics.flange", [v], 1) for v in flange_row))
            flange = tmp._link(0, np.zeros(()))
        tool = data.get("tool") or {}
        return cls(
            convention=conv,
            a=_vec("dh.a", rows[:, 0]),
            d=_vec("dh.d", rows[:, 1]),
            alpha=_vec("dh.alpha", rows[:, 2]),
            theta_offset=_vec("dh.theta_offset", rows[:, 3]),
            flange=flange,
            tool=_transform(tool.get("xyz", [0.0, 0.0, 0.0]), tool.get("rpy", [0.0, 0.0, 0.0])),
        )


# ------------------------------------------------------------------------------ grippers
@dataclass(frozen=True)
class GripperSpec:
    """A parallel gripper and how the policy's gripper action maps onto it.

    Attributes:
        kind: e.g. "franka_hand", "robotiq_2f85".
        width_min, width_max: finger opening range (m).
        speed_min, speed_max: finger speed range (m/s) accepted by the gripper.
        default_speed: speed used for move/grasp commands (m/s).
        force_min, force_max, default_force: grasp force range and default (N).
        action_closed, action_open: action values meaning fully closed / fully open.
        close_below, open_above: hysteresis thresholds in action units (see GripperHysteresis).
        min_dwell: s between open/close decisions (GripperHysteresis); default: a full stroke at
            ``speed_max``, the shortest time the hand needs to finish a motion.
    """

    kind: str
    width_min: float
    width_max: float
    speed_min: float
    speed_max: float
    default_speed: float
    force_min: float
    force_max: float
    default_force: float
    action_closed: float = 0.0
    action_open: float = 1.0
    close_below: float | None = None
    open_above: float | None = None
    min_dwell: float | None = None

    def __post_init__(self) -> None:
        vals = {
            k: getattr(self, k)
            for k in ("width_min", "width_max", "speed_min", "speed_max", "force_min", "force_max")
        }
        if any(not math.isfinite(v) or v < 0 for v in vals.values()):
            raise ValueError(f"GripperSpec ranges must be finite and >= 0, got {vals}")
        if not self.width_min < self.width_max:
            raise ValueError(
                f"GripperSpec.width_min must be < width_max, got {self.width_min}, {self.width_max}"
            )
        if not self.speed_min <= self.default_speed <= self.speed_max:
            raise ValueError(
                f"GripperSpec.default_speed {self.default_speed} outside [{self.speed_min}, {self.speed_max}]"
            )
        if not self.force_min <= self.default_force <= self.force_max:
            raise ValueError(
                f"GripperSpec.default_force {self.default_force} outside [{self.force_min}, {self.force_max}]"
            )
        if not self.action_closed < self.action_open:
            raise ValueError(
                f"GripperSpec.action_closed ({self.action_closed}) must be < action_open ({self.action_open}); "
                "map datasets where larger means closed when loading them"
            )
        span = self.action_open - self.action_closed
        if self.close_below is None:
            object.__setattr__(self, "close_below", self.action_closed + 0.4 * span)
        if self.open_above is None:
            object.__setattr__(self, "open_above", self.action_closed + 0.6 * span)
        if not self.close_below < self.open_above:
            raise ValueError(
                f"GripperSpec.close_below ({self.close_below}) must be < open_above ({self.open_above})"
            )
        if self.min_dwell is None:
            stroke_time = (self.width_max - self.width_min) / self.speed_max if self.speed_max > 0 else 0.0
            object.__setattr__(self, "min_dwell", round(stroke_time, 3))
        if not (math.isfinite(self.min_dwell) and self.min_dwell >= 0):
            raise ValueError(f"GripperSpec.min_dwell must be a finite number >= 0, got {self.min_dwell!r}")

    def action_to_width(self, action: float) -> float:
        """Gripper action -> finger width (m), clipped to [width_min, width_max]; NaN -> NaN."""
        frac = (float(action) - self.action_closed) / (self.action_open - self.action_closed)
        if not math.isfinite(frac):
            return math.nan
        frac = min(max(frac, 0.0), 1.0)
        return self.width_min + frac * (self.width_max - self.width_min)

    def width_to_action(self, width: float) -> float:
        """Finger width (m) -> gripper action (inverse of action_to_width, clipped)."""
        frac = (float(width) - self.width_min) / (self.width_max - self.width_min)
        frac = min(max(frac, 0.0), 1.0)
        return self.action_closed + frac * (self.action_open - self.action_closed)


# --------------------------------------------------------------------- limits & profile
@dataclass(frozen=True)
class CartesianLimits:
    """End-effector limits: linear (m/s, m/s^2) and angular (rad/s, rad/s^2)."""

    linear_velocity: float
    linear_acceleration: float
    angular_velocity: float
    angular_acceleration: float

    def __post_init__(self) -> None:
        for k in ("linear_velocity", "linear_acceleration", "angular_velocity", "angular_acceleration"):
            v = getattr(self, k)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"CartesianLimits.{k} must be a finite number > 0, got {v!r}")


@dataclass(frozen=True, eq=False)
class SafetyProfile:
    """Project defaults for running a learned policy on this robot (not manufacturer data).

    Attributes:
        velocity_scale, acceleration_scale: fractions (0, 1] of the manufacturer's limits.
        position_margin: rad kept away from each joint position limit.
        max_step: rad, largest change of a joint command per command.
        workspace_min, workspace_max: (3,) TCP box in the DH base frame (m).
        max_tracking_error: rad; measured further than this from the command -> hold (None: off).
        cartesian: operating limits for end-effector commands.
        max_step_linear, max_step_angular: m and rad per end-effector command.
    """

    velocity_scale: float = 0.5
    acceleration_scale: float = 0.5
    position_margin: float = 0.05
    max_step: float = 0.05
    workspace_min: np.ndarray | None = None
    workspace_max: np.ndarray | None = None
    max_tracking_error: float | None = None
    cartesian: CartesianLimits | None = None
    max_step_linear: float = 0.01
    max_step_angular: float = 0.05

    def __post_init__(self) -> None:
        for k in ("velocity_scale", "acceleration_scale"):
            v = getattr(self, k)
            if not 0 < v <= 1:
                raise ValueError(f"SafetyProfile.{k} must be in (0, 1], got {v!r}")
        for k in ("position_margin", "max_step", "max_step_linear", "max_step_angular"):
            v = getattr(self, k)
            if not math.isfinite(v) or v < 0 or (k != "position_margin" and v == 0):
                raise ValueError(f"SafetyProfile.{k} must be finite and > 0 (margin >= 0), got {v!r}")
        if (self.workspace_min is None) != (self.workspace_max is None):
            raise ValueError("SafetyProfile.workspace_min and workspace_max must be given together")
        if self.workspace_min is not None and not np.all(
            np.asarray(self.workspace_min) < np.asarray(self.workspace_max)
        ):
            raise ValueError(
                f"SafetyProfile.workspace_min {self.workspace_min} must be < workspace_max {self.workspace_max}"
            )
        if self.max_tracking_error is not None and not self.max_tracking_error > 0:
            raise ValueError(
                f"SafetyProfile.max_tracking_error must be > 0 or null, got {self.max_tracking_error!r}"
            )


@dataclass(frozen=True, eq=False)
class RobotSpec:
    """One arm: joints, manufacturer limits, kinematics, gripper, safety defaults.

    All per-joint arrays are (J,) in ``joint_names`` order; radians, rad/s, rad/s^2, rad/s^3, Nm.
    ``braking_deceleration`` / ``velocity_offset`` describe position-based velocity limits
    (v <= sqrt(2 * dec * distance_to_limit) - offset), as the FR3 enforces them.
    """

    name: str
    joint_names: tuple[str, ...]
    position_lower: np.ndarray
    position_upper: np.ndarray
    velocity: np.ndarray
    acceleration: np.ndarray
    home: np.ndarray
    jerk: np.ndarray | None = None
    effort: np.ndarray | None = None
    braking_deceleration: np.ndarray | None = None
    velocity_offset: np.ndarray | None = None
    kinematics: Kinematics | None = None
    cartesian_limits: CartesianLimits | None = None
    gripper: GripperSpec | None = None
    safety: SafetyProfile = field(default_factory=SafetyProfile)
    source: str = ""

    def __post_init__(self) -> None:
        names = tuple(self.joint_names)
        object.__setattr__(self, "joint_names", names)
        n = len(names)
        if n == 0 or len(set(names)) != n:
            raise ValueError(
                f"RobotSpec {self.name!r}: joint_names must be unique and non-empty, got {names}"
            )
        for k in ("position_lower", "position_upper", "home"):
            object.__setattr__(self, k, _vec(f"{self.name}.{k}", getattr(self, k), n))
        for k in ("velocity", "acceleration"):
            object.__setattr__(self, k, _vec(f"{self.name}.{k}", getattr(self, k), n, positive=True))
        for k in ("jerk", "effort", "braking_deceleration"):
            if getattr(self, k) is not None:
                object.__setattr__(self, k, _vec(f"{self.name}.{k}", getattr(self, k), n, positive=True))
        if self.velocity_offset is not None:
            object.__setattr__(
                self, "velocity_offset", _vec(f"{self.name}.velocity_offset", self.velocity_offset, n)
            )
        if not np.all(self.position_lower < self.position_upper):
            raise ValueError(f"RobotSpec {self.name!r}: position_lower must be < position_upper")
        if np.any(self.home < self.position_lower) or np.any(self.home > self.position_upper):
            raise ValueError(
                f"RobotSpec {self.name!r}: home {self.home.tolist()} is outside the position limits"
            )
        if self.kinematics is not None and self.kinematics.dof != n:
            raise ValueError(
                f"RobotSpec {self.name!r}: kinematics has {self.kinematics.dof} joints, spec {n}"
            )

    @property
    def dof(self) -> int:
        return len(self.joint_names)

    def with_prefix(self, prefix: str) -> RobotSpec:
        """Same arm with joint names prefixed (UR ``tf_prefix``, Franka ``arm_prefix``)."""
        return replace(
            self, name=f"{prefix}{self.name}", joint_names=tuple(prefix + n for n in self.joint_names)
        )

    def fk_xyz(self, q: np.ndarray) -> np.ndarray:
        """TCP position (..., 3) for joint positions (..., J); needs kinematics."""
        if self.kinematics is None:
            raise ValueError(f"robot {self.name!r} has no kinematics in its spec")
        return self.kinematics.fk_xyz(q)


def _opt(data: dict, key: str) -> object | None:
    value = data.get(key)
    return None if value is None else value


def _spec_from_dict(data: dict, origin: str) -> RobotSpec:
    try:
        joints = data["joints"]
        pbv = joints.get("position_based_velocity") or {}
        safety = dict(data.get("safety") or {})
        cart = safety.pop("cartesian", None)
        for k in ("workspace_min", "workspace_max"):
            if safety.get(k) is not None:
                safety[k] = _vec(f"safety.{k}", safety[k], 3)
        profile = SafetyProfile(cartesian=CartesianLimits(**cart) if cart else None, **safety)
        cl = data.get("cartesian_limits")
        grip = data.get("gripper")
        kin = data.get("kinematics")
        return RobotSpec(
            name=str(data["name"]),
            joint_names=tuple(joints["names"]),
            position_lower=joints["position_lower"],
            position_upper=joints["position_upper"],
            velocity=joints["velocity"],
            acceleration=joints["acceleration"],
            jerk=_opt(joints, "jerk"),
            effort=_opt(joints, "effort"),
            braking_deceleration=_opt(pbv, "deceleration"),
            velocity_offset=_opt(pbv, "offset"),
            home=data["home"],
            kinematics=Kinematics.from_dict(kin) if kin else None,
            cartesian_limits=CartesianLimits(**cl) if cl else None,
            gripper=GripperSpec(**grip) if grip else None,
            safety=profile,
            source=str(data.get("source", "")),
        )
    except KeyError as exc:
        raise ValueError(f"robot spec {origin}: missing key {exc}") from exc
    except TypeError as exc:
        raise ValueError(f"robot spec {origin}: {exc}") from exc


def _robots_dir() -> Path:
    from tinyvla_ros.paths import config_dir

    return config_dir() / "robots"


def available_robot_specs() -> list[str]:
    """Names of the specs shipped in config/robots/."""
    d = _robots_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def load_robot_spec(name_or_path: str | Path) -> RobotSpec:
    """Load a spec by name (``"fr3"``, ``"ur5"`` from config/robots/) or from a YAML path."""
    import yaml

    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or path.is_file()):
        path = _robots_dir() / f"{text}.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"no robot spec {text!r}; available: {available_robot_specs()}")
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"robot spec {path}: expected a mapping at top level")
    return _spec_from_dict(data, str(path))


# --------------------------------------------------------------------------- layouts
@dataclass(frozen=True)
class ArmSlot:
    """One arm's slice of the action vector.

    kind "joint": ``joint_names`` positions then (optionally) one gripper value.
    kind "ee": xyz (3) + 6-D rotation (6) then (optionally) one gripper value.
    """

    name: str
    kind: str
    offset: int
    joint_names: tuple[str, ...] = ()
    has_gripper: bool = True

    @property
    def dim(self) -> int:
        body = len(self.joint_names) if self.kind == "joint" else 9
        return body + int(self.has_gripper)


@dataclass(frozen=True, eq=False)
class ArmAction:
    """One arm's command decoded from an action vector.

    joints (J,) for joint layouts; position (3,) and rotation (3, 3) for end-effector layouts
    (rotation is all-NaN when the 6-D rotation was non-finite or degenerate, so the safety
    filter holds); gripper is the raw gripper action (float, may be NaN) or None.
    """

    joints: np.ndarray | None = None
    position: np.ndarray | None = None
    rotation: np.ndarray | None = None
    gripper: float | None = None


@dataclass(frozen=True)
class ActionLayout:
    """How a (A,) action vector maps onto arms; ``names`` labels every entry (JointTrajectory names)."""

    kind: str
    arms: tuple[ArmSlot, ...]

    def __post_init__(self) -> None:
        offset = 0
        for arm in self.arms:
            if arm.kind not in ("joint", "ee"):
                raise ValueError(f"ArmSlot.kind must be 'joint' or 'ee', got {arm.kind!r}")
            if arm.offset != offset:
                raise ValueError(f"ArmSlot {arm.name!r} offset {arm.offset} != expected {offset}")
            offset += arm.dim

    @property
    def dim(self) -> int:
        return sum(a.dim for a in self.arms)

    @property
    def names(self) -> tuple[str, ...]:
        out: list[str] = []
        for arm in self.arms:
            prefix = "" if len(self.arms) == 1 else f"{arm.name}_"
            if arm.kind == "joint":
                out.extend(arm.joint_names)
            else:
                out.extend(f"{prefix}{n}" for n in ("x", "y", "z", *(f"rot6d_{i}" for i in range(6))))
            if arm.has_gripper:
                out.append(f"{prefix}gripper")
        return tuple(out)

    def arm(self, name: str) -> ArmSlot:
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(f"no arm {name!r} in layout {self.kind!r}; arms: {[a.name for a in self.arms]}")

    def split(self, action: np.ndarray) -> dict[str, ArmAction]:
        """(A,) action -> {arm name: ArmAction}. Raises ValueError on a wrong length only."""
        act = np.asarray(action, dtype=np.float64).reshape(-1)
        if act.size != self.dim:
            raise ValueError(f"action for layout {self.kind!r} must have {self.dim} entries, got {act.size}")
        out: dict[str, ArmAction] = {}
        for arm in self.arms:
            part = act[arm.offset : arm.offset + arm.dim]
            grip = float(part[-1]) if arm.has_gripper else None
            if arm.kind == "joint":
                out[arm.name] = ArmAction(joints=part[: len(arm.joint_names)].copy(), gripper=grip)
            else:
                out[arm.name] = ArmAction(
                    position=part[:3].copy(), rotation=_safe_rot6d(part[3:9]), gripper=grip
                )
        return out

    def join(self, parts: dict[str, ArmAction]) -> np.ndarray:
        """Inverse of split: {arm name: ArmAction} -> (A,) action (e.g. to build training actions)."""
        from tinyvla_ros.core.rotations import matrix_to_rot6d

        act = np.zeros(self.dim)
        for arm in self.arms:
            p = parts[arm.name]
            if arm.kind == "joint":
                body = np.asarray(p.joints, dtype=np.float64).reshape(-1)
                if body.size != len(arm.joint_names):
                    raise ValueError(f"arm {arm.name!r}: {body.size} joints, expected {len(arm.joint_names)}")
            else:
                body = np.concatenate(
                    [np.asarray(p.position, dtype=np.float64).reshape(3), matrix_to_rot6d(p.rotation)]
                )
            act[arm.offset : arm.offset + len(body)] = body
            if arm.has_gripper:
                if p.gripper is None:
                    raise ValueError(f"arm {arm.name!r} needs a gripper value")
                act[arm.offset + arm.dim - 1] = p.gripper
        return act

    # ------------------------------------------------------------------ presets
    @classmethod
    def franka_joint(cls, joint_names: Sequence[str] = FR3_JOINT_NAMES) -> ActionLayout:
        return cls("franka_joint", (ArmSlot("arm", "joint", 0, tuple(joint_names)),))

    @classmethod
    def franka_ee(cls) -> ActionLayout:
        return cls("franka_ee", (ArmSlot("arm", "ee", 0, FR3_JOINT_NAMES),))

    @classmethod
    def ur5_bimanual_joint(
        cls,
        left_prefix: str = "left_",
        right_prefix: str = "right_",
        joint_names: Sequence[str] = UR_JOINT_NAMES,
    ) -> ActionLayout:
        left = ArmSlot("left", "joint", 0, tuple(left_prefix + n for n in joint_names))
        right = ArmSlot("right", "joint", left.dim, tuple(right_prefix + n for n in joint_names))
        return cls("ur5_bimanual_joint", (left, right))


def _safe_rot6d(r6: np.ndarray) -> np.ndarray:
    try:
        return rot6d_to_matrix(r6)
    except ValueError:
        return np.full((3, 3), np.nan)


def make_action_layout(kind: str, **kwargs: object) -> ActionLayout:
    """Build a preset layout by name (one of ACTION_LAYOUTS); kwargs go to the preset."""
    factories = {
        "franka_joint": ActionLayout.franka_joint,
        "franka_ee": ActionLayout.franka_ee,
        "ur5_bimanual_joint": ActionLayout.ur5_bimanual_joint,
    }
    if kind not in factories:
        raise ValueError(f"unknown action layout {kind!r}; available: {ACTION_LAYOUTS}")
    return factories[kind](**kwargs)  # type: ignore[arg-type]
