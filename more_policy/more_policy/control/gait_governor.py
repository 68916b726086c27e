"""Fail-safe governor for the analytic gait controller: what it is asked vs what it does.

A policy can emit any command in the action space; not all of it is something a kinematic
gait generator can do without falling. The governor turns the commanded velocities and gait
into ones the controller executes, degrading gracefully instead of falling:

* velocity limits: forward speed to ``max_speed``, lateral to ``max_lateral``, both together
  to the diamond |vx| / max_speed + |vy| / max_lateral <= 1 (a trot stepping diagonally
  falls well inside the two separate limits: 0.6 m/s forward with 0.3 m/s sideways); and the
  centripetal acceleration v * w to ``max_lateral_acceleration`` by slowing down (the yaw
  rate, and so the path's curvature, is kept);
* acceleration limits on the velocities (a step from 0 to 1.5 m/s is ramped);
* gait support: a gait is scored by how far the robot's centre lies outside the support of
  its stance feet over one cycle (:func:`support_deficit`: 0 for a trot, whose diagonal pairs
  pass under the centre; a pace, bound or pronk stands on one side, one end or no feet).
  Gaits whose deficit exceeds ``support_tolerance`` at the commanded speed are blended
  towards a trot, just enough to bring the deficit within tolerance;
* tilt fallback: an attitude error beyond ``tilt_limit`` (or a tilt rate beyond
  ``tilt_rate_limit``) switches to a full trot at once and halves the speed; the commanded
  gait and speed return over ``recovery_s``;
* the executed gait parameters slew (on the circle, they are phases) at ``gait_slew_rate``,
  so a policy's jumps between gaits do not teleport the feet; body height, pitch and stance
  width slew at ``max_height_rate``, ``max_pitch_rate``, ``max_width_rate`` (a 0.36 rad pitch
  step in one tick kicks the trunk round by ~0.2 rad of yaw);
* a walking envelope: while any velocity is commanded, stance width >= 0.25 m, swing
  height <= 0.09 m, body height <= 0 (nominal), |pitch| <= 0.2 rad (``GovernorConfig``; outside
  it a trot falls within seconds in MuJoCo once it turns or steps sideways). Standing, the
  full posture ranges are executed (crouch, pitch to unload).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from more_policy.control.body_estimate import BodyEstimate
from more_policy.control.gait_clock import WTW_TO_SDK_FEET, foot_phases

TROT = np.array([0.5, 0.0, 0.0])  # (phase, offset, bound)
NOMINAL_FEET_X = np.array([0.19, 0.19, -0.19, -0.19])  # SDK order FR, FL, RR, RL
FEET_Y_SIGN = np.array([-1.0, 1.0, -1.0, 1.0])
NO_SUPPORT_DEFICIT = 0.3  # m, scored for an instant with no foot on the ground
STAND_POSTURE = np.array([0.0, 0.0, 0.25, 0.08])  # height, pitch, width, swing at reset


@dataclass
class GovernorConfig:
    max_speed: float = 1.5  # m/s forward/backward
    max_lateral: float = 0.4  # m/s
    max_yaw_rate: float = 1.05  # rad/s
    max_lateral_acceleration: float = 0.6  # m/s^2, bound on |v| * |yaw rate|
    max_acceleration: float = 1.5  # m/s^2
    max_yaw_acceleration: float = 3.0  # rad/s^2
    support_tolerance: float = 0.0  # m, mean support deficit allowed at rest
    support_tolerance_per_speed: float = 0.0  # m per m/s: faster gaits may stand less
    tilt_limit: float = 0.3  # rad of roll or pitch error that forces a trot
    tilt_rate_limit: float = 3.5  # rad/s of roll or pitch rate that forces a trot
    recovery_s: float = 3.0  # s for the commanded gait to return after a tilt fallback
    gait_slew_rate: float = 2.0  # gait parameter units per s
    max_height_rate: float = 0.3  # m/s
    max_pitch_rate: float = 3.0  # rad/s (command mode: 0.36 rad through a 0.15 s lag)
    max_width_rate: float = 0.3  # m/s
    # The walking envelope: postures the trot keeps upright while moving (MuJoCo, measured).
    min_walking_stance_width: float = 0.25  # m: at 0.20 it falls when turning or sidestepping
    max_walking_swing_height: float = 0.09  # m: at 0.12 it falls when sidestepping
    max_walking_height: float = 0.0  # m: at +0.05 it falls sidestepping while turning
    max_walking_pitch: float = 0.2  # rad: 0.4 crouched at speed falls
    max_walking_pitch_rate: float = 1.0  # rad/s


@dataclass
class GovernedCommand:
    velocity: np.ndarray  # (2,) m/s, body x/y, limited and ramped
    yaw_rate: float
    gait: np.ndarray  # (3,) executed (phase, offset, bound)
    trot_blend: float  # 0 = commanded gait, 1 = trot
    posture: np.ndarray  # (4,) executed body height, pitch, stance width, swing height


def support_deficit(gait: np.ndarray, duration: float, stance_width: float,
                    samples: int = 40) -> float:
    """Mean distance [m] from the trunk centre to the support of the stance feet over a cycle
    (0 where three or more feet stand, or two on a line through the centre)."""
    feet = np.stack([NOMINAL_FEET_X, FEET_Y_SIGN * stance_width / 2.0], axis=1)  # (4, 2)
    total = 0.0
    for t in np.arange(samples) / samples:
        stance = foot_phases(t, *gait)[WTW_TO_SDK_FEET] < duration
        total += _deficit(feet[stance])
    return total / samples


def _deficit(support: np.ndarray) -> float:
    """Distance from the origin to the convex hull of ``support`` (0 for >= 3 corners)."""
    if len(support) == 0:
        return NO_SUPPORT_DEFICIT
    if len(support) == 1:
        return float(np.linalg.norm(support[0]))
    if len(support) >= 3:
        return 0.0  # the nominal feet's triangles and rectangle all contain the centre
    a, b = support
    t = np.clip(np.dot(-a, b - a) / max(np.dot(b - a, b - a), 1e-12), 0.0, 1.0)
    return float(np.linalg.norm(a + t * (b - a)))


def circular_step(current: np.ndarray, target: np.ndarray, max_step: float) -> np.ndarray:
    """Move phases ``current`` towards ``target`` along the shorter way round, <= max_step."""
    diff = np.remainder(target - current + 0.5, 1.0) - 0.5
    return np.remainder(current + np.clip(diff, -max_step, max_step), 1.0)


def blend_to_trot(gait: np.ndarray, alpha: float) -> np.ndarray:
    """(3,) gait parameters a fraction ``alpha`` of the (circular) way to a trot."""
    diff = np.remainder(TROT - gait + 0.5, 1.0) - 0.5
    return np.remainder(gait + alpha * diff, 1.0)


class GaitGovernor:
    def __init__(self, config: GovernorConfig | None = None, dt: float = 0.02):
        self.config = config or GovernorConfig()
        self.dt = dt
        self._cache: dict[tuple, float] = {}
        self.reset()

    def reset(self) -> None:
        self.velocity = np.zeros(2)
        self.yaw_rate = 0.0
        self.gait: np.ndarray | None = None  # executed parameters, set on the first update
        self.posture = STAND_POSTURE.copy()
        self.tilt_blend = 0.0
        self.trips = 0  # how often the tilt fallback fired (for tests and logs)

    def update(self, velocity: np.ndarray, yaw_rate: float, gait: np.ndarray, duration: float,
               posture: np.ndarray, body: BodyEstimate) -> GovernedCommand:
        """``posture``: (4,) commanded body height [m], pitch [rad], stance width [m], swing
        height [m]."""
        cfg, dt = self.config, self.dt
        posture = np.array(posture, dtype=float)
        pitch_rate = cfg.max_pitch_rate
        if max(abs(velocity[0]), abs(velocity[1]), abs(yaw_rate)) > 1e-3:  # walking envelope
            pitch_rate = cfg.max_walking_pitch_rate
            posture[0] = min(posture[0], cfg.max_walking_height)
            posture[1] = np.clip(posture[1], -cfg.max_walking_pitch, cfg.max_walking_pitch)
            posture[2] = max(posture[2], cfg.min_walking_stance_width)
            posture[3] = min(posture[3], cfg.max_walking_swing_height)
        rates = np.array([cfg.max_height_rate, pitch_rate, cfg.max_width_rate,
                          cfg.max_height_rate]) * dt
        self.posture += np.clip(posture - self.posture, -rates, rates)
        pitch_command, stance_width = self.posture[1], self.posture[2]
        target_v = np.array([np.clip(velocity[0], -cfg.max_speed, cfg.max_speed),
                             np.clip(velocity[1], -cfg.max_lateral, cfg.max_lateral)])
        load = abs(target_v[0]) / cfg.max_speed + abs(target_v[1]) / cfg.max_lateral
        if load > 1.0:  # diagonal walking: inside the diamond of the two limits
            target_v /= load
        target_w = float(np.clip(yaw_rate, -cfg.max_yaw_rate, cfg.max_yaw_rate))
        target_v *= 1.0 - 0.5 * self.tilt_blend
        speed = float(np.linalg.norm(target_v))
        if speed * abs(target_w) > cfg.max_lateral_acceleration:
            target_v *= cfg.max_lateral_acceleration / (speed * abs(target_w))
        self.velocity += np.clip(target_v - self.velocity, -cfg.max_acceleration * dt,
                                 cfg.max_acceleration * dt)
        self.yaw_rate += float(np.clip(target_w - self.yaw_rate, -cfg.max_yaw_acceleration * dt,
                                       cfg.max_yaw_acceleration * dt))

        tilted = (abs(body.roll) > cfg.tilt_limit
                  or abs(body.pitch - pitch_command) > cfg.tilt_limit
                  or np.max(np.abs(body.gyro[:2])) > cfg.tilt_rate_limit)
        if tilted:
            self.trips += int(self.tilt_blend < 1.0)
            self.tilt_blend = 1.0
        else:
            self.tilt_blend = max(0.0, self.tilt_blend - dt / cfg.recovery_s)
        gait = np.remainder(np.asarray(gait, dtype=float), 1.0)
        tolerance = cfg.support_tolerance + cfg.support_tolerance_per_speed * \
            float(np.linalg.norm(self.velocity))
        alpha = max(self.support_blend(gait, duration, stance_width, tolerance),
                    self.tilt_blend)
        target = blend_to_trot(gait, alpha)
        if self.gait is None:
            self.gait = target
        self.gait = circular_step(self.gait, target, cfg.gait_slew_rate * dt)
        return GovernedCommand(self.velocity.copy(), self.yaw_rate, self.gait.copy(), alpha,
                               self.posture.copy())

    def support_blend(self, gait: np.ndarray, duration: float, stance_width: float,
                      tolerance: float) -> float:
        """Smallest blend towards a trot (in steps of 0.1) whose support deficit is within
        ``tolerance``; cached per (gait, duration, width, tolerance) on a 0.01 grid."""
        key = (*np.round(gait, 2), round(duration, 2), round(stance_width, 2),
               round(tolerance, 3))
        if key not in self._cache:
            if len(self._cache) > 10_000:
                self._cache.clear()
            for alpha in np.linspace(0.0, 1.0, 11):
                if support_deficit(blend_to_trot(gait, alpha), duration,
                                   stance_width) <= tolerance:
                    break
            self._cache[key] = float(alpha)
        return self._cache[key]
