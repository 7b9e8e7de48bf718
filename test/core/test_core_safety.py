"""Safety filter: property tests (any target sequence -> commands inside every limit) and unit tests."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyvla_ros.core.chunking import ChunkExecutor, ChunkExecutorConfig
from tinyvla_ros.core.robots import ActionLayout, load_robot_spec
from tinyvla_ros.core.rotations import is_rotation_matrix, matrix_to_rotvec, rotvec_to_matrix
from tinyvla_ros.core.safety import (
    GripperHysteresis,
    PoseLimits,
    PoseSafetyFilter,
    SafetyFilter,
    SafetyLimits,
    braking_velocity,
)

EXAMPLES = int(os.environ.get("TINYVLA_HYPOTHESIS_EXAMPLES", "300"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # deterministic in CI; raise TINYVLA_HYPOTHESIS_EXAMPLES to search wider
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DT = 0.01  # 100 Hz control for unit tests
PROP_DT = 0.02  # 50 Hz (official TinyVLA rate) in property tests: half the steps to stop
TOL = 1e-9
FR3 = load_robot_spec("fr3")
UR5 = load_robot_spec("ur5")

WILD = st.one_of(
    st.floats(-4.0, 4.0),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300, 0.0]),
)


def target_sequences(dof: int):
    return st.lists(st.one_of(st.none(), st.lists(WILD, min_size=dof, max_size=dof)), min_size=1, max_size=25)


class LimitChecker:
    """Asserts every guarantee of the filter on consecutive commands."""

    def __init__(self, filt: SafetyFilter, start: np.ndarray) -> None:
        self.f, self.lim = filt, filt.limits
        self.q, self.v = start.copy(), np.zeros_like(start)
        self.step_cap = np.minimum(self.lim.max_step, self.lim.velocity * filt.dt)

    def check(self, cmd: np.ndarray) -> None:
        lim, dt = self.lim, self.f.dt
        assert np.all(np.isfinite(cmd))
        assert np.all(cmd >= lim.command_lower - TOL) and np.all(cmd <= lim.command_upper + TOL)
        dq = cmd - self.q
        assert np.all(np.abs(dq) <= self.step_cap + TOL), (dq, self.step_cap)
        v = dq / dt
        assert np.all(np.abs(v - self.v) <= lim.acceleration * dt + 1e-6), (v - self.v, lim.acceleration * dt)
        if lim.workspace_min is not None:
            xyz = self.f.fk(cmd[None, :])[0]
            assert np.all(xyz >= lim.workspace_min - TOL) and np.all(xyz <= lim.workspace_max + TOL), xyz
        self.q, self.v = cmd.copy(), v


def run_sequence(spec, targets, measured_nan_every: int = 0) -> None:
    filt = SafetyFilter(SafetyLimits.from_spec(spec), PROP_DT, fk=spec.fk_xyz)
    filt.reset(spec.home)
    checker = LimitChecker(filt, spec.home)
    for k, target in enumerate(targets):
        measured = None
        if measured_nan_every and k % measured_nan_every == measured_nan_every - 1:
            measured = np.full(spec.dof, math.nan)
        res = filt.filter(None if target is None else np.array(target), measured)
        checker.check(res.command)
        if target is None or not np.all(np.isfinite(target)) or measured is not None:
            assert res.held and res.reason
    # after the sequence, holding brings the arm to rest within the limits
    for _ in range(30):  # max speed / (a_max * dt) <= 27 commands for both arms at 50 Hz
        checker.check(filt.hold().command)
    np.testing.assert_allclose(checker.v, 0.0, atol=1e-9)


@PROPERTY
@given(target_sequences(7))
def test_fr3_any_target_sequence_stays_inside_every_limit(targets) -> None:
    run_sequence(FR3, targets)


@settings(PROPERTY, max_examples=max(EXAMPLES // 3, 20))
@given(target_sequences(6), st.integers(0, 5))
def test_ur5_any_target_sequence_stays_inside_every_limit(targets, nan_every) -> None:
    run_sequence(UR5, targets, measured_nan_every=nan_every)


@settings(PROPERTY, max_examples=max(EXAMPLES // 3, 20))
@given(
    st.lists(
        st.tuples(
            st.lists(st.lists(WILD, min_size=8, max_size=8), min_size=16, max_size=16),
            st.floats(0.0, 0.2),  # inference latency
        ),
        min_size=1,
        max_size=2,
    ),
    st.sampled_from(["open_loop", "temporal_ensemble", "overlap_blend"]),
)
def test_any_chunk_stream_through_executor_and_filter_stays_inside_limits(chunks, mode) -> None:
    layout = ActionLayout.franka_joint()
    executor = ChunkExecutor(ChunkExecutorConfig(mode, 0.05, action_dim=layout.dim))
    filt = SafetyFilter(SafetyLimits.from_spec(FR3), PROP_DT, fk=FR3.fk_xyz)
    filt.reset(FR3.home)
    checker = LimitChecker(filt, FR3.home)
    t = 0.0
    for chunk, latency in chunks:
        executor.add_chunk(np.array(chunk), obs_stamp=t, now=t + latency)
        for _ in range(15):  # 0.3 s of 50 Hz control per chunk
            action = executor.action_at(t)
            target = None if action is None else layout.split(action)["arm"].joints
            checker.check(filt.filter(target).command)
            t += PROP_DT


def test_braking_velocity_is_the_exact_discrete_stopping_bound() -> None:
    rng = np.random.default_rng(0)
    for d, a in zip(rng.uniform(0, 2, 200), rng.uniform(0.5, 20, 200), strict=True):
        v = float(braking_velocity(np.array(d), np.array(a), DT))

        def stop_distance(v0: float, a: float = a) -> float:
            dist = 0.0
            while v0 > 0:
                dist += v0 * DT
                v0 = max(v0 - a * DT, 0.0)
            return dist

        assert stop_distance(v) <= d + 1e-12
        assert stop_distance(v + 1e-6) > d - 1e-9  # maximal
        assert v <= math.sqrt(2 * a * d) + 1e-12  # never above the continuous braking curve
    assert float(braking_velocity(np.array(-1.0), np.array(1.0), DT)) == 0.0


def fr3_filter(**kw) -> SafetyFilter:
    filt = SafetyFilter(SafetyLimits.from_spec(FR3, **kw), DT, fk=FR3.fk_xyz)
    filt.reset(FR3.home)
    return filt


def test_reaches_a_static_target_without_overshoot() -> None:
    filt = fr3_filter()
    target = FR3.home + np.array([0.3, -0.2, 0.25, 0.2, -0.3, 0.2, 0.5])
    checker = LimitChecker(filt, FR3.home)
    direction = np.sign(target - FR3.home)
    for _ in range(300):
        res = filt.filter(target)
        checker.check(res.command)
        assert np.all((target - res.command) * direction >= -1e-9)  # never past the target
    np.testing.assert_allclose(res.command, target, atol=1e-9)
    np.testing.assert_allclose(res.velocity, 0.0, atol=1e-9)


def test_smooth_trajectory_is_tracked_without_lag() -> None:
    filt = fr3_filter()
    errors, clamped = [], 0
    for k in range(300):
        t = k * DT
        target = FR3.home + 0.15 * np.sin(2 * math.pi * 0.4 * t) * np.ones(7)
        res = filt.filter(target)
        errors.append(np.max(np.abs(res.command - target)))
        clamped += bool(res.clamps) and k >= 50
    assert max(errors[50:]) < 1e-6  # feedforward: exact once the start-up transient is over
    assert clamped == 0


def test_nan_target_brakes_at_the_acceleration_limit_then_resumes() -> None:
    filt = fr3_filter()
    target = FR3.home.copy()
    for k in range(60):  # build up speed on joint 1
        target[0] = FR3.home[0] + 0.01 * k
        filt.filter(target)
    v0 = filt.filter(target + 0.01 * np.eye(7)[0]).velocity[0]
    assert v0 > 0.5
    bad = target.copy()
    bad[3] = math.nan
    res = filt.filter(bad)
    assert res.held and "NaN" in res.reason and res.clamps["nonfinite"] == 1
    a_max = filt.limits.acceleration[0]
    assert res.velocity[0] == pytest.approx(v0 - a_max * DT)  # decelerates, no instant stop
    for _ in range(100):
        res = filt.filter(bad)
    assert res.velocity[0] == 0.0
    res = filt.filter(FR3.home)
    assert not res.held and res.reason is None


@pytest.mark.parametrize(("spec", "joint", "slack"), [(UR5, 2, 1e-6), (FR3, 6, 0.03)])
def test_target_beyond_limit_stops_at_limit_minus_margin(spec, joint: int, slack: float) -> None:
    filt = SafetyFilter(SafetyLimits.from_spec(spec, use_workspace=False), DT)
    filt.reset(spec.home)
    target = spec.home.copy()
    target[joint] = 100.0  # far beyond the limit
    checker = LimitChecker(filt, spec.home)
    for _ in range(600):
        res = filt.filter(target)
        checker.check(res.command)
    stop = spec.position_upper[joint] - spec.safety.position_margin
    # UR5: right at the limit; FR3: its position-based velocity law (offset) stops it a little earlier
    assert stop - slack <= res.command[joint] <= stop + 1e-9
    assert res.velocity[joint] == pytest.approx(0.0, abs=1e-9)
    assert res.clamps["position"] >= 1


@pytest.mark.parametrize("spec", [UR5, FR3])
def test_fast_ramp_into_the_limit_brakes_before_it(spec) -> None:
    """A target sliding into a limit at full speed: the command must start braking early."""
    filt = SafetyFilter(SafetyLimits.from_spec(spec, use_workspace=False), DT)
    filt.reset(spec.home)
    checker = LimitChecker(filt, spec.home)
    speed = 0.95 * filt.limits.velocity[0]
    target = spec.home.copy()
    for _ in range(int(20 / (speed * DT))):
        target[0] += speed * DT  # keeps going far past the limit; the filter clips it
        checker.check(filt.filter(target).command)
    assert checker.q[0] <= filt.limits.command_upper[0] + 1e-9
    assert abs(checker.v[0]) < 1e-9


def test_fr3_position_based_velocity_law_is_respected() -> None:
    limits = SafetyLimits.from_spec(FR3, use_workspace=False)
    filt = SafetyFilter(limits, DT)
    filt.reset(FR3.home)
    target = FR3.home.copy()
    target[1] = 10.0  # joint 2 towards its upper limit
    q_prev = FR3.home[1]
    for _ in range(400):
        res = filt.filter(target)
        d = limits.command_upper[1] - q_prev
        law = max(
            math.sqrt(max(2 * limits.braking_deceleration[1] * d, 0.0)) - limits.velocity_offset[1], 0.0
        )
        assert res.velocity[1] <= law + 1e-9
        q_prev = res.command[1]


def test_workspace_box_holds_and_reports() -> None:
    filt = fr3_filter()
    target = FR3.home.copy()
    target[0] += 1.6  # base turned 92 deg: TCP would end up beside the robot, outside the box (x < 0.15)
    checker = LimitChecker(filt, FR3.home)
    reasons = set()
    for _ in range(300):
        res = filt.filter(target)
        checker.check(res.command)
        if res.held:
            reasons.add(res.reason)
    assert any("workspace" in r for r in reasons)
    assert np.any(np.abs(res.command - target) > 0.1)  # it did not get there


def test_tracking_error_moves_command_towards_measured() -> None:
    filt = fr3_filter()
    measured = FR3.home + 0.5 * np.eye(7)[0]  # robot is 0.5 rad away from our last command
    res = filt.filter(FR3.home, measured)
    assert res.held and "tracking error" in res.reason and res.clamps["tracking"] == 1
    assert res.command[0] > FR3.home[0]


def test_measured_nan_holds() -> None:
    filt = fr3_filter()
    res = filt.filter(FR3.home, np.full(7, math.nan))
    assert res.held and "measured" in res.reason


def test_reset_needed_and_shapes_checked() -> None:
    filt = SafetyFilter(SafetyLimits.from_spec(FR3), DT, fk=FR3.fk_xyz)
    with pytest.raises(RuntimeError, match="reset"):
        filt.filter(FR3.home)
    res = filt.hold(FR3.home)  # measured starts it
    np.testing.assert_allclose(res.command, FR3.home)
    with pytest.raises(ValueError, match="7 entries"):
        filt.filter(np.zeros(6))
    with pytest.raises(ValueError, match="finite"):
        filt.reset(np.full(7, math.nan))
    with pytest.raises(ValueError, match="fk"):
        SafetyFilter(SafetyLimits.from_spec(FR3), DT)


def test_reset_outside_limits_moves_back_inside() -> None:
    filt = SafetyFilter(SafetyLimits.from_spec(FR3, use_workspace=False), DT)
    start = FR3.home.copy()
    start[0] = FR3.position_upper[0] - 0.01  # inside the hardware range, inside the margin band
    filt.reset(start)
    res = filt.filter(start)
    assert "outside" in res.reason
    for _ in range(200):
        res = filt.filter(start)
    assert res.command[0] <= FR3.position_upper[0] - FR3.safety.position_margin + 1e-9


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"position_margin": 3.0}, "margin"),
        ({"velocity": [1.0, -1.0]}, "velocity"),
        ({"workspace_min": [0, 0, 0]}, "together"),
        ({"workspace_min": [0, 0, 1], "workspace_max": [1, 1, 0.5]}, "workspace_min"),
        ({"gripper_lower": 1.0, "gripper_upper": 0.0}, "gripper"),
    ],
)
def test_limits_validation(kwargs: dict, match: str) -> None:
    base = dict(
        joint_names=("a", "b"),
        position_lower=[-1, -1],
        position_upper=[1, 1],
        velocity=[1, 1],
        acceleration=[1, 1],
        max_step=0.1,
    )
    with pytest.raises(ValueError, match=match):
        SafetyLimits(**(base | kwargs))


def test_clip_gripper() -> None:
    lim = SafetyLimits.from_spec(FR3)
    assert lim.clip_gripper(2.0) == 1.0 and lim.clip_gripper(-1) == 0.0 and lim.clip_gripper(math.nan) is None


def test_gripper_hysteresis() -> None:
    g = GripperHysteresis.from_spec(FR3.gripper)
    states = [g.update(v) for v in (1.0, 0.5, 0.39, 0.45, 0.55, math.nan, 0.61, 0.5)]
    assert states == [False, False, True, True, True, True, False, False]
    g.update(0.1)
    assert g.changed and g.closed
    with pytest.raises(ValueError):
        GripperHysteresis(0.6, 0.4)


def test_gripper_dwell_defaults_to_a_full_stroke_at_top_speed() -> None:
    ur5 = load_robot_spec("ur5")
    assert FR3.gripper.min_dwell == pytest.approx(0.08 / 0.1)  # Franka Hand: 80 mm at 0.1 m/s
    assert ur5.gripper.min_dwell == pytest.approx(0.085 / 0.15, abs=1e-3)  # 2F-85: 85 mm at 150 mm/s
    assert GripperHysteresis.from_spec(FR3.gripper).min_dwell == FR3.gripper.min_dwell
    with pytest.raises(ValueError, match="min_dwell"):
        GripperHysteresis(0.4, 0.6, min_dwell=-1.0)


def test_gripper_dwell_defers_a_change_then_makes_it_if_still_asked() -> None:
    g = GripperHysteresis(0.4, 0.6, min_dwell=0.5)
    assert g.update(0.0, now=10.0) and g.changed  # close at 10.0
    assert g.update(1.0, now=10.2) and not g.changed and g.deferred == 1  # open asked too early
    assert g.update(0.5, now=10.6) and not g.changed  # no longer asked after the dwell: stays closed
    assert not g.update(1.0, now=10.7) and g.changed  # asked after the dwell: opens
    assert not g.update(0.0, now=11.1) and g.deferred == 2
    assert g.update(0.0, now=11.2) and g.changed  # 0.5 s after the last change


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dwell=st.floats(0.05, 2.0),
    steps=st.lists(
        st.tuples(st.floats(0.0, 0.3), st.one_of(st.floats(-1.0, 2.0), st.just(math.nan))),
        min_size=1,
        max_size=200,
    ),
)
def test_gripper_decisions_are_at_least_min_dwell_apart(dwell, steps) -> None:
    """Whatever the action sequence and timing: changes >= min_dwell apart, each one asked for by
    the action of that update (past the threshold on its side), and no decision lost for good:
    the state at the end agrees with the last clear request when it came after the dwell."""
    g = GripperHysteresis(0.4, 0.6, min_dwell=dwell)
    t, changes, last_request = 0.0, [], None
    for dt, value in steps:
        t += dt
        was = g.closed
        closed = g.update(value, now=t)
        if math.isfinite(value) and (value < 0.4 or value > 0.6):
            last_request = (t, value < 0.4)
        if g.changed:
            assert closed != was and math.isfinite(value)
            assert closed == (value < 0.4) and (value < 0.4 or value > 0.6)
            changes.append(t)
        else:
            assert closed == was
    assert all(b - a >= dwell - 1e-12 for a, b in zip(changes, changes[1:], strict=False))
    if last_request is not None and (not changes or last_request[0] - changes[-1] >= dwell):
        assert g.closed == last_request[1]


# ----------------------------------------------------------------- end effector
POSE_LIMITS = PoseLimits.from_spec(FR3)


def unit_quat_strategy():
    return st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(lambda q: np.linalg.norm(q) > 0.1)


@settings(PROPERTY, max_examples=max(EXAMPLES // 3, 20))
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.tuples(st.lists(WILD, min_size=3, max_size=3), st.lists(WILD, min_size=3, max_size=3)),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_pose_filter_any_targets_stay_in_box_and_rate_limits(targets) -> None:
    filt = PoseSafetyFilter(POSE_LIMITS, DT)
    p0, r0 = np.array([0.4, 0.0, 0.4]), np.diag([1.0, -1.0, -1.0])
    filt.reset(p0, r0)
    p, v, rot, w = p0, np.zeros(3), r0, np.zeros(3)
    lim = POSE_LIMITS
    for tgt in targets:
        if tgt is None:
            res = filt.hold()
        else:
            rv = np.array(tgt[1])
            ok = np.all(np.isfinite(rv)) and np.all(np.abs(rv) < 1e6)
            rot_t = rotvec_to_matrix(rv) if ok else np.full((3, 3), math.nan)
            res = filt.filter(np.array(tgt[0]), rot_t)
        assert np.all(np.isfinite(res.position)) and is_rotation_matrix(res.rotation)
        assert np.all(res.position >= lim.workspace_min - TOL) and np.all(
            res.position <= lim.workspace_max + TOL
        )
        v_new = (res.position - p) / DT
        assert np.linalg.norm(v_new) <= lim.linear_velocity + 1e-6
        assert np.linalg.norm(v_new - v) <= lim.linear_acceleration * DT + 1e-6
        w_new = matrix_to_rotvec(res.rotation @ rot.T) / DT
        assert np.linalg.norm(w_new) <= min(lim.angular_velocity, lim.max_step_angular / DT) + 1e-6
        assert np.linalg.norm(w_new - w) <= lim.angular_acceleration * DT + 1e-6
        p, v, rot, w = res.position, v_new, res.rotation, w_new


def test_pose_filter_converges_to_reachable_pose() -> None:
    filt = PoseSafetyFilter(POSE_LIMITS, DT)
    filt.reset(np.array([0.4, 0.0, 0.4]), np.eye(3))
    target_p, target_r = np.array([0.5, 0.1, 0.3]), rotvec_to_matrix(np.array([0.0, 0.0, 0.8]))
    for _ in range(600):
        res = filt.filter(target_p, target_r)
    np.testing.assert_allclose(res.position, target_p, atol=1e-6)
    np.testing.assert_allclose(res.rotation, target_r, atol=1e-6)
    held = filt.filter(np.array([math.nan, 0, 0]), target_r)
    assert held.held and "NaN" in held.reason
    skewed = filt.filter(target_p, np.diag([1.0, 1.0, -1.0]))  # a reflection, not a rotation
    assert skewed.held and "rotation" in skewed.reason and is_rotation_matrix(skewed.rotation)
    with pytest.raises(RuntimeError):
        PoseSafetyFilter(POSE_LIMITS, DT).hold()
