"""Property tests of the executor's ROS-free logic: ControlLoop (chunk execution + safety filter +
fault checks) and ActuationGate (enable / stop), driven by hypothesis with random sequences of
chunks (good, huge, discontinuous, NaN), joint states (good, NaN, missing joint), gaps, clock
jumps backwards, ~/stop and ~/enable.

Invariants, checked on every tick:
- every command sent is inside the position limits (with margin), moves at most v_max * dt per
  command and changes velocity by at most a_max * dt (per-command bounds at the scaled limits);
- holds are entered within their deadlines: the tick after a bad chunk is not "run"; a state
  older than ``state_timeout`` gives "idle" (no command); a newest observation older than
  ``max_observation_age`` is never "run";
- after ~/stop only braking (hold) commands are sent, none once at rest, until ~/enable.

CI runs a few hundred examples; TINYVLA_PROPERTY_EXAMPLES=10000 for the long run.
"""

from __future__ import annotations

import math
import os

import numpy as np
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tinyvla_ros.core.control import ActuationGate, ControlConfig, ControlLoop, FaultChecks
from tinyvla_ros.core.robots import load_robot_spec
from tinyvla_ros.core.safety import SafetyLimits

EXAMPLES = int(os.environ.get("TINYVLA_PROPERTY_EXAMPLES", "300"))
RATE = 100.0
DT = 1.0 / RATE
ACTION_DT = 0.05
CHECKS = FaultChecks(
    state_timeout=0.1,
    max_observation_age=0.2,
    chunk_limit_tolerance=0.5,
    max_chunk_speed_factor=3.0,
    max_start_distance=0.5,
)
SPEC = load_robot_spec("fr3")
LIMITS = SafetyLimits.from_spec(SPEC)
JOINTS = list(SPEC.joint_names)
HOME = np.array([0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4])
TOL = 1e-7


def make_loop() -> ControlLoop:
    cfg = ControlConfig(
        arm_prefixes=[""],
        control_rate=RATE,
        action_dt=ACTION_DT,
        hold_after=0.5,
    )
    return ControlLoop(cfg, SPEC, CHECKS)


# events: (kind, a, b) with small float parameters
EVENT = st.one_of(
    st.tuples(st.just("ticks"), st.integers(1, 8), st.just(0.0)),
    st.tuples(
        st.just("chunk"),
        st.sampled_from(["good", "good", "good", "huge", "jump", "nan"]),
        st.floats(0.0, 0.15),
    ),
    st.tuples(st.just("gap"), st.floats(0.02, 0.4), st.just(0.0)),
    st.tuples(st.just("state"), st.sampled_from(["nan", "missing"]), st.just(0.0)),
    st.tuples(st.just("clock_back"), st.floats(0.07, 1.0), st.just(0.0)),
    st.tuples(st.just("stop"), st.just(0), st.just(0.0)),
    st.tuples(st.just("enable"), st.just(0), st.just(0.0)),
)


