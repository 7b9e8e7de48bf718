"""Pieces of the MuJoCo fake-robot node (``tinyvla_ros.ros.fake_robot_node``).

- ``config``: the node's validated configuration and each set-up's default topic names;
- ``controllers``: ros2_controllers semantics (forward position, joint trajectory, gripper
  opening) on plain arrays, plus command-limit bookkeeping;
- ``pacing``: the three timing modes (realtime, fast, lockstep) and the sim clock;
- ``stepper``: the simulation loop (MuJoCo stepping, commands, clock, pacing, lockstep, resets)
  behind the node, emitting through a ``SimOutputs``;
- ``monitor``: a listener node recording a running graph (demo, tests, benchmark).

``config``, ``controllers``, ``pacing`` and ``stepper`` do not import rclpy: they are unit-tested
without ROS, and the node wires them to topics.
"""
