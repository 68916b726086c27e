"""Topic names and message conversions shared by the nodes and the offline bag tools.

Nothing here imports rclpy, so offline tools (``more eval-bag``) run without a ROS runtime.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Topic defaults (realsense-ros names for the camera, so the official driver is a drop-in).
IMAGE_TOPIC = "/camera/camera/color/image_raw"
INSTRUCTION_TOPIC = "/instruction"
COMMAND_TOPIC = "/more/command"
STATUS_TOPIC = "/more/status"
JOINT_STATES_TOPIC = "/joint_states"
DIAGNOSTICS_TOPIC = "/diagnostics"
EPISODE_TOPIC = "/more/episode"

# -- sensor_msgs/Image <-> numpy (no cv_bridge on PyPI) ----------------------------------------
_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


class ImageError(ValueError):
    """A sensor_msgs/Image the policy cannot use (encoding, size, step)."""


def image_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/Image (rclpy or rosbags) -> (H, W, 3) uint8 RGB copy; raises ImageError."""
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
    try:  # bytes / array.array (rclpy) / uint8 ndarray (rosbags): no copy
        data = np.frombuffer(msg.data, dtype=np.uint8)
    except (TypeError, ValueError):  # a plain list of ints
        data = np.asarray(msg.data, dtype=np.uint8).ravel()
    if data.size != step * height:
        raise ImageError(f"data has {data.size} bytes, expected step {step} x height {height} = "
                         f"{step * height}")
    pixels = data.reshape(height, step)[:, :width * channels].reshape(height, width, channels)
    if encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)
    if encoding.startswith("bgr"):
        pixels = pixels[..., 2::-1]
    return np.ascontiguousarray(pixels[..., :3])


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


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
