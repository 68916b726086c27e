"""TF over real DDS (REP 105): odom -> base_link -> camera_link -> camera_color_optical_frame
from the sim (ground truth, on the simulated clock) and from controller_node driving the
MuJoCo Go2 through the Unitree DDS topics (dead reckoning from LowState), with
nav_msgs/Odometry and sensor_msgs/Imu from the same robot state."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.sim]

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("mujoco")

from child_env import python_env  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from ros_procs import NodeProcess, Probe, isolated_domain  # noqa: E402
from sensor_msgs.msg import Imu  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from more_policy.control.body_estimate import quat_to_matrix  # noqa: E402
from more_policy.data.ros_messages import EPISODE_TOPIC  # noqa: E402
from more_policy.nodes.interfaces import SENSOR_QOS, STATUS_QOS  # noqa: E402
from more_policy.nodes.transforms import TF_QOS, TF_STATIC_QOS  # noqa: E402
from more_policy.vision import D435_COLOR  # noqa: E402

OPTICAL = "camera_color_optical_frame"


def seconds(stamp) -> float:
    return stamp.sec + 1e-9 * stamp.nanosec


def pose(transform) -> tuple[np.ndarray, np.ndarray]:
    """(translation (3,), rotation matrix (3, 3)) of a geometry_msgs/Transform."""
    t, r = transform.translation, transform.rotation
    return np.array([t.x, t.y, t.z]), quat_to_matrix(np.array([r.w, r.x, r.y, r.z]))


def odom_pose(odom) -> tuple[np.ndarray, np.ndarray]:
    p, q = odom.pose.pose.position, odom.pose.pose.orientation
    return np.array([p.x, p.y, p.z]), np.array([q.w, q.x, q.y, q.z])


def check_tree(dynamic: list, static: list) -> None:
    """One tree odom -> base_link -> camera_link -> optical frame, the camera edges equal to
    the configured mount, the optical frame z forward, x right, y down (REP 103)."""
    edges = {t.child_frame_id: t for msg in dynamic + static for t in msg.transforms}
    chain, frame = [], OPTICAL
    while frame in edges:  # walk up to the root
        chain.append(frame)
        frame = edges[frame].header.frame_id
    assert chain + [frame] == [OPTICAL, "camera_link", "base_link", "odom"], chain + [frame]
    assert len(static) >= 1 and {t.child_frame_id for t in static[-1].transforms} == \
        {"camera_link", OPTICAL}, "tf2 keeps only the last /tf_static message: all in one"
    mount_xyz, mount = pose(edges["camera_link"].transform)
    np.testing.assert_allclose(mount_xyz, D435_COLOR.mount_xyz, atol=1e-9)
    optical_xyz, optical = pose(edges[OPTICAL].transform)
    np.testing.assert_allclose(optical_xyz, 0.0, atol=1e-12)
    in_base = mount @ optical  # optical axes as columns, in base_link
    pitch = np.radians(D435_COLOR.pitch_down_deg)
    np.testing.assert_allclose(in_base[:, 2], [np.cos(pitch), 0.0, -np.sin(pitch)], atol=1e-9)
    np.testing.assert_allclose(in_base[:, 0], [0.0, -1.0, 0.0], atol=1e-9)  # x right
    np.testing.assert_allclose(in_base[:, 1], [-np.sin(pitch), 0.0, -np.cos(pitch)],
                               atol=1e-9)  # y down (tilted with the camera)


def check_tf_matches_odometry(dynamic: list, odoms: list) -> int:
    """Every odom -> base_link on /tf is the Odometry pose of the same stamp; returns how many
    were matched."""
    by_stamp = {seconds(o.header.stamp): o for o in odoms}
    matched = 0
    for msg in dynamic:
        (tf,) = msg.transforms
        assert (tf.header.frame_id, tf.child_frame_id) == ("odom", "base_link")
        odom = by_stamp.get(seconds(tf.header.stamp))
        if odom is None:  # /odom is best effort: one may be missing
            continue
        xyz, rotation = pose(tf.transform)
        position, quat = odom_pose(odom)
        np.testing.assert_allclose(xyz, position, atol=1e-9)
        np.testing.assert_allclose(rotation, quat_to_matrix(quat), atol=1e-9)
        matched += 1
    return matched


@pytest.mark.timeout(120)
def test_sim_tf_tree_follows_the_trunk_on_sim_time():
    with isolated_domain():
        rclpy.init()
        probe = Probe("sim_tf_probe")
        dynamic = probe.listen(TFMessage, "/tf", TF_QOS)
        odoms = probe.listen(Odometry, "/odom", SENSOR_QOS)
        reports = probe.listen(String, EPISODE_TOPIC, STATUS_QOS)
        sim = NodeProcess("more_policy.nodes.go2_sim_node", {
            "dds_domain_id": random.randint(1, 99), "network_interface": "lo",
            "image_width": 80, "image_height": 60, "camera_rate_hz": 1.0,
            "use_sim_time": "true"})
        try:
            assert probe.wait_for(lambda: len(dynamic) >= 50 and len(reports) >= 2, 60), \
                sim.output()
            # subscribed late: /tf_static is latched (transient local), as tf2 listeners expect
            static = probe.listen(TFMessage, "/tf_static", TF_STATIC_QOS)
            assert probe.wait_for(lambda: static, 10), "no latched /tf_static"
            report = json.loads(reports[-1].data)
            final = dynamic[-1].transforms[0]
        finally:
            sim.stop()
            probe.close()
            rclpy.shutdown()
    check_tree(dynamic, static)
    assert check_tf_matches_odometry(dynamic, odoms) >= 0.8 * len(dynamic)
    stamps = [seconds(m.transforms[0].header.stamp) for m in dynamic]
    assert all(b >= a for a, b in zip(stamps, stamps[1:])) and stamps[-1] < 60.0, \
        "TF on the simulated clock (use_sim_time), not wall time"
    # the trunk the episode report measures in the physics is where TF puts base_link
    heights = [m.transforms[0].transform.translation.z for m in dynamic]
    print(f"trunk height on /tf: {heights[0]:.3f} -> {heights[-1]:.3f} m; report "
          f"{report['base_pose'][:3]}")
    xyz, _ = pose(final.transform)
    np.testing.assert_allclose(xyz, report["base_pose"][:3], atol=0.01)


@pytest.mark.timeout(120)
def test_controller_odometry_imu_and_tf_from_lowstate_of_the_sim_bridge(tmp_path):
    sdk_domain = random.randint(1, 99)
    log = tmp_path / "bridge.json"
    with isolated_domain():
        rclpy.init()
        probe = Probe("controller_tf_probe")
        dynamic = probe.listen(TFMessage, "/tf", TF_QOS)
        static = probe.listen(TFMessage, "/tf_static", TF_STATIC_QOS)
        odoms = probe.listen(Odometry, "/odom", SENSOR_QOS)
        imus = probe.listen(Imu, "/imu/data", SENSOR_QOS)
        bridge = subprocess.Popen(
            [sys.executable, "-m", "more_policy.sim.cli", "sim-bridge", "--domain",
             str(sdk_domain), "--seconds", "5", "--wait-controller", "30", "--log", str(log)],
            env=python_env())
        node = NodeProcess("more_policy.nodes.controller_node", {
            "dds_domain_id": sdk_domain, "network_interface": "lo", "lowcmd_stream_hz": 0.0,
            "standup_damping_s": 0.2, "standup_ramp_s": 0.5, "state_timeout_s": 0.5})
        try:
            assert bridge.wait(timeout=60) == 0, node.output()
            standing = list(odoms)  # everything up to the end of the bridge's run
        finally:
            if bridge.poll() is None:
                bridge.kill()
            node.stop()
            probe.close()
            rclpy.shutdown()
    trajectory = np.array(json.loads(log.read_text())["trajectory"])
    t, x, y, z, _ = trajectory.T
    assert len(standing) > 50, node.output()
    check_tree(dynamic, static)
    assert check_tf_matches_odometry(dynamic, odoms) >= 0.8 * len(dynamic)
    late = standing[len(standing) // 2:]  # standing, after the stand-up
    position = np.array([odom_pose(o)[0] for o in late])
    true_height = z[t > 2.0].mean()
    moved = np.array([x[-1] - x[0], y[-1] - y[0]])  # odom starts where the trunk started
    print(f"odometry height {position[:, 2].mean():.3f} m, sim {true_height:.3f} m; moved "
          f"{position[-1, :2].round(3)} m, sim {moved.round(3)} m")
    assert position[:, 2].mean() == pytest.approx(true_height, abs=0.02)
    np.testing.assert_allclose(position[-1, :2], moved, atol=0.03)
    assert max(abs(o.twist.twist.linear.x) for o in late) < 0.2
    # Imu and Odometry from the same LowState: one attitude, the robot level
    imu_by_stamp = {seconds(i.header.stamp): i for i in imus}
    pairs = [(o, imu_by_stamp[seconds(o.header.stamp)]) for o in late
             if seconds(o.header.stamp) in imu_by_stamp]
    assert pairs
    for odom, imu in pairs:
        q = imu.orientation
        np.testing.assert_allclose(odom_pose(odom)[1], [q.w, q.x, q.y, q.z], atol=1e-12)
        assert imu.header.frame_id == "base_link"
        assert imu.linear_acceleration.z == pytest.approx(9.81, abs=1.5)
    assert abs(pairs[-1][1].orientation.w) > 0.99
