"""A node executable's spin: a Ctrl-C that shuts the context down between building the nodes
and creating the executor (seen in CI on a loaded machine) is a clean exit, not an RCLError."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.ros]

rclpy = pytest.importorskip("rclpy")

from ros_procs import isolated_domain  # noqa: E402

from more_policy.nodes.runner import spin_nodes  # noqa: E402


def test_shutdown_before_the_executor_exists_returns_and_destroys_the_nodes():
    with isolated_domain():
        rclpy.init()
        node = rclpy.create_node("built_then_interrupted")
        destroyed = []
        destroy = node.destroy_node
        node.destroy_node = lambda: destroyed.append(True) or destroy()
        rclpy.shutdown()  # what rclpy's SIGINT handler does
        spin_nodes([node])
        assert destroyed == [True] and not rclpy.ok()
