"""The MuJoCo Go2: model structure, standing under PD, the motor law, sensors, camera."""

import os

import mujoco
import numpy as np
import pytest

from more_policy.robot import go2
from more_policy.sim import go2_mjcf
from more_policy.sim.env import NOMINAL_HEIGHT, make_env, stance_joint_pos
from more_policy.sim.physics import Go2Physics, quat_yaw_pitch, yaw_pitch_quat
from more_policy.vision import D435_COLOR

os.environ.setdefault("MUJOCO_GL", "egl")
pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def physics():
    return Go2Physics()


def test_model_matches_go2_constants(physics):
    m = physics.model
    hinge = [m.joint(i) for i in range(m.njnt) if m.jnt_type[i] == mujoco.mjtJoint.mjJNT_HINGE]
    assert tuple(j.name for j in hinge) == go2.JOINT_NAMES
    np.testing.assert_allclose([j.range[0] for j in hinge], go2.JOINT_LOWER)
    np.testing.assert_allclose([j.range[1] for j in hinge], go2.JOINT_UPPER)
    assert m.nu == 12
    np.testing.assert_allclose(m.actuator_ctrlrange[:, 1], go2.TORQUE_LIMIT)
    robot_mass = m.body_subtreemass[m.body(go2_mjcf.TRUNK_BODY).id]
    assert robot_mass == pytest.approx(go2.TOTAL_MASS, rel=1e-6)
    assert m.camera(go2_mjcf.CAMERA_NAME).pos[0] == pytest.approx(D435_COLOR.mount_xyz[0])
    for name in ("imu_quat", "imu_gyro", "imu_accel", "FR_foot_force"):
        assert m.sensor(name).id >= 0


def test_stands_stably_under_pd_at_default_pose(physics):
    physics.reset()
    physics.apply(go2.MotorCommand(q=go2.DEFAULT_JOINT_POS, kp=np.full(12, go2.DEFAULT_KP),
                                   kd=np.full(12, go2.DEFAULT_KD)))
    physics.step(int(2.0 / physics.physics_dt))
    settled = physics.base_pose()[0]
    physics.step(int(1.0 / physics.physics_dt))
    pos, quat = physics.base_pose()
    yaw, pitch = physics.base_yaw_pitch()
    state = physics.state()
    assert 0.2 < pos[2] < 0.35  # soft walk-these-ways gains: it sags below the 0.33 m pose
    assert abs(pitch) < 0.1 and abs(yaw) < 0.05
    assert np.linalg.norm(pos[:2]) < 0.1
    assert np.linalg.norm(pos - settled) < 0.02  # no creeping or sliding after settling
    weight = go2.TOTAL_MASS * 9.81
    assert state.foot_force.sum() == pytest.approx(weight, rel=0.2)
    assert np.all(state.foot_force > 0.1 * weight / 4)  # all four feet carry load
    assert state.accel[2] == pytest.approx(9.81, abs=0.3)
    assert np.linalg.norm(state.quat) == pytest.approx(1.0)


def test_motor_law_evaluated_each_physics_step(physics):
    physics.reset()
    cmd = go2.MotorCommand(q=go2.DEFAULT_JOINT_POS + 0.1, kp=np.full(12, 30.0),
                           kd=np.full(12, 1.0), dq=np.full(12, 0.2), tau=np.full(12, 0.5))
    physics.apply(cmd)
    q, dq = physics.joint_pos(), physics.joint_vel()
    physics.step(1)
    state = physics.state()
    np.testing.assert_allclose(state.tau, cmd.torque(q, dq), atol=1e-9)
    q, dq = physics.joint_pos(), physics.joint_vel()
    physics.step(1)
    np.testing.assert_allclose(physics.state().tau, cmd.torque(q, dq), atol=1e-9)


def test_apply_rejects_bad_motor_commands(physics):
    bad = go2.MotorCommand(q=np.full(12, np.nan), kp=np.ones(12), kd=np.ones(12))
    with pytest.raises(ValueError, match="non-finite"):
        physics.apply(bad)
    with pytest.raises(ValueError, match="shape"):
        physics.apply(go2.MotorCommand(q=np.zeros(3), kp=np.ones(12), kd=np.ones(12)))


def test_front_camera_renders_the_scene(physics):
    physics.reset()
    image = physics.render(64, 48)
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8
    assert image.std() > 5  # floor and horizon, not a blank buffer
    with pytest.raises(ValueError, match="size"):
        physics.render(5000, 10)


def test_quaternion_helpers_round_trip():
    for yaw, pitch in ((0.3, 0.2), (-2.0, -0.35), (3.0, 0.0)):
        assert quat_yaw_pitch(yaw_pitch_quat(yaw, pitch)) == pytest.approx((yaw, pitch))


