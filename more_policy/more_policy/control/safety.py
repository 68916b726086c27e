"""Safety rules between the 12-d command, the low-level controller and the motors.

Rules (each has a test in tests/test_control_safety.py):

* command clamping: every incoming command is clipped to the action-space ranges; commands
  with NaN/inf are rejected (the previous one stays) and counted;
* command timeout: no fresh command for ``command_timeout_s`` -> velocities ramp linearly to
  zero over ``stop_ramp_s`` and the other dimensions return to the stand defaults;
* state timeout: no LowState for ``state_timeout_s`` -> damping;
* e-stop: :meth:`SafetyMonitor.estop` -> damping from the very next control tick;
* tilt: roll or pitch beyond ``tilt_limit_rad`` -> damping;
* joint position / velocity: a measured joint beyond its URDF limit (+ margin) or its
  velocity limit -> damping; joint targets are clipped into the URDF limits;
* torque: feed-forward torque and PD targets are limited so the commanded torque at the
  measured state stays within the motor torque limits.

Faults latch: the robot stays in damping until :meth:`SafetyMonitor.clear` (an operator action).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from more_policy.actions import ActionSpace, ActionSpaceError
from more_policy.robot.go2 import (
    DAMPING_KD,
    JOINT_LOWER,
    JOINT_UPPER,
    TORQUE_LIMIT,
    VELOCITY_LIMIT,
    LowLevelController,
    MotorCommand,
    RobotState,
)

VELOCITY_DIMS = ("vel_x", "vel_y", "yaw_rate")


class Fault(enum.Enum):
    ESTOP = "e-stop"
    STATE_TIMEOUT = "state timeout"
    TILT = "tilt limit"
    JOINT_POSITION = "joint position limit"
    JOINT_VELOCITY = "joint velocity limit"


@dataclass
class SafetyConfig:
    command_timeout_s: float = 0.5  # the policy publishes at 2-10 Hz
    stop_ramp_s: float = 0.5
    state_timeout_s: float = 0.05  # 25 LowState periods at 500 Hz
    tilt_limit_rad: float = 0.8  # ~46 deg of roll or pitch
    joint_position_margin: float = 0.1  # rad beyond the URDF limits before a fault
    velocity_limit_factor: float = 1.0  # fault above this fraction of the rated velocity
    damping_kd: float = DAMPING_KD

    def __post_init__(self) -> None:
        for name in ("command_timeout_s", "stop_ramp_s", "state_timeout_s", "tilt_limit_rad",
                     "velocity_limit_factor", "damping_kd"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SafetyConfig.{name} must be > 0, got {getattr(self, name)}")


def tilt_angle(quat: np.ndarray) -> float:
    """Angle between the body z axis and the world vertical, from a wxyz quaternion."""
    w, x, y, z = np.asarray(quat, dtype=np.float64) / np.linalg.norm(quat)
    body_z_world_z = 1.0 - 2.0 * (x * x + y * y)  # R[2, 2]
    return float(np.arccos(np.clip(body_z_world_z, -1.0, 1.0)))


@dataclass
class SafetyStatus:
    fault: Fault | None = None
    detail: str = ""
    rejected_commands: int = 0
    clamped_commands: int = 0
    command_timed_out: bool = False
    fault_time: float | None = None
    history: list[tuple[float, Fault, str]] = field(default_factory=list)


class SafetyMonitor:
    """Holds the active command and the latched fault; all times are caller-supplied seconds."""

    def __init__(self, config: SafetyConfig | None = None,
                 action_space: ActionSpace | None = None):
        self.config = config or SafetyConfig()
        self.space = action_space or ActionSpace()
        self.status = SafetyStatus()
        self._stand = self.space.default_command()  # (12,) zero velocity, stand defaults
        self._command = self._stand.copy()
        self._command_time: float | None = None
        self._state_time: float | None = None
        self._velocity_index = [self.space.index(n) for n in VELOCITY_DIMS]

    # -- inputs --------------------------------------------------------------------------
    def set_command(self, command: np.ndarray, now: float) -> np.ndarray | None:
        """Accept a 12-d command (clipped to the ranges); NaN/inf or a bad shape: rejected."""
        try:
            clipped = self.space.clip(command)
        except ActionSpaceError:
            self.status.rejected_commands += 1
            return None
        if not np.array_equal(clipped, np.asarray(command, dtype=np.float64)):
            self.status.clamped_commands += 1
        self._command, self._command_time = clipped, now
        return clipped

    def state_received(self, now: float) -> None:
        self._state_time = now

    def estop(self, now: float, reason: str = "operator") -> None:
        self._trip(Fault.ESTOP, reason, now)

    def clear(self) -> None:
        """Operator reset after a fault; the command restarts from standing still."""
        self.status.fault = None
        self.status.detail = ""
        self.status.fault_time = None
        self._command, self._command_time = self._stand.copy(), None

    # -- outputs -------------------------------------------------------------------------
    def active_command(self, now: float) -> np.ndarray:
        """The command to track now, ramped to a stand after a command timeout."""
        age = float("inf") if self._command_time is None else now - self._command_time
        timeout = self.config.command_timeout_s
        self.status.command_timed_out = age > timeout
        if not self.status.command_timed_out:
            return self._command.copy()
        if self._command_time is None:
            return self._stand.copy()
        # Linear ramp from the last command to the stand command over stop_ramp_s.
        alpha = min(1.0, (age - timeout) / self.config.stop_ramp_s)
        return (1.0 - alpha) * self._command + alpha * self._stand

    def check(self, state: RobotState | None, now: float) -> Fault | None:
        """Evaluate the state rules; returns the (latched) fault, None when all is well."""
        if self.status.fault is not None:
            return self.status.fault
        cfg = self.config
        if self._state_time is None or state is None or now - self._state_time > \
                cfg.state_timeout_s:
            age = "never" if self._state_time is None else f"{now - self._state_time:.3f} s"
            self._trip(Fault.STATE_TIMEOUT, f"last LowState {age} ago", now)
            return self.status.fault
        tilt = tilt_angle(state.quat)
        if tilt > cfg.tilt_limit_rad:
            self._trip(Fault.TILT, f"tilt {tilt:.2f} rad > {cfg.tilt_limit_rad}", now)
        q = np.asarray(state.q)
        outside = (q < JOINT_LOWER - cfg.joint_position_margin) | \
                  (q > JOINT_UPPER + cfg.joint_position_margin)
        if self.status.fault is None and outside.any():
            self._trip(Fault.JOINT_POSITION, f"joints {np.flatnonzero(outside).tolist()}", now)
        too_fast = np.abs(state.dq) > cfg.velocity_limit_factor * VELOCITY_LIMIT
        if self.status.fault is None and too_fast.any():
            self._trip(Fault.JOINT_VELOCITY, f"joints {np.flatnonzero(too_fast).tolist()}", now)
        return self.status.fault

    def limit(self, cmd: MotorCommand, state: RobotState) -> MotorCommand:
        """Clip joint targets into the URDF limits and the torque they ask for into the rated
        torque at the measured state; a latched fault replaces everything with damping."""
        if self.status.fault is not None:
            return MotorCommand.damping(self.config.damping_kd)
        q_target = np.clip(cmd.q, JOINT_LOWER, JOINT_UPPER)
        tau_ff = np.clip(cmd.tau, -TORQUE_LIMIT, TORQUE_LIMIT)
        rest = cmd.kd * (cmd.dq - state.dq) + tau_ff  # (12,) torque besides the stiffness
        kp = np.maximum(cmd.kp, 1e-9)
        low = state.q + (-TORQUE_LIMIT - rest) / kp
        high = state.q + (TORQUE_LIMIT - rest) / kp
        q_target = np.where(cmd.kp > 0, np.clip(q_target, low, high), q_target)
        return MotorCommand(q=q_target, kp=cmd.kp.copy(), kd=cmd.kd.copy(), dq=cmd.dq.copy(),
                            tau=tau_ff)

    def _trip(self, fault: Fault, detail: str, now: float) -> None:
        if self.status.fault is None:
            self.status.fault, self.status.detail, self.status.fault_time = fault, detail, now
            self.status.history.append((now, fault, detail))


class SafeController:
    """A LowLevelController wrapped by a SafetyMonitor: what the control loop runs at 50 Hz."""

    def __init__(self, controller: LowLevelController, monitor: SafetyMonitor | None = None):
        self.controller = controller
        self.monitor = monitor or SafetyMonitor()
        self.control_dt = controller.control_dt
        self._was_faulted = True  # the controller starts from reset()

    def step(self, state: RobotState | None, now: float) -> MotorCommand:
        fault = self.monitor.check(state, now)
        if fault is not None:
            self._was_faulted = True
            return MotorCommand.damping(self.monitor.config.damping_kd)
        if self._was_faulted:  # first healthy tick (start, or after clear()): fresh state
            self.controller.reset(state)
            self._was_faulted = False
        command = self.monitor.active_command(now)
        return self.monitor.limit(self.controller.step(state, command), state)
