"""Policy and executor on two hosts: two network namespaces joined by a veth pair.

The usual deployment puts the policy on a GPU workstation and the executor on the real-time PC
next to the robot. This test makes that network on one machine: namespace "gpu" (the policy
node, shipped config/franka.yaml) and namespace "robot" (executor with the shipped file, camera
streams and joint states: test/ros/two_hosts_robot.py), each with an address of its own on a
private /24, nothing routed anywhere else. DDS is configured as across two machines: UDP only
(no shared memory), ``ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET`` and the other host in
``ROS_STATIC_PEERS``. Measured: camera stamp -> chunk arrival at the robot host, beside the
policy's own inference time; then the robot's end of the link goes down for 2 s: the executor
must hold within its deadline (the shipped ``faults.max_observation_age``, else hold_after; + one
tick), say so on /diagnostics, and run again only with
chunks from observations made after the link came back.

Needs root (or CAP_NET_ADMIN) and iproute2; skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tinyvla_ros.ros.graph import NodeSpec, default_params_file

pytestmark = [pytest.mark.ros, pytest.mark.timeout(420)]

HERE = Path(__file__).resolve().parent
OUT = HERE.parents[1] / "out" / "two_hosts.json"


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


def _cannot_make_namespaces() -> str:
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    probe = f"tvprobe{os.getpid()}"
    made = _ip("netns", "add", probe)
    if made.returncode != 0:
        return f"cannot create a network namespace here: {made.stderr.strip()}"
    _ip("netns", "del", probe)
    tag = os.getpid() % 100000
    pair = _ip("link", "add", f"tvpa{tag}", "type", "veth", "peer", "name", f"tvpb{tag}")
    if pair.returncode != 0:
        return f"cannot create a veth pair here: {pair.stderr.strip()}"
    _ip("link", "del", f"tvpa{tag}")
    return ""


@pytest.fixture
def hosts():
    reason = _cannot_make_namespaces()
    if reason:
        pytest.skip(reason)
    tag = os.getpid() % 100000
    net = f"10.{77 + tag % 100}.{tag % 250}"
    gpu, robot = f"tvgpu{tag}", f"tvrobot{tag}"
    dev_gpu, dev_robot = f"tvg{tag}", f"tvr{tag}"
    commands = [
        ("netns", "add", gpu),
        ("netns", "add", robot),
        ("link", "add", dev_gpu, "type", "veth", "peer", "name", dev_robot),
        ("link", "set", dev_gpu, "netns", gpu),
        ("link", "set", dev_robot, "netns", robot),
        ("-n", gpu, "addr", "add", f"{net}.1/24", "dev", dev_gpu),
        ("-n", robot, "addr", "add", f"{net}.2/24", "dev", dev_robot),
        ("-n", gpu, "link", "set", "lo", "up"),
        ("-n", robot, "link", "set", "lo", "up"),
        ("-n", gpu, "link", "set", dev_gpu, "up"),
        ("-n", robot, "link", "set", dev_robot, "up"),
    ]
    try:
        for command in commands:
            done = _ip(*command)
            assert done.returncode == 0, f"ip {' '.join(command)}: {done.stderr}"
        yield {"gpu": (gpu, f"{net}.1", dev_gpu), "robot": (robot, f"{net}.2", dev_robot)}
    finally:
        _ip("netns", "del", gpu)  # deleting a namespace deletes its end of the veth pair (and so both)
        _ip("netns", "del", robot)


def _env(peer: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("ROS_LOCALHOST_ONLY", None)
    env.update(
        ROS_DOMAIN_ID=str(random.Random(os.getpid()).randint(1, 100)),
        ROS_AUTOMATIC_DISCOVERY_RANGE="SUBNET",
        ROS_STATIC_PEERS=peer,
        FASTDDS_BUILTIN_TRANSPORTS="UDPv4",  # two machines share no memory
    )
    return env


@pytest.fixture(scope="module")
def smooth_checkpoint(tmp_path_factory) -> Path:
    """A random-init nano checkpoint whose joint actions lie in home + [0.05, 0.15] rad (its chunks
    move the arm a little and are never refused as too fast), gripper in [0, 1]."""
    import torch

    from tinyvla_ros.vla.testing import make_tiny_checkpoint

    torch.set_num_threads(1)
    home = [0.0, -0.785398, 0.0, -2.356194, 0.0, 1.570796, 0.785398]
    low = [q + 0.05 for q in home] + [0.0]
    high = [q + 0.15 for q in home] + [1.0]
    return make_tiny_checkpoint(
        tmp_path_factory.mktemp("two_hosts") / "ckpt", ["zed_left", "zed_right"], 8, 8, seed=0,
        action_low=low, action_high=high, state_mean=[*home, 0.04], state_std=[0.5] * 8,
    )  # fmt: skip


def _run(policy_ns: str, policy_peer: str, robot: tuple, checkpoint: Path, tmp: Path, cut: float) -> dict:
    """The policy in ``policy_ns``, the robot side (two_hosts_robot.py) in ``robot``'s namespace."""
    robot_ns, robot_addr, robot_dev = robot
    tmp.mkdir(parents=True, exist_ok=True)
    spec = NodeSpec(
        "tinyvla_ros.ros.policy_node",
        "tinyvla_policy",
        params_file=str(default_params_file("franka")),
        parameters={
            "checkpoint": str(checkpoint),
            "instruction": "pick up the red cube",
            "num_threads": 1,
            "warmup_runs": 1,
        },
        lifecycle=True,
    )
    overrides = tmp / "policy.yaml"
    overrides.write_text(spec.overrides_yaml())
    policy_log = open(tmp / "policy.log", "wb")
    policy = subprocess.Popen(
        ["ip", "netns", "exec", policy_ns, *spec.command(str(overrides))],
        env=_env(robot_addr),
        stdout=policy_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out = tmp / "robot.json"
    try:
        robot_run = subprocess.run(
            ["ip", "netns", "exec", robot_ns, sys.executable, str(HERE / "two_hosts_robot.py"),
             "--dev", robot_dev, "--out", str(out), "--logs", str(tmp / "logs"), "--cut", str(cut)],
            env=_env(policy_peer), capture_output=True, text=True, timeout=360,
        )  # fmt: skip
    finally:
        policy.send_signal(2)
        try:
            policy.wait(20)
        except subprocess.TimeoutExpired:
            policy.kill()
        policy_log.close()
    result = json.loads(out.read_text()) if out.exists() else {"error": robot_run.stdout + robot_run.stderr}
    logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(tmp.rglob("*.log")))
    assert result.get("ok"), f"{result.get('error')}\n{robot_run.stderr[-3000:]}\n{logs}"
    codes = (policy.returncode, result["exit_codes"])
    assert policy.returncode == 0 and set(result["exit_codes"].values()) == {0}, f"exit codes {codes}\n{logs}"
    t0, t1 = result["measure"]
    result["latency"] = [arrival - stamp for arrival, stamp in result["chunks"] if t0 <= arrival <= t1]
    assert len(result["latency"]) >= 10, f"only {len(result['latency'])} chunks in {t1 - t0:.1f} s"
    return result


