"""Analytic gait controller: kinematics, timing, foot placement; walking in MuJoCo physics."""

from __future__ import annotations

import numpy as np
import pytest

from more_policy.actions import ActionSpace
from more_policy.control.gait import GaitConfig, GaitController
from more_policy.control.kinematics import (
    HIP_POSITIONS,
    MAX_EXTENSION,
    UnreachableError,
    forward_kinematics,
    inverse_kinematics,
    leg_fk,
    leg_ik,
    leg_jacobian,
)
from more_policy.robot.go2 import DEFAULT_JOINT_POS, HIP_TO_THIGH_Y, LEG_SIDE, RobotState

SPACE = ActionSpace()


def command(vx=0.0, yaw=0.0, **dims):
    return SPACE.default_command(vel_x=vx, yaw_rate=yaw, **dims)


def test_fk_of_default_pose_matches_go2_geometry():
    feet = forward_kinematics(DEFAULT_JOINT_POS)
    # FR: hip at (0.1934, -0.0465); in the leg plane 0.213 (cos .8 + cos(-.7)) = 0.3113 deep
    depth = 0.213 * (np.cos(0.8) + np.cos(-0.7))
    x = 0.1934 - 0.213 * (np.sin(0.8) + np.sin(-0.7))
    # abduction by -0.1 of the plane point (y, z) = (-0.0955, -depth) about x
    y = -0.0465 + (-0.0955 * np.cos(-0.1) + depth * np.sin(-0.1))
    z = -0.0955 * np.sin(-0.1) - depth * np.cos(-0.1)
    np.testing.assert_allclose(feet[0], [x, y, z], atol=1e-9)
    assert feet[1, 1] == pytest.approx(-feet[0, 1]) and feet[2, 0] < -0.25


def test_ik_fk_round_trip_over_the_walking_workspace():
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(300):
        q = rng.uniform([-0.6, -0.3, -2.6] * 4, [0.6, 1.5, -0.9] * 4)
        feet = forward_kinematics(q)
        plane_depth = [np.cos(q[3 * i + 1]) + np.cos(q[3 * i + 1] + q[3 * i + 2])
                       for i in range(4)]
        if min(plane_depth) < 0.25:  # IK solves for feet below the thigh joint
            continue
        np.testing.assert_allclose(inverse_kinematics(feet, clamp=False), q, atol=1e-9)
        checked += 1
    assert checked > 100


def test_ik_clamps_or_rejects_out_of_reach_targets():
    far = forward_kinematics(DEFAULT_JOINT_POS)
    far[:, 2] = -0.6
    q = inverse_kinematics(far)  # clamped to 98 % extension along the hip-foot line
    reach = np.linalg.norm(forward_kinematics(q) - far, axis=1)
    assert np.all(np.isfinite(q)) and np.all(reach < 0.2)
    with pytest.raises(UnreachableError, match="reach"):
        leg_ik(np.array([0.0, -0.0955, -0.6]), 0)


@pytest.mark.parametrize("extension", [MAX_EXTENSION, 1.0])
def test_ik_clamp_points_the_leg_at_the_target_at_the_given_extension(extension):
    far = forward_kinematics(DEFAULT_JOINT_POS)
    far[:, 2] = -0.6
    q = inverse_kinematics(far, max_extension=extension).reshape(4, 3)
    for leg in range(4):
        d = LEG_SIDE[leg] * HIP_TO_THIGH_Y
        thigh = HIP_POSITIONS[leg] + [0.0, d * np.cos(q[leg, 0]), d * np.sin(q[leg, 0])]
        foot = HIP_POSITIONS[leg] + leg_fk(q[leg], leg)
        assert np.linalg.norm(foot - thigh) == pytest.approx(extension * 2 * 0.213)
        np.testing.assert_allclose(np.cross(foot - thigh, far[leg] - thigh), 0.0, atol=1e-9)
    with pytest.raises(ValueError, match="max_extension"):
        inverse_kinematics(far, max_extension=1.5)


