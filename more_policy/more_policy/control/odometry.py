"""Dead-reckoned trunk pose from robot state (the real Go2 has no ground truth): what
controller_node publishes as nav_msgs/Odometry and TF odom -> base_link (REP 105).

What it is, and how good: an *estimate* that drifts, continuous like REP 105's odom frame.

- attitude: the IMU quaternion as the robot reports it (roll and pitch are gravity-referenced;
  yaw is the IMU's own integration and drifts slowly);
- planar velocity: leg odometry from :class:`BodyStateEstimator` (feet in sensed contact do not
  slip), in the heading frame; with no foot in contact (no force reading, or in the air) the
  trunk is taken to be still;
- x, y: that velocity rotated by the IMU yaw and integrated over the state's time step; starts
  at (0, 0) with the first state;
- z: the trunk height above the lowest foot (leg kinematics levelled by roll and pitch, plus the
  foot radius): right on flat ground, which is where the Go2 walks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from more_policy.control.body_estimate import BodyStateEstimator, level_rotation, quat_to_matrix
from more_policy.control.kinematics import forward_kinematics
from more_policy.robot.go2 import FOOT_RADIUS, RobotState


@dataclass
class OdometryEstimate:
    """Trunk pose in odom and its velocity, in the shapes nodes.messages.odometry_message takes."""

    position: np.ndarray = field(default_factory=lambda: np.zeros(3))  # (3,) m, odom frame
    quat: np.ndarray = field(default_factory=lambda: np.array([1.0, 0, 0, 0]))  # (4,) wxyz
    linear_velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))  # (3,) m/s, odom
    angular_velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))  # (3,) rad/s, body


def trunk_height(state: RobotState, roll: float, pitch: float) -> float:
    """Height of the trunk origin above the lowest foot's contact point [m]."""
    feet = forward_kinematics(state.q) @ level_rotation(roll, pitch).T  # (4, 3), levelled
    return float(-feet[:, 2].min() + FOOT_RADIUS)


class LeggedOdometry:
    """Integrates :class:`OdometryEstimate` from one RobotState per control tick."""

    def __init__(self, dt: float):
        self.body = BodyStateEstimator(dt)
        self.estimate = OdometryEstimate()

    def update(self, state: RobotState, dt: float) -> OdometryEstimate:
        """Advance by ``dt`` seconds (the time since the previous state) to ``state``."""
        if dt < 0:
            raise ValueError(f"dt must be >= 0, got {dt}")
        body = self.body.update(state)
        est = self.estimate
        quat = np.asarray(state.quat, dtype=float)
        norm = np.linalg.norm(quat)
        if np.all(np.isfinite(quat)) and norm > 0.5:  # else: keep the last good attitude
            est.quat = quat / norm
        rotation = quat_to_matrix(est.quat)
        yaw = np.arctan2(rotation[1, 0], rotation[0, 0])
        heading = body.velocity if body.velocity_valid else np.zeros(2)
        c, s = np.cos(yaw), np.sin(yaw)
        velocity = np.array([c * heading[0] - s * heading[1], s * heading[0] + c * heading[1],
                             0.0])
        est.position[:2] += velocity[:2] * dt
        if np.all(np.isfinite(np.asarray(state.q, dtype=float))):
            est.position[2] = trunk_height(state, body.roll, body.pitch)
        est.linear_velocity = velocity
        est.angular_velocity = body.gyro.copy()
        return est
