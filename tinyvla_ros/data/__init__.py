"""tinyvla_ros.data"""