def test_policy_and_executor_on_two_hosts_hold_on_a_link_cut(hosts, smooth_checkpoint, tmp_path):
    gpu_ns, gpu_addr, _ = hosts["gpu"]
    robot_ns, robot_addr, _ = hosts["robot"]
    # baseline: the policy on the robot host too (same DDS settings), latency only
    local = _run(robot_ns, robot_addr, hosts["robot"], smooth_checkpoint, tmp_path / "one_host", cut=0.0)
    result = _run(gpu_ns, gpu_addr, hosts["robot"], smooth_checkpoint, tmp_path / "two_hosts", cut=2.0)

    # the cut: hold within the deadline (+ one tick and the status hop), reported, no run until fresh chunks
    cut, up = result["cut_at"], result["up_at"]
    params = yaml.safe_load(default_params_file("franka").read_text())
    exec_params = params["/**/tinyvla_executor"]["ros__parameters"]
    deadline = exec_params.get("faults", {}).get("max_observation_age") or exec_params["hold_after"]
    tick = 1.0 / exec_params["control_rate"]
    last_before = max(arrival for arrival, _ in result["chunks"] if arrival <= cut)
    at_cut = [(t, s) for t, s in result["statuses"] if t <= cut][-1:]
    holds = [(t, s) for t, s in result["statuses"] if t > cut and s["mode"] == "hold"]
    if at_cut and at_cut[0][1]["mode"] == "hold":  # already holding (a late observation) when cut
        hold_t, hold_status = cut, at_cut[0][1]
    else:
        assert holds, "the executor never held while the link was down"
        hold_t, hold_status = holds[0]
    assert hold_t <= up, "the hold came only after the link was back"
    assert hold_status["stamp"] - last_before <= deadline + tick + 0.05, (hold_status, last_before)
    assert "newest observation is" in hold_status["reason"] or "no fresh chunk" in hold_status["reason"]
    reported = [d for d in result["diagnostics"] if d[0] > hold_t and "hold" in d[2]]
    assert reported, "no /diagnostics entry reported the hold"
    resumed = min(t for t, s in result["statuses"] if t > up and s["mode"] == "run")
    # it ran again only after a chunk from an observation made after the link came back
    fresh = [stamp for arrival, stamp in result["chunks"] if up < arrival <= resumed and stamp > up - 0.05]
    assert fresh, "ran again before any chunk from after the cut arrived"
    assert not [s for t, s in result["statuses"] if hold_t < t < up and s["mode"] == "run"]

    one, two = np.array(local["latency"]), np.array(result["latency"])
    figures = {
        "chunk_latency_ms (camera stamp -> chunk at the robot host)": {
            "one_host": {
                "p50": 1e3 * np.percentile(one, 50),
                "p99": 1e3 * np.percentile(one, 99),
                "n": len(one),
            },
            "two_hosts": {
                "p50": 1e3 * np.percentile(two, 50),
                "p99": 1e3 * np.percentile(two, 99),
                "n": len(two),
            },
            "added_p50": 1e3 * (np.percentile(two, 50) - np.percentile(one, 50)),
        },
        "hold_after_last_chunk_s": hold_status["stamp"] - last_before,
        "hold_after_cut_s": hold_t - cut,
        "run_again_after_link_up_s": resumed - up,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
