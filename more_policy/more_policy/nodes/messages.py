"""numpy -> rclpy message conversions for the nodes (reading messages, topic names and stamps
live in :mod:`more_policy.data.ros_messages`, which needs no ROS runtime)."""

from __future__ import annotations

from typing import Any

import numpy as np

from more_policy.data.ros_messages import ImageError


def rgb_to_image(rgb: np.ndarray, stamp: Any = None, frame_id: str = "camera_color_optical_frame"):
    """(H, W, 3) uint8 RGB -> sensor_msgs/msg/Image (rgb8)."""
    from sensor_msgs.msg import Image

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageError(f"expected (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    msg = Image()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = 3 * msg.width
    msg.data = np.ascontiguousarray(rgb).tobytes()
    return msg
