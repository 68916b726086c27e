"""Fail-safe governor of the analytic gait controller: the closed-loop part of "never fall".

The open-loop limits (speed, turning load, acceleration, posture, gait ramps) are the command
envelope in :mod:`more_policy.control.envelope`, applied before the controller sees a command.
What stays here needs the body state:

* tilt fallback: an attitude error beyond ``tilt_limit`` (or a tilt rate beyond
  ``tilt_rate_limit``) switches to a full trot at once and halves the speed; the commanded
  gait and speed return over ``recovery_s``. The executed gait moves at ``gait_slew_rate``
  on the circle, so the fallback never jumps the feet either.

:func:`support_deficit` scores a gait by how far the trunk's centre lies outside the support
of its stance feet over one cycle (0 for a trot, whose diagonal pairs pass under the centre;
a pace, bound or pronk stands on one side, one end or no feet): the envelope and the
controller's duty factor use it.
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


@dataclass
class GovernorConfig:
    tilt_limit: float = 0.3  # rad of roll or pitch error that forces a trot
    # rad/s of roll or pitch rate that forces a trot (a 4 Hz pronk pitches at up to ~4.1)
    tilt_rate_limit: float = 5.0
    recovery_s: float = 3.0  # s for the commanded gait to return after a tilt fallback
    gait_slew_rate: float = 2.0  # gait parameter units per s


@dataclass
class GovernedCommand:
    velocity: np.ndarray  # (2,) m/s, body x/y
    yaw_rate: float
    gait: np.ndarray  # (3,) executed (phase, offset, bound)
    trot_blend: float  # 0 = commanded gait, 1 = trot


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
        self.reset()

    def reset(self) -> None:
        self.gait: np.ndarray | None = None  # executed parameters, set on the first update
        self.tilt_blend = 0.0
        self.trips = 0  # how often the tilt fallback fired (for tests and logs)

    def update(self, velocity: np.ndarray, yaw_rate: float, gait: np.ndarray,
               pitch_command: float, body: BodyEstimate) -> GovernedCommand:
        """``velocity``, ``yaw_rate``, ``gait``: the (enveloped) command; ``pitch_command``
        the commanded body pitch [rad] the attitude error is measured against."""
        cfg, dt = self.config, self.dt
        tilted = (abs(body.roll) > cfg.tilt_limit
                  or abs(body.pitch - pitch_command) > cfg.tilt_limit
                  or np.max(np.abs(body.gyro[:2])) > cfg.tilt_rate_limit)
        if tilted:
            self.trips += int(self.tilt_blend < 1.0)
            self.tilt_blend = 1.0
        else:
            self.tilt_blend = max(0.0, self.tilt_blend - dt / cfg.recovery_s)
        target = blend_to_trot(np.remainder(np.asarray(gait, dtype=float), 1.0),
                               self.tilt_blend)
        if self.gait is None:
            self.gait = target
        self.gait = circular_step(self.gait, target, cfg.gait_slew_rate * dt)
        return GovernedCommand(np.asarray(velocity, dtype=float) * (1.0 - 0.5 * self.tilt_blend),
                               float(yaw_rate), self.gait.copy(), self.tilt_blend)
