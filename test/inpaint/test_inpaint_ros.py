"""The policy node inpaints the executor's committed steps (real rclpy, real DDS, in this process).

A rig node publishes the Franka cameras and joint states (synthetic, the real topic names) and a
committed plan on /tinyvla_executor/committed that is a linear function of time; the policy node
(random-init nano checkpoint, inpaint.enabled) must put that plan's values into the leading steps
of its chunks, and stop doing so once the plan goes stale.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import rclpy
import yaml
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from trajectory_msgs.msg import JointTrajectory

from tinyvla_ros.paths import config_dir
from tinyvla_ros.ros.conversions import chunk_to_trajectory, trajectory_to_chunk
from tinyvla_ros.ros.graph import POLICY, node_section
from tinyvla_ros.ros.policy_node import PolicyNode
from tinyvla_ros.ros.qos import reliable_qos
from tinyvla_ros.ros.synthetic_sensors import SyntheticSensors, config_from_params_file

HOME = np.array([0.0, -0.785398, 0.0, -2.356194, 0.0, 1.570796, 0.785398, 0.5])  # 7 joints + gripper
SLOPE = np.array([0.01, -0.01, 0.005, 0.01, -0.005, 0.01, -0.01, 0.02])  # rad/s: the plan's motion
DT = 0.05


def flatten(params: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import torch

    from tinyvla_ros.vla.testing import make_tiny_checkpoint

    torch.set_num_threads(1)
    names = [f"fr3_joint{i}" for i in range(1, 8)] + ["gripper"]
    return make_tiny_checkpoint(
        tmp_path_factory.mktemp("inpaint_ros") / "franka",
        ["zed_left", "zed_right"],
        8,
        8,
        seed=2,
        action_low=np.r_[HOME[:7] - 0.2, 0.0],
        action_high=np.r_[HOME[:7] + 0.2, 1.0],
        action_names=names,
    )


class Rig:
    """Sensors + committed plan publisher + chunk recorder, and the policy node, on one executor."""

    def __init__(self, checkpoint) -> None:
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node("inpaint_rig", context=self.ctx)
        sensors = config_from_params_file(str(config_dir() / "franka.yaml"))
        sensors.joint_positions = list(HOME)
        self.sensors = SyntheticSensors(self.node, sensors)
        self.t0 = time.time()
        self.committing = True
        self.chunks: list[tuple[float, np.ndarray]] = []
        self._lock = threading.Lock()
        self.committed_pub = self.node.create_publisher(
            JointTrajectory, "/tinyvla_executor/committed", reliable_qos(10)
        )
        self.node.create_subscription(
            JointTrajectory, "/tinyvla_policy/chunk", self._on_chunk, reliable_qos(10)
        )
        self.node.create_timer(0.05, self._commit)
        with open(config_dir() / "franka.yaml", encoding="utf-8") as f:
            params = flatten(node_section(yaml.safe_load(f), POLICY))
        params.update(
            {
                "checkpoint": str(checkpoint),
                "warmup_runs": 1,
                "num_threads": 1,
                "instruction": "pick up the red cube",
                "seed": 0,
                "inference_rate": 4.0,
                "max_age": 1.0,
                "inpaint.enabled": True,
                "inpaint.max_committed_age": 0.5,
            }
        )
        self.policy = PolicyNode(
            context=self.ctx, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]
        )
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self.executor.add_node(self.policy)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def plan(self, t: np.ndarray) -> np.ndarray:
        """The committed plan: (k,) times -> (k, 8) actions, linear in time (exact under interpolation)."""
        return HOME + np.outer(t - self.t0, SLOPE)

    def _commit(self) -> None:
        if not self.committing:
            return
        now = self.node.get_clock().now().nanoseconds * 1e-9
        times = now + 0.013 + DT * np.arange(12)  # the executor's grid, out of phase with the chunks'
        names = [f"fr3_joint{i}" for i in range(1, 8)] + ["gripper"]
        self.committed_pub.publish(chunk_to_trajectory(self.plan(times), names, float(times[0]), DT))

    def _on_chunk(self, msg) -> None:
        stamp, chunk, _ = trajectory_to_chunk(msg, self.policy.cfg.action_names)
        with self._lock:
            self.chunks.append((stamp, chunk))

    def wait_chunks(self, n: int, since: int = 0, timeout: float = 60.0) -> list[tuple[float, np.ndarray]]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if len(self.chunks) >= since + n:
                    return list(self.chunks[since:])
            time.sleep(0.05)
        raise AssertionError(f"only {len(self.chunks) - since} chunks within {timeout} s")

    def close(self) -> None:
        self.policy._stop_worker()
        self.executor.shutdown()
        self.policy.destroy_node()
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)


def test_policy_node_holds_the_committed_steps_and_ignores_a_stale_plan(checkpoint):
    rig = Rig(checkpoint)
    try:
        from rclpy.lifecycle import TransitionCallbackReturn

        assert rig.policy.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert rig.policy.trigger_activate() == TransitionCallbackReturn.SUCCESS
        chunks = rig.wait_chunks(4)
        for stamp, chunk in chunks[1:]:  # the first may predate the first committed message
            # steps before the plan's first time hold its first action: step 0 tells that time
            first = rig.t0 + float(np.mean((chunk[0] - HOME) / SLOPE))
            assert stamp - 1e-3 <= first <= stamp + 0.5
            grid = stamp + DT * np.arange(2)  # always held: stamp <= now, plus the 1 margin step
            np.testing.assert_allclose(chunk[:2], rig.plan(np.maximum(grid, first)), atol=1e-4)
        values = rig.policy.report()[2]
        assert values["inpaint_enabled"] and values["chunks_inpainted"] >= 3
        assert values["inference_delay_ema_ms"] > 0 and values["inpaint_last_hard_steps"] >= 2
        rig.committing = False  # the executor stops publishing: the plan goes stale after 0.5 s
        time.sleep(2.0)  # 4x the staleness limit: chunks already in flight on a loaded machine pass
        before = len(rig.chunks)
        late = rig.wait_chunks(2, since=before)
        for stamp, chunk in late:
            assert np.abs(chunk[:2] - rig.plan(stamp + DT * np.arange(2))).max() > 1e-3  # sampled freely
        assert rig.policy.report()[2]["chunks_free"] >= 2
    finally:
        rig.close()


def test_inpaint_parameters_are_validated_and_read_from_the_params_files():
    from tinyvla_ros.core.chunking import EXECUTION_MODES
    from tinyvla_ros.ros.params import ExecutorNodeConfig, InpaintSpec, PolicyNodeConfig

    assert "inpaint" in EXECUTION_MODES
    for robot in ("franka", "ur5_bimanual"):
        with open(config_dir() / f"{robot}.yaml", encoding="utf-8") as f:
            params = yaml.safe_load(f)
        policy = node_section(params, POLICY)
        cfg = PolicyNodeConfig(**{k: v for k, v in policy.items() if k != "cameras"})
        assert isinstance(cfg.inpaint, InpaintSpec) and cfg.inpaint.enabled is False  # default stays off
        executor = {
            k: v for k, v in node_section(params, "tinyvla_executor").items() if not isinstance(v, dict)
        }
        assert executor["execution_mode"] == "temporal_ensemble"
        exec_cfg = ExecutorNodeConfig(**{**executor, "execution_mode": "inpaint"})  # selectable
        assert exec_cfg.committed_topic == "~/committed" and exec_cfg.committed_rate > 0
    with pytest.raises(ValueError, match="inpaint.delay_alpha.*1.5"):
        InpaintSpec(delay_alpha=1.5)
    with pytest.raises(ValueError, match="inpaint.soft_decay_steps.*-1"):
        InpaintSpec(soft_decay_steps=-1)
    with pytest.raises(ValueError, match="committed_rate.*-2"):
        ExecutorNodeConfig(**{**executor, "committed_rate": -2.0})
