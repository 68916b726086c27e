"""numpy -> rclpy message conversions for the nodes (reading messages, topic names and stamps
live in :mod:`more_policy.data.ros_messages`, which needs no ROS runtime)."""

from __future__ import annotations

from typing import Any

import numpy as np

from more_policy.control.body_estimate import quat_to_matrix
from more_policy.data.ros_messages import ImageError
from more_policy.vision import OPTICAL_FROM_CAMERA_QUAT, CameraConfig

# Frames (REP 105; camera frames as realsense-ros names them, REP 103 optical convention).
ODOM_FRAME = "odom"  # continuous, drifting world frame: the sim's world, the robot's start pose
BASE_FRAME = "base_link"  # the trunk, where the Go2's IMU sits
CAMERA_FRAME = "camera_link"  # the colour camera's optical centre: x forward, y left, z up
CAMERA_OPTICAL_FRAME = "camera_color_optical_frame"  # same origin: z forward, x right, y down


def rgb_to_image(rgb: np.ndarray, stamp: Any = None, frame_id: str = CAMERA_OPTICAL_FRAME):
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


def odometry_message(pos, quat, lin_vel_world, ang_vel_body, stamp):
    """nav_msgs/msg/Odometry odom -> base_link: pose in odom (quaternion wxyz in), twist in
    base_link (the odom-frame velocity rotated into the trunk frame); covariances unknown."""
    from nav_msgs.msg import Odometry

    odom = Odometry()
    odom.header.stamp, odom.header.frame_id = stamp, ODOM_FRAME
    odom.child_frame_id = BASE_FRAME
    pose = odom.pose.pose
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in pos)
    w, x, y, z = (float(v) for v in quat)
    pose.orientation.w, pose.orientation.x, pose.orientation.y, pose.orientation.z = w, x, y, z
    body_velocity = quat_to_matrix(np.asarray(quat, dtype=float)).T @ np.asarray(lin_vel_world)
    twist = odom.twist.twist
    twist.linear.x, twist.linear.y, twist.linear.z = (float(v) for v in body_velocity)
    twist.angular.x, twist.angular.y, twist.angular.z = (float(v) for v in ang_vel_body)
    return odom


def transform_message(parent: str, child: str, xyz, quat, stamp):
    """geometry_msgs/msg/TransformStamped parent -> child (quaternion wxyz in)."""
    from geometry_msgs.msg import TransformStamped

    tf = TransformStamped()
    tf.header.stamp, tf.header.frame_id, tf.child_frame_id = stamp, parent, child
    t = tf.transform.translation
    t.x, t.y, t.z = (float(v) for v in xyz)
    r = tf.transform.rotation
    r.w, r.x, r.y, r.z = (float(v) for v in quat)
    return tf


def odometry_transform(odom):
    """The TF odom -> base_link an Odometry message describes (same stamp, same pose)."""
    p, q = odom.pose.pose.position, odom.pose.pose.orientation
    return transform_message(odom.header.frame_id, odom.child_frame_id, (p.x, p.y, p.z),
                             (q.w, q.x, q.y, q.z), odom.header.stamp)


def camera_mount_transforms(camera: CameraConfig, stamp) -> list:
    """The static TFs base_link -> camera_link -> camera_color_optical_frame of ``camera``'s
    mount (vision.CameraConfig: the one place that defines it; the sim's camera reads it too)."""
    return [transform_message(BASE_FRAME, CAMERA_FRAME, camera.mount_xyz, camera.mount_quat,
                              stamp),
            transform_message(CAMERA_FRAME, CAMERA_OPTICAL_FRAME, (0.0, 0.0, 0.0),
                              OPTICAL_FROM_CAMERA_QUAT, stamp)]
