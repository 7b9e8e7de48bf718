"""MetaWorld harness (the TinyVLA paper's simulation benchmark): record scripted-expert
demonstrations into an episode dataset, evaluate a checkpoint per task and difficulty group.

    tasks.py     the 50 MT50 tasks, the easy / medium / hard / very hard split, instructions
    env.py       one task: seeded layouts, the upright camera image, 4-D state and action
    record.py    expert demonstrations -> the project's episode dataset (tinyvla-train input)
    evaluate.py  a checkpoint (or any engine) on seeded episodes -> success table and JSON
    cli.py       ``tinyvla-metaworld`` / ``python -m tinyvla_ros.metaworld``

Needs ``metaworld`` 3.1.1 (requirements/sim.txt); plain Python, no ROS. Importing this package
does not import metaworld.
"""
