"""Subprocess for the cross-process message tests: echo more_msgs/<type> from /echo_in to
/echo_out until terminated. Run as `python tests/ros_echo.py Go2Command`."""

import contextlib
import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

import more_msgs.msg


def main() -> None:
    msg_type = getattr(more_msgs.msg, sys.argv[1])
    rclpy.init()
    node = Node("echo")
    pub = node.create_publisher(msg_type, "/echo_out", 10)
    node.create_subscription(msg_type, "/echo_in", pub.publish, 10)
    with contextlib.suppress(KeyboardInterrupt, ExternalShutdownException):
        rclpy.spin(node)


if __name__ == "__main__":
    main()
