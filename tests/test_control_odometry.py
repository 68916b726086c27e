"""Dead-reckoned odometry from robot state (what controller_node publishes as /odom and TF
odom -> base_link): checked against MuJoCo's ground truth while the analytic gait walks."""

from __future__ import annotations

import numpy as np
import pytest

from more_policy.actions import ActionSpace
from more_policy.control.body_estimate import quat_to_matrix
from more_policy.control.odometry import LeggedOdometry, trunk_height
from more_policy.robot.go2 import DEFAULT_JOINT_POS, LYING_JOINT_POS, RobotState

SPACE = ActionSpace()


def test_quat_to_matrix_is_the_rotation_of_the_quaternion():
    half = np.pi / 4  # 90 deg about z: x -> y
    rotation = quat_to_matrix(np.array([np.cos(half), 0.0, 0.0, np.sin(half)]))
    np.testing.assert_allclose(rotation @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)
    half = np.radians(10) / 2  # 10 deg about y (nose down): x -> forward and down
    rotation = quat_to_matrix(np.array([np.cos(half), 0.0, np.sin(half), 0.0]))
    np.testing.assert_allclose(rotation @ [1.0, 0.0, 0.0],
                               [np.cos(np.radians(10)), 0.0, -np.sin(np.radians(10))])


def test_still_robot_stays_at_the_origin_at_its_leg_height():
    odometry = LeggedOdometry(0.02)
    standing = RobotState(foot_force=np.full(4, 40.0))  # stand pose, level, feet loaded
    for _ in range(50):
        est = odometry.update(standing, 0.02)
    np.testing.assert_allclose(est.position[:2], 0.0, atol=1e-9)
    assert 0.25 < est.position[2] < 0.35  # the Go2 stands ~0.3 m tall
    lying = trunk_height(RobotState(q=LYING_JOINT_POS.copy()), 0.0, 0.0)
    assert lying < est.position[2] - 0.1
    # a broken quaternion keeps the last good attitude instead of publishing garbage
    est = odometry.update(RobotState(q=DEFAULT_JOINT_POS.copy(), quat=np.zeros(4)), 0.02)
    np.testing.assert_allclose(est.quat, [1.0, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError):
        odometry.update(standing, -0.1)


@pytest.mark.sim
def test_tracks_the_simulated_trunk_while_walking_and_turning():
    from more_policy.control.gait import GaitController
    from more_policy.sim.physics import Go2Physics

    physics, controller = Go2Physics(), GaitController()
    controller.reset(physics.state())
    odometry = LeggedOdometry(controller.control_dt)
    command = SPACE.default_command()
    command[SPACE.index("vel_x")], command[SPACE.index("yaw_rate")] = 0.5, 0.3
    substeps = int(round(controller.control_dt / physics.physics_dt))
    start = physics.base_pose()[0]
    height_errors = []
    for _ in range(int(4.0 / controller.control_dt)):
        physics.apply(controller.step(physics.state(), command))
        physics.step(substeps)
        est = odometry.update(physics.state(), controller.control_dt)
        true_pos, true_quat = physics.base_pose()
        height_errors.append(abs(est.position[2] - true_pos[2]))
    moved = (true_pos - start)[:2]
    error = np.linalg.norm(est.position[:2] - moved)
    print(f"walked {np.linalg.norm(moved):.2f} m; odometry off by {error:.3f} m, height by "
          f"<= {max(height_errors):.3f} m")
    assert np.linalg.norm(moved) > 1.0
    assert error < 0.15 * np.linalg.norm(moved)
    assert max(height_errors) < 0.03
    np.testing.assert_allclose(np.abs(est.quat @ true_quat), 1.0, atol=1e-3)  # IMU = trunk
