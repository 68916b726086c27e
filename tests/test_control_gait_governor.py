"""Fail-safe governor and body-state estimate of the analytic gait controller (no physics)."""

from __future__ import annotations

import numpy as np
import pytest

from more_policy.control.body_estimate import BodyEstimate, BodyStateEstimator
from more_policy.control.gait_governor import (
    NO_SUPPORT_DEFICIT,
    GaitGovernor,
    GovernorConfig,
    blend_to_trot,
    support_deficit,
)
from more_policy.robot.go2 import RobotState

POSTURE = np.array([0.0, 0.0, 0.25, 0.08])  # body height, pitch, stance width, swing
GAIT_CORNERS = [np.array(c, dtype=float) for c in np.ndindex(2, 2, 2)]  # (phase, offset, bound)


def test_support_deficit_is_zero_for_a_trot_and_positive_for_pace_bound_pronk():
    assert support_deficit(np.array([0.5, 0.0, 0.0]), 0.5, 0.25) == 0.0
    pace = support_deficit(np.array([0.0, 0.0, 0.5]), 0.5, 0.25)
    bound = support_deficit(np.array([0.0, 0.5, 0.0]), 0.5, 0.25)
    pronk = support_deficit(np.array([0.0, 0.0, 0.0]), 0.5, 0.25)
    assert pace == pytest.approx(0.125, abs=0.01)  # stands on one side, 0.125 m off centre
    assert bound == pytest.approx(0.19, abs=0.01)  # on one end
    assert pronk == pytest.approx(0.5 * NO_SUPPORT_DEFICIT)  # half the cycle in the air


def test_governor_blends_unsupported_gaits_to_trot_and_slews_the_feet():
    for corner in GAIT_CORNERS:
        gov = GaitGovernor()
        executed = [gov.update(np.zeros(2), 0.0, corner, 0.5, POSTURE, BodyEstimate()).gait
                    for _ in range(100)]
        steps = np.abs(np.remainder(np.diff(executed, axis=0) + 0.5, 1.0) - 0.5)
        assert steps.max() <= gov.config.gait_slew_rate * gov.dt + 1e-9  # no foot jumps
        assert support_deficit(executed[-1], 0.5, 0.25) <= gov.config.support_tolerance


def test_governor_limits_speed_acceleration_and_turning_load():
    gov = GaitGovernor()
    trot = np.array([0.5, 0.0, 0.0])
    speeds = [gov.update(np.array([2.1, 0.0]), 0.0, trot, 0.5, POSTURE,
                         BodyEstimate()).velocity[0] for _ in range(100)]
    assert speeds[0] == pytest.approx(gov.config.max_acceleration * gov.dt)  # ramped
    assert speeds[-1] == pytest.approx(gov.config.max_speed)  # 2.1 commanded, capped
    turning = gov.update(np.array([1.5, 0.0]), 1.0, trot, 0.5, POSTURE, BodyEstimate())
    for _ in range(100):
        turning = gov.update(np.array([1.5, 0.0]), 1.0, trot, 0.5, POSTURE, BodyEstimate())
    assert turning.yaw_rate == pytest.approx(1.0)  # the path's curvature is kept ...
    assert turning.velocity[0] * turning.yaw_rate == pytest.approx(
        gov.config.max_lateral_acceleration)  # ... by slowing down


def test_tilt_falls_back_to_trot_at_half_speed_then_recovers():
    pace = np.array([0.0, 0.0, 0.5])
    gov = GaitGovernor(GovernorConfig(support_tolerance=1.0))  # allow the pace when level
    level, tilted = BodyEstimate(), BodyEstimate(roll=0.4)
    for _ in range(100):
        out = gov.update(np.array([1.0, 0.0]), 0.0, pace, 0.5, POSTURE, level)
    np.testing.assert_allclose(out.gait, pace)
    out = gov.update(np.array([1.0, 0.0]), 0.0, pace, 0.5, POSTURE, tilted)
    assert out.trot_blend == 1.0 and gov.trips == 1
    for _ in range(50):  # 1 s later: still 2/3 of the way to a trot, at 2/3 of the speed
        out = gov.update(np.array([1.0, 0.0]), 0.0, pace, 0.5, POSTURE, level)
    assert out.trot_blend == pytest.approx(1.0 - 1.0 / gov.config.recovery_s, abs=0.01)
    np.testing.assert_allclose(out.gait, blend_to_trot(pace, out.trot_blend), atol=1e-6)
    assert out.velocity[0] == pytest.approx(1.0 - 0.5 * out.trot_blend, abs=0.01)
    for _ in range(200):  # the commanded gait and speed come back over recovery_s
        out = gov.update(np.array([1.0, 0.0]), 0.0, pace, 0.5, POSTURE, level)
    np.testing.assert_allclose(out.gait, pace, atol=1e-6)
    assert out.velocity[0] == pytest.approx(1.0)


def test_velocity_estimate_needs_foot_contact():
    est = BodyStateEstimator(0.02)
    assert not est.update(RobotState()).velocity_valid  # no foot forces: open loop
    state = RobotState(foot_force=np.full(4, 40.0))
    assert est.update(state).velocity_valid
    np.testing.assert_allclose(est.estimate.velocity, 0.0, atol=1e-12)  # joints at rest


def test_walking_envelope_limits_posture_only_while_moving():
    extreme = np.array([0.10, 0.4, 0.10, 0.18])  # tall, nose down, narrow, high swing
    trot = np.array([0.5, 0.0, 0.0])
    standing, walking = GaitGovernor(), GaitGovernor()
    for _ in range(100):
        still = standing.update(np.zeros(2), 0.0, trot, 0.5, extreme, BodyEstimate())
        moving = walking.update(np.array([1.0, 0.0]), 0.0, trot, 0.5, extreme, BodyEstimate())
    np.testing.assert_allclose(still.posture, extreme)  # standing: as commanded
    cfg = walking.config
    np.testing.assert_allclose(moving.posture, [cfg.max_walking_height, cfg.max_walking_pitch,
                                                cfg.min_walking_stance_width,
                                                cfg.max_walking_swing_height])
