"""Launch TinyVLA on two UR5 arms (left_/right_) seen by three RealSense D435i (two wrist, one top).

    ros2 launch tinyvla_ros ur5_bimanual.launch.py checkpoint:=/path/to/ckpt instruction:="lift the box"

Arguments (``ros2 launch tinyvla_ros ur5_bimanual.launch.py --show-args``): checkpoint,
instruction, use_sim, use_sim_time, enable_actuation (false: only ~/preview), execution_mode,
output, params_file (default config/ur5_bimanual.yaml), camera_driver (wrapper | direct),
zed_topic_naming, namespace. The node graph is declared once in tinyvla_ros.ros.graph; without
the ROS 2 launch system run the same graph with ``tinyvla-graph ur5_bimanual ...``.
"""

ROBOT = "ur5_bimanual"


def generate_launch_description():
    from tinyvla_ros.ros.launch_support import launch_description

    return launch_description(ROBOT)
