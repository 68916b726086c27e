"""The stack's ROS topic names and message conversions, shared by the nodes and the bag tools.

Nothing here imports rclpy: a message is read through its fields, so the same functions take
rclpy messages (nodes) and ``rosbags`` dataclasses (offline tools, no ROS runtime).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

# Topic defaults (realsense-ros names for the camera, so the official driver is a drop-in).
IMAGE_TOPIC = "/camera/camera/color/image_raw"
INSTRUCTION_TOPIC = "/instruction"
COMMAND_TOPIC = "/more/command"
STATUS_TOPIC = "/more/status"
JOINT_STATES_TOPIC = "/joint_states"
DIAGNOSTICS_TOPIC = "/diagnostics"
EPISODE_TOPIC = "/more/episode"

# -- sensor_msgs/Image and CompressedImage -> numpy (no cv_bridge on PyPI) -------------------
_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


class ImageError(ValueError):
    """An image message the stack cannot use (encoding, size, step, undecodable bytes)."""


def image_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs Image (rgb8/bgr8/mono8/rgba8/bgra8) or CompressedImage (it has ``format``
    instead of ``encoding``) -> (H, W, 3) uint8 RGB copy; raises :class:`ImageError`."""
    data = _bytes(msg.data)
    if not hasattr(msg, "encoding"):
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if bgr is None:
            raise ImageError(f"undecodable CompressedImage ({msg.format})")
        return np.ascontiguousarray(bgr[:, :, ::-1])
    encoding = str(msg.encoding).lower()
    if encoding not in _CHANNELS:
        raise ImageError(f"unsupported image encoding {msg.encoding!r}; expected one of "
                         f"{sorted(_CHANNELS)}")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    channels = _CHANNELS[encoding]
    if height <= 0 or width <= 0:
        raise ImageError(f"empty image {width}x{height}")
    if step < width * channels:
        raise ImageError(f"step {step} < width {width} x {channels} channels")
    if data.size != step * height:
        raise ImageError(f"data has {data.size} bytes, expected step {step} x height {height} = "
                         f"{step * height}")
    pixels = data.reshape(height, step)[:, :width * channels].reshape(height, width, channels)
    if encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)
    if encoding.startswith("bgr"):
        pixels = pixels[..., 2::-1]
    return np.ascontiguousarray(pixels[..., :3])


def _bytes(data: Any) -> np.ndarray:
    try:  # bytes / array.array (rclpy) / uint8 ndarray (rosbags): no copy
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError):  # a plain list of ints
        return np.asarray(data, dtype=np.uint8).ravel()


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
