"""rosbag2 bags -> training episodes: cameras, state and actions aligned on a fixed control grid.

Alignment (per bag): a grid of control steps t_k = t_0 + k / fps runs from the first time every
stream (each camera, the joint states, the action) has a message to the last time they all have
one. At each step the converter takes, for every stream, the latest message stamped at or before
t_k (``header.stamp``; the bag's receive time when the stamp is zero). A step whose camera frame or
joint state is older than ``max_gap`` seconds is kept (the action sequence stays continuous) but
marked invalid: training never samples it as an observation.

The action at step k comes from ``layout.action_topic``:
    sensor_msgs/JointState          values picked by ``action_names``
    std_msgs/Float64MultiArray      values in ``action_names`` order (length must match)
    trajectory_msgs/JointTrajectory the first point, picked by ``action_names``
or, with an empty ``action_topic``, from the next step's joint state (``action_names`` must be
joint names): a(t_k) = q(t_{k+1}), the last step repeating its predecessor's target.

Camera frames are decoded to RGB (any encoding core.images supports, or compressed), then resized
to ``image_size`` (H, W) or downscaled so the longer side is at most ``max_side``.

A bag recorded by ``tinyvla-record-demos`` carries its layout, instruction and success flag in its
metadata, so it converts without options; other bags need a layout (YAML/JSON, see BagLayout).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyvla_ros.data.bag import BagError, BagReader, deserialize
from tinyvla_ros.data.episodes import DatasetError, DatasetInfo, DatasetWriter, Episode
from tinyvla_ros.data.messages import (
    COMPRESSED_IMAGE,
    FLOAT_ARRAY,
    IMAGE,
    JOINT_STATE,
    STRING,
    TRAJECTORY,
    image_rgb,
    select_joints,
)

LAYOUT_KEY = "tinyvla_layout"
ACTION_TYPES = (JOINT_STATE, FLOAT_ARRAY, TRAJECTORY)


@dataclass(frozen=True)
class BagLayout:
    """Which topics of a bag hold what (stored as JSON in demo bags' metadata under ``tinyvla_layout``).

    cameras: camera name -> image topic (sensor_msgs/Image or CompressedImage), in policy order.
    state_names: joint names forming the state vector, read from ``joint_states_topic``.
    action_names: one name per action dimension; action_topic: see the module docstring.
    fps: control rate of the episode grid (Hz).
    """

    cameras: dict[str, str]
    state_names: tuple[str, ...]
    action_names: tuple[str, ...]
    joint_states_topic: str = "/joint_states"
    action_topic: str = ""
    instruction_topic: str = "/instruction"
    fps: float = 10.0
    robot: str = ""

    def __post_init__(self) -> None:
        if not self.cameras or not all(
            isinstance(t, str) and t.startswith("/") for t in self.cameras.values()
        ):
            raise ValueError(
                f"BagLayout.cameras must map camera names to absolute topics, got {self.cameras!r}"
            )
        for name in ("state_names", "action_names"):
            values = getattr(self, name)
            if not values or len(set(values)) != len(values):
                raise ValueError(f"BagLayout.{name} must be unique non-empty names, got {list(values)!r}")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"BagLayout.fps must be a finite number > 0, got {self.fps!r}")
        for name in ("joint_states_topic", "instruction_topic"):
            if not getattr(self, name).startswith("/"):
                raise ValueError(f"BagLayout.{name} must be an absolute topic, got {getattr(self, name)!r}")
        if self.action_topic and not self.action_topic.startswith("/"):
            raise ValueError(
                f"BagLayout.action_topic must be '' or an absolute topic, got {self.action_topic!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "cameras": dict(self.cameras),
            "state_names": list(self.state_names),
            "action_names": list(self.action_names),
            "joint_states_topic": self.joint_states_topic,
            "action_topic": self.action_topic,
            "instruction_topic": self.instruction_topic,
            "fps": float(self.fps),
            "robot": self.robot,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> BagLayout:
        known = set(BagLayout.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown BagLayout field(s) {unknown}; valid: {sorted(known)}")
        values = dict(data)
        for name in ("state_names", "action_names"):
            if name in values:
                values[name] = tuple(values[name])
        if "fps" in values:
            values["fps"] = float(values["fps"])
        return BagLayout(**values)

    @staticmethod
    def load(path: str | Path) -> BagLayout:
        """From a YAML or JSON file."""
        import yaml

        return BagLayout.from_dict(yaml.safe_load(Path(path).read_text()))


@dataclass(frozen=True)
class ConvertConfig:
    """How bags are turned into episodes.

    image_size: (H, W) every frame is resized to, or None; max_side: otherwise the longer side is
    downscaled to at most this (0 keeps the recorded size). max_gap: seconds after which a camera
    frame or joint state is stale (step marked invalid). stamp_tolerance: a message stamped up to
    this many seconds after t_k still counts for step k (clock jitter).
    """

    image_size: tuple[int, int] | None = None
    max_side: int = 320
    max_gap: float = 0.25
    stamp_tolerance: float = 1e-3
    only_success: bool = False
    instruction: str = ""

    def __post_init__(self) -> None:
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) < 8):
            raise ValueError(f"ConvertConfig.image_size must be (H, W) >= 8, got {self.image_size!r}")
        if self.max_side < 0 or 0 < self.max_side < 8:
            raise ValueError(f"ConvertConfig.max_side must be 0 or >= 8, got {self.max_side!r}")
        if not self.max_gap > 0:
            raise ValueError(f"ConvertConfig.max_gap must be > 0 s, got {self.max_gap!r}")
        if not 0 <= self.stamp_tolerance < 1.0:
            raise ValueError(
                f"ConvertConfig.stamp_tolerance must be in [0, 1) s, got {self.stamp_tolerance!r}"
            )


# --- stream reading -------------------------------------------------------------------------


def header_stamp_ns(data: bytes) -> int:
    """header.stamp (int ns) of a CDR message whose first field is a std_msgs/Header."""
    if len(data) < 12:
        raise BagError(f"CDR message of {len(data)} bytes is too short to hold a header")
    little = data[1] == 1  # encapsulation id 0x0001 = CDR little endian, 0x0000 = big endian
    sec, nanosec = struct.unpack("<iI" if little else ">iI", data[4:12])
    return int(sec) * 1_000_000_000 + int(nanosec)


@dataclass
class _Stream:
    """One topic's messages: stamps (int ns, sorted) and what to keep per message."""

    topic: str
    stamps: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)

    def stamp_array(self) -> np.ndarray:
        return np.asarray(self.stamps, dtype=np.int64)


