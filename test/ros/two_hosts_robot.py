"""The robot computer of test_ros_two_hosts: run inside its network namespace by the test.

Here: the synthetic ZED streams and joint states (the rig, a perfectly tracking FR3), and the
executor process with the shipped config/franka.yaml. On the other "host": the policy node. This
script brings the policy to active across the link, enables actuation, measures for
``--measure`` s, then takes its end of the link down for ``--cut`` s (``ip link set DEV down``),
brings it back and waits for the executor to run again. It writes what it saw as JSON to
``--out`` (times are system-clock seconds, the clock of every stamp) and exits 0, or 1 with the
reason in the JSON when a step timed out.

    ip netns exec <robot-ns> python two_hosts_robot.py --checkpoint DIR --dev VETH --out FILE
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ros_harness import Rig, executor_mode, franka_sensors, status_values, wait_for  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import SetBool  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from tinyvla_ros.ros.conversions import stamp_to_sec  # noqa: E402
from tinyvla_ros.ros.graph import GraphRunner, NodeSpec, default_params_file  # noqa: E402
from tinyvla_ros.ros.lifecycle_client import LifecycleClient  # noqa: E402
from tinyvla_ros.ros.qos import latched_qos, reliable_qos  # noqa: E402

COMMANDS = "/forward_position_controller/commands"


def parse_args(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--dev", required=True, help="this host's end of the link")
    p.add_argument("--out", required=True)
    p.add_argument("--logs", required=True)
    p.add_argument("--measure", type=float, default=8.0)
    p.add_argument("--cut", type=float, default=2.0, help="seconds without the link (0: no cut)")
    return p.parse_args(argv)


class Seen:
    """Chunks and executor status messages with their system-clock arrival times."""

    def __init__(self, rig: Rig) -> None:
        self.lock = threading.Lock()
        self.chunks: list[tuple[float, float]] = []  # (arrival, observation stamp)
        self.statuses: list[tuple[float, dict]] = []  # (arrival, status JSON)
        rig.node.create_subscription(JointTrajectory, "/tinyvla_policy/chunk", self._chunk, reliable_qos(50))
        rig.node.create_subscription(String, "/tinyvla_executor/status", self._status, latched_qos())

    def _chunk(self, msg) -> None:
        with self.lock:
            self.chunks.append((time.time(), stamp_to_sec(msg.header.stamp)))

    def _status(self, msg) -> None:
        with self.lock:
            self.statuses.append((time.time(), json.loads(msg.data)))


def link(dev: str, state: str) -> float:
    subprocess.run(["ip", "link", "set", dev, state], check=True)
    return time.time()


def main(argv=None) -> int:
    args = parse_args(argv)
    result: dict = {"ok": False}
    rig = Rig("tinyvla_robot_host_rig")
    runner = None
    step = "start"
    try:
        rig.start_sensors(franka_sensors(joint_rate=100.0))
        rig.follow_forward_commands(COMMANDS)
        seen = Seen(rig)
        status = rig.record(String, "/tinyvla_executor/status", latched_qos())
        spec = NodeSpec(
            "tinyvla_ros.ros.executor_node",
            "tinyvla_executor",
            params_file=str(default_params_file("franka")),
        )
        runner = GraphRunner([spec], log_dir=Path(args.logs))
        runner.start()
        step = "activate the policy on the other host"
        client = LifecycleClient(rig.node, "/tinyvla_policy", spin=False)
        client.wait_for_services(120.0)
        if client.state() == "unconfigured":
            client.transition("configure", 120.0)
        client.transition("activate", 60.0)
        step = "chunks across the link"
        wait_for(lambda: len(seen.chunks) >= 5, 60.0, step)
        step = "actuation"
        wait_for(lambda: (executor_mode(status) or {}).get("mode") == "run", 30.0, "executor running")
        response = rig.call(SetBool, "/tinyvla_executor/enable", SetBool.Request(data=True))
        if not response.success:
            raise RuntimeError(response.message)
        wait_for(lambda: _run_true(status), 30.0, step)
        start = time.time()
        time.sleep(args.measure)
        measured_until = time.time()
        cut_at = up_at = None
        if args.cut > 0:
            step = "link cut"
            cut_at = link(args.dev, "down")
            time.sleep(args.cut)
            up_at = link(args.dev, "up")
            step = "run again after the link came back"
            wait_for(lambda: _ran_after(seen, up_at) and _run_true(status), 60.0, step)
        time.sleep(1.0)
        diag = rig.latest_status("tinyvla_executor", since=0.0)
        with seen.lock:
            result.update(
                ok=True,
                measure=[start, measured_until],
                cut_at=cut_at,
                up_at=up_at,
                chunks=list(seen.chunks),
                statuses=list(seen.statuses),
                diagnostics=[
                    (t, int.from_bytes(m.level, "little"), m.message, status_values(m))
                    for t, m in _executor_diagnostics(rig, (cut_at or measured_until) - 1.0)
                ],
                last_diagnostics=status_values(diag) if diag is not None else {},
            )
    except Exception as exc:  # noqa: BLE001 - reported to the test through the JSON
        result["error"] = f"{step}: {type(exc).__name__}: {exc}"
    finally:
        if runner is not None:
            result["exit_codes"] = runner.stop()
        rig.close()
        Path(args.out).write_text(json.dumps(result))
    return 0 if result["ok"] else 1


def _run_true(status) -> bool:
    mode = executor_mode(status)
    return mode is not None and mode["mode"] == "run" and mode["actuation"] is True


def _ran_after(seen: Seen, t: float) -> bool:
    with seen.lock:
        return any(arrival > t and s["mode"] == "run" for arrival, s in seen.statuses)


def _executor_diagnostics(rig: Rig, since_wall: float):
    """(system time, DiagnosticStatus) of the executor's /diagnostics since ``since_wall``."""
    offset = time.time() - time.monotonic()
    out = []
    for t, msg in rig.diagnostics.items():
        if t + offset < since_wall:
            continue
        out += [(t + offset, s) for s in msg.status if s.name.startswith("tinyvla_executor")]
    return out


if __name__ == "__main__":
    sys.exit(main())
