"""tinyvla_ros.sim"""
