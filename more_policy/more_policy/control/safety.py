"""Safety rules between the 12-d command, the low-level controller and the motors.

Rules (each has a test in tests/test_control_safety.py or tests/test_control_envelope.py):

* command clamping: every incoming command is clipped to the action-space ranges (an explicit
  parameter: the checkpoint's action_space.json on the robot); commands with NaN/inf are
  rejected (the previous one stays) and counted;
* command envelope (:mod:`more_policy.control.envelope`, applied by both low-level
  controllers, analytic and walk-these-ways, to every command): what any in-range command
  becomes so that the robot executes it without falling;
* command timeout: no fresh command for ``command_timeout_s``, counted from when the command
  was produced (its stamp, :meth:`ControlLoop.set_command`) on the control loop's monotonic
  clock -> the stand command (zero velocity, stand defaults). The stop is a budget: the
  timeout, at most one control tick to see it, the envelope's deceleration (0.08 s from
  0.5 m/s at ``max_deceleration``), the swing fading out (~0.1 s) and the last foot landing
  (0.1-0.2 s): standing still 0.38-0.54 s after the last command at 0.5 m/s, straight or
  turning at 1 rad/s, in simulated time over the gait phase (0.46-0.6 s with the former
  0.2 s timeout), leaving the rest of 0.6 s for DDS and scheduling
  (tests/test_robot_dds_safety.py measures it over DDS). From top speed (1.5 m/s) the
  deceleration alone takes 0.25 s;
* state timeout: the newest LowState older than ``state_timeout_s`` at two control ticks in a
  row -> damping (one late packet is tolerated; real loss damps within state_timeout_s + 2
  ticks);
* sensor faults: a non-finite joint position/velocity/torque, a non-finite, zero or
  non-unit IMU quaternion, a non-finite or out-of-range gyro / accelerometer reading, or a
  non-finite or out-of-range foot force -> damping on the tick that sees it;
* e-stop: :meth:`SafetyMonitor.estop` -> damping from the very next control tick;
* tilt: roll or pitch beyond ``tilt_limit_rad`` -> damping;
* joint position / velocity: a measured joint beyond its URDF limit (+ margin) or its
  velocity limit -> damping; joint targets are clipped into the URDF limits;
* torque: feed-forward torque and PD targets are limited so the commanded torque at the
  measured state stays within the motor torque limits.

Faults latch: the robot stays in damping until :meth:`SafetyMonitor.clear` (an operator
action). Each fault is logged once, with its reason, on the ``more_policy.control.safety``
logger (the console) when it trips.
"""

from __future__ import annotations

import enum
import logging
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

log = logging.getLogger(__name__)


class Fault(enum.Enum):
    ESTOP = "e-stop"
    STATE_TIMEOUT = "state timeout"
    TILT = "tilt limit"
    JOINT_POSITION = "joint position limit"
    JOINT_VELOCITY = "joint velocity limit"
    JOINT_SENSOR = "joint sensor data invalid"
    IMU_SENSOR = "IMU data invalid"
    FOOT_SENSOR = "foot force data invalid"


