"""go2_sim_node's ROS conventions over real DDS: nav_msgs/Odometry odom -> base_link
(REP 105), /clock from the simulation, and SIGTERM ending the node within 2 s without a
traceback."""

from __future__ import annotations

import random
import signal

import numpy as np
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.sim]

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("mujoco")

from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from ros_procs import NodeProcess, Probe, isolated_domain  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402

from more_policy.nodes.interfaces import SENSOR_QOS  # noqa: E402


def seconds(stamp) -> float:
    return stamp.sec + 1e-9 * stamp.nanosec


@pytest.mark.timeout(120)
def test_sim_publishes_odometry_and_clock_and_stops_on_sigterm():
    with isolated_domain():
        rclpy.init()
        probe = Probe("sim_conventions_probe")
        clocks = probe.listen(Clock, "/clock", QoSProfile(depth=10))
        odoms = probe.listen(Odometry, "/odom", SENSOR_QOS)
        sim = NodeProcess("more_policy.nodes.go2_sim_node", {
            "dds_domain_id": random.randint(1, 99), "network_interface": "lo",
            "image_width": 80, "image_height": 60, "camera_rate_hz": 1.0})
        try:
            assert probe.wait_for(lambda: min(len(clocks), len(odoms)) >= 20, 60), \
                sim.output()
            elapsed, code = sim.stop_timed(signal.SIGTERM)
        finally:
            sim.stop()
            probe.close()
            rclpy.shutdown()
    log = sim.output()
    assert code == 0, log
    assert elapsed < 2.0, f"SIGTERM took {elapsed:.2f} s\n{log}"
    assert "Traceback" not in log and "context is invalid" not in log, log

    times = [seconds(c.clock) for c in clocks]
    assert all(b > a for a, b in zip(times, times[1:])), "/clock must advance"
    assert times[0] < 10.0, "/clock is simulation time, not wall time"
    odom = odoms[-1]
    assert (odom.header.frame_id, odom.child_frame_id) == ("odom", "base_link")
    position = [odom.pose.pose.position.x, odom.pose.pose.position.y, odom.pose.pose.position.z]
    assert 0.0 < position[2] < 0.5, position  # the trunk above the floor, below standing height
    orientation = odom.pose.pose.orientation
    quat = [orientation.w, orientation.x, orientation.y, orientation.z]
    assert abs(np.linalg.norm(quat) - 1.0) < 1e-3
    assert abs(odom.twist.twist.linear.x) < 1.0  # lying still, not flying off
