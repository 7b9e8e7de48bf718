"""Params files, parameter declaration, the graph declaration and the launch files."""

from __future__ import annotations

import dataclasses
import importlib.util
import runpy

import pytest
import rclpy
import yaml
from rclpy.parameter import Parameter

from tinyvla_ros.core.robots import make_action_layout
from tinyvla_ros.paths import config_dir, launch_dir
from tinyvla_ros.ros.graph import (
    ARGUMENTS,
    EXECUTOR,
    POLICY,
    GraphArgs,
    NodeSpec,
    _parse_set,
    build_graph,
    node_section,
    parse_args,
)
from tinyvla_ros.ros.params import (
    CameraSpec,
    ExecutorNodeConfig,
    PolicyNodeConfig,
    coerce,
    declare_dataclass,
    declare_policy_config,
)


def load(robot: str) -> dict:
    with open(config_dir() / f"{robot}.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture
def node():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    nodes = []

    def make(**overrides):
        n = rclpy.create_node(
            f"cfg_{len(nodes)}",
            context=ctx,
            parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()],
        )
        nodes.append(n)
        return n

    yield make
    for n in nodes:
        n.destroy_node()
    rclpy.shutdown(context=ctx)


@pytest.mark.parametrize(
    "robot, layout", [("franka", "franka_joint"), ("ur5_bimanual", "ur5_bimanual_joint")]
)
def test_params_files_build_valid_configs_that_agree(robot, layout):
    params = load(robot)
    policy = node_section(params, POLICY)
    cameras = {n: CameraSpec(**policy["cameras"][n]) for n in policy["camera_names"]}
    pcfg = PolicyNodeConfig(**{k: v for k, v in policy.items() if k != "cameras"}, cameras=cameras)
    executor = dict(node_section(params, EXECUTOR))
    from tinyvla_ros.core.control import FaultChecks
    from tinyvla_ros.core.realtime import RealtimeConfig
    from tinyvla_ros.ros.command_guard import CommandGuardConfig

    checks = FaultChecks(**executor.pop("faults", {}))
    guard = CommandGuardConfig(**executor.pop("guard", {}))
    realtime = RealtimeConfig(**executor.pop("realtime", {}))
    assert realtime.priority > 0 and realtime.lock_memory  # the shipped files ask; the node falls back
    assert guard.enabled and list(guard.allowed_chunk_publishers) == ["tinyvla_policy"]
    assert checks.chunk_limit_tolerance > 0
    ecfg = ExecutorNodeConfig(**executor)
    assert ecfg.action_layout == layout and ecfg.enable_actuation is False
    prefixes = ecfg.arm_prefixes
    kw = {"left_prefix": prefixes[0], "right_prefix": prefixes[1]} if len(prefixes) == 2 else {}
    assert tuple(pcfg.action_names) == make_action_layout(layout, **kw).names
    assert pcfg.action_dt == ecfg.action_dt
    assert pcfg.qos_reliability == "reliable"


def test_franka_config_uses_the_real_driver_names():
    policy = node_section(load("franka"), POLICY)
    assert policy["cameras"]["zed_left"]["topic"] == "/zed_left/zed_node/rgb/color/rect/image"
    assert policy["cameras"]["zed_left"]["encoding"] == "bgra8"
    assert policy["state_joint_names"][:7] == [f"fr3_joint{i}" for i in range(1, 8)]
    executor = node_section(load("franka"), EXECUTOR)
    assert executor["forward_command_topics"] == ["/forward_position_controller/commands"]
    ur5 = node_section(load("ur5_bimanual"), POLICY)
    assert [ur5["cameras"][n]["topic"] for n in ur5["camera_names"]] == [
        "/camera/wrist_left/color/image_raw",
        "/camera/wrist_right/color/image_raw",
        "/camera/top/color/image_raw",
    ]
    assert node_section(load("ur5_bimanual"), EXECUTOR)["trajectory_command_topics"][0] == (
        "/left_scaled_joint_trajectory_controller/joint_trajectory"
    )


