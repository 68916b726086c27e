"""What every MoRE node shares: QoS profiles and parameter declaration.

Parameters are declared from :class:`ParamSpec` tables (one per node module) so the launch-file
check can compare the YAML files with what each node declares without starting ROS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

# Camera frames: best effort, shallow; a late frame is worth less than the next one.
SENSOR_QOS = qos_profile_sensor_data
# /instruction publishers: reliable. The sim's task instruction is also transient local, so
# `ros2 topic echo --qos-durability transient_local` shows the current task to a late viewer.
INSTRUCTION_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
# /instruction readers (policy, recorder): ONE reliable, volatile subscription. DDS matches a
# volatile reader with volatile (`ros2 topic pub`'s default) and transient-local writers alike,
# so neither side reports incompatible QoS. (Transient local would refuse `ros2 topic pub`; an
# adaptive "best available" reader fixes its durability when created and then warns about
# every later writer of the other kind.) A volatile reader gets what is published after it
# matched, so an instruction source waits for its reader (go2_sim_node does).
INSTRUCTION_SUBSCRIPTION_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                                          reliability=ReliabilityPolicy.RELIABLE,
                                          durability=DurabilityPolicy.VOLATILE)
# Commands: every one delivered, only the newest matters.
COMMAND_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                         reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)
# Status, episode reports, joint states, diagnostics: reliable with a short history.
STATUS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                        reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE)


@dataclass(frozen=True)
class ParamSpec:
    """One ROS parameter: name, default (its type fixes the parameter type), description.

    ``dynamic`` parameters may change while the node runs (``ros2 param set``); the node must
    read them from its live parameter table. All others are read-only after start-up, so a
    set request is rejected instead of being accepted and silently ignored.
    """

    name: str
    default: Any
    description: str
    dynamic: bool = False


def declare_parameters(node: Node, specs: tuple[ParamSpec, ...]) -> dict[str, Any]:
    """Declare ``specs`` on ``node``; returns {name: value}, kept current for dynamic ones."""
    from rcl_interfaces.msg import ParameterDescriptor

    values = {}
    for spec in specs:
        param = node.declare_parameter(
            spec.name, spec.default,
            ParameterDescriptor(description=spec.description, read_only=not spec.dynamic))
        values[spec.name] = param.value
    dynamic = {spec.name for spec in specs if spec.dynamic}
    if dynamic:
        def update(params) -> None:  # runs only after every on-set check accepted the change
            for param in params:
                if param.name in dynamic:
                    values[param.name] = param.value
        node.add_post_set_parameters_callback(update)
    return values
