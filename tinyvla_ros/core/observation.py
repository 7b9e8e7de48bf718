"""Observation assembly: time-aligned multi-camera frames plus the robot state at the same instant.

Nothing synchronises separate cameras (RealSense, ZED), so each camera keeps a short ring
buffer of frames keyed by header stamp. At each inference tick ``assemble(now)``:

1. picks the anchor time: the OLDEST of the cameras' newest stamps (every camera has a frame
   at or after it, so no camera is extrapolated);
2. takes each camera's frame nearest to the anchor;
3. rejects the observation (a ``Rejection`` with a code and a readable reason) when a camera
   has no frames, is frozen, a chosen frame is older than ``max_age`` or the chosen frames
   are further apart than ``max_skew``;
4. linearly interpolates the joint state to the anchor (or takes the nearest sample within
   ``max_age``); missing joints, NaN/inf positions or a stale state reject it too;
5. rejects an anchor that is not newer than the last observation returned (``already_used``,
   checked after the frame checks, so a stopped camera still reads as ``stale``): one
   observation gives at most one chunk, so a policy faster than its cameras, or cameras that
   stopped, never republish chunks from frames already answered.

Rejection codes: ``no_frames``, ``frozen``, ``stale``, ``future``, ``skew``, ``no_state``,
``bad_state``, ``already_used``. All times are float seconds on one clock (the ROS layer converts stamps).
Thread-safe: callbacks may add data while a worker thread assembles.
"""

from __future__ import annotations

import bisect
import math
import threading
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from tinyvla_ros.core.stats import Counters

__all__ = [
    "ObservationConfig",
    "Observation",
    "Rejection",
    "ObservationAssembler",
    "REJECTION_CODES",
]

REJECTION_CODES = ("no_frames", "frozen", "stale", "future", "skew", "no_state", "bad_state")
STATE_SOURCES = ("joints", "none")


def _positive(name: str, value: float, allow_zero: bool = False) -> None:
    ok = (
        isinstance(value, (int, float)) and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    )
    if not ok:
        raise ValueError(
            f"ObservationConfig.{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {value!r}"
        )


