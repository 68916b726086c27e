"""numpy -> rclpy message conversions for the nodes (reading messages, topic names and stamps
live in :mod:`more_policy.data.ros_messages`, which needs no ROS runtime)."""

from __future__ import annotations

from typing import Any

import numpy as np

from more_policy.data.ros_messages import ImageError

BASE_FRAME = "base_link"  # the trunk (REP 105), where the Go2's IMU sits


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


def imu_message(state: Any, stamp: Any):
    """sensor_msgs/msg/Imu from a RobotState (quaternion wxyz, body-frame gyro and accelerometer);
    covariances unknown (zero, REP 145)."""
    from sensor_msgs.msg import Imu

    imu = Imu()
    imu.header.stamp, imu.header.frame_id = stamp, BASE_FRAME
    w, x, y, z = (float(v) for v in state.quat)
    imu.orientation.w, imu.orientation.x, imu.orientation.y, imu.orientation.z = w, x, y, z
    gx, gy, gz = (float(v) for v in state.gyro)
    imu.angular_velocity.x, imu.angular_velocity.y, imu.angular_velocity.z = gx, gy, gz
    ax, ay, az = (float(v) for v in state.accel)
    imu.linear_acceleration.x, imu.linear_acceleration.y, imu.linear_acceleration.z = ax, ay, az
    return imu
