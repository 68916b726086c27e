"""Analytic gait controller: the default low-level controller when no learned checkpoint is given.

Same command interface as the walk-these-ways runner (the 12-d MoRE command, read through its
15-slot walk-these-ways vector) and the same foot timing (:class:`GaitClock`). Each tick:

1. estimate the body state (:mod:`body_estimate`): roll/pitch from the IMU, forward velocity
   from the legs in sensed ground contact;
2. the command envelope (:class:`~more_policy.control.envelope.CommandEnvelope`, shared with
   the walk-these-ways runner) turns the command into one the controller keeps upright:
   velocity, acceleration and turning limits, gaits without support under the trunk slower,
   faster-stepping and blended towards a trot when fast or turning (they barely move
   otherwise), slewed gait and posture, a walking posture envelope; the
   governor (:mod:`gait_governor`) adds the closed-loop tilt fallback to a trot;
3. every foot's phase from the gait index and the executed (phase, offset, bound) -- the
   walk-these-ways family: trot, pace, bound, pronk and every blend; stance for the first
   ``duration`` of the cycle, swing for the rest. Gaits without support under the trunk stand
   longer (``unsupported_duration``) so their unsupported phase is short;
4. foot targets in a level frame under each hip: lateral from the stance width, height from
   nominal height + body height; in stance a foot sweeps backwards at the hip's velocity over
   the ground (body velocity plus yaw rate x hip position); in swing it moves to the Raibert
   landing point (half the stance sweep ahead of the hip) along a raised cosine of the swing
   height. The sweep is closed loop: forward speed by an integral term on the leg-odometry
   estimate (open loop, scaled by ``velocity_scale``, when the state has no foot forces), yaw
   rate by PI on the gyro; the step frequency rises when a stride would exceed
   ``max_stride``;
5. the level-frame targets rotated by the commanded pitch into the trunk frame (nose down +,
   the actions.py convention; the walk-these-ways slot is nose up +);
6. leg inverse kinematics -> joint targets, PD gains (damping falls from ``kd`` at rest to
   ``kd_top_speed``), and a feed-forward torque J^T f carrying the weight on the stance feet.

When the commanded velocities stay at zero the swing height fades out and the robot stands.

Measured in the MuJoCo sim (tests/test_control_envelope.py, tests/test_control_gait.py,
bench/bench_control_tracking.py): of 500 uniformly random in-range commands plus the corners
and the demo's saturated command, each held 5 s and switched abruptly, none fell and no
safety fault tripped (the two that fell before the envelope blended turning pace/bound gaits
into a trot are regression cases there); the feet's contact pattern
follows the commanded trot, pace, bound and blends to within 0.1 cycle (a pronk's front feet
land ~0.2 cycle after the rear ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from more_policy.actions import WTW_SLOTS, ActionSpace
from more_policy.control.body_estimate import BodyStateEstimator
from more_policy.control.envelope import CommandEnvelope, EnvelopeConfig
from more_policy.control.gait_clock import WTW_TO_SDK_FEET, GaitClock
from more_policy.control.gait_governor import GaitGovernor, GovernedCommand, GovernorConfig
from more_policy.control.kinematics import (
    HIP_POSITIONS,
    forward_kinematics,
    inverse_kinematics,
    leg_jacobian,
)
from more_policy.robot.go2 import NUM_MOTORS, TOTAL_MASS, MotorCommand, RobotState

GRAVITY = 9.81


@dataclass
class GaitConfig:
    nominal_height: float = 0.30  # hip plane above the foot centres at body_height 0 [m]
    foot_x_offset: float = 0.0  # nominal foot x relative to its hip [m]
    # Stiff joints: the gait is kinematic, foot placement is only as good as the tracking.
    kp: float = 100.0
    kd: float = 5.0  # at rest and slow: 2.0 bounced into falls under fast-changing commands
    kd_top_speed: float = 2.0  # at top_speed (4.0 holds a 1.5 m/s trot to ~0.9 m/s)
    top_speed: float = 1.5  # m/s; kd is interpolated linearly in between
    weight_feedforward: float = 1.0  # fraction of the weight carried by feed-forward torque
    yaw_rate_feedback: float = 0.5  # adds gain * (commanded - measured) yaw rate
    yaw_integral_gain: float = 1.0  # 1/s: and the integral of that error, times this gain
    yaw_correction_limit: float = 0.5  # rad/s, bound on the integral term
    # Stance sweep speed per commanded m/s before the speed loop's correction: the feet slip
    # and lag a little, so the sweep is faster than the command (1.4 in the MuJoCo sim).
    velocity_scale: float = 1.4
    lateral_velocity_scale: float = 1.2  # the same sideways (open loop)
    min_foot_depth: float = 0.14  # m: feet never rise closer than this to the hip plane
    stand_velocity: float = 1e-3  # |v|, |yaw rate| below this count as "stand still"
    stand_fade_s: float = 0.1  # swing height fades in/out over this when starting/stopping
    # Stopping: the swing fades while the envelope still decelerates, but never below the
    # executed speed over these (the legs keep stepping until the trunk is nearly still).
    stop_speed: float = 0.3  # m/s
    stop_yaw_rate: float = 0.4  # rad/s
    control_dt: float = 0.02
    # -- feedback (needs foot forces for the velocity estimate; open loop without them) --
    speed_integral_gain: float = 1.5  # 1/s: sweep correction += gain * dt * velocity error
    speed_correction_limit: float = 0.3  # m/s, bound on that correction
    # Longest stance sweep [m]: faster sweeps raise the step frequency above the command
    # (a 1.5 m/s trot at 3.5 Hz would otherwise reach the edge of the legs' workspace).
    max_stride: float = 0.25
    # Pitch trim: a slow integral on the IMU pitch error (at speed the trunk rides nose-up
    # ~0.05 rad, enough to touch the crawl bar).
    pitch_integral_gain: float = 1.0  # 1/s
    pitch_trim_limit: float = 0.1  # rad
    # Stance fraction of gaits without support under the trunk (pace, bound, pronk): at 0.5
    # a 3 Hz pace at 0.5 m/s falls in MuJoCo, at 0.65 every gait corner walks.
    unsupported_duration: float = 0.65


def pitch_matrix(pitch: float) -> np.ndarray:
    """Rotation about +y by ``pitch`` (positive = nose down)."""
    c, s = np.cos(pitch), np.sin(pitch)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


class GaitController:
    """LowLevelController: kinematic trot/pace/bound/pronk generator with Raibert placement,
    attitude and speed feedback, behind a fail-safe :class:`GaitGovernor`."""

    def __init__(self, config: GaitConfig | None = None,
                 action_space: ActionSpace | None = None,
                 governor: GovernorConfig | None = None,
                 envelope: EnvelopeConfig | None = None):
        self.config = config or GaitConfig()
        self.space = action_space or ActionSpace()
        self.control_dt = self.config.control_dt
        self.clock = GaitClock()
        self.estimator = BodyStateEstimator(self.control_dt)
        self.governor = GaitGovernor(governor, self.control_dt)
        self.envelope = CommandEnvelope(envelope, self.space, self.control_dt)
        self.stepping = 0.0  # 0 = standing, 1 = full swing height
        self.feet = forward_kinematics(np.zeros(NUM_MOTORS))  # (4, 3) last targets
        self.contact = np.ones(4)  # (4,) planned stance (1) / swing (0), SDK foot order
        # (2,) m/s added to the stance sweep; forward only (a sideways loop tipped diagonal walks)
        self.speed_correction = np.zeros(2)
        self.yaw_correction = 0.0  # rad/s added to the sweep's yaw rate
        self.pitch_trim = 0.0  # rad added to the commanded pitch
        self.governed: GovernedCommand | None = None  # what the last tick executed
        self._velocity_dims = [self.space.index(n) for n in ("vel_x", "vel_y", "yaw_rate")]

    def reset(self, state: RobotState) -> None:
        self.clock.reset()
        self.estimator.reset()
        self.governor.reset()
        self.envelope.reset()
        self.stepping = 0.0
        self.contact = np.ones(4)
        self.speed_correction, self.yaw_correction = np.zeros(2), 0.0
        self.pitch_trim = 0.0

    def step(self, state: RobotState, command: np.ndarray) -> MotorCommand:
        cfg = self.config
        walk = np.abs(self.space.clip(command)[self._velocity_dims]).max() > cfg.stand_velocity
        command = self.envelope.apply(command)
        slot = dict(zip(WTW_SLOTS, self.space.to_wtw_command(command), strict=True))
        slot["pitch"] = -slot["pitch"]  # walk-these-ways' nose-up + -> our nose-down +
        frequency = max(slot["step_frequency"], 1e-3)
        body = self.estimator.update(state)
        gov = self.governor.update(
            np.array([slot["x_vel"], slot["y_vel"]]), slot["yaw_vel"],
            np.array([slot["phase"], slot["offset"], slot["bound"]]), slot["pitch"], body)
        self.governed = gov
        duration = float(np.clip(slot["duration"], 0.05, 0.95))
        if self.envelope.deficit(gov.gait, slot["stance_width"]) > \
                self.envelope.config.unsupported_deficit:
            duration = max(duration, cfg.unsupported_duration)
        if np.all(np.isfinite(state.quat)):
            self.pitch_trim = float(np.clip(
                self.pitch_trim + cfg.pitch_integral_gain * cfg.control_dt
                * (slot["pitch"] - body.pitch), -cfg.pitch_trim_limit, cfg.pitch_trim_limit))
        slot["pitch"] += self.pitch_trim
        moving = walk or max(*np.abs(gov.velocity), abs(gov.yaw_rate)) > cfg.stand_velocity
        fade = cfg.control_dt / cfg.stand_fade_s
        still_needed = max(float(np.linalg.norm(gov.velocity)) / cfg.stop_speed,
                           abs(gov.yaw_rate) / cfg.stop_yaw_rate)
        self.stepping = float(np.clip(max(self.stepping + (fade if walk else -fade),
                                          still_needed), 0.0, 1.0))
        yaw_rate = gov.yaw_rate
        if np.isfinite(state.gyro[2]):  # PI on the gyro's yaw rate
            yaw_error = gov.yaw_rate - state.gyro[2]
            if self.stepping >= 1.0:
                self.yaw_correction = float(np.clip(
                    self.yaw_correction + cfg.yaw_integral_gain * cfg.control_dt * yaw_error,
                    -cfg.yaw_correction_limit, cfg.yaw_correction_limit))
            yaw_rate += cfg.yaw_rate_feedback * yaw_error + self.yaw_correction
        if body.velocity_valid and self.stepping >= 1.0:  # integral loop on forward speed
            self.speed_correction[0] = np.clip(
                self.speed_correction[0] + cfg.speed_integral_gain * cfg.control_dt
                * (gov.velocity[0] - body.velocity[0]), -cfg.speed_correction_limit,
                cfg.speed_correction_limit)
        elif not moving:
            self.speed_correction, self.yaw_correction = np.zeros(2), 0.0
        velocity = gov.velocity * [cfg.velocity_scale, cfg.lateral_velocity_scale] \
            + self.speed_correction  # (2,) stance sweep velocity
        frequency = max(frequency, float(np.linalg.norm(velocity)) * duration / cfg.max_stride)
        if self.stepping > 0.0 or moving:
            self.clock.advance(cfg.control_dt, frequency)

        phases = self.clock.phases(*gov.gait)[WTW_TO_SDK_FEET]  # (4,) SDK foot order
        stance_time = duration / frequency
        feet = self.foot_targets(phases, duration, stance_time, velocity, yaw_rate, slot)
        feet = feet @ pitch_matrix(slot["pitch"])  # level frame -> trunk frame (R^T p)
        feet[:, 2] = np.minimum(feet[:, 2], -cfg.min_foot_depth)  # high swing + deep crouch
        self.feet = feet
        q = inverse_kinematics(feet)
        tau = self.weight_torques(q, phases < duration)
        kd = np.interp(float(np.linalg.norm(gov.velocity)), [0.0, cfg.top_speed],
                       [cfg.kd, cfg.kd_top_speed])
        return MotorCommand(q=q, kp=np.full(NUM_MOTORS, cfg.kp), kd=np.full(NUM_MOTORS, kd),
                            tau=tau)

    def foot_targets(self, phases: np.ndarray, duration: float, stance_time: float,
                     velocity: np.ndarray, yaw_rate: float, slot: dict) -> np.ndarray:
        """(4, 3) foot targets in the level frame for the SDK feet."""
        cfg = self.config
        nominal = np.stack([
            HIP_POSITIONS[:, 0] + cfg.foot_x_offset,
            np.sign(HIP_POSITIONS[:, 1]) * slot["stance_width"] / 2.0,
            np.full(4, -(cfg.nominal_height + slot["body_height"])),
        ], axis=1)  # (4, 3) level frame
        # Velocity of each nominal foot point over the ground: v + w x r.
        hip_velocity = velocity[None, :] + yaw_rate * np.stack(
            [-nominal[:, 1], nominal[:, 0]], axis=1)  # (4, 2)
        sweep = hip_velocity * stance_time  # (4, 2) ground distance covered in one stance
        feet = nominal.copy()
        self.contact = ((phases < duration) | (self.stepping == 0.0)).astype(float)
        for i in range(4):
            if phases[i] < duration:  # stance: the foot moves backwards under the hip
                s = phases[i] / duration
                feet[i, :2] += sweep[i] * (0.5 - s)
            else:  # swing: from lift-off to the landing point, raised cosine in height
                s = (phases[i] - duration) / (1.0 - duration)
                blend = 0.5 - 0.5 * np.cos(np.pi * s)  # 0 -> 1 with zero end velocities
                feet[i, :2] += sweep[i] * (blend - 0.5)
                lift = slot["footswing_height"] * self.stepping
                feet[i, 2] += lift * 0.5 * (1.0 - np.cos(2.0 * np.pi * s))
        return feet

    def weight_torques(self, q: np.ndarray, stance: np.ndarray) -> np.ndarray:
        """(12,) tau = J^T f with the weight shared by the planned stance feet."""
        cfg = self.config
        tau = np.zeros(NUM_MOTORS)
        support = np.where(stance | (self.stepping < 1.0), 1.0, 0.0)
        if cfg.weight_feedforward <= 0 or support.sum() == 0:
            return tau
        force = np.array([0.0, 0.0, -cfg.weight_feedforward * TOTAL_MASS * GRAVITY
                          / support.sum()])  # what each stance foot pushes on the ground
        for i in np.flatnonzero(support):
            tau[3 * i:3 * i + 3] = leg_jacobian(q[3 * i:3 * i + 3], i).T @ force
        return tau
