"""The tinyvla_ros node graph, declared once.

``build_graph(GraphArgs(robot, ...))`` returns the nodes of a robot set-up as ``NodeSpec``s. Two
runners consume it:
- ``launch/<robot>.launch.py`` turns each spec into a launch_ros ``Node`` / ``LifecycleNode``
  (see ``tinyvla_ros.ros.launch_support``), for machines with the ROS 2 launch system;
- ``tinyvla-graph`` (``main`` below) starts the same specs as separate OS processes
  (``python -m <module> --ros-args ...``), configures and activates the lifecycle nodes through
  their lifecycle_msgs services, forwards SIGINT/SIGTERM, and exits non-zero if a node dies.

Every node reads the robot's params file (config/<robot>.yaml, or ``params_file``) and then a
small overrides file written from ``NodeSpec.parameters`` (the launch arguments).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tinyvla_ros.core.chunking import EXECUTION_MODES
from tinyvla_ros.core.robots import SETUPS
from tinyvla_ros.paths import config_dir

CAMERA_DRIVERS = ("wrapper", "direct")
ZED_NAMINGS = ("current", "legacy")
POLICY = "tinyvla_policy"
EXECUTOR = "tinyvla_executor"
FAKE_ROBOT_MODULE = "tinyvla_ros.ros.fake_robot_node"
CAMERA_MODULES = {
    "realsense": "tinyvla_ros.ros.cameras.realsense_node",
    "zed": "tinyvla_ros.ros.cameras.zed_node",
}


@dataclass(frozen=True)
class Argument:
    """One launch argument: shared by the launch files and the ``tinyvla-graph`` command line."""

    name: str
    default: str
    description: str
    choices: tuple[str, ...] = ()


ARGUMENTS: tuple[Argument, ...] = (
    Argument(
        "checkpoint",
        "",
        "TinyVLA checkpoint directory (config.json, model.safetensors, stats.json); empty: the params "
        "file's, else the shipped models/<robot>/",
    ),
    Argument("instruction", "", "language instruction; the latched 'instruction' topic can change it"),
    Argument(
        "use_sim",
        "false",
        "start the MuJoCo fake robot instead of expecting the real drivers",
        ("true", "false"),
    ),
    Argument(
        "use_sim_time", "false", "run every node on /clock (the fake robot publishes it)", ("true", "false")
    ),
    Argument(
        "enable_actuation",
        "false",
        "send commands to the controllers (false: only ~/preview)",
        ("true", "false"),
    ),
    Argument(
        "execution_mode",
        "",
        "chunk execution: open_loop | temporal_ensemble | overlap_blend | inpaint (empty: params file)",
        ("", *EXECUTION_MODES),
    ),
    Argument(
        "output",
        "",
        "executor output: forward_position | joint_trajectory | ee_pose (Franka end-effector poses for a "
        "Cartesian impedance controller; needs a franka_ee checkpoint) (empty: params file)",
        ("", "forward_position", "joint_trajectory", "ee_pose"),
    ),
    Argument(
        "engine",
        "",
        "policy inference engine: torch | torch_compile | onnx | onnx_tensorrt (empty: params file)",
        ("", "torch", "torch_compile", "onnx", "onnxruntime", "onnx_tensorrt"),
    ),
    Argument("device", "", "policy device: cpu | cuda | cuda:<i> (empty: params file)"),
    Argument(
        "precision",
        "",
        "policy precision: fp32 | bf16 | fp16 (CUDA) | int8 (engine onnx on cpu) (empty: params file)",
        ("", "fp32", "bf16", "fp16", "int8"),
    ),
    Argument("params_file", "", "ROS 2 params file for all nodes (empty: the package's config/<robot>.yaml)"),
    Argument(
        "camera_driver",
        "wrapper",
        "wrapper: subscribe to zed_wrapper/realsense2_camera topics; direct: also start our camera nodes",
        CAMERA_DRIVERS,
    ),
    Argument(
        "zed_topic_naming",
        "current",
        "ZED topic names: current (wrapper >= 5.1 rgb/color/rect/image) or legacy (rgb/image_rect_color)",
        ZED_NAMINGS,
    ),
    Argument("namespace", "", "namespace for the tinyvla nodes"),
)


@dataclass(frozen=True)
class NodeSpec:
    """One node of the graph.

    executable: the Python module run as ``python -m <executable>``;
    console_script: the installed executable of the same node (launch_ros ``executable=``);
    parameters: overrides applied after ``params_file``; lifecycle: configure + activate at start.
    """

    executable: str
    name: str
    namespace: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()
    params_file: str = ""
    lifecycle: bool = False

    @property
    def console_script(self) -> str:
        return "tinyvla_" + self.executable.rsplit(".", 1)[-1]

    @property
    def fqn(self) -> str:
        ns = "/" + self.namespace.strip("/") if self.namespace.strip("/") else ""
        return f"{ns}/{self.name}"

    def overrides_yaml(self) -> str:
        """The overrides params file content for this node (every string quoted: rcl's parser reads
        a bare y / n / on / off as a bool, e.g. the action name "y" of franka_ee)."""
        return yaml.dump(
            {self.fqn: {"ros__parameters": self.parameters}}, Dumper=_QuotingDumper, sort_keys=True
        )

    def command(self, overrides_file: str | None, python: str = sys.executable) -> list[str]:
        """argv starting this node as its own process."""
        argv = [python, "-m", self.executable, "--ros-args", "-r", f"__node:={self.name}"]
        if self.namespace.strip("/"):
            argv += ["-r", f"__ns:=/{self.namespace.strip('/')}"]
        if self.params_file:
            argv += ["--params-file", self.params_file]
        if overrides_file:
            argv += ["--params-file", overrides_file]
        for src, dst in self.remappings:
            argv += ["-r", f"{src}:={dst}"]
        return argv


class _QuotingDumper(yaml.SafeDumper):
    """SafeDumper that writes every string in single quotes."""


_QuotingDumper.add_representer(
    str, lambda dumper, data: dumper.represent_scalar("tag:yaml.org,2002:str", data, style="'")
)


def _flag(value: bool | str, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1", "yes"):
        return True
    if str(value).lower() in ("false", "0", "no", ""):
        return False
    raise ValueError(f"{name} must be true or false, got {value!r}")


def default_params_file(robot: str) -> Path:
    """config/<robot>.yaml of the package."""
    if robot not in SETUPS:
        raise ValueError(f"robot must be one of {list(SETUPS)}, got {robot!r}")
    return config_dir() / f"{robot}.yaml"


def node_section(params: dict, node_name: str) -> dict:
    """The ros__parameters of ``node_name`` in a loaded params file (``/**/name`` or ``name`` keys)."""
    for key, value in params.items():
        if key.strip("/").split("/")[-1] == node_name and isinstance(value, dict):
            return value.get("ros__parameters", {})
    raise ValueError(f"params file has no section for node {node_name!r} (keys: {list(params)})")


def load_params_file(path: str | os.PathLike) -> dict:
    """A ROS 2 params file as a dict; ValueError naming the file (and the YAML error) when malformed."""
    try:
        with open(path, encoding="utf-8") as f:
            params = yaml.safe_load(f) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"params file {str(path)!r} is not valid YAML: {exc}") from exc
    if not isinstance(params, dict) or not all(isinstance(v, dict) for v in params.values()):
        raise ValueError(
            f"params file {str(path)!r} must map node names to {{ros__parameters: ...}}, got {type(params).__name__}"
        )
    return params


def _zed_legacy_topic(topic: str) -> str:
    """/<ns>/zed_node/rgb/color/rect/image -> /<ns>/zed_node/rgb/image_rect_color (older wrappers)."""
    suffix = "/rgb/color/rect/image"
    return topic[: -len(suffix)] + "/rgb/image_rect_color" if topic.endswith(suffix) else topic


def _camera_nodes(
    cameras: dict, camera_names: list[str], params_file: str, zed_naming: str
) -> list[NodeSpec]:
    """Our own camera driver nodes (camera_driver:=direct), one per camera, on the wrapper topic names.

    RealSense: node <name> in namespace <ns> for /<ns>/<name>/color/image_raw (serial_no from
    cameras.<cam>.serial); ZED: node zed_node in namespace <name> (serial_number from .serial).
    """
    specs = []
    for name in camera_names:
        cam = cameras.get(name, {})
        driver = cam.get("driver", "")
        if driver not in CAMERA_MODULES:
            raise ValueError(
                f"camera {name!r}: direct driver needs cameras.{name}.driver zed|realsense, got {driver!r}"
            )
        module = CAMERA_MODULES[driver]
        if importlib.util.find_spec(module) is None:
            raise NotImplementedError(f"camera_driver:=direct needs {module}, which this installation lacks")
        parts = cam.get("topic", "").strip("/").split("/")
        if len(parts) < 3:
            raise ValueError(f"camera {name!r}: cannot derive a driver node from topic {cam.get('topic')!r}")
        namespace, node_name = parts[0], parts[1]  # /<ns>/<node>/... (realsense2_camera and zed_wrapper)
        serial = str(cam.get("serial", "") or "")
        if driver == "realsense":
            parameters = {"camera_namespace": namespace, "camera_name": node_name, "serial_no": serial}
        else:
            parameters = {
                "camera_name": namespace,
                "serial_number": int(serial) if serial.isdigit() else 0,
                "encoding": cam.get("encoding", "bgra8"),
                "topic_generation": zed_naming,
            }
        specs.append(NodeSpec(module, node_name, namespace, parameters, params_file=params_file))
    return specs


@dataclass(frozen=True)
class GraphArgs:
    """What ``build_graph`` builds: a robot set-up ("franka" | "ur5_bimanual") and its launch arguments.

    One field per ``ARGUMENTS`` entry (same name and meaning), plus ``extra_parameters``: more
    overrides per node name (e.g. {"tinyvla_executor": {"control_rate": 50.0}}). Flags take a bool
    or the launch system's strings ("true" / "false"); empty strings keep the params file's values.
    """

    robot: str
    use_sim: bool | str = False
    checkpoint: str = ""
    instruction: str = ""
    enable_actuation: bool | str = False
    execution_mode: str = ""
    params_file: str | os.PathLike = ""
    camera_driver: str = "wrapper"
    zed_topic_naming: str = "current"
    namespace: str = ""
    use_sim_time: bool | str = False
    output: str = ""
    engine: str = ""
    device: str = ""
    precision: str = ""
    extra_parameters: dict[str, dict[str, Any]] = field(default_factory=dict)


def build_graph(args: GraphArgs) -> list[NodeSpec]:
    """The nodes of one robot set-up (see GraphArgs).

    Raises ValueError on a bad argument and NotImplementedError when a requested optional node is
    not installed.
    """
    params_path = _checked_params_file(args)
    params = load_params_file(params_path)
    policy_params = node_section(params, POLICY)
    node_section(params, EXECUTOR)  # must exist too
    common = {"use_sim_time": True} if _flag(args.use_sim_time, "use_sim_time") else {}
    executor = dict(common, enable_actuation=_flag(args.enable_actuation, "enable_actuation"))
    policy_output, executor_output = _output_parameters(args)
    policy = {**common, **_policy_parameters(args, policy_params), **policy_output}
    if args.execution_mode:
        executor["execution_mode"] = args.execution_mode
    executor.update(executor_output)
    policy.update(args.extra_parameters.get(POLICY, {}))
    executor.update(args.extra_parameters.get(EXECUTOR, {}))
    nodes = []
    if _flag(args.use_sim, "use_sim"):
        nodes.append(_fake_robot(args, common, params_path))
        # the fake serves the gripper command topic, not franka_msgs actions (which `auto` would
        # pick where franka_msgs is installed)
        executor.setdefault("gripper_output", "topic")
    elif args.camera_driver == "direct":
        cameras, names = policy_params.get("cameras", {}), list(policy_params.get("camera_names", []))
        nodes += _camera_nodes(cameras, names, params_path, args.zed_topic_naming)
    return [
        NodeSpec(
            "tinyvla_ros.ros.policy_node",
            POLICY,
            args.namespace,
            policy,
            params_file=params_path,
            lifecycle=True,
        ),
        NodeSpec(
            "tinyvla_ros.ros.executor_node", EXECUTOR, args.namespace, executor, params_file=params_path
        ),
        *nodes,
    ]


def _checked_params_file(args: GraphArgs) -> str:
    """The params file to use, once the robot, camera_driver and zed_topic_naming are checked."""
    params_path = (
        str(Path(args.params_file).expanduser())
        if str(args.params_file)
        else str(default_params_file(args.robot))
    )
    if args.robot not in SETUPS:
        raise ValueError(f"robot must be one of {list(SETUPS)}, got {args.robot!r}")
    if args.camera_driver not in CAMERA_DRIVERS:
        raise ValueError(f"camera_driver must be one of {list(CAMERA_DRIVERS)}, got {args.camera_driver!r}")
    if args.zed_topic_naming not in ZED_NAMINGS:
        raise ValueError(
            f"zed_topic_naming must be one of {list(ZED_NAMINGS)}, got {args.zed_topic_naming!r}"
        )
    if not Path(params_path).is_file():
        raise ValueError(f"params_file not found: {params_path!r}")
    return params_path


def shipped_checkpoint(robot: str) -> str:
    """The embedded default policy of ``robot`` (``models/<robot>/`` installed with the package), or
    '' when none ships: what the graph runs when neither the argument nor the params file names one."""
    from tinyvla_ros.paths import models_dir

    default = models_dir() / robot
    return str(default) if (default / "config.json").is_file() else ""


def _policy_parameters(args: GraphArgs, policy_params: dict) -> dict[str, Any]:
    """The policy's overrides: checkpoint, instruction, engine/device/precision, legacy ZED topics."""
    policy: dict[str, Any] = {}
    if args.checkpoint:
        policy["checkpoint"] = str(Path(args.checkpoint).expanduser())
    elif not policy_params.get("checkpoint") and (shipped := shipped_checkpoint(args.robot)):
        policy["checkpoint"] = shipped
    if args.instruction:
        policy["instruction"] = args.instruction
    for key in ("engine", "device", "precision"):
        if value := getattr(
            args, key
        ):  # checked by the policy node at configure (one message for a bad combination)
            policy[key] = str(value)
    if args.zed_topic_naming == "legacy":
        cameras = policy_params.get("cameras", {})
        for name in policy_params.get("camera_names", []):
            if cameras.get(name, {}).get("driver") == "zed":
                policy[f"cameras.{name}.topic"] = _zed_legacy_topic(cameras[name].get("topic", ""))
    return policy