def test_command_mode_pose_keeps_feet_on_the_ground():
    env = make_env("go_to", render=False)
    env.reset(seed=0)
    m, d = env.physics.model, env.physics.data
    for height, pitch in ((0.0, 0.0), (-0.09, 0.0), (0.0, 0.3)):
        env._height, env._pitch = height, pitch
        env._pose_robot()
        feet = np.array([d.geom_xpos[m.geom(f).id] for f in go2_mjcf.FOOT_GEOMS])
        np.testing.assert_allclose(feet[:, 2], go2.FOOT_RADIUS, atol=0.005)
        assert d.xpos[m.body("trunk").id][2] == pytest.approx(NOMINAL_HEIGHT + height)
    q = stance_joint_pos(NOMINAL_HEIGHT, 0.0)
    assert np.all(q >= go2.JOINT_LOWER) and np.all(q <= go2.JOINT_UPPER)


def test_physics_mode_walks_with_the_gait_controller():
    from more_policy.actions import ActionSpace
    from more_policy.control.gait import GaitController

    env = make_env("go_to", mode="physics", controller=GaitController(), image_size=(32, 32))
    obs = env.reset(seed=0)
    assert obs.image.shape == (32, 32, 3)
    cmd = ActionSpace().default_command()
    cmd[0] = 0.5
    for _ in range(10):  # 2 s
        obs, success, done, info = env.step(cmd)
        assert info["failure"] is None and not done
    x, y, z, yaw, pitch = env.base_pose()
    assert x > 0.5 and z > 0.2 and abs(pitch) < 0.2


def test_physics_mode_unload_ball_rides_on_the_back():
    from more_policy.control.stand import StandController

    env = make_env("unload", mode="physics", controller=StandController(), render=False)
    env.reset(seed=0)
    stand = np.zeros(12)
    stand[6], stand[9] = 3.0, 0.25  # step frequency, stance width (standing command)
    for _ in range(5):
        env.step(stand)
    world = env.world_state()
    trunk_z = env.base_pose()[2]
    assert world.ball_pos[2] > trunk_z + 0.05 and not world.ball_landed


def test_physics_mode_pitch_releases_the_ball_in_front():
    from more_policy.actions import ActionSpace
    from more_policy.control.gait import GaitController

    env = make_env("unload", mode="physics", controller=GaitController(), render=False)
    env.reset(seed=0)
    cmd = ActionSpace().default_command()
    cmd[8] = 0.36  # nose down
    done, steps = False, 0
    while not done and steps < 15:
        _, success, done, info = env.step(cmd)
        steps += 1
    assert done and not success and info["failure"] == "ball landed outside the trays"
    ball = env.world_state().ball_pos
    assert ball[2] < 0.05 and ball[0] > env.base_pose()[0] + 0.2


def _expert_episode(env, seed: int):
    from more_policy.sim.expert import ScriptedExpert

    env.reset(seed=seed)
    expert = ScriptedExpert(env.action_space)
    expert.reset(env.scene, env.instruction, env.base_pose())
    commands, done, success = [], False, False
    while not done:
        commands.append(expert.act(env.base_pose()))
        _, success, done, _ = env.step(commands[-1])
    return np.array(commands), success


def test_expert_unload_commands_are_a_function_of_the_frame():
    # a single-frame policy must be able to tell when to tilt: no step counting, so a fresh
    # expert placed at any pose of the episode (same plan) gives the same command
    from more_policy.sim.expert import UNLOAD_PITCH, UNLOAD_PITCH_STEP, ScriptedExpert

    env = make_env("unload", render=False)
    env.reset(seed=3)
    expert = ScriptedExpert(env.action_space)
    expert.reset(env.scene, env.instruction, env.base_pose())
    commands, done, success = [], False, False
    while not done:
        pose = env.base_pose()
        commands.append(expert.act(pose))
        fresh = ScriptedExpert(env.action_space)
        fresh.reset(env.scene, env.instruction, pose, path=expert.plan)
        np.testing.assert_allclose(fresh.act(pose), commands[-1])
        _, success, done, _ = env.step(commands[-1])
    commands = np.array(commands)
    tilt = int(np.argmax(commands[:, 8] > 0))
    assert success and commands[-1, 11] == 1.0
    # standing during the tilt, which ramps up from the trunk's pitch to the full tilt
    assert np.all(commands[tilt:, :3] == 0.0)
    assert commands[tilt, 8] == pytest.approx(UNLOAD_PITCH_STEP, abs=0.02)
    assert commands[-1, 8] == pytest.approx(UNLOAD_PITCH)
    assert np.all(np.diff(commands[tilt:, 8]) >= 0.0)


def test_expert_unloads_into_the_tray_with_a_pace_gait_in_physics():
    # a scene where a tilt begun while the pace gait still swayed rolled the ball off the trunk
    from more_policy.control.gait import GaitController
    from more_policy.sim.generate import episode_seed

    env = make_env("unload", mode="physics", controller=GaitController(), render=False)
    seed = episode_seed(1, "unload", 0)
    env.reset(seed=seed)
    assert "pace" in env.instruction.text
    _, success = _expert_episode(env, seed)
    assert success
