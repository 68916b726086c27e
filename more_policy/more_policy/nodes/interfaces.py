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
# The last instruction survives for late joiners (a policy restarted mid-task picks it up).
INSTRUCTION_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
# Subscribers listen twice: transient local for latched publishers (late joiners), volatile for
# a plain `ros2 topic pub`, whose volatile offer a transient-local reader would not match. A
# message seen by both is the same instruction re-sent, which continues the episode.
INSTRUCTION_SUBSCRIPTION_QOS = (INSTRUCTION_QOS, QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE))
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
    """One ROS parameter: name, default (its type fixes the parameter type), description."""

    name: str
    default: Any
    description: str


def declare_parameters(node: Node, specs: tuple[ParamSpec, ...]) -> dict[str, Any]:
    """Declare ``specs`` on ``node`` with descriptions; returns {name: value}."""
    from rcl_interfaces.msg import ParameterDescriptor

    values = {}
    for spec in specs:
        param = node.declare_parameter(
            spec.name, spec.default, ParameterDescriptor(description=spec.description))
        values[spec.name] = param.value
    return values


