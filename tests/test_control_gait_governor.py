"""Fail-safe governor (tilt fallback; the command envelope is tested in test_control_envelope.py)
and body-state estimate of the analytic gait controller (no physics)."""

from __future__ import annotations

import numpy as np
import pytest

from more_policy.control.body_estimate import BodyEstimate, BodyStateEstimator
from more_policy.control.gait_governor import (
    NO_SUPPORT_DEFICIT,
    GaitGovernor,
    blend_to_trot,
    support_deficit,
)
from more_policy.robot.go2 import RobotState


def test_support_deficit_is_zero_for_a_trot_and_positive_for_pace_bound_pronk():
    assert support_deficit(np.array([0.5, 0.0, 0.0]), 0.5, 0.25) == 0.0
    pace = support_deficit(np.array([0.0, 0.0, 0.5]), 0.5, 0.25)
    bound = support_deficit(np.array([0.0, 0.5, 0.0]), 0.5, 0.25)
    pronk = support_deficit(np.array([0.0, 0.0, 0.0]), 0.5, 0.25)
    assert pace == pytest.approx(0.125, abs=0.01)  # stands on one side, 0.125 m off centre
    assert bound == pytest.approx(0.19, abs=0.01)  # on one end
    assert pronk == pytest.approx(0.5 * NO_SUPPORT_DEFICIT)  # half the cycle in the air


def test_tilt_falls_back_to_trot_at_half_speed_then_recovers():
    pace = np.array([0.0, 0.0, 0.5])
    gov = GaitGovernor()
    level, tilted = BodyEstimate(), BodyEstimate(roll=0.4)
    for _ in range(100):
        out = gov.update(np.array([1.0, 0.0]), 0.0, pace, 0.0, level)
    np.testing.assert_allclose(out.gait, pace)
    out = gov.update(np.array([1.0, 0.0]), 0.0, pace, 0.0, tilted)
    assert out.trot_blend == 1.0 and gov.trips == 1
    for _ in range(50):  # 1 s later: still 2/3 of the way to a trot, at 2/3 of the speed
        out = gov.update(np.array([1.0, 0.0]), 0.0, pace, 0.0, level)
    assert out.trot_blend == pytest.approx(1.0 - 1.0 / gov.config.recovery_s, abs=0.01)
    np.testing.assert_allclose(out.gait, blend_to_trot(pace, out.trot_blend), atol=1e-6)
    assert out.velocity[0] == pytest.approx(1.0 - 0.5 * out.trot_blend, abs=0.01)
    for _ in range(200):  # the commanded gait and speed come back over recovery_s
        out = gov.update(np.array([1.0, 0.0]), 0.0, pace, 0.0, level)
    np.testing.assert_allclose(out.gait, pace, atol=1e-6)
    assert out.velocity[0] == pytest.approx(1.0)


def test_velocity_estimate_needs_foot_contact():
    est = BodyStateEstimator(0.02)
    assert not est.update(RobotState()).velocity_valid  # no foot forces: open loop
    state = RobotState(foot_force=np.full(4, 40.0))
    assert est.update(state).velocity_valid
    np.testing.assert_allclose(est.estimate.velocity, 0.0, atol=1e-12)  # joints at rest
