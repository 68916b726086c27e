"""Body attitude and velocity estimate for the analytic gait controller (IMU + leg odometry).

Attitude (roll, pitch) comes from the IMU quaternion, the angular rate from the gyro. The base
velocity comes from the legs in ground contact: a foot that does not slip is still in the
world, so the trunk moves at ``-(J dq + w x p)`` relative to it (p the foot in the trunk frame,
J dq the foot's velocity from the joint velocities), plus the rolling of the spherical foot
(without it the estimate reads ~10 % low in the MuJoCo sim). The feet in contact are the ones whose
force sensor reads above ``contact_force``; with no sensor reading (all zeros, e.g. a state
that carries no foot forces) the velocity estimate is marked invalid and the controller runs
open loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from more_policy.control.kinematics import HIP_POSITIONS, leg_fk, leg_jacobian
from more_policy.robot.go2 import FOOT_RADIUS, RobotState


@dataclass
class BodyEstimate:
    roll: float = 0.0  # rad, left side up +
    pitch: float = 0.0  # rad, nose down +
    gyro: np.ndarray = field(default_factory=lambda: np.zeros(3))  # (3,) rad/s, body frame
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # (2,) m/s, heading frame
    velocity_valid: bool = False  # False: no foot in sensed contact yet (open loop)


def roll_pitch(quat: np.ndarray) -> tuple[float, float]:
    """(roll, pitch) of a wxyz quaternion; roll left-up +, pitch nose-down +."""
    w, x, y, z = quat
    roll = np.arctan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = np.arcsin(np.clip(2 * (w * y - z * x), -1.0, 1.0))
    return float(roll), float(pitch)


def quat_to_matrix(quat: np.ndarray) -> np.ndarray:
    """(3, 3) rotation matrix (body -> world) of a unit wxyz quaternion."""
    w, x, y, z = quat
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def level_rotation(roll: float, pitch: float) -> np.ndarray:
    """(3, 3) trunk frame -> heading (yaw-only) frame for the given roll and pitch."""
    cr, sr, cp, sp = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch)
    r_pitch = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    r_roll = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
    return r_pitch @ r_roll


class BodyStateEstimator:
    """Filters IMU attitude and leg-odometry velocity once per control tick."""

    def __init__(self, dt: float, velocity_time_constant: float = 0.08,
                 contact_force: float = 5.0):
        if dt <= 0 or velocity_time_constant <= 0:
            raise ValueError(f"need dt > 0 and a time constant > 0, got {dt}, "
                             f"{velocity_time_constant}")
        self.dt, self.tau, self.contact_force = dt, velocity_time_constant, contact_force
        self.estimate = BodyEstimate()

    def reset(self) -> None:
        self.estimate = BodyEstimate()

    def update(self, state: RobotState) -> BodyEstimate:
        est = self.estimate
        quat = np.asarray(state.quat, dtype=float)
        if np.all(np.isfinite(quat)) and np.linalg.norm(quat) > 0.5:
            est.roll, est.pitch = roll_pitch(quat / np.linalg.norm(quat))
        gyro = np.asarray(state.gyro, dtype=float)
        est.gyro = gyro.copy() if np.all(np.isfinite(gyro)) else np.zeros(3)
        measured = self.leg_odometry(state, est.gyro)
        if measured is not None:
            world = level_rotation(est.roll, est.pitch) @ measured  # (3,)
            if not est.velocity_valid:
                est.velocity, est.velocity_valid = world[:2].copy(), True
            else:
                a = self.dt / (self.tau + self.dt)
                est.velocity = est.velocity + a * (world[:2] - est.velocity)
        return est

    def leg_odometry(self, state: RobotState, gyro: np.ndarray) -> np.ndarray | None:
        """(3,) trunk velocity in the trunk frame from the feet in contact, or None."""
        force = np.asarray(state.foot_force, dtype=float)
        contact = np.flatnonzero(np.isfinite(force) & (force > self.contact_force))
        q, dq = np.asarray(state.q, dtype=float), np.asarray(state.dq, dtype=float)
        if contact.size == 0 or not (np.all(np.isfinite(q)) and np.all(np.isfinite(dq))):
            return None
        velocities = []
        for i in contact:
            qi, dqi = q[3 * i:3 * i + 3], dq[3 * i:3 * i + 3]
            foot = HIP_POSITIONS[i] + leg_fk(qi, i)
            # the spherical foot rolls: its centre moves at (calf pitch rate) x radius
            rolling = FOOT_RADIUS * (gyro[1] + dqi[1] + dqi[2])
            velocities.append(-(leg_jacobian(qi, i) @ dqi + np.cross(gyro, foot))
                              + np.array([rolling, 0.0, 0.0]))
        return np.mean(velocities, axis=0)