def _stamp(data: bytes, t_ns: int) -> int:
    stamp = header_stamp_ns(data)
    return stamp if stamp > 0 else t_ns


def _action_value(msg: Any, msgtype: str, names: Sequence[str], topic: str) -> np.ndarray:
    if msgtype == JOINT_STATE:
        return select_joints(
            list(msg.name), np.asarray(msg.position, dtype=np.float64), names, f"action {topic}"
        )
    if msgtype == FLOAT_ARRAY:
        values = np.asarray(msg.data, dtype=np.float64)
        if values.shape != (len(names),):
            raise DatasetError(
                f"action topic {topic}: Float64MultiArray of {values.shape[0]} values, need {len(names)}"
            )
        return values
    if not msg.points:
        raise DatasetError(f"action topic {topic}: JointTrajectory without points")
    first = np.asarray(msg.points[0].positions, dtype=np.float64)
    return select_joints(list(msg.joint_names), first, names, f"action {topic}")


def _read_streams(
    bag: BagReader, layout: BagLayout
) -> tuple[dict[str, _Stream], _Stream, _Stream | None, str]:
    """One pass: camera stamps (message index kept), joint-state positions, actions, instruction."""
    topics = bag.topics
    needed = [*layout.cameras.values(), layout.joint_states_topic] + (
        [layout.action_topic] if layout.action_topic else []
    )
    missing = [t for t in needed if t not in topics]
    if missing:
        raise DatasetError(f"bag {str(bag.path)!r} lacks topic(s) {missing}; it has {sorted(topics)}")
    for cam, topic in layout.cameras.items():
        if topics[topic].msgtype not in (IMAGE, COMPRESSED_IMAGE):
            raise DatasetError(f"camera {cam!r} topic {topic} has type {topics[topic].msgtype}, not an image")
    if layout.action_topic and topics[layout.action_topic].msgtype not in ACTION_TYPES:
        raise DatasetError(
            f"action topic {layout.action_topic} has type {topics[layout.action_topic].msgtype}; "
            f"supported: {list(ACTION_TYPES)}"
        )
    by_topic = {topic: cam for cam, topic in layout.cameras.items()}
    cams = {cam: _Stream(topic) for cam, topic in layout.cameras.items()}
    joints = _Stream(layout.joint_states_topic)
    action = _Stream(layout.action_topic) if layout.action_topic else None
    instruction = ""
    wanted = [*needed] + ([layout.instruction_topic] if layout.instruction_topic in topics else [])
    for m in bag.messages(topics=sorted(set(wanted))):
        if m.topic in by_topic:
            stream = cams[by_topic[m.topic]]
            stream.values.append(len(stream.stamps))  # ordinal within the topic
            stream.stamps.append(_stamp(m.data, m.t_ns))
        elif m.topic == layout.joint_states_topic:
            msg = m.decode()
            names_needed = list(layout.state_names)
            if not layout.action_topic:
                names_needed += [n for n in layout.action_names if n not in names_needed]
            joints.stamps.append(_stamp(m.data, m.t_ns))
            joints.values.append(
                select_joints(
                    list(msg.name), np.asarray(msg.position, dtype=np.float64), names_needed, m.topic
                )
            )
        elif action is not None and m.topic == layout.action_topic:
            msg = m.decode()
            stamp = _stamp(m.data, m.t_ns) if m.msgtype != FLOAT_ARRAY else m.t_ns
            action.stamps.append(stamp)
            action.values.append(_action_value(msg, m.msgtype, layout.action_names, m.topic))
        elif m.topic == layout.instruction_topic and m.msgtype == STRING:
            instruction = str(deserialize(m.data, STRING).data)
    for stream in [*cams.values(), joints] + ([action] if action else []):
        if not stream.stamps:
            raise DatasetError(f"bag {str(bag.path)!r}: topic {stream.topic} has no messages")
        _sort(stream)
    return cams, joints, action, instruction


