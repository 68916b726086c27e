"""Standing controllers: hold a pose, and the safe start (damping, then a soft ramp to stand).

Both implement :class:`~more_policy.robot.go2.LowLevelController` and ignore the 12-d command
(they are what runs before, and instead of, a gait controller).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from more_policy.robot.go2 import (
    DAMPING_KD,
    DEFAULT_JOINT_POS,
    NUM_MOTORS,
    MotorCommand,
    RobotState,
)


@dataclass
class StandUpConfig:
    damping_s: float = 1.0  # motors damp only: the robot settles wherever it lies
    ramp_s: float = 2.0  # joint targets interpolate from the measured pose to the stand pose
    kp: float = 40.0  # stiffness at the end of the ramp (it grows from 0 with the ramp)
    kd: float = 1.0
    damping_kd: float = DAMPING_KD
    control_dt: float = 0.02


class StandController:
    """Holds ``pose`` with PD gains."""

    def __init__(self, pose: np.ndarray = DEFAULT_JOINT_POS, kp: float = 40.0, kd: float = 1.0,
                 control_dt: float = 0.02):
        self.pose = np.asarray(pose, dtype=np.float64).copy()
        if self.pose.shape != (NUM_MOTORS,):
            raise ValueError(f"pose must have shape (12,), got {self.pose.shape}")
        self.kp, self.kd, self.control_dt = kp, kd, control_dt

    def reset(self, state: RobotState) -> None:
        pass

    def step(self, state: RobotState, command: np.ndarray | None = None) -> MotorCommand:
        return MotorCommand(q=self.pose.copy(), kp=np.full(NUM_MOTORS, self.kp),
                            kd=np.full(NUM_MOTORS, self.kd))


class StandUpSequence:
    """Safe start: ``damping_s`` of pure damping, then a smooth ramp (targets and stiffness)
    from the pose measured at the end of the damping phase to the stand pose."""

    def __init__(self, config: StandUpConfig | None = None,
                 pose: np.ndarray = DEFAULT_JOINT_POS):
        self.config = config or StandUpConfig()
        self.control_dt = self.config.control_dt
        self.pose = np.asarray(pose, dtype=np.float64).copy()
        self._ticks = 0  # counted, not summed, so phase boundaries fall on exact ticks
        self._start_pose: np.ndarray | None = None

    @property
    def done(self) -> bool:
        return self._ticks * self.control_dt >= self.config.damping_s + self.config.ramp_s

    def reset(self, state: RobotState) -> None:
        self._ticks, self._start_pose = 0, None

    def step(self, state: RobotState, command: np.ndarray | None = None) -> MotorCommand:
        cfg = self.config
        t = self._ticks * self.control_dt
        self._ticks += 1
        if t < cfg.damping_s:
            return MotorCommand.damping(cfg.damping_kd)
        if self._start_pose is None:
            self._start_pose = np.asarray(state.q, dtype=np.float64).copy()
        s = min(1.0, (t - cfg.damping_s) / cfg.ramp_s)
        s = s * s * (3.0 - 2.0 * s)  # smoothstep: zero velocity at both ends
        q = (1.0 - s) * self._start_pose + s * self.pose
        kd = cfg.damping_kd + s * (cfg.kd - cfg.damping_kd)
        return MotorCommand(q=q, kp=np.full(NUM_MOTORS, s * cfg.kp), kd=np.full(NUM_MOTORS, kd))
