"""Launch TinyVLA on a Franka FR3 seen by two ZED 2 cameras.

    ros2 launch tinyvla_ros franka.launch.py checkpoint:=/path/to/ckpt instruction:="pick up the red cube"

Arguments (``ros2 launch tinyvla_ros franka.launch.py --show-args``): checkpoint, instruction,
use_sim, use_sim_time, enable_actuation (false: only ~/preview), execution_mode, output,
params_file (default config/franka.yaml), camera_driver (wrapper | direct), zed_topic_naming
(current | legacy), namespace. The node graph is declared once in tinyvla_ros.ros.graph; without
the ROS 2 launch system run the same graph with ``tinyvla-graph franka ...``.
"""

ROBOT = "franka"


def generate_launch_description():
    from tinyvla_ros.ros.launch_support import launch_description

    return launch_description(ROBOT)
