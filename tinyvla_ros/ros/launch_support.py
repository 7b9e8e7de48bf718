"""Build a ROS 2 LaunchDescription from the graph declared in ``tinyvla_ros.ros.graph``.

Used by launch/franka.launch.py and launch/ur5_bimanual.launch.py. ``launch`` and ``launch_ros``
are imported only when a description is generated (they cannot be installed from PyPI, so
importing this module must work without them). Each ``graph.ARGUMENTS`` entry becomes a
described ``DeclareLaunchArgument``; an ``OpaqueFunction`` reads their values, calls
``build_graph`` and returns one ``Node`` per spec (``LifecycleNode`` for lifecycle specs, which
are then configured and activated by lifecycle events, as ``tinyvla-graph`` does with services).
"""

from __future__ import annotations

from typing import Any

from tinyvla_ros.core.robots import SETUPS
from tinyvla_ros.ros.graph import ARGUMENTS, GraphArgs, NodeSpec, build_graph

PACKAGE = "tinyvla_ros"


def _import_launch() -> tuple[Any, Any]:
    try:
        import launch_ros

        import launch
    except ImportError as exc:
        raise ImportError(
            "the launch files need the ROS 2 launch system (launch, launch_ros) from a ROS 2 install; "
            "without it run the same graph with `tinyvla-graph <robot> ...`"
        ) from exc
    return launch, launch_ros


def launch_description(robot: str):
    """The LaunchDescription of ``robot`` ("franka" | "ur5_bimanual")."""
    if robot not in SETUPS:
        raise ValueError(f"robot must be one of {list(SETUPS)}, got {robot!r}")
    launch, _ = _import_launch()
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    declared = [
        DeclareLaunchArgument(a.name, default_value=a.default, description=a.description, **_choices(a))
        for a in ARGUMENTS
    ]
    return launch.LaunchDescription([*declared, OpaqueFunction(function=_nodes_for(robot))])


def _choices(argument) -> dict:
    return {"choices": list(argument.choices)} if argument.choices else {}


def _nodes_for(robot: str):
    def make(context, *args, **kwargs) -> list:
        from launch.substitutions import LaunchConfiguration

        values = {a.name: LaunchConfiguration(a.name).perform(context) for a in ARGUMENTS}
        specs = build_graph(GraphArgs(robot, **values))
        actions: list = []
        for spec in specs:
            actions += node_actions(spec)
        return actions

    return make


def node_actions(spec: NodeSpec) -> list:
    """launch_ros actions for one spec: a Node, or a LifecycleNode + configure/activate events."""
    _, launch_ros = _import_launch()
    from launch_ros.actions import LifecycleNode, Node

    common = dict(
        package=PACKAGE,
        executable=spec.console_script,
        name=spec.name,
        namespace=spec.namespace,
        parameters=[p for p in (spec.params_file, spec.parameters) if p],
        remappings=list(spec.remappings),
        output="screen",
    )
    if not spec.lifecycle:
        return [Node(**common)]
    node = LifecycleNode(**common)
    return [node, *_lifecycle_events(node)]


def _lifecycle_events(node) -> list:
    """Configure at start; activate once configuring has reached 'inactive' (not after a deactivate)."""
    from launch.actions import EmitEvent, RegisterEventHandler
    from launch.events import matches_action
    from launch_ros.event_handlers import OnStateTransition
    from launch_ros.events.lifecycle import ChangeState
    from lifecycle_msgs.msg import Transition

    def change(transition_id: int):
        return EmitEvent(
            event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition_id)
        )

    activate = RegisterEventHandler(
        OnStateTransition(
            target_lifecycle_node=node,
            start_state="configuring",
            goal_state="inactive",
            entities=[change(Transition.TRANSITION_ACTIVATE)],
        )
    )
    return [activate, change(Transition.TRANSITION_CONFIGURE)]
