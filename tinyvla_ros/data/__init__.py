"""tinyvla_ros.data: bags, datasets, training and evaluation (no rclpy here).

    bag          rosbag2 (MCAP / sqlite3) reading and writing with ``rosbags``; typestore (de)serialisation
    messages     typestore messages <-> NumPy (images, joint states, chunks, strings, /clock)
    demos        ``tinyvla-record-demos``: scripted experts in the MuJoCo fakes -> one bag per episode
    convert      ``tinyvla-convert``: bags -> episodes aligned on the control grid
    importers    ``tinyvla-import``: official TinyVLA/ACT HDF5 and LeRobot v2/v3 -> episodes
    episodes     the on-disk episode dataset (safetensors per episode, info.json, stats.json)
    augment      the official image augmentations (random crop 95 %, +-5 deg, colour jitter)
    training     torch Dataset of samples: images, state, 16-step action windows with padding masks
    checkpointing  resumable training state without pickle
    train        ``tinyvla-train``: from scratch or a Llava-Pythia initialiser with LoRA
    evaluate     ``tinyvla-eval``: a checkpoint in the fake, success table

The rclpy parts (``tinyvla-bag-record``, ``tinyvla-bag-play``) live in tinyvla_ros.ros.bag_record
and tinyvla_ros.ros.bag_play.
"""
