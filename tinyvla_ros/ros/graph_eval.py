"""``tinyvla-graph-eval``: evaluate a checkpoint through the real ROS graph against the MuJoCo fake.

Unlike ``tinyvla-eval`` (the runtime's loop in one process, inference taking no simulated time),
this runs what a robot runs: the policy node, the executor node and the fake robot node as separate
processes talking over DDS, the fake in lockstep on sim time (``/clock``), so inference latency,
dropped past steps, the safety filter and the controllers' semantics all count. The graph is
started once; every episode is, in order:

1. executor ``~/enable false`` (it brakes and stops commanding);
2. fake robot parameters ``task`` and ``seed``, then ``~/reset`` (arm(s) home, objects re-placed);
3. the policy's ``instruction`` parameter set to the task's instruction (or ``--instruction``: the
   fake's own instruction topic is moved aside so that only this tool tells the policy what to do);
4. executor ``~/enable true`` (it follows the next chunk computed after this moment);
5. wait until the fake reports success on ``~/success`` or ``max_seconds`` of sim time have passed.

It prints the success table of ``tinyvla-eval`` (plus the graph's inference latency and the limit
violations the fake counted) and writes JSON with every episode.

    tinyvla-graph-eval models/franka --robot franka --seeds 1000-1049 --json out/eval.json
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyvla_ros.core.robots import SETUPS

FAKE = "tinyvla_fake_robot"
EXECUTOR = "tinyvla_executor"
POLICY = "tinyvla_policy"
EVAL_INSTRUCTION_TOPIC = "/tinyvla_graph_eval/fake_instruction"
STARTUP_TIMEOUT = 240.0


@dataclass(frozen=True)
class GraphEvalConfig:
    """robot; tasks (None: all of the set-up); seeds; instruction ('' = each task's own);
    max_seconds (sim s per episode, 0 = 1.5 x the expert's duration + 2 s); settle_seconds (sim s
    between the reset and actuation); execution_mode and engine ('' = the params file's); image size;
    real_time_factor: the lockstep fake's speed cap (1: sim time never runs ahead of the wall clock,
    so inference costs its real duration in sim time, as on a robot; 0: no cap, the sim runs on
    between chunks faster than the policy computes and the executor's observation deadline trips);
    observation_deadline: the executor's faults.max_observation_age for the run (0: the params
    file's 0.18 s, which a robot's computer meets; on a 2-core CPU, camera frame age + inference
    + the next frame's wait reach it and the arm stops and starts: `make demo` uses 0.35 s)."""

    robot: str = "franka"
    tasks: tuple[str, ...] | None = None
    seeds: tuple[int, ...] = (0,)
    instruction: str = ""
    max_seconds: float = 0.0
    settle_seconds: float = 0.3
    execution_mode: str = ""
    image_width: int = 0
    image_height: int = 0
    engine: str = ""
    policy_threads: int = 1
    real_time_factor: float = 1.0
    observation_deadline: float = 0.0

    def __post_init__(self) -> None:
        if self.robot not in SETUPS:
            raise ValueError(f"GraphEvalConfig.robot must be one of {list(SETUPS)}, got {self.robot!r}")
        if not self.seeds or any(int(s) < 0 for s in self.seeds):
            raise ValueError(f"GraphEvalConfig.seeds must be non-negative ints, got {self.seeds!r}")
        for name in ("max_seconds", "settle_seconds", "real_time_factor", "observation_deadline"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"GraphEvalConfig.{name} must be >= 0, got {value!r}")
        if (self.image_width or self.image_height) and (self.image_width < 8 or self.image_height < 8):
            raise ValueError(
                f"GraphEvalConfig image size must be at least 8x8, got {self.image_width}x{self.image_height}"
            )


@dataclass
class GraphEpisode:
    task: str
    seed: int
    instruction: str
    success: bool
    sim_seconds: float
    wall_seconds: float
    chunks: int


@dataclass
class GraphEvalResults:
    robot: str
    checkpoint: str
    episodes: list[GraphEpisode] = field(default_factory=list)
    latency_p50_ms: float = float("nan")
    latency_p99_ms: float = float("nan")
    limit_violations: int = 0
    safety_clamps: int = 0
    wall_seconds: float = 0.0

    def success_rates(self) -> dict[str, float]:
        tasks = dict.fromkeys(e.task for e in self.episodes)
        return {t: float(np.mean([e.success for e in self.episodes if e.task == t])) for t in tasks}

    def mean_success(self) -> float:
        rates = self.success_rates()
        return float(np.mean(list(rates.values()))) if rates else 0.0

    def table(self) -> str:
        """Markdown: one row per task (success, mean sim time of the successful episodes), then the mean."""
        lines = [
            "| task | instruction | episodes | success | mean episode time (sim s, successes) |",
            "|---|---|---|---|---|",
        ]
        for task, rate in self.success_rates().items():
            eps = [e for e in self.episodes if e.task == task]
            ok = [e for e in eps if e.success]
            mean_t = f"{np.mean([e.sim_seconds for e in ok]):.1f}" if ok else "-"
            lines.append(
                f"| {task} | {eps[0].instruction} | {len(eps)} | {len(ok)}/{len(eps)} ({100 * rate:.0f}%) "
                f"| {mean_t} |"
            )
        lines.append(f"| **mean** | | {len(self.episodes)} | {100 * self.mean_success():.1f}% | |")
        lines.append("")
        lines.append(
            f"inference latency through the graph: p50 {self.latency_p50_ms:.0f} ms, "
            f"p99 {self.latency_p99_ms:.0f} ms; commands outside the limits received by the fake: "
            f"{self.limit_violations}; safety clamps: {self.safety_clamps}; wall time {self.wall_seconds:.0f} s"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["success_rates"] = self.success_rates()
        out["mean_success"] = self.mean_success()
        return out


def _episode_limit(robot: str, task: str, seed: int, given: float) -> float:
    """Sim seconds allowed for one episode: ``given`` or 1.5 x the scripted expert's duration + 2 s."""
    if given > 0:
        return given
    from tinyvla_ros.sim.env import make_env
    from tinyvla_ros.sim.experts import make_expert

    env = make_env(robot, image_width=8, image_height=8)
    try:
        env.reset(task, seed)
        return 1.5 * make_expert(env).duration + 2.0
    finally:
        env.close()


class _Clock:
    """Latest /clock (sim time) seen by the monitor's node."""

    def __init__(self, node: Any) -> None:
        from rosgraph_msgs.msg import Clock

        from tinyvla_ros.ros.qos import QosConfig, sensor_qos

        self._lock = threading.Lock()
        self.now = float("nan")
        node.create_subscription(Clock, "/clock", self._on_clock, sensor_qos(QosConfig("best_effort", 1)))

    def _on_clock(self, msg: Any) -> None:
        with self._lock:
            self.now = msg.clock.sec + 1e-9 * msg.clock.nanosec

    def get(self) -> float:
        with self._lock:
            return self.now


class GraphEvaluator:
    """Starts the graph once (``start``), runs episodes (``episode``), stops it (``stop``)."""

    def __init__(self, checkpoint: str | Path, cfg: GraphEvalConfig, log_dir: Path) -> None:
        from tinyvla_ros.ros.graph import GraphArgs, GraphRunner, build_graph

        self.cfg, self.checkpoint = cfg, str(checkpoint)
        extra = {
            FAKE: {
                "time_mode": "lockstep",
                "lockstep_timeout": 30.0,
                **(
                    {"image_width": cfg.image_width, "image_height": cfg.image_height}
                    if cfg.image_width
                    else {}
                ),
                "real_time_factor": cfg.real_time_factor,
                "instruction_topic": EVAL_INSTRUCTION_TOPIC,
                "diagnostics_period": 0.5,
            },
            POLICY: {
                "warmup_runs": 1,
                "num_threads": cfg.policy_threads,
                **({"engine": cfg.engine} if cfg.engine else {}),
            },
            EXECUTOR: {
                "diagnostics_period": 0.5,
                **(
                    {"faults.max_observation_age": cfg.observation_deadline}
                    if cfg.observation_deadline
                    else {}
                ),
            },
        }
        specs = build_graph(
            GraphArgs(
                cfg.robot,
                use_sim=True,
                checkpoint=self.checkpoint,
                enable_actuation=False,
                use_sim_time=True,
                execution_mode=cfg.execution_mode,
                extra_parameters=extra,
            )
        )
        self.runner = GraphRunner(specs, log_dir=log_dir)
        self.log_dir = log_dir
        self.monitor: Any = None
        self.clock: _Clock | None = None

    # --- graph ------------------------------------------------------------------------------

    def start(self) -> None:
        from tinyvla_ros.ros.fake_robot.monitor import GraphMonitor

        self.runner.start()
        self.runner.activate_lifecycle_nodes(STARTUP_TIMEOUT)
        self.monitor = GraphMonitor(name="tinyvla_graph_eval")
        self.clock = _Clock(self.monitor.node)
        self._wait(lambda: np.isfinite(self.clock.get()), 60.0, "/clock from the fake robot")

    def stop(self) -> dict[str, int]:
        if self.monitor is not None:
            self.monitor.close()
        return self.runner.stop()

    def _check_alive(self) -> None:
        dead = self.runner.dead()
        if dead:
            names = [p.spec.fqn for p in dead]
            raise RuntimeError(f"nodes died: {names}; see the logs in {self.log_dir}")

    def _wait(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            self._check_alive()
            time.sleep(0.01)
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}; logs in {self.log_dir}")

    def _call(self, srv_type: Any, name: str, request: Any, timeout: float = 30.0) -> Any:
        client = self.monitor.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise RuntimeError(f"service {name} is not available")
            return self.monitor._call(client, request, timeout)
        finally:
            self.monitor.node.destroy_client(client)

    def _set_parameters(self, node: str, **values: Any) -> None:
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request(
            parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        )
        result = self._call(SetParameters, f"/{node}/set_parameters", request)
        refused = [r.reason for r in result.results if not r.successful]
        if refused:
            raise RuntimeError(f"{node} refused {values}: {refused}")

    def _enable(self, on: bool) -> None:
        from std_srvs.srv import SetBool

        result = self._call(SetBool, f"/{EXECUTOR}/enable", SetBool.Request(data=on))
        if not result.success:
            raise RuntimeError(f"{EXECUTOR}/enable {on}: {result.message}")

    def _sim_wait(self, seconds: float, timeout: float = 120.0) -> None:
        start = self.clock.get()
        self._wait(lambda: self.clock.get() >= start + seconds, timeout, f"{seconds:g} s of sim time")

    # --- episodes -----------------------------------------------------------------------------

    def episode(self, task: str, seed: int) -> GraphEpisode:
        """One episode of ``task`` on scene ``seed`` (see the module docstring)."""
        from tinyvla_ros.sim.tasks import get_task

        cfg, monitor = self.cfg, self.monitor
        instruction = cfg.instruction or get_task(cfg.robot, task).instruction
        limit = _episode_limit(cfg.robot, task, seed, cfg.max_seconds)
        self._enable(False)
        self._set_parameters(FAKE, task=task, seed=int(seed))
        self._set_parameters(POLICY, instruction=instruction)
        first = len(monitor.success)
        monitor.reset_fake(timeout=30.0)
        self._sim_wait(cfg.settle_seconds)
        chunks0 = int(monitor.diag(POLICY).get("chunks_published", 0))
        wall0, t0 = time.monotonic(), self.clock.get()
        self._enable(True)
        success = False
        while True:
            self._check_alive()
            if any(monitor.success[first:]):
                success = True
                break
            if self.clock.get() - t0 >= limit:
                break
            time.sleep(0.01)
        sim_seconds = self.clock.get() - t0
        chunks = int(monitor.diag(POLICY).get("chunks_published", 0)) - chunks0
        return GraphEpisode(
            task, int(seed), instruction, success, sim_seconds, time.monotonic() - wall0, chunks
        )

    def run(self, progress: bool = True) -> GraphEvalResults:
        """Every (task, seed) of the config, in order; the graph must be started."""
        from tinyvla_ros.sim.tasks import task_names

        cfg = self.cfg
        results = GraphEvalResults(cfg.robot, self.checkpoint)
        wall0 = time.monotonic()
        clamps0 = int(self.monitor.diag(EXECUTOR).get("safety_clamps_total", 0))
        for task in cfg.tasks or task_names(cfg.robot):
            for seed in cfg.seeds:
                ep = self.episode(task, int(seed))
                results.episodes.append(ep)
                if progress:
                    print(
                        f"{'ok  ' if ep.success else 'FAIL'} {task} seed {seed}: {ep.sim_seconds:.1f} s sim, "
                        f"{ep.wall_seconds:.1f} s wall, {ep.chunks} chunks",
                        flush=True,
                    )
        self._enable(False)
        policy, executor = self.monitor.diag(POLICY), self.monitor.diag(EXECUTOR)
        results.latency_p50_ms = float(policy.get("inference_latency_p50_ms", float("nan")))
        results.latency_p99_ms = float(policy.get("inference_latency_p99_ms", float("nan")))
        results.safety_clamps = int(executor.get("safety_clamps_total", 0)) - clamps0
        results.limit_violations = int(self.monitor.limit_violations)
        results.wall_seconds = time.monotonic() - wall0
        return results


def evaluate_graph(
    checkpoint: str | Path, cfg: GraphEvalConfig, log_dir: str | Path, progress: bool = True
) -> GraphEvalResults:
    """Start the graph, run every episode of ``cfg``, stop the graph; returns the results."""
    evaluator = GraphEvaluator(checkpoint, cfg, Path(log_dir))
    try:
        evaluator.start()
        return evaluator.run(progress)
    finally:
        evaluator.stop()


def _interrupt(signum, _frame) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """``tinyvla-graph-eval CHECKPOINT --robot franka --seeds 1000-1049 [--json out.json]``"""
    from tinyvla_ros.data.demos import parse_seeds

    p = argparse.ArgumentParser(prog="tinyvla-graph-eval", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="checkpoint directory (e.g. models/franka)")
    p.add_argument("--robot", default="franka", choices=SETUPS)
    p.add_argument("--tasks", nargs="+", default=None)
    p.add_argument("--seeds", default="1000-1004", help="scene seeds, e.g. 1000-1049")
    p.add_argument("--instruction", default="", help="give the policy this instruction in every episode")
    p.add_argument("--max-seconds", type=float, default=0.0, help="sim s per episode (0: per-task default)")
    p.add_argument("--execution-mode", default="")
    p.add_argument("--width", type=int, default=0, help="camera width (0: the params file's fake cameras)")
    p.add_argument("--height", type=int, default=0, help="camera height (0: the params file's)")
    p.add_argument("--engine", default="", help="inference engine ('': the params file's)")
    p.add_argument("--policy-threads", type=int, default=1)
    p.add_argument(
        "--real-time-factor",
        type=float,
        default=1.0,
        help="cap on sim speed (1: sim time never outruns the wall clock, so inference costs "
        "its real time in sim time; 0: no cap)",
    )
    p.add_argument(
        "--observation-deadline",
        type=float,
        default=0.0,
        help="executor faults.max_observation_age in s for this run (0: the params file's 0.18; "
        "make demo uses 0.35 on a CPU)",
    )
    p.add_argument("--log-dir", default="out/graph_eval_logs")
    p.add_argument("--json", default="", help="also write the results as JSON here")
    args = p.parse_args(argv)
    # SIGTERM (``timeout``, a supervisor) would end this process and leave the graph's nodes, each
    # in its own session, running; as KeyboardInterrupt it stops them first (evaluate_graph's finally)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        cfg = GraphEvalConfig(
            robot=args.robot,
            tasks=tuple(args.tasks) if args.tasks else None,
            seeds=tuple(parse_seeds(args.seeds)),
            instruction=args.instruction,
            max_seconds=args.max_seconds,
            execution_mode=args.execution_mode,
            image_width=args.width,
            image_height=args.height,
            engine=args.engine,
            policy_threads=args.policy_threads,
            real_time_factor=args.real_time_factor,
            observation_deadline=args.observation_deadline,
        )
        results = evaluate_graph(args.checkpoint, cfg, args.log_dir)
    except (ValueError, FileNotFoundError, RuntimeError, TimeoutError) as exc:
        print(f"tinyvla-graph-eval: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tinyvla-graph-eval: interrupted: the graph was stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(results.table())
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results.to_dict(), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
