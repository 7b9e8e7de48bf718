"""tinyvla_ros.vla"""
