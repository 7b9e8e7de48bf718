"""tinyvla_ros: TinyVLA (vision-language-action) in a ROS 2 robot control loop.

Layering (imports point down only):
    ros/   rclpy nodes and message conversion (the only place that imports rclpy)
    data/  bags, datasets, training and evaluation commands
    vla/   the torch model: configuration, backbone, UNet head, policy, checkpoints, engines
    sim/   MuJoCo fake robots, cameras, tasks, scripted experts
    core/  NumPy runtime pieces: images, observations, chunk execution, safety, robots
"""

__version__ = "0.1.0"
