"""Direct camera drivers: our own RealSense (pyrealsense2) and ZED (ZED SDK) nodes.

They publish what the vendors' ROS wrappers publish (topic names, encodings, CameraInfo, frame
ids), so the runtime does not care which driver runs. Modules:

    clock             frame timestamps (device/global/system/hardware clock) -> ROS stamps
    health            per-camera frame rate, drops, errors, reconnection state (for /diagnostics)
    frames            CapturedFrame / SourceInfo / CameraUnavailable: what a frame source yields
    camera_node       parameters -> dataclass, publishers, /diagnostics, main() shared by both nodes
    worker            one capture thread per camera: open, read, stamp, publish, reconnect
    messages          sensor_msgs / diagnostic_msgs construction
    realsense_source  pyrealsense2 pipelines (devices, .db3 playback) and sensor sources
    realsense_software  a pyrealsense2 software device (D435i-shaped) to drive the node without a camera
    realsense_node    the RealSense node (python -m tinyvla_ros.ros.cameras.realsense_node)
    zed_source        the ZED SDK source (imports pyzed.sl lazily)
    zed_node          the ZED node (python -m tinyvla_ros.ros.cameras.zed_node)
"""
