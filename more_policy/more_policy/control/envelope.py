"""The command envelope: what any in-range 12-d command becomes so that the robot executes it
without falling. Applied by both low-level controllers (analytic and walk-these-ways) to every
command, after the safety monitor's clamping and timeout; the rules are in
:class:`CommandEnvelope`, every limit in :class:`EnvelopeConfig`, each measured in MuJoCo
physics (tests/test_control_envelope.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from more_policy.actions import ActionSpace
from more_policy.control.gait_governor import blend_to_trot, circular_step, support_deficit

VELOCITY_DIMS = ("vel_x", "vel_y", "yaw_rate")
GAIT_DIMS = ("gait_phase", "gait_offset", "gait_bound")
POSTURE_DIMS = ("body_height", "body_pitch", "stance_width", "swing_height")


@dataclass
class EnvelopeConfig:
    """The command envelope: every limit, measured in MuJoCo physics (tests/
    test_control_envelope.py: 500 random commands held 5 s each, none falls)."""

    max_speed: float = 1.5  # m/s forward/backward (the range goes to 2.1)
    max_lateral: float = 0.4  # m/s; with vel_x: inside the diamond |vx|/max + |vy|/max <= 1
    max_yaw_rate: float = 1.05  # rad/s
    max_lateral_acceleration: float = 0.6  # m/s^2, bound on |v| * |yaw rate| (slows down)
    max_acceleration: float = 1.5  # m/s^2 speeding up
    max_deceleration: float = 6.0  # m/s^2 slowing down: from max_speed to a stop in 0.25 s
    max_yaw_acceleration: float = 3.0  # rad/s^2 (stopping a turn: twice that)
    gait_slew_rate: float = 2.0  # gait parameter units per s (on the circle: they are phases)
    max_height_rate: float = 0.3  # m/s, also for the swing height
    max_pitch_rate: float = 3.0  # rad/s standing (0.36 rad through a 0.15 s lag)
    max_walking_pitch_rate: float = 1.0  # rad/s while walking
    max_width_rate: float = 0.3  # m/s
    min_stance_width: float = 0.15  # m, always: at 0.10 a crouched, pitched stand tips over
    # The walking envelope: postures a trot keeps upright while moving (MuJoCo, measured).
    min_walking_stance_width: float = 0.25  # m: at 0.20 it falls when turning or sidestepping
    max_walking_swing_height: float = 0.09  # m: at 0.12 it falls when sidestepping
    max_walking_height: float = 0.0  # m: at +0.05 it falls sidestepping while turning
    max_walking_pitch: float = 0.2  # rad: 0.4 crouched at speed falls
    # Gaits without support under the trunk (pace, bound, pronk and their blends; the trot
    # has none): slower, and a faster step so the unsupported phase is short.
    unsupported_deficit: float = 0.02  # m of support deficit (gait_governor.support_deficit)
    max_unsupported_speed: float = 1.0  # m/s
    # They only walk slowly: faster their feet slip (MuJoCo: a pronk commanded 0.6 m/s makes
    # 0.12 m/s, a bound turning in place at 1 rad/s turns the other way), so commanded faster
    # than unsupported_gait_speed the gait blends towards a trot, fully from trot_speed.
    unsupported_gait_speed: float = 0.5  # m/s; a turn at w counts as w * turn_radius
    trot_speed: float = 0.6  # m/s
    turn_radius: float = 2.5  # m: turning from 0.2 rad/s blends (a pronk barely turns)
    # s from a full trot back to the commanded gait: the trunk still moves while the command
    # slows (a pace returning in 0.25 s at 0.7 m/s pitched over)
    trot_release_s: float = 1.0
    # Hz, also for the trot they blend into: at 3.5 a bound or pronk pitches at > 3.5 rad/s,
    # a 2 Hz trot sidestepping and turning after the corner commands fell
    min_unsupported_frequency: float = 4.0


class CommandEnvelope:
    """Turns any in-range 12-d command into one the controllers execute without falling.

    Per control tick, on the command in actions.py order and units:

    1. gait: commanded faster than ``unsupported_gait_speed`` (or turning faster than that
       over ``turn_radius``, unless sidestepping), a gait without support blends towards a
       trot, fully at ``trot_speed``; the blend releases over ``trot_release_s``. Turning
       counts because a pace/bound blend turning at 0.8 rad/s, switched from another such
       blend, rolls over (the property run's two falls, now regression cases in
       tests/test_control_envelope.py). The executed (phase, offset, bound) moves towards
       that along the shorter way round the circle at ``gait_slew_rate`` (a gait switch never
       jumps the feet);
    2. velocities: |vx| <= max_speed, |vy| <= max_lateral, both inside the diamond of the two,
       |yaw| <= max_yaw_rate; the centripetal load |v| |yaw| <= max_lateral_acceleration by
       slowing down (the path's curvature is kept); an unsupported gait (pace, bound, pronk)
       at most max_unsupported_speed. Then ramped: max_acceleration up, max_deceleration down;
    3. step frequency: an unsupported gait, or one commanded and blended into a trot, steps
       at >= min_unsupported_frequency;
    4. posture: stance width >= min_stance_width; while moving the walking envelope (width,
       swing height, body height, pitch); height, pitch, width and swing slewed;
    5. terminate passes through.
    """

    def __init__(self, config: EnvelopeConfig | None = None,
                 action_space: ActionSpace | None = None, dt: float = 0.02):
        self.config = config or EnvelopeConfig()
        self.space = action_space or ActionSpace()
        self.dt = dt
        index = self.space.index
        self._vel = [index(n) for n in VELOCITY_DIMS]
        self._gait = [index(n) for n in GAIT_DIMS]
        self._posture = [index(n) for n in POSTURE_DIMS]
        self._frequency = index("step_frequency")
        self._deficits: dict[tuple, float] = {}
        self.reset()

    def reset(self) -> None:
        self.velocity = np.zeros(3)  # executed vx, vy, yaw rate
        self.gait: np.ndarray | None = None  # executed (phase, offset, bound), set on first use
        self.trot_blend = 0.0  # how far an unsupported gait is blended towards a trot
        self.posture: np.ndarray | None = None  # executed height, pitch, width, swing

    def deficit(self, gait: np.ndarray, stance_width: float, duration: float = 0.5) -> float:
        """support_deficit on a 0.01 grid, cached (it samples a whole gait cycle)."""
        key = (*np.round(gait, 2), round(stance_width, 2), round(duration, 2))
        if key not in self._deficits:
            if len(self._deficits) > 10_000:
                self._deficits.clear()
            self._deficits[key] = support_deficit(np.array(key[:3]), key[4], key[3])
        return self._deficits[key]

    def apply(self, command: np.ndarray) -> np.ndarray:
        cfg, dt = self.config, self.dt
        out = self.space.clip(command)
        vx, vy, w = out[self._vel]
        target = np.array([np.clip(vx, -cfg.max_speed, cfg.max_speed),
                           np.clip(vy, -cfg.max_lateral, cfg.max_lateral),
                           np.clip(w, -cfg.max_yaw_rate, cfg.max_yaw_rate)])
        asked = target.copy()  # the gait blend goes by the speed asked for
        load = abs(target[0]) / cfg.max_speed + abs(target[1]) / cfg.max_lateral
        if load > 1.0:
            target[:2] /= load

        width = max(out[self._posture[2]], cfg.min_stance_width)
        target_gait = np.remainder(out[self._gait], 1.0)
        asked_unsupported = self.deficit(target_gait, width) > cfg.unsupported_deficit
        if asked_unsupported:
            # a turn counts less while sidestepping: a trot stepping sideways while turning
            # fast is the demo's fall (issue 14), there the commanded gait stays
            sidestep = abs(asked[1]) / cfg.max_lateral
            motion = max(float(np.hypot(*asked[:2])),
                         abs(asked[2]) * cfg.turn_radius * (1.0 - sidestep))
            blend = float(np.clip((motion - cfg.unsupported_gait_speed) / max(
                cfg.trot_speed - cfg.unsupported_gait_speed, 1e-9), 0.0, 1.0))
            self.trot_blend = max(blend, self.trot_blend - dt / cfg.trot_release_s)
            target_gait = blend_to_trot(target_gait, self.trot_blend)
        else:
            self.trot_blend = 0.0
        if self.gait is None:
            self.gait = target_gait
        self.gait = circular_step(self.gait, target_gait, cfg.gait_slew_rate * dt)
        out[self._gait] = self.gait

        unsupported = self.deficit(self.gait, width) > cfg.unsupported_deficit
        speed = float(np.hypot(*target[:2]))
        limit = cfg.max_unsupported_speed if unsupported else cfg.max_speed
        if speed > limit:
            target[:2] *= limit / speed
            speed = limit
        if speed * abs(target[2]) > cfg.max_lateral_acceleration:
            target[:2] *= cfg.max_lateral_acceleration / (speed * abs(target[2]))
        speeding_up = np.abs(target) > np.abs(self.velocity)
        rate = np.where(speeding_up, [cfg.max_acceleration] * 2 + [cfg.max_yaw_acceleration],
                        [cfg.max_deceleration] * 2 + [2 * cfg.max_yaw_acceleration]) * dt
        self.velocity += np.clip(target - self.velocity, -rate, rate)
        out[self._vel] = self.velocity
        if unsupported or asked_unsupported:  # the trot it blends into steps as fast
            out[self._frequency] = max(out[self._frequency], cfg.min_unsupported_frequency)

        posture = out[self._posture]
        posture[2] = max(posture[2], cfg.min_stance_width)
        pitch_rate = cfg.max_pitch_rate
        if np.abs(target).max() > 1e-3 or np.abs(self.velocity).max() > 1e-3:
            pitch_rate = cfg.max_walking_pitch_rate
            posture[0] = min(posture[0], cfg.max_walking_height)
            posture[1] = np.clip(posture[1], -cfg.max_walking_pitch, cfg.max_walking_pitch)
            posture[2] = max(posture[2], cfg.min_walking_stance_width)
            posture[3] = min(posture[3], cfg.max_walking_swing_height)
        if self.posture is None:
            self.posture = posture.copy()
        rates = np.array([cfg.max_height_rate, pitch_rate, cfg.max_width_rate,
                          cfg.max_height_rate]) * dt
        self.posture += np.clip(posture - self.posture, -rates, rates)
        out[self._posture] = self.posture
        return out
