"""tinyvla_ros.core"""