def test_jacobian_matches_finite_motion():
    q = DEFAULT_JOINT_POS[:3]
    dq = np.array([0.01, -0.02, 0.015])
    predicted = leg_jacobian(q, 0) @ dq
    np.testing.assert_allclose(leg_fk(q + dq, 0) - leg_fk(q, 0), predicted, atol=2e-4)


def test_trot_timing_stance_swing_and_swing_height():
    ctrl = GaitController()
    heights, contacts = [], []
    for _ in range(200):  # 4 s at 50 Hz, 3 Hz trot
        ctrl.step(RobotState(), command(vx=0.5))
        heights.append(ctrl.feet[:, 2].copy())
        contacts.append(ctrl.contact.copy())
    contacts, heights = np.array(contacts)[50:], np.array(heights)[50:]
    np.testing.assert_array_equal(contacts[:, 0], contacts[:, 3])  # FR with RL
    np.testing.assert_array_equal(contacts[:, 1], contacts[:, 2])  # FL with RR
    assert np.all(contacts[:, 0] != contacts[:, 1])  # diagonals alternate
    assert contacts[:, 0].mean() == pytest.approx(0.5, abs=0.05)  # duration 0.5
    changes = np.count_nonzero(np.diff(contacts[:, 0]))  # 2 per cycle, 3 cycles per s
    assert changes == pytest.approx(2 * 3 * 150 * 0.02, abs=2)
    lift = heights.max(axis=0) - heights.min(axis=0)
    np.testing.assert_allclose(lift, 0.08, atol=0.01)  # swing apex = commanded swing height


def test_raibert_placement_and_stance_sweep():
    cfg = GaitConfig()
    ctrl = GaitController(cfg)
    xs, contact = [], []
    for _ in range(100):
        ctrl.step(RobotState(), command(vx=0.5))
        xs.append(ctrl.feet[0, 0])
        contact.append(ctrl.contact[0])
    xs, contact = np.array(xs[50:]), np.array(contact[50:])
    stance_time = 0.5 / 3.0
    half_sweep = 0.5 * cfg.velocity_scale * stance_time / 2
    hip_x = 0.1934
    assert xs.max() == pytest.approx(hip_x + half_sweep, abs=0.01)  # lands ahead of the hip
    assert xs.min() == pytest.approx(hip_x - half_sweep, abs=0.01)  # lifts off behind it
    stance_speed = -np.diff(xs)[(contact[1:] == 1) & (contact[:-1] == 1)] / 0.02
    np.testing.assert_allclose(stance_speed, 0.5 * cfg.velocity_scale, rtol=0.02)


def test_stands_still_on_zero_velocity_and_follows_height_and_width():
    ctrl = GaitController()
    for _ in range(30):
        out = ctrl.step(RobotState(), command(body_height=-0.08, stance_width=0.2))
    assert ctrl.stepping == 0.0 and np.all(ctrl.contact == 1)
    np.testing.assert_allclose(ctrl.feet[:, 2], -(0.30 - 0.08))
    np.testing.assert_allclose(np.abs(ctrl.feet[:, 1]), 0.1)
    np.testing.assert_allclose(forward_kinematics(out.q), ctrl.feet, atol=1e-9)
    assert np.all(out.tau[2::3] != 0)  # weight feed-forward on the calves


def run_sim(vx, yaw, body_height, seconds, pitches=None, **dims):
    """Closed loop in MuJoCo physics at 50 Hz; returns body-frame forward speed, yaw rate,
    mean height (all over the last 80 %) and the minimum trunk height; ``pitches`` collects
    the trunk pitch."""
    from more_policy.sim.tracking import track_command

    result = track_command(GaitController(), command(vx=vx, yaw=yaw, body_height=body_height,
                                                     **dims), seconds)
    if pitches is not None:
        pitches.extend(result.pitches)
    return result.speed, result.yaw_rate, result.mean_height, result.min_height


@pytest.mark.sim
def test_walks_forward_at_half_a_metre_per_second_for_10_s():
    speed, yaw_rate, _, lowest = run_sim(0.5, 0.0, 0.0, 10.0)
    print(f"commanded 0.5 m/s: {speed:.3f} m/s, yaw drift {yaw_rate:.3f} rad/s")
    assert speed == pytest.approx(0.5, rel=0.25)
    assert abs(yaw_rate) < 0.1 and lowest > 0.2  # straight, never fell