def _names(name: str, values: Sequence[str], allow_empty: bool) -> tuple[str, ...]:
    if isinstance(values, str):
        raise ValueError(f"ObservationConfig.{name} must be a sequence of names, got the string {values!r}")
    out = tuple(values)
    if not allow_empty and not out:
        raise ValueError(f"ObservationConfig.{name} must not be empty")
    if any(not isinstance(v, str) or not v for v in out):
        raise ValueError(f"ObservationConfig.{name} must hold non-empty strings, got {out!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"ObservationConfig.{name} has duplicates: {out!r}")
    return out


@dataclass
class ObservationConfig:
    """How frames and joint states are buffered and when an observation is refused.

    Attributes:
        camera_names: cameras in the order the policy expects its images.
        joint_names: joints whose positions form the state, in the policy's order.
        max_age: a chosen frame (or the joint state) older than this (s) rejects the observation.
        max_skew: chosen frames further apart than this (s) reject the observation.
        frozen_timeout: a camera whose frames keep arriving but whose newest stamp has not
            advanced for this long (s), or whose pixels have not changed for this long, is frozen.
        buffer_len: frames kept per camera.
        state_from: "joints" (state = positions of ``joint_names``) or "none" (no state).
        detect_identical_frames: also treat pixel-identical frames as frozen (CRC32 of the
            pixels). Real sensors always have noise; turn this off for noiseless simulators.
        state_buffer_len: joint-state samples kept per source (cover ``max_age`` at its rate).
        max_future: frames stamped more than this (s) after ``now`` are refused (clock error).
    """

    camera_names: Sequence[str]
    joint_names: Sequence[str]
    max_age: float = 0.25
    max_skew: float = 0.05
    frozen_timeout: float = 0.5
    buffer_len: int = 8
    state_from: str = "joints"
    detect_identical_frames: bool = True
    state_buffer_len: int = 512
    max_future: float = 0.05

    def __post_init__(self) -> None:
        self.camera_names = _names("camera_names", self.camera_names, allow_empty=False)
        if self.state_from not in STATE_SOURCES:
            raise ValueError(
                f"ObservationConfig.state_from must be one of {STATE_SOURCES}, got {self.state_from!r}"
            )
        self.joint_names = _names("joint_names", self.joint_names, allow_empty=self.state_from == "none")
        _positive("max_age", self.max_age)
        _positive("max_skew", self.max_skew, allow_zero=True)
        _positive("frozen_timeout", self.frozen_timeout)
        _positive("max_future", self.max_future, allow_zero=True)
        for name in ("buffer_len", "state_buffer_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ObservationConfig.{name} must be an int >= 1, got {value!r}")


@dataclass
class Observation:
    """One time-aligned observation.

    Attributes:
        stamp: anchor time (s): the oldest of the cameras' newest stamps.
        images: one (H, W, 3) uint8 RGB array per camera, in ``camera_names`` order.
        state: (S,) float64 joint positions interpolated to ``stamp`` (S = 0 with state_from="none").
        camera_stamps: camera name -> stamp of the frame used.
        skew: max - min of the used frames' stamps (s).
        age: ``now`` minus the oldest used frame stamp (s) at assembly time.
    """

    stamp: float
    images: list[np.ndarray]
    state: np.ndarray
    camera_stamps: dict[str, float]
    skew: float
    age: float = 0.0


@dataclass(frozen=True)
class Rejection:
    """Why no observation was produced: ``code`` in REJECTION_CODES, ``reason`` for humans."""

    code: str
    reason: str

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"


@dataclass
class _Frame:
    stamp: float
    image: np.ndarray
    digest: int | None


@dataclass
class _CameraBuffer:
    frames: deque[_Frame]
    last_advance: float = -math.inf  # `now` when the newest stamp last increased
    last_arrival: float = -math.inf  # `now` of the last frame received
    last_change: float = -math.inf  # `now` when the newest frame's pixels last differed
    last_digest: int | None = None
    received: int = 0
    duplicates: int = 0

    @property
    def newest(self) -> float:
        return self.frames[-1].stamp if self.frames else -math.inf

    def nearest(self, t: float) -> _Frame:
        stamps = [f.stamp for f in self.frames]
        i = bisect.bisect_left(stamps, t)
        if i == 0:
            return self.frames[0]
        if i == len(stamps):
            return self.frames[-1]
        before, after = self.frames[i - 1], self.frames[i]
        return before if t - before.stamp <= after.stamp - t else after


@dataclass
class _StateSource:
    """Joint-state samples for one set of joints (a message source publishing those joints)."""

    indices: np.ndarray  # (k,) indices into joint_names
    capacity: int
    stamps: list[float] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)
    last_bad_stamp: float = -math.inf
    last_bad_reason: str = ""

    @property
    def newest(self) -> float:
        return self.stamps[-1] if self.stamps else -math.inf

    def append(self, stamp: float, values: np.ndarray) -> None:
        self.stamps.append(stamp)
        self.values.append(values)
        if len(self.stamps) > 2 * self.capacity:  # amortised trim
            del self.stamps[: -self.capacity]
            del self.values[: -self.capacity]

    def at(self, t: float, max_gap: float) -> np.ndarray | None:
        """Positions (k,) linearly interpolated to t, or the nearest sample within max_gap."""
        i = bisect.bisect_left(self.stamps, t)
        if i < len(self.stamps) and self.stamps[i] == t:
            return self.values[i]
        if 0 < i < len(self.stamps):
            t0, t1 = self.stamps[i - 1], self.stamps[i]
            w = (t - t0) / (t1 - t0)
            return (1.0 - w) * self.values[i - 1] + w * self.values[i]
        j = 0 if i == 0 else len(self.stamps) - 1
        return self.values[j] if abs(self.stamps[j] - t) <= max_gap else None


