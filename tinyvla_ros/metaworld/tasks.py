"""The 50 MetaWorld MT50 tasks (v3 names of metaworld 3.x), their difficulty group and an instruction.

Difficulty split: Seo et al. 2022, "Masked World Models for Visual Control" (appendix), the split
the TinyVLA paper reports its MetaWorld results by: easy 28, medium 11, hard 6, very hard 5 tasks.

Instructions: our own short imperative sentences, written for this harness from what each task
shows (object, motion, visible target), in the style of the project's other instructions (lower
case, no full stop). They are not the MetaWorld paper's task descriptions; opening and closing
tasks name the goal state rather than a turning direction.
"""

from __future__ import annotations

from collections.abc import Iterable

GROUPS: tuple[str, ...] = ("easy", "medium", "hard", "very_hard")

# task -> (difficulty group, instruction)
TASKS: dict[str, tuple[str, str]] = {
    # easy (28)
    "button-press-v3": ("easy", "press the button"),
    "button-press-topdown-v3": ("easy", "press the button down from above"),
    "button-press-topdown-wall-v3": ("easy", "press the button behind the wall down from above"),
    "button-press-wall-v3": ("easy", "press the button behind the wall"),
    "coffee-button-v3": ("easy", "press the button on the coffee machine"),
    "dial-turn-v3": ("easy", "turn the dial"),
    "door-close-v3": ("easy", "close the door"),
    "door-lock-v3": ("easy", "turn the lock to lock the door"),
    "door-open-v3": ("easy", "open the door"),
    "door-unlock-v3": ("easy", "turn the lock to unlock the door"),
    "drawer-close-v3": ("easy", "close the drawer"),
    "drawer-open-v3": ("easy", "open the drawer"),
    "faucet-close-v3": ("easy", "turn the faucet handle to close it"),
    "faucet-open-v3": ("easy", "turn the faucet handle to open it"),
    "handle-press-v3": ("easy", "press the handle down"),
    "handle-press-side-v3": ("easy", "press the handle down from the side"),
    "handle-pull-v3": ("easy", "pull the handle up"),
    "handle-pull-side-v3": ("easy", "pull the handle up from the side"),
    "lever-pull-v3": ("easy", "pull the lever"),
    "plate-slide-v3": ("easy", "slide the plate into the goal"),
    "plate-slide-back-v3": ("easy", "slide the plate back out of the goal"),
    "plate-slide-back-side-v3": ("easy", "slide the plate sideways out of the goal"),
    "plate-slide-side-v3": ("easy", "slide the plate sideways into the goal"),
    "reach-v3": ("easy", "reach the red target"),
    "reach-wall-v3": ("easy", "reach the red target behind the wall"),
    "window-close-v3": ("easy", "slide the window closed"),
    "window-open-v3": ("easy", "slide the window open"),
    "peg-unplug-side-v3": ("easy", "pull the peg out of the hole"),
    # medium (11)
    "basketball-v3": ("medium", "put the ball in the basket"),
    "bin-picking-v3": ("medium", "move the puck from one bin to the other"),
    "box-close-v3": ("medium", "put the lid on the box"),
    "coffee-pull-v3": ("medium", "pull the mug away from the coffee machine"),
    "coffee-push-v3": ("medium", "push the mug under the coffee machine"),
    "hammer-v3": ("medium", "hammer the nail in"),
    "peg-insert-side-v3": ("medium", "insert the peg into the hole from the side"),
    "push-wall-v3": ("medium", "push the puck around the wall to the goal"),
    "soccer-v3": ("medium", "push the ball into the goal"),
    "sweep-v3": ("medium", "sweep the puck off the table"),
    "sweep-into-v3": ("medium", "sweep the puck into the hole"),
    # hard (6)
    "assembly-v3": ("hard", "put the ring onto the peg"),
    "hand-insert-v3": ("hard", "put the puck in the hole"),
    "pick-out-of-hole-v3": ("hard", "pick the puck out of the hole"),
    "pick-place-v3": ("hard", "pick up the puck and place it at the goal"),
    "push-v3": ("hard", "push the puck to the goal"),
    "push-back-v3": ("hard", "push the puck back to the goal"),
    # very hard (5)
    "shelf-place-v3": ("very_hard", "put the puck on the shelf"),
    "disassemble-v3": ("very_hard", "lift the ring off the peg"),
    "stick-pull-v3": ("very_hard", "pull the container with the stick"),
    "stick-push-v3": ("very_hard", "push the container with the stick"),
    "pick-place-wall-v3": ("very_hard", "pick up the puck and place it behind the wall"),
}

GROUP_SIZES: dict[str, int] = {"easy": 28, "medium": 11, "hard": 6, "very_hard": 5}


def group_of(task: str) -> str:
    """The difficulty group of ``task``; ValueError naming the known tasks otherwise."""
    return _entry(task)[0]


def instruction_of(task: str) -> str:
    """The instruction of ``task``."""
    return _entry(task)[1]


def tasks_in(group: str) -> list[str]:
    """The tasks of a difficulty group, in the table's order."""
    if group not in GROUPS:
        raise ValueError(f"difficulty group must be one of {list(GROUPS)}, got {group!r}")
    return [t for t, (g, _) in TASKS.items() if g == group]


def select_tasks(tasks: Iterable[str] | None = None, groups: Iterable[str] | None = None) -> list[str]:
    """Tasks named in ``tasks`` plus every task of ``groups``, each once, in the table's order
    (groups "all": the 50 tasks); ValueError for an unknown name or when nothing is chosen."""
    chosen: set[str] = set()
    for task in tasks or ():
        _entry(task)
        chosen.add(task)
    for group in groups or ():
        chosen.update(TASKS if group == "all" else tasks_in(group))
    if not chosen:
        raise ValueError("no MetaWorld task chosen: give task names or a difficulty group")
    return [t for t in TASKS if t in chosen]


def _entry(task: str) -> tuple[str, str]:
    if task not in TASKS:
        raise ValueError(f"unknown MetaWorld task {task!r}; the MT50 tasks are {sorted(TASKS)}")
    return TASKS[task]