@pytest.mark.sim
def test_turns_at_half_a_radian_per_second_while_walking_for_10_s():
    speed, yaw_rate, _, lowest = run_sim(0.5, 0.5, 0.0, 10.0)
    print(f"commanded 0.5 m/s, 0.5 rad/s: {speed:.3f} m/s, {yaw_rate:.3f} rad/s")
    assert yaw_rate == pytest.approx(0.5, rel=0.25)
    assert speed == pytest.approx(0.5, rel=0.25) and lowest > 0.2


@pytest.mark.sim
def test_crouches_by_8_cm_on_command():
    _, _, standing, _ = run_sim(0.0, 0.0, 0.0, 2.0)
    _, _, crouched, lowest = run_sim(0.0, 0.0, -0.08, 2.0)
    print(f"stand {standing:.3f} m, crouch {crouched:.3f} m")
    assert standing - crouched == pytest.approx(0.08, abs=0.01) and lowest > 0.15


def test_pitch_command_tilts_the_feet_frame():
    ctrl, level = GaitController(), GaitController()
    for _ in range(30):  # the envelope slews the pitch: 0.2 rad within 0.6 s
        ctrl.step(RobotState(), command(body_pitch=0.2))
        level.step(RobotState(), command())
    front, rear = ctrl.feet[0], ctrl.feet[2]
    assert front[2] > level.feet[0, 2] and rear[2] < level.feet[2, 2]  # nose down
    np.testing.assert_allclose(np.linalg.norm(ctrl.feet, axis=1),
                               np.linalg.norm(level.feet, axis=1))  # a rotation


@pytest.mark.sim
def test_pitches_nose_down_on_command():
    pitches = []
    run_sim(0.0, 0.0, 0.0, 2.0, pitches=pitches, body_pitch=0.2)
    settled = np.mean(pitches[50:])
    print(f"commanded pitch 0.2 rad: {settled:.3f} rad")
    assert settled == pytest.approx(0.2, abs=0.05)


@pytest.mark.sim
def test_drives_the_task_environment_in_physics_mode():
    from more_policy.sim.env import make_env

    env = make_env("go_to", seed=0, mode="physics", controller=GaitController())
    env.reset()
    start = env.base_pose()[:3].copy()
    for _ in range(10):  # 2 s of policy steps at 5 Hz
        env.step(command(vx=0.5))
    end = env.base_pose()[:3]
    env.close()
    print(f"go_to, physics mode: moved {end[0] - start[0]:.2f} m in 2 s")
    assert end[0] - start[0] > 0.5 * 2 * 0.5 and end[2] > 0.25  # walked, still standing


# -- fail-safe behaviour over the whole command space (envelope: test_control_envelope)

GAIT_CORNERS = [np.array(c, dtype=float) for c in np.ndindex(2, 2, 2)]  # (phase, offset, bound)


def test_posture_steps_are_slewed():
    ctrl = GaitController()
    rates = ctrl.envelope.config
    pitches, heights = [], []
    for _ in range(40):
        ctrl.step(RobotState(), command(body_pitch=0.36, body_height=-0.09))
        pitches.append(ctrl.envelope.posture[1])
        heights.append(ctrl.envelope.posture[0])
    assert np.max(np.diff(pitches)) <= rates.max_pitch_rate * ctrl.control_dt + 1e-12
    assert np.min(np.diff(heights)) >= -rates.max_height_rate * ctrl.control_dt - 1e-12
    assert pitches[-1] == pytest.approx(0.36) and heights[-1] == pytest.approx(-0.09)