def _sort(stream: _Stream) -> None:
    order = np.argsort(np.asarray(stream.stamps, dtype=np.int64), kind="stable")
    stream.stamps = [stream.stamps[i] for i in order]
    stream.values = [stream.values[i] for i in order]


def _latest(stamps: np.ndarray, grid: np.ndarray, tol_ns: int) -> np.ndarray:
    """Index of the latest stamp <= grid[k] + tol for each k (-1 where none)."""
    return np.searchsorted(stamps, grid + tol_ns, side="right") - 1


# --- images ---------------------------------------------------------------------------------


def target_size(height: int, width: int, cfg: ConvertConfig) -> tuple[int, int]:
    """(H, W) a recorded frame is stored at."""
    if cfg.image_size is not None:
        return int(cfg.image_size[0]), int(cfg.image_size[1])
    longest = max(height, width)
    if cfg.max_side == 0 or longest <= cfg.max_side:
        return height, width
    scale = cfg.max_side / longest
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (size[0], size[1], 3) uint8 (area-averaging when shrinking, bilinear otherwise)."""
    if rgb.shape[:2] == tuple(size):
        return rgb
    from PIL import Image as PilImage

    shrink = size[0] < rgb.shape[0] and size[1] < rgb.shape[1]
    resample = PilImage.Resampling.BOX if shrink else PilImage.Resampling.BILINEAR
    return np.asarray(PilImage.fromarray(rgb).resize((size[1], size[0]), resample=resample))


def _frames(
    bag: BagReader, layout: BagLayout, cams: dict[str, _Stream], picks: dict[str, np.ndarray], cfg
) -> dict:
    """Second pass: decode and resize exactly the frames the grid picked -> {cam: (T, H, W, 3) uint8}.

    ``cams[cam].values`` hold each frame's ordinal within its topic; ``picks[cam][k]`` the frame index
    chosen for step k.
    """
    wanted: dict[str, dict[int, list[int]]] = {}  # topic -> ordinal -> steps
    for cam, idx in picks.items():
        per_topic = wanted.setdefault(layout.cameras[cam], {})
        for k, i in enumerate(idx):
            per_topic.setdefault(cams[cam].values[i], []).append(k)
    by_topic = {topic: cam for cam, topic in layout.cameras.items()}
    seen = dict.fromkeys(by_topic, -1)
    recorded: dict[str, tuple[int, ...]] = {}
    out: dict[str, np.ndarray] = {}
    for m in bag.messages(topics=sorted(by_topic)):
        seen[m.topic] += 1
        steps = wanted[m.topic].get(seen[m.topic])
        if not steps:
            continue
        cam = by_topic[m.topic]
        try:
            rgb = image_rgb(m.decode())  # (H, W, 3) uint8
        except ValueError as exc:
            raise DatasetError(f"bag {str(bag.path)!r} camera {cam!r} ({m.topic}): {exc}") from exc
        if cam not in out:
            recorded[cam] = rgb.shape
            size = target_size(rgb.shape[0], rgb.shape[1], cfg)
            out[cam] = np.zeros((len(picks[cam]), *size, 3), dtype=np.uint8)
        elif rgb.shape != recorded[cam]:
            raise DatasetError(
                f"bag {str(bag.path)!r} camera {cam!r} changed size mid-episode from "
                f"{recorded[cam][1]}x{recorded[cam][0]} to {rgb.shape[1]}x{rgb.shape[0]}"
            )
        out[cam][steps] = resize_rgb(rgb, out[cam].shape[1:3])
    return out


# --- conversion -----------------------------------------------------------------------------


def layout_from_bag(bag: BagReader) -> BagLayout | None:
    """The layout a demo recorder stored in the bag's metadata, if any."""
    text = bag.metadata.get(LAYOUT_KEY)
    return BagLayout.from_dict(json.loads(text)) if text else None


