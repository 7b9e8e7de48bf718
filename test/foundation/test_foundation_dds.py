"""Real DDS between two OS processes: sensor_msgs/Image 640x480 rgb8 at 30 Hz over Fast DDS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from dds_peer import frame_digest  # noqa: E402

PEER = Path(__file__).with_name("dds_peer.py")
FRAMES = 90

pytestmark = pytest.mark.ros


def run_pair(
    tmp_path: Path, pub_domain: int, sub_domain: int, wait_for_subscriber: float, sub_timeout: float = 25.0
) -> list[dict]:
    """Start a receiver and a sender as separate processes; return what the receiver got."""
    out = tmp_path / "result.json"
    env_sub = {**os.environ, "ROS_DOMAIN_ID": str(sub_domain)}
    env_pub = {**os.environ, "ROS_DOMAIN_ID": str(pub_domain)}
    sub = subprocess.Popen(
        [
            sys.executable,
            str(PEER),
            "sub",
            "--frames",
            str(FRAMES),
            "--timeout",
            str(sub_timeout),
            "--out",
            str(out),
        ],
        env=env_sub,
    )
    pub = subprocess.Popen(
        [
            sys.executable, str(PEER), "pub", "--frames", str(FRAMES), "--rate", "30",
            "--wait-for-subscriber", str(wait_for_subscriber),
        ],
        env=env_pub,
    )  # fmt: skip
    try:
        assert pub.wait(timeout=60) == 0, "publisher process failed"
        assert sub.wait(timeout=60) == 0, "subscriber process failed"
    finally:
        for proc in (pub, sub):
            if proc.poll() is None:
                proc.kill()
    return json.loads(out.read_text())["received"]


def test_images_arrive_in_order_and_intact(tmp_path: Path, ros_domain_id: int) -> None:
    received = run_pair(tmp_path, ros_domain_id, ros_domain_id, wait_for_subscriber=15.0)
    assert len(received) == FRAMES, f"expected {FRAMES} frames over reliable DDS, got {len(received)}"
    indices = [r["index"] for r in received]
    assert indices == list(range(FRAMES)), "frames arrived out of order or with gaps"
    for r in received:
        assert r["encoding"] == "rgb8" and r["shape"] == [480, 640, 640 * 3]
        assert r["sha256"] == frame_digest(r["index"]), f"frame {r['index']} corrupted in transit"


def test_other_domain_receives_nothing(tmp_path: Path, ros_domain_id: int) -> None:
    """Domain isolation: a receiver in another ROS_DOMAIN_ID must see none of our frames.

    This is also the negative control of the test above: the harness reports an empty receive.
    """
    other = ros_domain_id % 101 + 1
    received = run_pair(tmp_path, ros_domain_id, other, wait_for_subscriber=2.0, sub_timeout=7.0)
    assert received == []