class Sim:
    """A perfectly tracking arm around the loop and the gate; records and checks every tick."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.loop = make_loop()
        self.gate = ActuationGate(True, repeat_hold=True)
        self.rng = rng
        self.t = 0.0
        self.q = HOME.copy()
        self.sent: list[np.ndarray] = []
        self.good_time = dict.fromkeys(JOINTS, -math.inf)  # joint -> time of its latest finite value
        self.bad: set[str] = set()
        self.newest_obs = -math.inf
        self.bad_chunk_pending = False
        self.stopped_at_rest = False  # after ~/stop, the arm has come to rest: nothing may be sent
        self.after_stop = False
        self.clock_jumped = False

    # --- inputs ---
    def state(self, kind: str = "good") -> None:
        q = self.q.copy()
        names = list(JOINTS)
        if kind == "nan":
            q[3] = math.nan
        if kind == "missing":
            names, q = names[:5] + names[6:], np.delete(q, 5)
        self.loop.set_joint_state(names, q, self.t)
        for name, value in zip(names, q, strict=True):
            if math.isfinite(value):
                self.good_time[name] = self.t
                self.bad.discard(name)
            else:
                self.bad.add(name)

    def chunk(self, kind: str, delay: float) -> None:
        base = self.sent[-1] if self.sent else self.q
        steps = np.cumsum(self.rng.uniform(-0.02, 0.02, (16, 7)), axis=0) + base
        steps = np.clip(steps, SPEC.position_lower, SPEC.position_upper)
        if kind == "huge":
            steps[:] = 1000.0
        elif kind == "jump":
            steps[8:] += 1.0
        elif kind == "nan":
            steps[4, 2] = math.nan
        chunk = np.concatenate([steps, np.full((16, 1), 1.0)], axis=1)
        obs = self.t - delay
        reason = self.loop.add_chunk(chunk, obs, ACTION_DT, self.t)
        if kind != "good":
            assert reason and "bad chunk" in reason, (kind, reason)
            self.bad_chunk_pending = True
        elif reason is None:
            self.newest_obs = max(self.newest_obs, obs)
            self.bad_chunk_pending = False

    # --- one control period ---
    def tick(self, with_state: bool = True) -> None:
        self.t += DT
        if with_state:
            self.state()
        result = self.loop.tick(self.t, self.gate.actuating, hold_reason=self.gate.stopping)
        self.check_deadlines(result)
        actions, _ = self.gate.actions(result)
        if self.stopped_at_rest:
            assert not actions, "a command after ~/stop, at rest, before ~/enable"
        if self.after_stop and actions:
            assert result.mode == "hold", "after ~/stop only braking commands"
        for action in actions:
            cmd = result.arms[action.arm].positions
            self.check_command(cmd)
            self.sent.append(cmd.copy())
            self.q = cmd.copy()
        if self.after_stop and not self.gate.actuating:
            self.stopped_at_rest = True

    def check_deadlines(self, result) -> None:
        if self.clock_jumped:
            return  # state/observation times from before the jump: only the plan-drop is checked
        oldest = min(self.good_time.values())
        if self.t - oldest > CHECKS.state_timeout + 1e-9 or self.bad:
            assert result.mode == "idle", (result.mode, result.reason)
        if self.bad_chunk_pending:
            assert result.mode != "run", "ran on after a bad chunk"
        if self.t - self.newest_obs > CHECKS.max_observation_age + 1e-9:
            assert result.mode != "run", "ran on a plan older than max_observation_age"

    def check_command(self, cmd: np.ndarray) -> None:
        assert np.all(np.isfinite(cmd))
        assert np.all(cmd >= LIMITS.command_lower - TOL) and np.all(cmd <= LIMITS.command_upper + TOL)
        if len(self.sent) >= 1:
            step = np.abs(cmd - self.sent[-1])
            assert np.all(step <= LIMITS.velocity * DT + TOL), step
        if len(self.sent) >= 2:
            acc = np.abs(cmd - 2 * self.sent[-1] + self.sent[-2])
            assert np.all(acc <= LIMITS.acceleration * DT * DT + TOL), acc

    # --- events ---
    def apply(self, event) -> None:
        kind, a, b = event
        if kind == "ticks":
            for _ in range(a):
                self.tick()
        elif kind == "chunk":
            self.chunk(a, b)
            self.tick()
        elif kind == "gap":
            for _ in range(int(a / DT)):
                self.tick(with_state=False)
        elif kind == "state":
            self.state(a)
            self.tick(with_state=False)
        elif kind == "clock_back":
            self.t -= a
            self.clock_jumped = True
            self.bad_chunk_pending = True  # the plan must be dropped: no "run" before a new chunk
            self.tick()
            self.clock_jumped = False
            self.newest_obs = -math.inf
            self.good_time = dict.fromkeys(JOINTS, self.t)  # the state of the jump tick, new time base
            self.bad.clear()
        elif kind == "stop":
            self.loop.reset_plan()
            self.gate.disable("stopped (~/stop)")
            self.after_stop = self.gate.actuating
        elif kind == "enable":
            if self.loop.reset_to_measured(self.t):
                self.loop.reset_plan()
                self.gate.enable()
                self.after_stop = self.stopped_at_rest = False
                self.sent.clear()  # the filter restarts at rest from the measured position


@seed(20261122)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=False,
)
@given(events=st.lists(EVENT, min_size=1, max_size=40), rng_seed=st.integers(0, 2**31 - 1))
def test_executor_invariants_hold_for_random_event_sequences(events, rng_seed):
    sim = Sim(np.random.default_rng(rng_seed))
    sim.state()
    sim.tick()
    for event in events:
        sim.apply(event)
