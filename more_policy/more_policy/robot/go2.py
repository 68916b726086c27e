"""Unitree Go2 constants and the robot-boundary types shared by controller, sim and SDK I/O.

Numbers from Unitree's published Go2 description (go2_description URDF, datasheet); the SDK's
motor order is FR, FL, RR, RL, each (hip, thigh, calf). Everything that talks to motors, real
or simulated, speaks :class:`RobotState` in and :class:`MotorCommand` out, in this order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

LEGS = ("FR", "FL", "RR", "RL")
JOINTS_PER_LEG = ("hip", "thigh", "calf")
JOINT_NAMES: tuple[str, ...] = tuple(f"{leg}_{j}_joint" for leg in LEGS for j in JOINTS_PER_LEG)
NUM_MOTORS = 12
SDK_MOTOR_SLOTS = 20  # LowCmd_/LowState_ carry 20 motor slots; the Go2 uses the first 12

# Geometry [m] and masses [kg].
HIP_OFFSET_X = 0.1934  # trunk centre -> hip joint, forward
HIP_OFFSET_Y = 0.0465  # trunk centre -> hip joint, lateral
HIP_TO_THIGH_Y = 0.0955  # hip joint -> thigh joint, lateral (the abduction link)
THIGH_LENGTH = 0.213
CALF_LENGTH = 0.213
FOOT_RADIUS = 0.022
TRUNK_SIZE = (0.3762, 0.0935, 0.114)  # box length, width, height
TRUNK_MASS = 6.921
HIP_MASS, THIGH_MASS, CALF_MASS, FOOT_MASS = 0.678, 1.152, 0.154, 0.04
TOTAL_MASS = TRUNK_MASS + 4 * (HIP_MASS + THIGH_MASS + CALF_MASS + FOOT_MASS)  # ~15.0

# Leg sign conventions: +1 for left legs / front legs.
LEG_SIDE = np.array([-1.0, 1.0, -1.0, 1.0])  # y sign of FR, FL, RR, RL
LEG_FRONT = np.array([1.0, 1.0, -1.0, -1.0])  # x sign

# Joint limits [rad] per joint type (URDF), torque [Nm] and velocity [rad/s] limits.
HIP_LIMITS = (-1.0472, 1.0472)
FRONT_THIGH_LIMITS = (-1.5708, 3.4907)
REAR_THIGH_LIMITS = (-0.5236, 4.5379)
CALF_LIMITS = (-2.7227, -0.83776)
JOINT_LOWER = np.array([lim[0] for leg in LEGS for lim in (
    HIP_LIMITS, FRONT_THIGH_LIMITS if leg[0] == "F" else REAR_THIGH_LIMITS, CALF_LIMITS)])
JOINT_UPPER = np.array([lim[1] for leg in LEGS for lim in (
    HIP_LIMITS, FRONT_THIGH_LIMITS if leg[0] == "F" else REAR_THIGH_LIMITS, CALF_LIMITS)])
TORQUE_LIMIT = np.tile([23.7, 23.7, 45.43], 4)
VELOCITY_LIMIT = np.tile([30.1, 30.1, 15.7], 4)

# Stand pose used by walk-these-ways and unitree's RL examples (hips out, thighs 0.8/1.0).
DEFAULT_JOINT_POS = np.array([
    -0.1, 0.8, -1.5,   # FR
    0.1, 0.8, -1.5,    # FL
    -0.1, 1.0, -1.5,   # RR
    0.1, 1.0, -1.5,    # RL
])
# Folded pose the robot lies in when powered down (start of the safe stand-up ramp).
LYING_JOINT_POS = np.tile([0.0, 1.36, -2.65], 4)
DEFAULT_KP = 20.0  # walk-these-ways PD gains
DEFAULT_KD = 0.5
DAMPING_KD = 3.0  # pure damping mode (kp = 0) used by safety stops


@dataclass
class RobotState:
    """What the robot reports each tick (LowState_), in SDK motor order."""

    q: np.ndarray = field(default_factory=lambda: DEFAULT_JOINT_POS.copy())  # (12,) rad
    dq: np.ndarray = field(default_factory=lambda: np.zeros(NUM_MOTORS))  # (12,) rad/s
    tau: np.ndarray = field(default_factory=lambda: np.zeros(NUM_MOTORS))  # (12,) Nm estimate
    quat: np.ndarray = field(default_factory=lambda: np.array([1.0, 0, 0, 0]))  # (4,) wxyz
    gyro: np.ndarray = field(default_factory=lambda: np.zeros(3))  # (3,) rad/s, body frame
    accel: np.ndarray = field(default_factory=lambda: np.array([0, 0, 9.81]))  # (3,) m/s^2
    foot_force: np.ndarray = field(default_factory=lambda: np.zeros(4))  # (4,) FR FL RR RL
    tick: int = 0  # the robot's ms counter


@dataclass
class MotorCommand:
    """Per-motor command (LowCmd_): tau = kp (q - q_meas) + kd (dq - dq_meas) + tau_ff."""

    q: np.ndarray  # (12,) rad
    kp: np.ndarray  # (12,)
    kd: np.ndarray  # (12,)
    dq: np.ndarray = field(default_factory=lambda: np.zeros(NUM_MOTORS))  # (12,) rad/s
    tau: np.ndarray = field(default_factory=lambda: np.zeros(NUM_MOTORS))  # (12,) Nm

    @classmethod
    def damping(cls, kd: float = DAMPING_KD) -> MotorCommand:
        """Zero stiffness, pure damping: the safe state a fault drops into."""
        return cls(q=np.zeros(NUM_MOTORS), kp=np.zeros(NUM_MOTORS),
                   kd=np.full(NUM_MOTORS, kd))

    def torque(self, q_meas: np.ndarray, dq_meas: np.ndarray) -> np.ndarray:
        """The joint-level PD law the motor drivers run, clipped to the torque limits."""
        tau = self.kp * (self.q - q_meas) + self.kd * (self.dq - dq_meas) + self.tau
        return np.clip(tau, -TORQUE_LIMIT, TORQUE_LIMIT)


class LowLevelController(Protocol):
    """Turns the 12-d MoRE command into motor commands at ``control_dt`` (50 Hz)."""

    control_dt: float

    def reset(self, state: RobotState) -> None: ...

    def step(self, state: RobotState, command: np.ndarray) -> MotorCommand:
        """``command``: (12,) in SI units, actions.py order."""
        ...


# Sleep this long before a deadline, then yield in a loop: OS timers wake late by up to a
# millisecond or more on a busy machine; the control loop's p99 jitter budget is 2 ms and the
# 500 Hz LowCmd stream's period is 2 ms.
SPIN_S = 0.001


def sleep_until(deadline: float) -> None:
    """Sleep until ``deadline`` (time.perf_counter), waking ~SPIN_S early to yield-spin."""
    coarse = deadline - time.perf_counter() - SPIN_S
    if coarse > 0:
        time.sleep(coarse)
    while time.perf_counter() < deadline:
        time.sleep(0)  # releases the GIL to the DDS threads while spinning
