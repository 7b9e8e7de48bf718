"""The MuJoCo fake robots: a ROS-free environment per set-up with tasks, cameras, IK.

Glossary: Na = number of arm joints over all arms (7 Franka, 12 bimanual UR5); Nj = number of
joints reported on /joint_states (arm joints + gripper joints: 9 Franka, 14 bimanual UR5);
H, W = image height and width.

Typical loop (what the fake-robot node and the scripted experts do)::

    env = make_env("franka", image_width=96, image_height=96)
    env.reset("pick_red_cube", seed=0)
    while not env.success():
        env.set_joint_position_targets(q_target)  # (Na,)
        env.set_gripper("fr3", 1.0)  # 1 = open, 0 = closed
        env.step()  # control_dt of physics
        image = env.render("zed_left")  # (H, W, 3) uint8 RGB
    env.close()
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinyvla_ros.sim._mujoco import import_mujoco
from tinyvla_ros.sim.kinematics import IkChain, IkResult, solve_ik
from tinyvla_ros.sim.robots import ArmSpec
from tinyvla_ros.sim.scenes import SETUPS, CameraSpec, build_scene
from tinyvla_ros.sim.tasks import Task, get_task, task_names

mujoco = import_mujoco()

SETTLE_TIME = 0.1  # physics time run after a reset so objects come to rest [s]


@dataclass
class SimConfig:
    """Configuration of one simulated set-up.

    setup: "franka" | "ur5_bimanual".
    image_width, image_height: camera resolution in pixels (low default for CI; 640x480 works).
    physics_dt: MuJoCo time step [s]. control_dt: time one :meth:`SimEnv.step` advances [s],
        a whole multiple of physics_dt.
    render_cameras: create the offscreen renderer (False: physics only, :meth:`SimEnv.render` raises).
    camera_hz: rate at which a driver loop should render and publish camera frames [Hz].
    """

    setup: str = "franka"
    image_width: int = 96
    image_height: int = 96
    physics_dt: float = 0.002
    control_dt: float = 0.02
    render_cameras: bool = True
    camera_hz: float = 15.0

    def __post_init__(self) -> None:
        if self.setup not in SETUPS:
            raise ValueError(f"SimConfig.setup must be one of {SETUPS}, got {self.setup!r}")
        for name in ("image_width", "image_height"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 8 <= value <= 4096:
                raise ValueError(f"SimConfig.{name} must be an int in [8, 4096], got {value!r}")
        if not (isinstance(self.physics_dt, float | int) and 1e-4 <= self.physics_dt <= 0.01):
            raise ValueError(f"SimConfig.physics_dt must be in [1e-4, 0.01] s, got {self.physics_dt!r}")
        if not (isinstance(self.control_dt, float | int) and self.physics_dt <= self.control_dt <= 1.0):
            raise ValueError(
                f"SimConfig.control_dt must be in [physics_dt={self.physics_dt}, 1.0] s, got {self.control_dt!r}"
            )
        ratio = self.control_dt / self.physics_dt
        if abs(ratio - round(ratio)) > 1e-6:
            raise ValueError(
                f"SimConfig.control_dt={self.control_dt} must be a whole multiple of physics_dt={self.physics_dt}"
            )
        if not (isinstance(self.camera_hz, float | int) and 0 < self.camera_hz <= 240):
            raise ValueError(f"SimConfig.camera_hz must be in (0, 240] Hz, got {self.camera_hz!r}")


@dataclass(frozen=True)
class _ArmIndex:
    """Indices of one arm inside the compiled model."""

    spec: ArmSpec
    chain: IkChain
    actuator_ids: np.ndarray  # (n,)
    gripper_actuator: int
    finger_qpos: np.ndarray  # (2,)
    finger_dof: np.ndarray  # (2,)
    finger_geoms: tuple[frozenset[int], frozenset[int]]  # left, right finger geom ids


class SimEnv:
    """A MuJoCo fake robot set-up (see the module docstring for the loop and the glossary)."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.scene = build_scene(config.setup, config.image_width, config.image_height, config.physics_dt)
        self.model = mujoco.MjModel.from_xml_string(self.scene.xml)
        self.data = mujoco.MjData(self.model)
        self._scratch = mujoco.MjData(self.model)  # IK works here, never on the live state
        self._arms = {name: self._index_arm(spec) for name, spec in self.scene.arms.items()}
        self._cameras: dict[str, CameraSpec] = {c.name: c for c in self.scene.cameras}
        self._renderer: Any = None
        self._task: Task | None = None
        self._substeps = round(config.control_dt / config.physics_dt)
        # Joint position references move towards the commanded targets no faster than the
        # manufacturer's joint velocity limits (the hardware's own interpolation): a far target
        # is reached smoothly instead of slamming into a joint limit.
        arms = self._arms.values()
        self._actuators = np.concatenate([a.actuator_ids for a in arms])
        self._lower = np.concatenate([a.chain.lower for a in arms])
        self._upper = np.concatenate([a.chain.upper for a in arms])
        self._home = np.concatenate([np.asarray(a.spec.home, dtype=np.float64) for a in arms])
        self._max_ref_step = (
            np.concatenate([np.asarray(a.spec.velocity_limits) for a in arms]) * config.physics_dt
        )
        self._targets = self.home

    # ------------------------------------------------------------------ description

    @property
    def setup(self) -> str:
        return self.config.setup

    @property
    def arms(self) -> tuple[str, ...]:
        """Arm names: ("fr3",) or ("left", "right")."""
        return tuple(self._arms)

    @property
    def arm_joint_names(self) -> dict[str, tuple[str, ...]]:
        """Arm joints per arm, in command order."""
        return {name: arm.spec.joint_names for name, arm in self._arms.items()}

    @property
    def gripper_joint_names(self) -> dict[str, tuple[str, ...]]:
        """Joints each arm's gripper driver reports on /joint_states."""
        return {name: arm.spec.gripper.reported_joints for name, arm in self._arms.items()}

    @property
    def joint_names(self) -> tuple[str, ...]:
        """All reported joints (Nj): every arm's joints, then every gripper's joints."""
        arm_joints = [j for names in self.arm_joint_names.values() for j in names]
        return tuple(arm_joints + [j for names in self.gripper_joint_names.values() for j in names])

    @property
    def arm_specs(self) -> dict[str, ArmSpec]:
        """Limits, home pose and gripper facts per arm."""
        return {name: arm.spec for name, arm in self._arms.items()}

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(self._cameras)

    @property
    def camera_specs(self) -> dict[str, CameraSpec]:
        """Per camera: the real sensor it imitates and the encoding its driver publishes."""
        return dict(self._cameras)

    @property
    def tasks(self) -> list[str]:
        return task_names(self.setup)

    @property
    def task(self) -> str | None:
        """The current task's name (None before the first reset)."""
        return self._task.name if self._task else None

    @property
    def instruction(self) -> str:
        """The current task's language instruction."""
        if self._task is None:
            raise RuntimeError("SimEnv.instruction: call reset(task, seed) first")
        return self._task.instruction

    @property
    def time(self) -> float:
        """Simulated time since the last reset [s]."""
        return float(self.data.time)

    @property
    def lower_limits(self) -> np.ndarray:
        """(Na,) arm joint lower limits in command order."""
        return self._lower.copy()

    @property
    def upper_limits(self) -> np.ndarray:
        """(Na,) arm joint upper limits in command order."""
        return self._upper.copy()

    @property
    def home(self) -> np.ndarray:
        """(Na,) home pose in command order."""
        return self._home.copy()

    # ------------------------------------------------------------------ episode

    def reset(self, task: str, seed: int) -> None:
        """Start an episode: arm(s) at home, grippers open, objects placed from ``seed``.

        ``task`` is a task name from :attr:`tasks` or its instruction. Same seed -> same poses.
        """
        if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"SimEnv.reset: seed must be a non-negative int, got {seed!r}")
        self._task = get_task(self.setup, task)
        mujoco.mj_resetData(self.model, self.data)
        self._targets = self.home
        for arm in self._arms.values():
            home = np.asarray(arm.spec.home)
            self.data.qpos[arm.chain.qpos_adr] = home
            self.data.ctrl[arm.actuator_ids] = home
            self.data.qpos[arm.finger_qpos] = arm.spec.gripper.stroke
            self.data.ctrl[arm.gripper_actuator] = arm.spec.gripper.stroke
        self._task.reset(self, np.random.default_rng(int(seed)))
        mujoco.mj_forward(self.model, self.data)
        mujoco.mj_step(self.model, self.data, nstep=round(SETTLE_TIME / self.config.physics_dt))
        self.data.time = 0.0

    def success(self) -> bool:
        """Whether the current task is solved in the current state."""
        return bool(self._require_task().success(self))

    def task_state(self) -> dict[str, Any]:
        """Task-relevant facts (object poses, drawer opening, grasps) for experts and metrics."""
        return self._require_task().state(self)

    def _require_task(self) -> Task:
        if self._task is None:
            raise RuntimeError("SimEnv: call reset(task, seed) first")
        return self._task

    # ------------------------------------------------------------------ state

    def joint_positions(self) -> np.ndarray:
        """(Nj,) positions in :attr:`joint_names` order (rad; Franka fingers m; Robotiq knuckle rad)."""
        arm = [self.data.qpos[a.chain.qpos_adr] for a in self._arms.values()]
        grip = [
            self._gripper_report(a, self.data.qpos[a.finger_qpos], position=True) for a in self._arms.values()
        ]
        return np.concatenate(arm + grip)

    def joint_velocities(self) -> np.ndarray:
        """(Nj,) velocities in :attr:`joint_names` order."""
        arm = [self.data.qvel[a.chain.dof_adr] for a in self._arms.values()]
        grip = [
            self._gripper_report(a, self.data.qvel[a.finger_dof], position=False) for a in self._arms.values()
        ]
        return np.concatenate(arm + grip)

    def joint_efforts(self) -> np.ndarray:
        """(Nj,) actuator efforts in :attr:`joint_names` order (Nm; grippers: finger force N)."""
        arm = [self.data.actuator_force[a.actuator_ids] for a in self._arms.values()]
        grip = [
            np.full(len(a.spec.gripper.reported_joints), self.data.actuator_force[a.gripper_actuator])
            for a in self._arms.values()
        ]
        return np.concatenate(arm + grip)

    def gripper_opening(self, arm: str) -> float:
        """Normalised opening of ``arm``'s gripper: 1 = fully open, 0 = fully closed."""
        index = self._arm(arm)
        return float(self.data.qpos[index.finger_qpos[0]] / index.spec.gripper.stroke)

    def arm_targets(self) -> np.ndarray:
        """(Na,) joint position targets last commanded (after clamping to the limits), command order."""
        return self._targets.copy()

    def arm_references(self) -> np.ndarray:
        """(Na,) the rate-limited position references the joint servos track right now."""
        return self.data.ctrl[self._actuators].copy()

    def _gripper_report(self, arm: _ArmIndex, fingers: np.ndarray, position: bool) -> np.ndarray:
        """Both fingers' opening (2,) [m or m/s] -> what the real gripper driver reports.

        Franka: both finger joints in metres. Robotiq: the knuckle angle of the first finger,
        0 (open) .. knuckle_closed (closed), i.e. knuckle = knuckle_closed * (1 - finger / stroke).
        """
        grip = arm.spec.gripper
        if grip.kind == "franka":
            return fingers.copy()
        scale = -grip.knuckle_closed / grip.stroke
        return np.array([grip.knuckle_closed + scale * fingers[0] if position else scale * fingers[0]])

    # ------------------------------------------------------------------ commands

    def set_joint_position_targets(self, q: np.ndarray) -> None:
        """Set the (Na,) arm joint targets (command order); values are clamped to the joint limits.

        Raises ValueError on a wrong length or a non-finite value; the previous targets stay.
        """
        q = np.asarray(q, dtype=np.float64)
        expected = sum(a.spec.dof for a in self._arms.values())
        if q.shape != (expected,):
            raise ValueError(f"set_joint_position_targets: expected shape ({expected},), got {q.shape}")
        if not np.all(np.isfinite(q)):
            raise ValueError(f"set_joint_position_targets: non-finite target {q.tolist()}")
        self._targets = np.clip(q, self._lower, self._upper)

    def set_gripper(self, arm: str, width_or_closed: float) -> None:
        """Command ``arm``'s gripper: 1 = fully open, 0 = fully closed (fraction of the stroke)."""
        value = float(width_or_closed)
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(
                f"set_gripper({arm!r}): value must be in [0, 1] (1 = open), got {width_or_closed!r}"
            )
        index = self._arm(arm)
        self.data.ctrl[index.gripper_actuator] = value * index.spec.gripper.stroke

    def step(self, dt: float | None = None) -> None:
        """Advance physics by ``dt`` (default control_dt), rounded to whole physics steps; targets stay.

        Each physics step moves the servo references towards the targets by at most
        velocity_limit * physics_dt per joint, then integrates.
        """
        if dt is None:
            n = self._substeps
        else:
            if not (math.isfinite(dt) and dt > 0):
                raise ValueError(f"SimEnv.step: dt must be a positive number of seconds, got {dt!r}")
            n = max(1, round(dt / self.config.physics_dt))
        ctrl, ids, limit = self.data.ctrl, self._actuators, self._max_ref_step
        gap = self._targets - ctrl[ids]
        ramp = min(n, math.ceil(float(np.max(np.abs(gap) / limit)) - 1e-9))  # steps until refs arrive
        for _ in range(ramp):
            ref = ctrl[ids]
            ctrl[ids] = ref + np.clip(self._targets - ref, -limit, limit)
            mujoco.mj_step(self.model, self.data)
        if n > ramp:
            mujoco.mj_step(self.model, self.data, nstep=n - ramp)

    # ------------------------------------------------------------------ cameras

    def render(self, camera: str) -> np.ndarray:
        """(H, W, 3) uint8 RGB image of ``camera`` in the current state."""
        if camera not in self._cameras:
            raise ValueError(f"render: unknown camera {camera!r}; cameras: {self.camera_names}")
        renderer = self._get_renderer()
        renderer.update_scene(self.data, camera=camera)
        return renderer.render()

    def camera_intrinsics(self, camera: str) -> tuple[float, float, float, float, int, int]:
        """Pinhole intrinsics (fx, fy, cx, cy, width, height) in pixels (ROS convention)."""
        if camera not in self._cameras:
            raise ValueError(f"camera_intrinsics: unknown camera {camera!r}; cameras: {self.camera_names}")
        fovy = math.radians(float(self.model.camera(camera).fovy[0]))
        w, h = self.config.image_width, self.config.image_height
        f = 0.5 * h / math.tan(0.5 * fovy)
        return f, f, (w - 1) / 2.0, (h - 1) / 2.0, w, h

    def _get_renderer(self) -> Any:
        if not self.config.render_cameras:
            raise RuntimeError("render: this SimEnv was made with render_cameras=False")
        if self._renderer is None:
            try:
                self._renderer = mujoco.Renderer(
                    self.model, self.config.image_height, self.config.image_width
                )
            except Exception as err:  # noqa: BLE001 - GL back-ends raise many types
                raise RuntimeError(
                    f"cannot create a MuJoCo renderer with MUJOCO_GL={mujoco_gl()!r}: {err}. Headless rendering "
                    "needs libEGL (MUJOCO_GL=egl) or libOSMesa (apt-get install libosmesa6, MUJOCO_GL=osmesa)"
                ) from err
            flags = self._renderer.scene.flags
            flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        return self._renderer

    # ------------------------------------------------------------------ kinematics

    def ee_pose(self, arm: str) -> tuple[np.ndarray, np.ndarray]:
        """Tool centre point of ``arm``: position (3,) [m] and rotation (3, 3), world frame."""
        site = self._arm(arm).chain.site_id
        return self.data.site_xpos[site].copy(), self.data.site_xmat[site].reshape(3, 3).copy()

    def ik(
        self,
        arm: str,
        target_xyz: np.ndarray,
        target_rot: np.ndarray | None = None,
        q_init: np.ndarray | None = None,
    ) -> np.ndarray:
        """Joint solution (n,) for ``arm``'s TCP at ``target_xyz`` (3,) [and ``target_rot`` (3, 3)]."""
        return self.ik_solve(arm, target_xyz, target_rot, q_init).q

    def ik_solve(
        self,
        arm: str,
        target_xyz: np.ndarray,
        target_rot: np.ndarray | None = None,
        q_init: np.ndarray | None = None,
        max_iters: int = 60,
    ) -> IkResult:
        """Like :meth:`ik` but returns the residual errors and convergence too.

        Damped least squares on the MuJoCo site Jacobian, joint limits respected; starts from
        ``q_init`` (default: the arm's current joint positions), other arms as they are now.
        """
        index = self._arm(arm)
        target_xyz = np.asarray(target_xyz, dtype=np.float64)
        if target_xyz.shape != (3,) or not np.all(np.isfinite(target_xyz)):
            raise ValueError(f"ik: target_xyz must be 3 finite numbers, got {target_xyz!r}")
        if target_rot is not None:
            target_rot = np.asarray(target_rot, dtype=np.float64)
            if target_rot.shape != (3, 3) or not np.all(np.isfinite(target_rot)):
                raise ValueError(
                    f"ik: target_rot must be a finite (3, 3) rotation, got shape {target_rot.shape}"
                )
        q0 = self.data.qpos[index.chain.qpos_adr] if q_init is None else np.asarray(q_init, dtype=np.float64)
        if q0.shape != (index.spec.dof,):
            raise ValueError(f"ik: q_init must have shape ({index.spec.dof},), got {q0.shape}")
        self._scratch.qpos[:] = self.data.qpos
        return solve_ik(
            self.model, self._scratch, index.chain, target_xyz, target_rot, q0, max_iters=max_iters
        )

    # ------------------------------------------------------------------ helpers for tasks

    def body_pose(self, body: str) -> tuple[np.ndarray, np.ndarray]:
        """World position (3,) and rotation (3, 3) of ``body``."""
        b = self.data.body(body)
        return b.xpos.copy(), b.xmat.reshape(3, 3).copy()

    def set_free_body(self, body: str, xyz: np.ndarray, yaw: float) -> None:
        """Place a free-jointed body at ``xyz`` (3,) with a yaw about world z, at rest."""
        joint = self.model.body(body).jntadr[0]
        adr, dof = self.model.jnt_qposadr[joint], self.model.jnt_dofadr[joint]
        self.data.qpos[adr : adr + 3] = xyz
        self.data.qpos[adr + 3 : adr + 7] = [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]
        self.data.qvel[dof : dof + 6] = 0.0

    def set_fixed_body(self, body: str, xyz: np.ndarray, yaw: float) -> None:
        """Move a body without joints (furniture) to ``xyz`` with a yaw (edits the model)."""
        index = self.model.body(body).id
        self.model.body_pos[index] = xyz
        self.model.body_quat[index] = [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]

    def joint_value(self, joint: str) -> float:
        return float(self.data.joint(joint).qpos[0])

    def set_joint_value(self, joint: str, value: float) -> None:
        self.data.joint(joint).qpos[0] = value
        self.data.joint(joint).qvel[0] = 0.0

    def in_contact(self, body: str, geoms: frozenset[int]) -> bool:
        """Whether any geom of ``body`` touches any geom id in ``geoms``."""
        ncon = self.data.ncon
        if ncon == 0:
            return False
        pairs = self.data.contact.geom[:ncon]
        body_id = self.model.body(body).id
        owners = self.model.geom_bodyid[pairs]  # (ncon, 2)
        hit = np.isin(pairs[:, ::-1], list(geoms))
        return bool(np.any((owners == body_id) & hit))

    def grasped_by(self, body: str, arm: str) -> bool:
        """Whether ``body`` touches both fingers of ``arm``'s gripper."""
        left, right = self._arm(arm).finger_geoms
        return self.in_contact(body, left) and self.in_contact(body, right)

    def touched_by(self, body: str, arm: str) -> bool:
        """Whether ``body`` touches either finger of ``arm``'s gripper."""
        left, right = self._arm(arm).finger_geoms
        return self.in_contact(body, left | right)

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Free the renderer (GL context); the env stays usable for physics."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> SimEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ indexing

    def _arm(self, arm: str) -> _ArmIndex:
        try:
            return self._arms[arm]
        except KeyError:
            raise ValueError(f"unknown arm {arm!r}; arms of {self.setup}: {self.arms}") from None

    def _index_arm(self, spec: ArmSpec) -> _ArmIndex:
        m = self.model
        joints = [m.joint(j) for j in spec.joint_names]
        chain = IkChain(
            site_id=m.site(spec.tcp_site).id,
            qpos_adr=np.array([j.qposadr[0] for j in joints]),
            dof_adr=np.array([j.dofadr[0] for j in joints]),
            lower=np.array(spec.lower, dtype=np.float64),
            upper=np.array(spec.upper, dtype=np.float64),
            rest=np.array(spec.home, dtype=np.float64),
        )
        fingers = [m.joint(j) for j in spec.gripper.finger_joints]

        def geoms_of(body: str) -> frozenset[int]:
            bid = m.body(body).id
            return frozenset(int(g) for g in np.flatnonzero(m.geom_bodyid == bid))

        return _ArmIndex(
            spec=spec,
            chain=chain,
            actuator_ids=np.array([m.actuator(a).id for a in spec.actuators]),
            gripper_actuator=m.actuator(spec.gripper.actuator).id,
            finger_qpos=np.array([f.qposadr[0] for f in fingers]),
            finger_dof=np.array([f.dofadr[0] for f in fingers]),
            finger_geoms=(geoms_of(spec.gripper.left_finger_body), geoms_of(spec.gripper.right_finger_body)),
        )


def mujoco_gl() -> str:
    """The MUJOCO_GL back-end in use ('egl', 'osmesa', ...)."""
    return os.environ.get("MUJOCO_GL", "")


def make_env(setup: str, **kwargs: Any) -> SimEnv:
    """Build a :class:`SimEnv` for ``setup`` ('franka' | 'ur5_bimanual'); kwargs go to :class:`SimConfig`."""
    return SimEnv(SimConfig(setup=setup, **kwargs))