def test_declare_reads_typed_parameters_and_names_bad_ones(node):
    base = {"arm_prefixes": ["l_"], "forward_command_topics": ["/c"], "gripper_output": "none"}
    cfg = declare_dataclass(node(robot="ur5", control_rate=100, **base), ExecutorNodeConfig)
    assert cfg.control_rate == 100.0 and isinstance(cfg.control_rate, float) and cfg.arm_prefixes == ["l_"]
    with pytest.raises(ValueError, match="'hold_after' must be of type float, got 'soon'"):
        declare_dataclass(node(hold_after="soon", **base), ExecutorNodeConfig)
    with pytest.raises(ValueError, match="'execution_mode' must be one of"):
        declare_dataclass(node(execution_mode="x", **base), ExecutorNodeConfig)
    with pytest.raises(ValueError, match="'gripper_topics' needs 1 topics"):
        declare_dataclass(node(**{**base, "gripper_output": "topic"}), ExecutorNodeConfig)
    with pytest.raises(ValueError, match="forward_command_topics.*one topic per arm"):
        declare_dataclass(node(**{**base, "arm_prefixes": ["l_", "r_"]}), ExecutorNodeConfig)


def test_policy_cameras_come_from_nested_parameters(node):
    n = node(
        camera_names=["a", "b"],
        state_joint_names=["j"],
        action_names=["x"],
        **{"cameras.a.topic": "/a/img", "cameras.b.topic": "/b/img", "cameras.b.transport": "compressed"},
    )
    cfg = declare_policy_config(n)
    assert cfg.cameras["a"].topic == "/a/img" and cfg.cameras["b"].transport == "compressed"
    with pytest.raises(ValueError, match="cameras.c: .*topic"):
        declare_policy_config(node(camera_names=["c"], state_joint_names=["j"], action_names=["x"]))


def test_coerce():
    assert coerce("p", "list[float]", [1, 2.5]) == [1.0, 2.5]
    assert coerce("p", "list[str]", None) == []
    with pytest.raises(ValueError, match="'p' must be of type int"):
        coerce("p", "int", True)


def test_build_graph_franka_defaults_and_overrides(tmp_path):
    specs = build_graph(
        GraphArgs(
            "franka", checkpoint="~/ckpt", instruction="pick up the red cube", execution_mode="open_loop"
        )
    )
    policy, executor = specs
    assert (policy.name, policy.lifecycle, executor.lifecycle) == (POLICY, True, False)
    assert policy.parameters["instruction"] == "pick up the red cube"
    assert not policy.parameters["checkpoint"].startswith("~")
    assert executor.parameters == {"enable_actuation": False, "execution_mode": "open_loop"}
    assert policy.params_file.endswith("config/franka.yaml")
    legacy = build_graph(GraphArgs("franka", zed_topic_naming="legacy"))[0].parameters
    assert legacy["cameras.zed_left.topic"] == "/zed_left/zed_node/rgb/image_rect_color"
    ns = build_graph(GraphArgs("ur5_bimanual", namespace="cell1", use_sim_time=True, enable_actuation="true"))
    assert ns[0].fqn == "/cell1/tinyvla_policy" and ns[1].parameters["enable_actuation"] is True
    assert ns[1].parameters["use_sim_time"] is True
    onnx = build_graph(GraphArgs("franka", engine="onnx", device="cpu", precision="int8"))[0].parameters
    assert (onnx["engine"], onnx["device"], onnx["precision"]) == ("onnx", "cpu", "int8")
    assert not {"engine", "device", "precision"} & set(specs[0].parameters)  # empty: the params file's
    with pytest.raises(ValueError, match="robot must be one of"):
        build_graph(GraphArgs("kuka"))
    with pytest.raises(ValueError, match="enable_actuation must be true or false"):
        build_graph(GraphArgs("franka", enable_actuation="maybe"))
    with pytest.raises(ValueError, match="params_file not found"):
        build_graph(GraphArgs("franka", params_file=tmp_path / "none.yaml"))


def test_ee_pose_output_switches_the_policy_and_executor_to_end_effector_actions():
    policy, executor = build_graph(GraphArgs("franka", output="ee_pose"))
    assert executor.parameters["output"] == "ee_pose"
    assert executor.parameters["action_layout"] == "franka_ee"
    names = policy.parameters["action_names"]
    assert len(names) == 10 and names[:3] == ["x", "y", "z"] and names[-1] == "gripper"
    text = policy.overrides_yaml()  # rcl reads a bare y as a bool: every string is quoted
    assert "- 'y'" in text and yaml.safe_load(text) == {policy.fqn: {"ros__parameters": policy.parameters}}
    joint = build_graph(GraphArgs("franka", output="joint_trajectory"))
    assert "action_names" not in joint[0].parameters  # the params file's joint names stay
    with pytest.raises(ValueError, match="ee_pose needs the franka set-up"):
        build_graph(GraphArgs("ur5_bimanual", output="ee_pose"))