def run_sim_measured(command_vector, seconds):
    """Closed loop in MuJoCo; (fell, minimum uprightness, mean true and estimated forward
    speeds over the last 60 %)."""
    import mujoco

    from more_policy.sim.physics import Go2Physics

    physics = Go2Physics()
    ctrl = GaitController()
    ctrl.reset(physics.state())
    steps = int(seconds / ctrl.control_dt)
    substeps = int(round(ctrl.control_dt / physics.physics_dt))
    up, heights, true_v, est_v = [], [], [], []
    rot = np.zeros(9)
    for k in range(steps):
        physics.apply(ctrl.step(physics.state(), command_vector))
        physics.step(substeps)
        pos, quat = physics.base_pose()
        mujoco.mju_quat2Mat(rot, quat)
        up.append(rot[8])  # cosine of the trunk's tilt
        heights.append(pos[2])
        if k >= steps * 2 // 5:
            velocity, _ = physics.base_velocity()
            heading, _ = physics.base_yaw_pitch()
            true_v.append(velocity[0] * np.cos(heading) + velocity[1] * np.sin(heading))
            est_v.append(ctrl.estimator.estimate.velocity[0])
    fell = min(up) < 0.5 or min(heights) < 0.15  # the task environment's fall rule
    return fell, min(up), np.mean(true_v), np.mean(est_v)


@pytest.mark.sim
def test_tracks_one_metre_per_second_closed_loop():
    fell, _, speed, estimate = run_sim_measured(command(vx=1.0), 5.0)
    print(f"commanded 1.0 m/s: {speed:.3f} m/s (leg odometry says {estimate:.3f})")
    assert not fell
    assert speed == pytest.approx(1.0, rel=0.15) and estimate == pytest.approx(speed, rel=0.1)


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("yaw", [0.0, 1.0])
def test_every_gait_corner_at_top_speed_stays_upright_for_5_s(yaw):
    for corner in GAIT_CORNERS:
        cmd = command(vx=1.5, yaw=yaw, gait_phase=corner[0], gait_offset=corner[1],
                      gait_bound=corner[2], step_frequency=3.5)
        fell, upright, speed, _ = run_sim_measured(cmd, 5.0)
        print(f"gait {corner}, 1.5 m/s, yaw {yaw}: {speed:.2f} m/s, min upright {upright:.2f}")
        assert not fell, f"fell with gait {corner} at 1.5 m/s, yaw {yaw}"


@pytest.mark.sim
@pytest.mark.slow
def test_corners_of_the_whole_command_space_stay_upright_for_5_s():
    rng = np.random.default_rng(1)
    low, high = SPACE.low, SPACE.high
    corners = [high, low] + [np.where(rng.uniform(size=12) < 0.5, low, high) for _ in range(8)]
    for corner in corners:
        cmd = corner.copy()
        cmd[SPACE.index("terminate")] = 0.0
        fell, upright, speed, _ = run_sim_measured(cmd, 5.0)
        print(f"command {np.round(cmd, 2)}: {speed:.2f} m/s, min upright {upright:.2f}")
        assert not fell, f"fell under the command {np.round(cmd, 2)}"


def test_feet_stay_reachable_with_a_deep_crouch_and_the_highest_swing():
    from more_policy.control.envelope import EnvelopeConfig

    ctrl = GaitController(envelope=EnvelopeConfig(max_walking_swing_height=0.18))
    for _ in range(100):  # the walking envelope off: the swing alone would reach the hips
        out = ctrl.step(RobotState(), command(vx=0.5, body_height=-0.10, swing_height=0.18))
        assert np.all(np.isfinite(out.q))
        assert ctrl.feet[:, 2].max() <= -ctrl.config.min_foot_depth + 1e-12


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_commands_switching_at_5_hz_do_not_topple_it(seed):
    """A policy's worst case: uniform commands over the whole space, a new one every 0.2 s."""
    import mujoco

    from more_policy.sim.physics import Go2Physics

    rng = np.random.default_rng(seed)
    physics, ctrl = Go2Physics(), GaitController()
    ctrl.reset(physics.state())
    rot = np.zeros(9)
    for k in range(500):  # 10 s
        if k % 10 == 0:
            cmd = rng.uniform(SPACE.low, SPACE.high)
            cmd[SPACE.index("terminate")] = 0.0
        physics.apply(ctrl.step(physics.state(), cmd))
        physics.step(4)
        pos, quat = physics.base_pose()
        mujoco.mju_quat2Mat(rot, quat)
        assert pos[2] > 0.15 and rot[8] > 0.5, f"fell at {k * 0.02:.2f} s under {cmd}"