def _output_parameters(args: GraphArgs) -> tuple[dict[str, Any], dict[str, Any]]:
    """(policy, executor) overrides of the ``output`` argument."""
    if not args.output:
        return {}, {}
    if args.output != "ee_pose":
        return {}, {"output": args.output}
    # end-effector actions: the policy's action names and the executor's layout change with the
    # output (a franka_ee checkpoint, 10-D)
    if args.robot != "franka":
        raise ValueError(f"output ee_pose needs the franka set-up (a franka_ee layout), got {args.robot!r}")
    from tinyvla_ros.core.robots import ActionLayout

    return {"action_names": list(ActionLayout.franka_ee().names)}, {
        "output": "ee_pose",
        "action_layout": "franka_ee",
    }


def _fake_robot(args: GraphArgs, common: dict[str, Any], params_path: str) -> NodeSpec:
    """The MuJoCo fake robot (use_sim:=true)."""
    if importlib.util.find_spec(FAKE_ROBOT_MODULE) is None:
        raise NotImplementedError(
            f"use_sim:=true needs the MuJoCo fake robot node {FAKE_ROBOT_MODULE}, which this installation lacks"
        )
    fake = dict(common, setup=args.robot, zed_topic_naming=args.zed_topic_naming)
    fake.update(args.extra_parameters.get("tinyvla_fake_robot", {}))
    return NodeSpec(FAKE_ROBOT_MODULE, "tinyvla_fake_robot", "", fake, params_file=params_path)