def test_use_sim_needs_the_fake_robot():
    if importlib.util.find_spec("tinyvla_ros.ros.fake_robot_node") is None:
        with pytest.raises(NotImplementedError, match="fake_robot_node"):
            build_graph(GraphArgs("franka", use_sim=True))
    else:
        specs = build_graph(GraphArgs("franka", use_sim=True))
        assert specs[-1].executable == "tinyvla_ros.ros.fake_robot_node"


def test_direct_camera_driver_adds_camera_nodes_on_the_wrapper_names():
    specs = build_graph(GraphArgs("ur5_bimanual", camera_driver="direct"))
    cams = [s for s in specs if s.executable.startswith("tinyvla_ros.ros.cameras.")]
    assert [(s.namespace, s.name) for s in cams] == [
        ("camera", "wrist_left"),
        ("camera", "wrist_right"),
        ("camera", "top"),
    ]
    assert cams[0].parameters == {"camera_namespace": "camera", "camera_name": "wrist_left", "serial_no": ""}
    zed = [
        s
        for s in build_graph(GraphArgs("franka", camera_driver="direct", zed_topic_naming="legacy"))
        if "zed" in s.executable
    ]
    assert [(s.namespace, s.name) for s in zed] == [("zed_left", "zed_node"), ("zed_right", "zed_node")]
    assert (
        zed[1].parameters["camera_name"] == "zed_right" and zed[1].parameters["topic_generation"] == "legacy"
    )


def test_node_spec_command_line_and_overrides():
    spec = NodeSpec(
        "tinyvla_ros.ros.executor_node",
        "tinyvla_executor",
        "ns",
        {"control_rate": 50.0},
        params_file="/p.yaml",
    )
    argv = spec.command("/o.yaml", python="py")
    assert argv[:3] == ["py", "-m", "tinyvla_ros.ros.executor_node"]
    assert argv[3:] == [
        "--ros-args",
        "-r",
        "__node:=tinyvla_executor",
        "-r",
        "__ns:=/ns",
        "--params-file",
        "/p.yaml",
        "--params-file",
        "/o.yaml",
    ]
    assert yaml.safe_load(spec.overrides_yaml()) == {
        "/ns/tinyvla_executor": {"ros__parameters": {"control_rate": 50.0}}
    }
    assert spec.console_script == "tinyvla_executor_node"
    assert _parse_set(["tinyvla_executor.control_rate=50", "tinyvla_policy.cameras.a.topic=/x"]) == {
        "tinyvla_executor": {"control_rate": 50},
        "tinyvla_policy": {"cameras.a.topic": "/x"},
    }
    with pytest.raises(ValueError, match="NODE.PARAM=VALUE"):
        _parse_set(["control_rate=50"])


def test_launch_arguments_match_build_graph_and_cli():
    params = {f.name for f in dataclasses.fields(GraphArgs)}
    assert all(a.name in params for a in ARGUMENTS) and all(a.description for a in ARGUMENTS)
    args = parse_args(["franka", "--use-sim", "true", "--execution-mode", "overlap_blend"])
    assert (args.use_sim, args.execution_mode, args.camera_driver) == ("true", "overlap_blend", "wrapper")
    args = parse_args(["franka", "--engine", "onnx", "--precision", "int8"])
    assert (args.engine, args.device, args.precision) == ("onnx", "", "int8")
    with pytest.raises(SystemExit):
        parse_args(["franka", "--precision", "int4"])


@pytest.mark.parametrize("robot", ["franka", "ur5_bimanual"])
def test_launch_files_import_without_the_launch_system(robot):
    module = runpy.run_path(str(launch_dir() / f"{robot}.launch.py"))
    assert module["ROBOT"] == robot and callable(module["generate_launch_description"])
    if importlib.util.find_spec("launch_ros") is None:
        with pytest.raises(ImportError, match="tinyvla-graph"):
            module["generate_launch_description"]()


@pytest.mark.parametrize("robot", ["franka", "ur5_bimanual"])
def test_launch_files_build_a_description_with_launch_ros(robot):
    pytest.importorskip(
        "launch_ros", reason="launch_ros is not installable from PyPI; runs on ROS 2 machines"
    )
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    from launch import LaunchContext

    description = runpy.run_path(str(launch_dir() / f"{robot}.launch.py"))["generate_launch_description"]()
    declared = {a.name: a for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    assert set(declared) == {a.name for a in ARGUMENTS} and all(a.description for a in declared.values())
    context = LaunchContext()
    for action in declared.values():
        action.visit(context)
    opaque = next(a for a in description.entities if isinstance(a, OpaqueFunction))
    nodes = opaque.execute(context)
    assert len(nodes) >= 2
