"""more_msgs over real DDS: each message crosses two OS processes and comes back intact."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")
more_msgs = pytest.importorskip("more_msgs.msg")

from more_policy.actions import ActionSpace  # noqa: E402
from more_policy.nodes.go2_command import to_go2_command  # noqa: E402


def go2_command():
    space = ActionSpace()
    values = space.decode(np.arange(12) * 21)
    return to_go2_command(space, values, token_offset=2000, episode_id=3)


def policy_status():
    msg = more_msgs.PolicyStatus()
    msg.instruction = "go to the red ball"
    msg.episode_id = 3
    msg.state = "running"
    msg.prefill_ms, msg.decode_ms, msg.total_ms = 12.5, 30.25, 45.0
    msg.q_values = np.linspace(0.1, 0.9, 12, dtype=np.float32)
    msg.expert_load = [0.25, 0.125, 0.5, 0.125]
    msg.expert_load_max = 0.5
    return msg


def fields_equal(a, b) -> bool:
    for name, ros_type in a.get_fields_and_field_types().items():
        x, y = getattr(a, name), getattr(b, name)
        if ros_type == "float":  # float32 on the wire; the sender held a Python float
            if np.float32(x) != np.float32(y):
                return False
        elif isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not np.array_equal(np.asarray(x), np.asarray(y)):
                return False
        elif x != y:
            return False
    return True


@pytest.mark.timeout(60)
@pytest.mark.parametrize("make_msg", [go2_command, policy_status], ids=lambda f: f.__name__)
def test_message_crosses_processes(ros_domain, make_msg):
    sent = make_msg()
    msg_type = type(sent)
    echo = subprocess.Popen([sys.executable, str(Path(__file__).with_name("ros_echo.py")),
                             msg_type.__name__])
    rclpy.init()
    node = rclpy.create_node("msg_test")
    received = []
    try:
        pub = node.create_publisher(msg_type, "/echo_in", 10)
        node.create_subscription(msg_type, "/echo_out", received.append, 10)
        deadline = time.monotonic() + 30
        # Publish until the echo (discovery takes 0.1-0.5 s) sends something back.
        while not received and time.monotonic() < deadline:
            assert echo.poll() is None, "echo process died"
            pub.publish(sent)
            rclpy.spin_once(node, timeout_sec=0.1)
        assert received, f"no echo within 30 s on domain {ros_domain}"
        assert type(received[0]) is msg_type
        assert fields_equal(received[0], sent)
    finally:
        node.destroy_node()
        rclpy.shutdown()
        echo.terminate()
        try:
            echo.wait(timeout=10)
        except subprocess.TimeoutExpired:
            echo.kill()
            echo.wait()
    assert echo.returncode is not None


def test_tf2_msgs_is_the_ros_2_jazzy_type(monkeypatch):
    """tf2_msgs/TFMessage (the system's, or on pip-only machines the vendored copy that
    scripts/setup.sh builds) has Jazzy's type hash, so /tf interoperates with tf2, rviz2 and
    rosbag2 tools."""
    import json
    import os
    import sys

    # pip-only machines: the venv is the ament prefix scripts/setup.sh installs messages into
    monkeypatch.setenv("AMENT_PREFIX_PATH", os.pathsep.join(
        filter(None, [os.environ.get("AMENT_PREFIX_PATH"), sys.prefix])))

    from ament_index_python.packages import get_package_share_directory
    from rosbags.typesys import Stores, get_typestore

    described = json.loads((Path(get_package_share_directory("tf2_msgs")) / "msg"
                            / "TFMessage.json").read_text())
    ours = described["type_hashes"][0]
    assert ours["type_name"] == "tf2_msgs/msg/TFMessage"
    jazzy = get_typestore(Stores.ROS2_JAZZY).hash_rihs01("tf2_msgs/msg/TFMessage")
    assert ours["hash_string"] == jazzy
