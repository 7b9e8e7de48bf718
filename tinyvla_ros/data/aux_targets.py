"""Sim-only auxiliary targets: where the scene's objects are, for an auxiliary loss on the condition.

A diffusion loss barely asks a policy to look: every episode starts from the same home pose and
only the approach needs the image. ``tinyvla-train --aux-objects W`` adds, with weight W, a
regression from the condition (the head's input) to the positions of the scene's objects, so the
condition must carry where they are in a form the head reads linearly. The targets come from the
MuJoCo fake: each episode of a dataset recorded by ``tinyvla-record-demos`` names its set-up, task
and seed, and ``SimEnv.reset(task, seed)`` places the objects exactly as in the recording.

Only simulated demonstrations have them: a dataset without task/seed metadata is refused. The
target is the objects' positions at the episode start; it is applied to the steps before the
gripper first closes (objects have not moved yet) and at most ``max_fraction`` of an episode
(a drawer moves without a grasp).

Franka targets (10 numbers, metres from the cube region's centre / 0.15): red, green and blue cube
xy, bowl xy, drawer-handle xy. Bimanual UR5 (10): box, red, green and blue cube xy, bin xy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tinyvla_ros.data.episodes import EpisodeFile, load_info

OBJECTS = {
    "franka": ("red_cube_pos", "green_cube_pos", "blue_cube_pos", "bowl_pos", "drawer_handle_pos"),
    "ur5_bimanual": ("box_pos", "red_cube_pos", "green_cube_pos", "blue_cube_pos", "bin_pos"),
}
# The instructed object and where it goes (the object itself where it goes nowhere), per task.
INSTRUCTED = {
    "franka": {
        "pick_red_cube": ("red_cube_pos", "red_cube_pos"),
        "green_cube_in_bowl": ("green_cube_pos", "bowl_pos"),
        "close_drawer": ("drawer_handle_pos", "drawer_handle_pos"),
        "pick_green_cube": ("green_cube_pos", "green_cube_pos"),  # evaluation-only (sim/tasks.py)
        "pick_blue_cube": ("blue_cube_pos", "blue_cube_pos"),
    },
    "ur5_bimanual": {
        "lift_box": ("box_pos", "box_pos"),
        "handover_cube": ("red_cube_pos", "red_cube_pos"),
        "blue_cube_in_bin": ("blue_cube_pos", "bin_pos"),
    },
}
INSTRUCTED_DIM = 4
CENTRE = {"franka": (0.465, 0.0), "ur5_bimanual": (0.45, 0.0)}
SCALE = 0.15  # m
AUX_FILE = "aux_objects.json"


def aux_dim(setup: str, object_targets: str = "scene") -> int:
    """Readout size: every object's xy ("scene") or the instructed object's and destination's."""
    return INSTRUCTED_DIM if object_targets == "instructed" else 2 * len(OBJECTS[setup])


def scene_targets(env) -> np.ndarray:
    """Normalised object xy (aux_dim,) where the objects are now in ``env``."""
    state = env.task_state()
    centre = np.asarray(CENTRE[env.setup])
    xy = [(np.asarray(state[key][:2]) - centre) / SCALE for key in OBJECTS[env.setup]]
    return np.concatenate(xy).astype(np.float32)


def instructed(targets: np.ndarray, setup: str, task: str) -> np.ndarray:
    """The instructed object's and its destination's xy (4,) out of a scene's targets (aux_dim,)."""
    if task not in INSTRUCTED.get(setup, {}):
        raise ValueError(f"no instructed object is known for task {task!r} of setup {setup!r}")
    index = {key: i for i, key in enumerate(OBJECTS[setup])}
    rows = np.asarray(targets, np.float32).reshape(-1, 2)
    return np.concatenate([rows[index[key]] for key in INSTRUCTED[setup][task]])


def episode_targets(env, task: str, seed: int) -> np.ndarray:
    """Normalised object xy (aux_dim,) of the scene ``(task, seed)``."""
    env.reset(task, seed)
    return scene_targets(env)


def aux_steps(action: np.ndarray, gripper_column: int, max_fraction: float) -> int:
    """Steps at the start of an episode the targets hold for: before the gripper action first goes
    from open (>= 0.5) to closed (< 0.5) (a grasp; a gripper closed from the start, as for pushing
    a drawer, does not count), and at most ``max_fraction`` of the episode."""
    grip = np.asarray(action)[:, gripper_column]
    opened = np.maximum.accumulate(grip >= 0.5)  # (L,) the gripper has been open by this step
    grasps = np.nonzero(opened & (grip < 0.5))[0]
    limit = int(np.ceil(max_fraction * len(grip)))
    return int(min(grasps[0] if grasps.size else len(grip), limit))


def dataset_targets(dataset: str | Path, max_fraction: float = 0.4) -> dict[int, tuple[np.ndarray, int]]:
    """{episode index: (targets (aux_dim,), steps they hold for)} of a simulated demo dataset,
    cached in ``<dataset>/aux_objects.json``; ValueError when an episode is not from the fake."""
    root = Path(dataset)
    info = load_info(root)
    cache = root / AUX_FILE
    if cache.is_file():
        data = json.loads(cache.read_text())
        if data.get("max_fraction") == max_fraction and len(data["episodes"]) == len(info.episodes):
            return {int(k): (np.asarray(v[0], np.float32), int(v[1])) for k, v in data["episodes"].items()}
    from tinyvla_ros.sim import make_env

    setup = info.robot
    if setup not in OBJECTS:
        raise ValueError(f"auxiliary object targets exist for the fakes {list(OBJECTS)}, not robot {setup!r}")
    grip = [i for i, n in enumerate(info.action_names) if "gripper" in n]
    env = make_env(setup, image_width=8, image_height=8)
    out: dict[int, tuple[np.ndarray, int]] = {}
    try:
        for e, entry in enumerate(info.episodes):
            ep = EpisodeFile(root / entry["file"])
            extra = json.loads(ep.metadata.get("extra", "{}"))
            task, seed = ep.metadata.get("task", ""), extra.get("seed")
            if not task or seed is None:
                raise ValueError(
                    f"episode {entry['file']} has no task/seed metadata: auxiliary object targets need "
                    "demonstrations recorded in the fake (tinyvla-record-demos)"
                )
            steps = aux_steps(ep.action, grip[0], max_fraction) if grip else int(max_fraction * ep.length)
            out[e] = (episode_targets(env, task, int(seed)), steps)
    finally:
        env.close()
    payload = {
        "max_fraction": max_fraction,
        "episodes": {str(k): [v[0].tolist(), v[1]] for k, v in out.items()},
    }
    cache.write_text(json.dumps(payload) + "\n")
    return out
