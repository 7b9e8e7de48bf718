"""Sim clock and pacing of the fake robot: realtime, fast, lockstep.

The simulation advances in steps of ``step_dt`` seconds of sim time. After each step the node
publishes /clock, joint states and (when due) camera frames stamped with the sim clock
``origin + sim_time``. How fast steps follow each other in wall-clock time is the timing mode:

realtime   sim time follows the wall clock (factor 1). ``origin`` defaults to the wall time at
           start, so stamps are wall-clock times and nodes that do NOT use sim time accept them.
           When the simulation falls more than ``max_lag`` s behind (an overloaded machine), the
           clock slips: the origin moves forward by the lag, /clock jumps, stamps stay ~wall time;
           slips are counted on /diagnostics.
fast       sim time runs ``real_time_factor`` times faster than the wall clock (0 = as fast as
           the CPU allows). Every node must use sim time (use_sim_time:=true).
lockstep   the sim advances only as fast as the graph follows. Two gates, each with a budget of
           sim time it may run ahead: the executor's tick (its ~/preview stamp, published every
           tick; budget ``lockstep_period`` = one control period, so the control loop sees every
           period and commands flow at exactly the configured rate per sim second) and the
           policy's chunks (header stamp = observation time; budget ``lockstep_chunk_budget``,
           so inference takes at most that much sim time however slow the CPU is; 0 = off).
           A gate that gets no answer within ``lockstep_timeout`` wall seconds (node not started,
           holding, no joint state, camera paused) stops being waited for until its next
           message; the sim then runs on in real time. Timeouts are counted on /diagnostics.
           ``real_time_factor`` > 0 caps the speed (1 = never faster than real time); 0 = no cap.
           Needs use_sim_time:=true on the graph.

Everything here works on numbers (nanoseconds, seconds) with the wall clock passed in, so it
is tested without threads, sleeps or ROS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TIME_MODES = ("realtime", "fast", "lockstep")
NS = 1_000_000_000


@dataclass(frozen=True)
class PacingConfig:
    """Timing of the sim loop (see the module docstring).

    mode: realtime | fast | lockstep; real_time_factor: fast: target speed-up (0 = unlimited),
    lockstep: speed cap (0 = none), realtime: ignored; max_lag: realtime slip threshold (s);
    lockstep_period: the executor's control period (s); lockstep_chunk_budget: sim seconds the
    sim may run past the newest chunk's observation (0 = do not wait for the policy);
    lockstep_timeout: wall seconds to wait for a node before running on in real time.
    """

    mode: str = "realtime"
    real_time_factor: float = 0.0
    max_lag: float = 0.1
    lockstep_period: float = 0.01
    lockstep_timeout: float = 2.0
    lockstep_chunk_budget: float = 0.25

    def __post_init__(self) -> None:
        if self.mode not in TIME_MODES:
            raise ValueError(f"time_mode must be one of {list(TIME_MODES)}, got {self.mode!r}")
        if not (math.isfinite(self.real_time_factor) and self.real_time_factor >= 0.0):
            raise ValueError(f"real_time_factor must be a finite number >= 0, got {self.real_time_factor!r}")
        for name in ("max_lag", "lockstep_period", "lockstep_timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name} must be a finite number > 0 s, got {value!r}")
        if not (math.isfinite(self.lockstep_chunk_budget) and self.lockstep_chunk_budget >= 0.0):
            raise ValueError(
                f"lockstep_chunk_budget must be >= 0 s (0 = off), got {self.lockstep_chunk_budget!r}"
            )

    @property
    def factor(self) -> float:
        """Wall pacing factor: 1 realtime, the configured one otherwise (0 = do not pace)."""
        return 1.0 if self.mode == "realtime" else self.real_time_factor


class Pacer:
    """Maps sim time to the wall time at which it may be published; handles realtime slips.

    ``deadline(sim_s)`` is the wall time (s) before which the state at ``sim_s`` must not be
    published (None = no pacing); ``late(sim_s, wall_now)`` applies a slip in realtime mode
    when the sim is more than max_lag behind and returns the slip in seconds (0 otherwise).
    ``rebase`` restarts pacing from (sim_s, wall_now), e.g. after a lockstep wait.
    """

    def __init__(self, cfg: PacingConfig, sim_s: float, wall_now: float) -> None:
        self.cfg = cfg
        self.slips = 0
        self.slipped_s = 0.0
        self.rebase(sim_s, wall_now)

    def rebase(self, sim_s: float, wall_now: float) -> None:
        self._sim0, self._wall0 = sim_s, wall_now

    def deadline(self, sim_s: float, factor: float | None = None) -> float | None:
        """Wall time at which ``sim_s`` is due, at ``factor`` (default: the mode's factor)."""
        f = self.cfg.factor if factor is None else factor
        if f <= 0.0:
            return None
        return self._wall0 + (sim_s - self._sim0) / f

    def late(self, sim_s: float, wall_now: float) -> float:
        """Realtime only: if ``sim_s`` is published more than max_lag late, slip and return the lag."""
        due = self.deadline(sim_s)
        if self.cfg.mode != "realtime" or due is None:
            return 0.0
        lag = wall_now - due
        if lag <= self.cfg.max_lag:
            return 0.0
        self.slips += 1
        self.slipped_s += lag
        self.rebase(sim_s, wall_now)
        return lag


class LockstepGate:
    """Whether one node of the graph has caught up with the sim (times in integer nanoseconds).

    The node's messages carry a stamp on the sim clock (the executor's tick time, the policy's
    observation time). After publishing ``clock_ns`` the sim may go on while the newest stamp
    is within ``budget`` of it: newest > clock_ns - budget + tolerance. For the executor the
    budget is one control period: a tick is due whenever the clock has passed one more period.
    The tolerance (1 ms) absorbs stamps that went through float seconds (at ~1.8e9 s since the
    epoch a float64 is only ~0.2 us exact), so a tick at the previous period never counts as one
    at this period.
    """

    TOLERANCE_NS = 1_000_000

    def __init__(self, name: str, budget_s: float) -> None:
        if not (math.isfinite(budget_s) and budget_s > 0):
            raise ValueError(f"lockstep gate {name!r}: budget must be > 0 s, got {budget_s!r}")
        self.name = name
        self.budget_ns = int(round(budget_s * NS))
        self.tolerance_ns = min(self.TOLERANCE_NS, self.budget_ns // 2)
        self.last_ns = -1  # newest stamp, -1 = none yet
        self.following = False  # False: no answer (lately): do not wait for this node
        self.timeouts = 0

    def on_message(self, stamp_ns: int) -> None:
        """Record a message's stamp; the node is followed again."""
        self.last_ns = max(self.last_ns, int(stamp_ns))
        self.following = True

    def ready(self, clock_ns: int) -> bool:
        """True when the newest stamp is within the budget before ``clock_ns``."""
        return self.last_ns >= 0 and self.last_ns > clock_ns - self.budget_ns + self.tolerance_ns

    def blocking(self, clock_ns: int) -> bool:
        """True when the sim must wait for this node before going past ``clock_ns``."""
        return self.following and not self.ready(clock_ns)

    def timed_out(self) -> None:
        """The node did not answer in time: stop waiting for it until its next message."""
        self.following = False
        self.timeouts += 1