class ObservationAssembler:
    """Buffers camera frames and joint states; ``assemble(now)`` returns Observation | Rejection.

    Args:
        cfg: the ObservationConfig.
        state_fn: optional map from the interpolated joint positions (J,) to the policy's state
            vector (S,), e.g. forward kinematics to xyz + Euler + gripper.
    """

    def __init__(self, cfg: ObservationConfig, state_fn: Callable[[np.ndarray], np.ndarray] | None = None):
        self.cfg = cfg
        self._state_fn = state_fn
        self._joint_index = {n: i for i, n in enumerate(cfg.joint_names)}
        self._lock = threading.RLock()
        self.rejections = Counters()  # code -> count, over assemble() calls
        self.input_errors = Counters()  # problems with incoming data (bad_state, out_of_order, ...)
        self.last_rejection: Rejection | None = None
        self.last_skew = math.nan
        self.reset()

    def reset(self) -> None:
        """Forget every frame and joint state (e.g. on lifecycle deactivate)."""
        with self._lock:
            self._cams = {n: _CameraBuffer(deque(maxlen=self.cfg.buffer_len)) for n in self.cfg.camera_names}
            self._sources: dict[tuple[int, ...], _StateSource] = {}
            self._used_anchor = -math.inf

    # ------------------------------------------------------------------ input
    def add_image(self, camera: str, stamp: float, image: np.ndarray, now: float) -> None:
        """Store one frame (kept by reference: do not modify ``image`` afterwards).

        Raises ValueError for an unknown camera or a non-finite stamp (programming errors);
        frames with a stamp already buffered are counted as duplicates and not stored.
        """
        buf = self._cams.get(camera)
        if buf is None:
            raise ValueError(f"unknown camera {camera!r}; configured: {list(self.cfg.camera_names)}")
        stamp = float(stamp)
        if not math.isfinite(stamp):
            raise ValueError(f"camera {camera!r}: non-finite stamp {stamp!r}")
        if not isinstance(image, np.ndarray) or image.ndim != 3:
            raise ValueError(
                f"camera {camera!r}: image must be an (H, W, C) ndarray, got {type(image).__name__}"
            )
        digest = self._digest(image) if self.cfg.detect_identical_frames else None
        with self._lock:
            buf.received += 1
            buf.last_arrival = max(buf.last_arrival, now)
            if any(f.stamp == stamp for f in buf.frames):
                buf.duplicates += 1
                return
            if stamp > buf.newest:
                if not buf.frames or digest is None or digest != buf.last_digest:
                    buf.last_change = now
                buf.last_digest = digest
                buf.last_advance = now
                buf.frames.append(_Frame(stamp, image, digest))
            elif len(buf.frames) < buf.frames.maxlen or stamp > buf.frames[0].stamp:
                self.input_errors.increment("frame_out_of_order")
                frames = list(buf.frames) + [_Frame(stamp, image, digest)]
                frames.sort(key=lambda f: f.stamp)
                buf.frames.clear()
                buf.frames.extend(frames[-buf.frames.maxlen :])
            else:
                self.input_errors.increment("frame_too_old")

    @staticmethod
    def _digest(image: np.ndarray) -> int:
        arr = np.asarray(image)
        if not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr)
        return zlib.crc32(arr) ^ (hash(arr.shape) & 0xFFFFFFFF)

    def add_joint_state(self, stamp: float, names: Sequence[str], positions: Sequence[float]) -> bool:
        """Store one joint-state sample; returns True when it was stored.

        Only configured joints are used (others ignored), reordered by ``joint_names``. A message
        may carry a subset (e.g. arm and gripper published separately): each distinct subset is
        buffered on its own and the newest sources are combined at assembly. NaN/inf positions,
        a names/positions length mismatch or a non-finite stamp mark the source bad (the next
        ``assemble`` rejects with ``bad_state`` until a good sample arrives); nothing is raised.
        """
        if self.cfg.state_from == "none":
            return False
        stamp = float(stamp)
        names = list(names)
        pos = np.asarray(positions, dtype=np.float64).reshape(-1)
        picked = [(self._joint_index[n], k) for k, n in enumerate(names) if n in self._joint_index]
        if not picked:
            self.input_errors.increment("state_no_configured_joint")
            return False
        picked = list({i: (i, k) for i, k in reversed(picked)}.values())  # first occurrence wins
        picked.sort()
        key = tuple(i for i, _ in picked)
        with self._lock:
            src = self._sources.get(key)
            if src is None:
                src = self._sources[key] = _StateSource(np.array(key), self.cfg.state_buffer_len)
            problem = self._state_problem(stamp, names, pos, picked)
            if problem:
                src.last_bad_stamp = stamp if math.isfinite(stamp) else max(src.newest, src.last_bad_stamp)
                src.last_bad_reason = problem
                self.input_errors.increment("bad_state")
                return False
            if stamp <= src.newest:
                self.input_errors.increment("state_out_of_order")
                return False
            src.append(stamp, pos[[k for _, k in picked]].copy())
            return True

    def _state_problem(self, stamp: float, names: list[str], pos: np.ndarray, picked: list) -> str:
        if not math.isfinite(stamp):
            return f"non-finite joint-state stamp {stamp!r}"
        if len(names) != pos.size:
            return f"joint state has {len(names)} names but {pos.size} positions"
        bad = [names[k] for _, k in picked if not math.isfinite(pos[k])]
        if bad:
            return f"non-finite position for {bad} at stamp {stamp:.6f}"
        return ""

    # --------------------------------------------------------------- assembly
    def assemble(self, now: float) -> Observation | Rejection:
        """Build the observation for the current tick, or say why not."""
        with self._lock:
            result = self._assemble(float(now))
        if isinstance(result, Rejection):
            self.rejections.increment(result.code)
            self.last_rejection = result
        else:
            self.last_skew = result.skew
        return result

    def _assemble(self, now: float) -> Observation | Rejection:
        cfg = self.cfg
        for name, buf in self._cams.items():
            if not buf.frames:
                return Rejection("no_frames", f"camera {name!r} has no frames yet")
        for name, buf in self._cams.items():
            rejection = self._camera_health(name, buf, now)
            if rejection:
                return rejection
        anchor = min(buf.newest for buf in self._cams.values())
        chosen = {name: buf.nearest(anchor) for name, buf in self._cams.items()}
        stamps = {name: f.stamp for name, f in chosen.items()}
        skew = max(stamps.values()) - min(stamps.values())
        oldest_name = min(stamps, key=stamps.__getitem__)
        age = now - stamps[oldest_name]
        if age > cfg.max_age:
            return Rejection(
                "stale",
                f"camera {oldest_name!r} frame is {age * 1e3:.0f} ms old > max_age {cfg.max_age * 1e3:.0f} ms",
            )
        if skew > cfg.max_skew:
            first, last = min(stamps, key=stamps.__getitem__), max(stamps, key=stamps.__getitem__)
            return Rejection(
                "skew",
                f"cameras {first!r} and {last!r} are {skew * 1e3:.1f} ms apart > max_skew {cfg.max_skew * 1e3:.1f} ms",
            )
        if anchor <= self._used_anchor:
            return Rejection(
                "already_used", f"no frame newer than the last observation's ({anchor:.3f} s) in every camera"
            )
        state = self._state_at(anchor, now)
        if isinstance(state, Rejection):
            return state
        images = [chosen[name].image for name in cfg.camera_names]
        self._used_anchor = anchor
        return Observation(anchor, images, state, stamps, skew, age)

    def _camera_health(self, name: str, buf: _CameraBuffer, now: float) -> Rejection | None:
        cfg = self.cfg
        if buf.newest > now + cfg.max_future:
            return Rejection(
                "future",
                f"camera {name!r} stamp is {(buf.newest - now) * 1e3:.0f} ms in the future (clock mismatch?)",
            )
        stuck = now - buf.last_advance
        if stuck > cfg.frozen_timeout and buf.last_arrival > buf.last_advance:
            return Rejection(
                "frozen", f"camera {name!r} keeps publishing but its stamp has not advanced for {stuck:.2f} s"
            )
        unchanged = now - buf.last_change
        if (
            cfg.detect_identical_frames
            and unchanged > cfg.frozen_timeout
            and buf.last_advance > buf.last_change
        ):
            return Rejection(
                "frozen", f"camera {name!r} pixels identical for {unchanged:.2f} s (new stamps, same image)"
            )
        age = now - buf.newest
        if age > cfg.max_age:
            return Rejection(
                "stale",
                f"camera {name!r} newest frame is {age * 1e3:.0f} ms old > max_age {cfg.max_age * 1e3:.0f} ms",
            )
        return None

    def _state_at(self, anchor: float, now: float) -> np.ndarray | Rejection:
        cfg = self.cfg
        if cfg.state_from == "none":
            return np.zeros(0)
        state = np.full(len(cfg.joint_names), np.nan)
        covered = np.zeros(len(cfg.joint_names), dtype=bool)
        stale_joints = np.zeros(len(cfg.joint_names), dtype=bool)
        for src in sorted(self._sources.values(), key=lambda s: s.newest):
            latest = max(src.newest, src.last_bad_stamp)
            if now - latest > cfg.max_age:  # silent source: its joints may come from a fresher one
                stale_joints[src.indices] |= bool(src.stamps)
                continue
            if src.last_bad_stamp >= src.newest:
                return Rejection("bad_state", src.last_bad_reason or "latest joint state was invalid")
            values = src.at(anchor, cfg.max_age)
            if values is None:
                stale_joints[src.indices] = True
                continue
            state[src.indices] = values
            covered[src.indices] = True
        if not covered.all():
            missing = [n for n, c in zip(cfg.joint_names, covered, strict=True) if not c]
            code = "stale" if stale_joints[~covered].any() else "no_state"
            return Rejection(
                code, f"no joint state within max_age {cfg.max_age * 1e3:.0f} ms of the anchor for {missing}"
            )
        if self._state_fn is not None:
            state = np.asarray(self._state_fn(state), dtype=np.float64).reshape(-1)
            if not np.all(np.isfinite(state)):
                return Rejection("bad_state", "state_fn returned NaN/inf")
        return state

    # ------------------------------------------------------------ diagnostics
    def camera_status(self, now: float) -> dict[str, dict[str, float]]:
        """Per camera: newest frame age (s), frames received, duplicates, buffered frames."""
        with self._lock:
            return {
                name: {
                    "age": now - buf.newest if buf.frames else math.inf,
                    "received": buf.received,
                    "duplicates": buf.duplicates,
                    "buffered": len(buf.frames),
                }
                for name, buf in self._cams.items()
            }