# --- running the graph as OS processes -----------------------------------------------------


class NodeProcess:
    """One node running as a child process (own session: signals are forwarded explicitly)."""

    def __init__(
        self, spec: NodeSpec, workdir: Path, env: dict[str, str] | None = None, log_dir: Path | None = None
    ):
        self.spec = spec
        overrides = workdir / f"{spec.fqn.strip('/').replace('/', '__')}.yaml"
        overrides.write_text(spec.overrides_yaml(), encoding="utf-8")
        self.log_path = (log_dir / f"{spec.fqn.strip('/').replace('/', '__')}.log") if log_dir else None
        out = open(self.log_path, "wb") if self.log_path else None  # closed in stop()
        self._out = out
        self.proc = subprocess.Popen(
            spec.command(str(overrides)),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )
        self._interrupted_at: float | None = None  # monotonic time of the SIGINT sent, if any

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            if sig == signal.SIGINT and self._interrupted_at is None:
                self._interrupted_at = time.monotonic()
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT (once: a second one would interrupt the node's own shutdown), then SIGTERM, then
        SIGKILL; returns the exit code."""
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            if sig == signal.SIGINT and self._interrupted_at is not None:
                wait = max(0.0, self._interrupted_at + timeout - time.monotonic())
            else:
                self.signal(sig)
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        if self._out is not None:
            self._out.close()
        return self.proc.returncode


class GraphRunner:
    """Start specs as processes, bring lifecycle nodes to active, watch them, stop them."""

    def __init__(
        self, specs: Sequence[NodeSpec], env: dict[str, str] | None = None, log_dir: Path | None = None
    ):
        self.specs = list(specs)
        self.env = env
        self.log_dir = Path(log_dir) if log_dir else None
        self.processes: list[NodeProcess] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="tinyvla_graph_")

    def start(self) -> None:
        """Spawn every node."""
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        for spec in self.specs:
            self.processes.append(NodeProcess(spec, Path(self._tmp.name), self.env, self.log_dir))

    def activate_lifecycle_nodes(self, timeout: float = 180.0) -> None:
        """configure + activate every lifecycle node; LifecycleError (with the node) on failure."""
        import rclpy

        from tinyvla_ros.ros.lifecycle_client import LifecycleClient

        context = rclpy.Context()
        rclpy.init(context=context)
        node = rclpy.create_node("tinyvla_graph_manager", context=context)
        try:
            for spec, proc in zip(self.specs, self.processes, strict=True):
                if not spec.lifecycle:
                    continue
                client = LifecycleClient(node, spec.fqn)
                client.wait_for_services(timeout, alive=proc.alive)
                if client.state() == "unconfigured":
                    client.transition("configure", timeout)
                client.transition("activate", timeout)
                client.destroy()
        finally:
            node.destroy_node()
            rclpy.shutdown(context=context)

    def dead(self) -> list[NodeProcess]:
        """Processes that have exited."""
        return [p for p in self.processes if not p.alive()]

    def stop(self) -> dict[str, int]:
        """Stop all nodes (SIGINT first); returns {fqn: exit code}."""
        for p in self.processes:
            p.signal(signal.SIGINT)
        codes = {p.spec.fqn: p.stop() for p in self.processes}
        self._tmp.cleanup()
        return codes


def _parse_set(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """["tinyvla_executor.control_rate=50", ...] -> {"tinyvla_executor": {"control_rate": 50}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        node, dot, param = key.partition(".")
        if not sep or not dot or not param:
            raise ValueError(f"--set expects NODE.PARAM=VALUE, got {item!r}")
        out.setdefault(node, {})[param] = yaml.safe_load(value)
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line of ``tinyvla-graph`` (the launch arguments, plus running options)."""
    parser = argparse.ArgumentParser(
        prog="tinyvla-graph",
        description="Start the tinyvla_ros node graph as separate processes (no launch system).",
    )
    parser.add_argument("robot", choices=SETUPS)
    for arg in ARGUMENTS:
        kw: dict[str, Any] = {"default": arg.default, "help": arg.description}
        if arg.choices:
            kw["choices"] = arg.choices
        parser.add_argument(f"--{arg.name.replace('_', '-')}", dest=arg.name, **kw)
    parser.add_argument(
        "--set", action="append", default=[], metavar="NODE.PARAM=VALUE", help="extra parameter"
    )
    parser.add_argument(
        "--duration", type=float, default=0.0, help="stop after this many seconds (0: run until ^C)"
    )
    parser.add_argument("--log-dir", default="", help="write each node's output to <dir>/<node>.log")
    parser.add_argument(
        "--startup-timeout", type=float, default=180.0, help="seconds allowed to configure+activate"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """``tinyvla-graph ROBOT [--checkpoint DIR] ...``: run the graph; non-zero exit if a node dies."""
    args = parse_args(argv)
    try:
        specs = build_graph(
            GraphArgs(
                args.robot,
                **{a.name: getattr(args, a.name) for a in ARGUMENTS},
                extra_parameters=_parse_set(args.set),
            )
        )
    except (ValueError, NotImplementedError) as exc:
        print(f"tinyvla-graph: {exc}", file=sys.stderr)
        return 2
    return run_graph(specs, args.duration, Path(args.log_dir) if args.log_dir else None, args.startup_timeout)


def run_graph(
    specs: Sequence[NodeSpec], duration: float, log_dir: Path | None, startup_timeout: float
) -> int:
    """Run ``specs`` until SIGINT/SIGTERM, ``duration`` s, or a node's death (-> exit code 1).

    A signal during start-up aborts it (exit code 130); afterwards it stops the graph cleanly (0).
    """
    state = {"stop": False, "starting": True}

    def on_signal(signum, _frame) -> None:
        state["stop"] = True
        if state["starting"]:
            raise KeyboardInterrupt

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    runner = GraphRunner(specs, log_dir=log_dir)
    code = 0
    try:
        runner.start()
        print(f"tinyvla-graph: started {[s.fqn for s in specs]}", flush=True)
        runner.activate_lifecycle_nodes(startup_timeout)
        state["starting"] = False
        print("tinyvla-graph: lifecycle nodes active", flush=True)
        code = _watch(runner, duration, state)
    except KeyboardInterrupt:
        print("tinyvla-graph: interrupted during start-up", file=sys.stderr)
        code = 130
    except Exception as exc:  # noqa: BLE001 - report any start-up failure, then stop the children
        print(f"tinyvla-graph: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 1
    finally:
        state["starting"] = False
        codes = runner.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    print(f"tinyvla-graph: stopped {codes}", flush=True)
    return code


def _watch(runner: GraphRunner, duration: float, state: dict) -> int:
    """Poll the children until a stop request, the deadline (0), or a death (1)."""
    deadline = time.monotonic() + duration if duration > 0 else float("inf")
    while not state["stop"] and time.monotonic() < deadline:
        dead = runner.dead()
        if dead:
            names = ", ".join(f"{p.spec.fqn} (exit {p.proc.returncode})" for p in dead)
            print(f"tinyvla-graph: node died: {names}", file=sys.stderr)
            return 1
        time.sleep(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