def _grid(streams: Sequence[_Stream], fps: float) -> np.ndarray:
    """(T,) int ns control steps at ``fps`` over the span every stream covers."""
    start = max(s.stamps[0] for s in streams)
    stop = min(s.stamps[-1] for s in streams)
    step_ns = 1e9 / fps
    count = int(math.floor((stop - start) / step_ns + 1e-6)) + 1 if stop >= start else 0
    if count < 2:
        raise DatasetError(
            f"the streams overlap for {max(stop - start, 0) * 1e-9:.3f} s only: fewer than 2 control steps at {fps} Hz"
        )
    return start + np.round(np.arange(count) * step_ns).astype(np.int64)


def bag_to_episode(
    path: str | Path, layout: BagLayout | None = None, cfg: ConvertConfig | None = None
) -> Episode:
    """One bag -> one Episode on the layout's control grid (see the module docstring)."""
    cfg = cfg or ConvertConfig()
    with BagReader(path) as bag:
        layout = layout or layout_from_bag(bag)
        if layout is None:
            raise DatasetError(
                f"bag {str(path)!r} has no '{LAYOUT_KEY}' metadata: give a layout (cameras, state/action names...)"
            )
        cams, joints, action, topic_instruction = _read_streams(bag, layout)
        grid = _grid([*cams.values(), joints] + ([action] if action else []), layout.fps)  # (T,) int ns
        tol = int(cfg.stamp_tolerance * 1e9)
        gap = int(cfg.max_gap * 1e9)
        valid = np.ones(len(grid), dtype=bool)
        picks: dict[str, np.ndarray] = {}
        for cam, stream in cams.items():
            idx = _latest(stream.stamp_array(), grid, tol)
            valid &= grid - stream.stamp_array()[idx] <= gap
            picks[cam] = idx
        j_idx = _latest(joints.stamp_array(), grid, tol)
        valid &= grid - joints.stamp_array()[j_idx] <= gap
        joint_rows = np.stack([joints.values[i] for i in j_idx])  # (T, n_state [+ action joints])
        state = joint_rows[:, : len(layout.state_names)]
        if action is not None:
            a_idx = _latest(action.stamp_array(), grid, tol)
            actions = np.stack([action.values[i] for i in a_idx])  # (T, A)
        else:
            names = list(layout.state_names) + [n for n in layout.action_names if n not in layout.state_names]
            cols = [names.index(n) for n in layout.action_names]
            nxt = np.concatenate([joint_rows[1:], joint_rows[-1:]], axis=0)
            actions = nxt[:, cols]
        images = _frames(bag, layout, cams, picks, cfg)
        meta = bag.metadata
    instruction = cfg.instruction or meta.get("instruction", "") or topic_instruction
    if not instruction:
        raise DatasetError(
            f"bag {str(path)!r} has no instruction (metadata, {layout.instruction_topic}, or option)"
        )
    success = {"true": True, "false": False}.get(meta.get("success", "").lower())
    return Episode(
        images=images,
        state=state,
        action=actions,
        timestamp=(grid - grid[0]) * 1e-9,
        instruction=instruction,
        valid=valid,
        success=success,
        task=meta.get("task", ""),
        source=str(Path(path).name),
        extra={k: v for k, v in meta.items() if k not in ("instruction", "success", "task", LAYOUT_KEY)},
    )


