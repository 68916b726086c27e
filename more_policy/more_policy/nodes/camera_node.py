"""camera_node: a RealSense D435 (pyrealsense2, live or a recording) on realsense-ros topics.

A thin wrapper around :class:`~more_policy.robot.realsense.RealSenseCamera`: a reader thread
publishes every colour frame as sensor_msgs/Image (rgb8) on
/camera/camera/color/image_raw, the realsense2_camera driver's default name, so either can
feed policy_node. Optional aligned depth goes to /camera/camera/aligned_depth_to_color/image_raw
(16UC1, millimetres as the driver publishes). A live camera that stops delivering is logged and
re-opened; the policy's image staleness limit stops the robot meanwhile. Playback ends at the
end of the file.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image

from more_policy.data.ros_messages import IMAGE_TOPIC
from more_policy.nodes.interfaces import SENSOR_QOS, ParamSpec, declare_parameters
from more_policy.nodes.messages import rgb_to_image

DEPTH_TOPIC = "/camera/camera/aligned_depth_to_color/image_raw"
MODES = ("live", "playback")
REOPEN_DELAY_S = 1.0

PARAMETERS = (
    ParamSpec("mode", "live", "live (a connected RealSense) | playback (a recording)"),
    ParamSpec("playback_file", "", "RealSense recording (.db3/.bag) for mode playback"),
    ParamSpec("serial", "", "serial number of the camera to open (empty: the first one)"),
    ParamSpec("width", 640, "colour stream width [px]"),
    ParamSpec("height", 480, "colour stream height [px]"),
    ParamSpec("fps", 30, "stream frame rate [Hz]"),
    ParamSpec("enable_depth", False, "also publish depth aligned to the colour image"),
    ParamSpec("image_topic", IMAGE_TOPIC, "sensor_msgs/Image colour topic (realsense-ros name)"),
    ParamSpec("depth_topic", DEPTH_TOPIC, "sensor_msgs/Image aligned depth topic"),
    ParamSpec("frame_id", "camera_color_optical_frame", "header.frame_id of the images"),
    ParamSpec("playback_wait_s", 10.0,
              "playback: wait up to this long for a subscriber before the first frame [s]"),
)


def depth_to_image(depth: np.ndarray, depth_scale: float, stamp, frame_id: str) -> Image:
    """(H, W) uint16 depth units -> sensor_msgs/Image 16UC1 in millimetres."""
    millimetres = np.clip(np.rint(depth.astype(np.float64) * depth_scale * 1000.0), 0, 65535)
    msg = Image()
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.height, msg.width = int(depth.shape[0]), int(depth.shape[1])
    msg.encoding, msg.is_bigendian, msg.step = "16UC1", 0, 2 * msg.width
    msg.data = millimetres.astype("<u2").tobytes()
    return msg


class CameraNode(Node):
    """Publishes RealSenseCamera frames (see the module docstring)."""

    def __init__(self, **node_kwargs) -> None:
        super().__init__("camera_node", **node_kwargs)
        from more_policy.robot.realsense import CameraConfig

        p = self.params = declare_parameters(self, PARAMETERS)
        if p["mode"] not in MODES:
            raise ValueError(f"parameter mode must be one of {MODES}, got {p['mode']!r}")
        if p["mode"] == "playback" and not p["playback_file"]:
            raise ValueError("mode playback needs the playback_file parameter")
        self.config = CameraConfig(
            width=p["width"], height=p["height"], fps=p["fps"], depth=p["enable_depth"],
            serial=p["serial"] or None,
            playback_file=p["playback_file"] if p["mode"] == "playback" else None)
        self.frames_published = 0
        self.finished = threading.Event()  # playback reached the end of the file
        self.image_pub = self.create_publisher(Image, p["image_topic"], SENSOR_QOS)
        self.depth_pub = (self.create_publisher(Image, p["depth_topic"], SENSOR_QOS)
                          if p["enable_depth"] else None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read_loop, name="camera", daemon=True)
        self._thread.start()

    def _read_loop(self) -> None:
        from more_policy.robot.realsense import RealSenseCamera

        if self.config.playback_file is not None:  # a recording played to nobody is lost
            end = time.monotonic() + self.params["playback_wait_s"]
            while self.image_pub.get_subscription_count() == 0 and time.monotonic() < end:
                self._stop.wait(0.05)
        while not self._stop.is_set() and self.context.ok():
            try:
                with RealSenseCamera(self.config) as camera:
                    self.get_logger().info(f"camera streaming ({self.params['mode']})")
                    first = None  # (recorded ms, wall s): playback keeps the recorded timing
                    while not self._stop.is_set() and self.context.ok():
                        frame = camera.read()
                        if frame is None:  # end of the recording
                            self.get_logger().info(
                                f"playback finished after {self.frames_published} frames")
                            self.finished.set()
                            return
                        if self.config.playback_file is not None:
                            first = first or (frame.timestamp_ms, time.monotonic())
                            due = first[1] + (frame.timestamp_ms - first[0]) / 1e3
                            self._stop.wait(max(0.0, due - time.monotonic()))
                        self._publish(frame)
            except Exception as e:  # unplugged, USB reset, no device: log, retry, never crash
                self.get_logger().error(f"camera: {type(e).__name__}: {e}; retrying",
                                        throttle_duration_sec=5.0)
                if self.config.playback_file is not None:  # a broken file will not heal
                    self.finished.set()
                    return
                self._stop.wait(REOPEN_DELAY_S)

    def _publish(self, frame) -> None:
        stamp = self.get_clock().now().to_msg()
        self.image_pub.publish(rgb_to_image(frame.color, stamp, self.params["frame_id"]))
        if self.depth_pub is not None and frame.depth is not None:
            self.depth_pub.publish(depth_to_image(frame.depth, frame.depth_scale, stamp,
                                                  self.params["frame_id"]))
        self.frames_published += 1

    def destroy_node(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    from more_policy.nodes.runner import spin_nodes

    rclpy.init(args=args)
    spin_nodes([CameraNode()])


if __name__ == "__main__":
    main()