@dataclass
class SafetyConfig:
    # the policy publishes at 10 Hz (policy_node max_rate_hz): one late or lost command stops
    command_timeout_s: float = 0.15
    state_timeout_s: float = 0.08  # 40 LowState periods at 500 Hz, seen on two ticks in a row
    tilt_limit_rad: float = 0.8  # ~46 deg of roll or pitch
    joint_position_margin: float = 0.1  # rad beyond the URDF limits before a fault
    velocity_limit_factor: float = 1.0  # fault above this fraction of the rated velocity
    quat_norm_tolerance: float = 0.1  # |1 - |q|| beyond this: not a rotation (zero, garbage)
    max_gyro: float = 35.0  # rad/s: the IMU's range (2000 deg/s)
    max_accel: float = 160.0  # m/s^2: the IMU's range (16 g)
    foot_force_range: tuple[float, float] = (-100.0, 2000.0)  # raw units (sim: N)
    damping_kd: float = DAMPING_KD

    def __post_init__(self) -> None:
        for name in ("command_timeout_s", "state_timeout_s", "tilt_limit_rad",
                     "velocity_limit_factor", "quat_norm_tolerance", "max_gyro", "max_accel",
                     "damping_kd"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SafetyConfig.{name} must be > 0, got {getattr(self, name)}")
        if not self.foot_force_range[0] < self.foot_force_range[1]:
            raise ValueError(f"SafetyConfig.foot_force_range must be (low, high) with low < "
                             f"high, got {self.foot_force_range}")


def tilt_angle(quat: np.ndarray) -> float:
    """Angle between the body z axis and the world vertical, from a wxyz quaternion."""
    w, x, y, z = np.asarray(quat, dtype=np.float64) / np.linalg.norm(quat)
    body_z_world_z = 1.0 - 2.0 * (x * x + y * y)  # R[2, 2]
    return float(np.arccos(np.clip(body_z_world_z, -1.0, 1.0)))


def sensor_fault(state: RobotState, cfg: SafetyConfig) -> tuple[Fault, str] | None:
    """The first invalid field class of ``state`` (joints, IMU, feet), None if all are valid."""
    for name in ("q", "dq", "tau"):
        bad = ~np.isfinite(np.asarray(getattr(state, name), dtype=np.float64))
        if bad.any():
            return Fault.JOINT_SENSOR, f"non-finite {name} at joints {np.flatnonzero(bad).tolist()}"
    quat = np.asarray(state.quat, dtype=np.float64)
    if not np.all(np.isfinite(quat)) or abs(np.linalg.norm(quat) - 1.0) > cfg.quat_norm_tolerance:
        return Fault.IMU_SENSOR, f"quaternion {np.round(quat, 3).tolist()} is not a rotation"
    for name, limit in (("gyro", cfg.max_gyro), ("accel", cfg.max_accel)):
        value = np.asarray(getattr(state, name), dtype=np.float64)
        if not np.all(np.isfinite(value)) or np.abs(value).max() > limit:
            return Fault.IMU_SENSOR, f"{name} {np.round(value, 2).tolist()} outside +-{limit}"
    force = np.asarray(state.foot_force, dtype=np.float64)
    low, high = cfg.foot_force_range
    bad = ~(np.isfinite(force) & (force >= low) & (force <= high))
    if bad.any():
        return Fault.FOOT_SENSOR, (f"foot force {force.tolist()} outside [{low:g}, {high:g}] "
                                   f"at feet {np.flatnonzero(bad).tolist()}")
    return None




@dataclass
class SafetyStatus:
    fault: Fault | None = None
    detail: str = ""
    rejected_commands: int = 0
    clamped_commands: int = 0
    command_timed_out: bool = False
    fault_time: float | None = None
    history: list[tuple[float, Fault, str]] = field(default_factory=list)

    def reason(self) -> str:
        """'<fault>: <detail>' of the latched fault, '' when there is none."""
        return "" if self.fault is None else f"{self.fault.value}: {self.detail}"


class SafetyMonitor:
    """Holds the active command and the latched fault; all times are caller-supplied seconds.

    ``action_space`` gives the command ranges the clamping uses: pass the one the policy was
    trained with (its checkpoint's action_space.json)."""

    def __init__(self, config: SafetyConfig | None = None,
                 action_space: ActionSpace | None = None):
        self.config = config or SafetyConfig()
        self.space = action_space or ActionSpace()
        self.status = SafetyStatus()
        self._stand = self.space.default_command()  # (12,) zero velocity, stand defaults
        self._command = self._stand.copy()
        self._command_time: float | None = None
        self._state_time: float | None = None
        self._stale_ticks = 0  # consecutive checks that found the newest LowState too old

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

    @property
    def command_time(self) -> float | None:
        """When the active command was accepted (None: none yet, or cleared)."""
        return self._command_time

    def estop(self, now: float, reason: str = "operator") -> None:
        self._trip(Fault.ESTOP, reason, now)

    def clear(self) -> None:
        """Operator reset after a fault; the command restarts from standing still."""
        self.status.fault = None
        self.status.detail = ""
        self.status.fault_time = None
        self._stale_ticks = 0
        self._command, self._command_time = self._stand.copy(), None

    # -- outputs -------------------------------------------------------------------------
    def active_command(self, now: float) -> np.ndarray:
        """The command to track now: the stand command once the last one is too old (the
        controllers' envelope bounds the deceleration)."""
        age = float("inf") if self._command_time is None else now - self._command_time
        self.status.command_timed_out = age > self.config.command_timeout_s
        return (self._stand if self.status.command_timed_out else self._command).copy()

    def check(self, state: RobotState | None, now: float) -> Fault | None:
        """Evaluate the state rules; returns the (latched) fault, None when all is well."""
        if self.status.fault is not None:
            return self.status.fault
        cfg = self.config
        if self._state_time is None or state is None or now - self._state_time > \
                cfg.state_timeout_s:
            self._stale_ticks += 1
            if self._state_time is None or state is None or self._stale_ticks >= 2:
                age = "never" if self._state_time is None else f"{now - self._state_time:.3f} s"
                self._trip(Fault.STATE_TIMEOUT, f"last LowState {age} ago", now)
                return self.status.fault
        else:
            self._stale_ticks = 0
        invalid = sensor_fault(state, cfg)
        if invalid is not None:
            self._trip(*invalid, now)
            return self.status.fault
        tilt = tilt_angle(state.quat)
        if tilt > cfg.tilt_limit_rad:
            self._trip(Fault.TILT, f"tilt {tilt:.2f} rad > {cfg.tilt_limit_rad}", now)
        q = np.asarray(state.q)
        outside = (q < JOINT_LOWER - cfg.joint_position_margin) | \
                  (q > JOINT_UPPER + cfg.joint_position_margin)
        if self.status.fault is None and outside.any():
            self._trip(Fault.JOINT_POSITION, f"joints {np.flatnonzero(outside).tolist()} at "
                       f"{np.round(q[outside], 2).tolist()} rad", now)
        too_fast = np.abs(state.dq) > cfg.velocity_limit_factor * VELOCITY_LIMIT
        if self.status.fault is None and too_fast.any():
            self._trip(Fault.JOINT_VELOCITY, f"joints {np.flatnonzero(too_fast).tolist()} at "
                       f"{np.round(np.asarray(state.dq)[too_fast], 1).tolist()} rad/s", now)
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
            log.error("safety fault, motors damped: %s", self.status.reason())


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