def convert_bags(
    bags: Sequence[str | Path],
    out_dir: str | Path,
    layout: BagLayout | None = None,
    cfg: ConvertConfig | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> DatasetInfo:
    """Bags -> an episode dataset directory (episodes, info.json, stats.json). Returns its info.

    Every bag must share the layout's cameras, state and action names; with ``only_success`` bags
    whose metadata says ``success: false`` are skipped.
    """
    cfg = cfg or ConvertConfig()
    if not bags:
        raise DatasetError("no bags to convert")
    writer: DatasetWriter | None = None
    iterator = bags
    if progress:
        from tqdm import tqdm

        iterator = tqdm(bags, desc="convert", unit="bag")
    for path in iterator:
        with BagReader(path) as bag:
            bag_layout = layout or layout_from_bag(bag)
            if cfg.only_success and bag.metadata.get("success", "").lower() == "false":
                continue
        episode = bag_to_episode(path, bag_layout, cfg)
        if writer is None:
            writer = DatasetWriter(
                out_dir,
                bag_layout.fps,
                list(bag_layout.cameras),
                bag_layout.state_names,
                bag_layout.action_names,
                robot=bag_layout.robot,
                source="rosbag2",
                overwrite=overwrite,
            )
        writer.add(episode)
    if writer is None:
        raise DatasetError(f"none of the {len(bags)} bags was converted (all unsuccessful?)")
    return writer.close()


def find_bags(paths: Sequence[str | Path]) -> list[Path]:
    """Bag directories (with metadata.yaml) among ``paths``, searching one level of sub-directories."""
    found: list[Path] = []
    for p in map(Path, paths):
        if (p / "metadata.yaml").is_file() or p.suffix in (".mcap", ".db3"):
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(d for d in p.iterdir() if (d / "metadata.yaml").is_file()))
        else:
            raise DatasetError(f"{str(p)!r} is neither a bag nor a directory of bags")
    return found


def _size(text: str) -> tuple[int, int]:
    h, sep, w = text.lower().partition("x")
    if not sep:
        raise ValueError(f"image size must look like HxW (e.g. 180x320), got {text!r}")
    return int(h), int(w)


def main(argv: list[str] | None = None) -> int:
    """``tinyvla-convert BAG_OR_DIR ... --out DATASET [--layout layout.yaml] [options]``"""
    import argparse
    import sys

    from tinyvla_ros.data.episodes import dataset_size_bytes

    p = argparse.ArgumentParser(prog="tinyvla-convert", description=__doc__.split("\n\n")[0])
    p.add_argument("bags", nargs="+", help="bag directories, or directories holding bags")
    p.add_argument("--out", required=True, help="dataset directory to write")
    p.add_argument("--layout", default="", help="YAML/JSON BagLayout (needed for bags not recorded by us)")
    p.add_argument(
        "--max-side", type=int, default=320, help="downscale frames so the longer side fits (0: keep)"
    )
    p.add_argument("--image-size", default="", help="resize every frame to HxW instead")
    p.add_argument("--max-gap", type=float, default=0.25, help="seconds after which a frame/state is stale")
    p.add_argument("--instruction", default="", help="instruction for bags that carry none")
    p.add_argument("--only-success", action="store_true", help="skip bags whose metadata says success: false")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    try:
        cfg = ConvertConfig(
            image_size=_size(args.image_size) if args.image_size else None,
            max_side=args.max_side,
            max_gap=args.max_gap,
            only_success=args.only_success,
            instruction=args.instruction,
        )
        layout = BagLayout.load(args.layout) if args.layout else None
        info = convert_bags(
            find_bags(args.bags), args.out, layout, cfg, overwrite=args.overwrite, progress=True
        )
    except (ValueError, OSError, BagError) as exc:
        print(f"tinyvla-convert: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    valid = sum(e["valid_steps"] for e in info.episodes)
    print(
        f"{args.out}: {len(info.episodes)} episodes, {info.total_steps} steps ({valid} valid) at {info.fps:g} Hz, "
        f"cameras {list(info.camera_names)} {info.image_shapes}, {dataset_size_bytes(args.out) / 1e6:.1f} MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
