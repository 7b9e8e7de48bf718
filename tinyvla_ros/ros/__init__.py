"""tinyvla_ros.ros"""
