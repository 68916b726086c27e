"""camera_node in its own process plays a real pyrealsense2 recording (made here through a
software_device) onto the realsense-ros topic names, bit-exact and at the recorded rate."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("pyrealsense2")

from rclpy.qos import QoSProfile  # noqa: E402
from ros_procs import NodeProcess, Probe, isolated_domain  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from more_policy.data.ros_messages import IMAGE_TOPIC, image_to_rgb  # noqa: E402
from more_policy.nodes.camera_node import DEPTH_TOPIC  # noqa: E402
from more_policy.nodes.interfaces import SENSOR_QOS  # noqa: E402

FPS = 15
DEEP_SENSOR_QOS = QoSProfile(history=SENSOR_QOS.history, depth=100,
                             reliability=SENSOR_QOS.reliability,
                             durability=SENSOR_QOS.durability)


@pytest.mark.timeout(90)
def test_playback_publishes_the_recorded_frames(tmp_path):
    from more_policy.robot.realsense import write_synthetic_recording

    rng = np.random.default_rng(0)
    colors = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(12)]
    depths = [np.full((120, 160), 1000 + 10 * k, dtype=np.uint16) for k in range(12)]
    recording = write_synthetic_recording(tmp_path / "rec.db3", colors, depths, fps=FPS)
    with isolated_domain():
        rclpy.init()
        probe = Probe()
        node = None
        try:
            # The node's QoS (best effort), with a reader queue deep enough for the whole
            # recording: a test process starved on a loaded machine must not overwrite frames.
            images = probe.listen(Image, IMAGE_TOPIC, DEEP_SENSOR_QOS)
            depth = probe.listen(Image, DEPTH_TOPIC, DEEP_SENSOR_QOS)
            node = NodeProcess("more_policy.nodes.camera_node", {
                "mode": "playback", "playback_file": str(recording), "width": 160,
                "height": 120, "fps": FPS, "enable_depth": True})
            assert node.wait_for_output("playback finished", 60), node.output()
            assert probe.wait_for(lambda: len(images) == len(colors), 3), node.output()
            received = [image_to_rgb(m) for m in images]
            matched = sum(any(np.array_equal(r, c) for c in colors) for r in received)
            assert matched == len(colors)
            assert images[0].header.frame_id == "camera_color_optical_frame"
            stamps = np.array([m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec
                               for m in images])
            assert np.median(np.diff(stamps)) == pytest.approx(1 / FPS, rel=0.3)  # recorded rate
            assert depth and depth[0].encoding == "16UC1"
            assert node.alive()  # the end of a recording is not an error
        finally:
            if node is not None:
                node.stop()
            probe.close()
            rclpy.shutdown()


@pytest.mark.timeout(60)
def test_missing_camera_is_retried_not_fatal():
    with isolated_domain():
        node = NodeProcess("more_policy.nodes.camera_node", {"mode": "live"})
        try:
            assert node.wait_for_output("retrying", 30), node.output()
            assert node.alive()
        finally:
            assert node.stop() == 0, node.output()
