"""walk-these-ways runner: observation layout, history shift, clock math, network chaining."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from more_policy.actions import ActionSpace
from more_policy.control.envelope import EnvelopeConfig
from more_policy.control.gait_clock import GaitClock, foot_phases, warp_phases
from more_policy.control.wtw import NUM_OBS, WalkTheseWaysRunner, WtwConfig, projected_gravity
from more_policy.robot.go2 import DEFAULT_JOINT_POS, RobotState

SPACE = ActionSpace()
# walk-these-ways checkpoints are TorchScript, whatever torch thinks of it now
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


def mlp(sizes):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ELU())
    return nn.Sequential(*layers)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint directory with TorchScript networks of walk-these-ways' shapes."""
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("wtw")
    torch.jit.script(mlp([2100, 256, 128, 2])).save(str(directory / "adaptation_module_latest.jit"))
    torch.jit.script(mlp([2102, 512, 256, 128, 12])).save(str(directory / "body_latest.jit"))
    return directory


def command(vx=0.0, yaw=0.0, **dims):
    return SPACE.default_command(vel_x=vx, yaw_rate=yaw, **dims)


def test_clock_math_against_hand_values():
    np.testing.assert_allclose(foot_phases(0.1, 0.5, 0.0, 0.0), [0.6, 0.1, 0.1, 0.6])  # trot
    np.testing.assert_allclose(foot_phases(0.9, 0.5, 0.25, 0.0), [0.65, 0.15, 0.9, 0.4])
    np.testing.assert_allclose(warp_phases([0.1, 0.6, 0.0, 0.999], 0.25),
                               [0.2, 0.5 + 0.35 * (0.5 / 0.75), 0.0, 0.5 + 0.749 / 1.5])
    np.testing.assert_allclose(warp_phases([0.1, 0.7], 0.5), [0.1, 0.7])  # identity at 0.5
    clock = GaitClock()
    for _ in range(3):
        clock.advance(0.02, 3.0)
    assert clock.gait_index == pytest.approx(0.18)
    np.testing.assert_allclose(clock.clock_inputs(0.5, 0.0, 0.0, 0.5),
                               np.sin(2 * np.pi * np.array([0.68, 0.18, 0.18, 0.68])))
    for _ in range(14):
        clock.advance(0.02, 3.0)
    assert clock.gait_index == pytest.approx(0.02)  # wrapped at 1
    with pytest.raises(ValueError, match="duration"):
        warp_phases([0.1], 1.0)


def test_projected_gravity():
    np.testing.assert_allclose(projected_gravity(np.array([1.0, 0, 0, 0])), [0, 0, -1])
    pitch = 0.3  # nose down about +y: gravity leans toward +x in the body frame
    quat = np.array([np.cos(pitch / 2), 0, np.sin(pitch / 2), 0])
    np.testing.assert_allclose(projected_gravity(quat), [np.sin(pitch), 0, -np.cos(pitch)],
                               atol=1e-12)


# The command envelope wide open: this test is about the layout (the envelope itself:
# test_control_envelope.py).
OPEN_ENVELOPE = EnvelopeConfig(
    max_acceleration=1e9, max_deceleration=1e9, max_yaw_acceleration=1e9, max_height_rate=1e9,
    max_pitch_rate=1e9, max_walking_pitch_rate=1e9, max_width_rate=1e9, min_stance_width=0.0,
    min_walking_stance_width=0.0, max_walking_swing_height=1.0, max_walking_height=1.0)


def test_observation_layout_by_hand(checkpoint):
    runner = WalkTheseWaysRunner.from_checkpoint(checkpoint, envelope=OPEN_ENVELOPE)
    q = DEFAULT_JOINT_POS + 0.01 * np.arange(12)  # SDK order
    dq = np.arange(12, dtype=float)
    state = RobotState(q=q, dq=dq)
    cmd = command(vx=1.0, yaw=0.4, body_height=0.05, swing_height=0.1, stance_width=0.2)
    runner.step(state, cmd)
    obs = runner.last_observation
    assert obs.shape == (NUM_OBS,)
    np.testing.assert_allclose(obs[0:3], [0, 0, -1])
    # commands: x 1.0*2, y 0*2, yaw 0.4*0.25, height 0.05*2, freq 3, phase .5, offset 0,
    # bound 0, duration .5, swing 0.1*0.15, pitch 0, roll 0, stance 0.2, length .45, aux 0
    np.testing.assert_allclose(obs[3:18], [2.0, 0, 0.1, 0.1, 3.0, 0.5, 0, 0, 0.5, 0.015, 0, 0,
                                           0.2, 0.45, 0], atol=1e-6)
    # q - default in policy order FL, FR, RL, RR: FL = SDK 3..5, FR = SDK 0..2, ...
    np.testing.assert_allclose(obs[18:30], 0.01 * np.array([3, 4, 5, 0, 1, 2, 9, 10, 11,
                                                            6, 7, 8]), atol=1e-6)
    np.testing.assert_allclose(obs[30:42], 0.05 * np.array([3, 4, 5, 0, 1, 2, 9, 10, 11,
                                                            6, 7, 8]), atol=1e-6)
    np.testing.assert_array_equal(obs[42:66], 0.0)  # no actions yet
    g = 0.02 * 3.0  # one tick of a 3 Hz clock
    np.testing.assert_allclose(obs[66:70], np.sin(2 * np.pi * np.array([g + .5, g, g, g + .5])),
                               atol=1e-6)
    first_actions = runner.actions.copy()
    runner.step(state, cmd)
    np.testing.assert_allclose(runner.last_observation[42:54], first_actions)  # current
    np.testing.assert_array_equal(runner.last_observation[54:66], 0.0)  # previous
    runner.step(state, cmd)
    np.testing.assert_allclose(runner.last_observation[54:66], first_actions)


def test_history_shifts_newest_last(checkpoint):
    runner = WalkTheseWaysRunner.from_checkpoint(checkpoint)
    observations = []
    for k in range(32):
        runner.step(RobotState(dq=np.full(12, float(k))), command(vx=0.5))
        observations.append(runner.last_observation.copy())
        if k == 2:
            np.testing.assert_array_equal(runner.history[:-3], 0.0)
            np.testing.assert_array_equal(runner.history[-3:], np.stack(observations))
    np.testing.assert_array_equal(runner.history, np.stack(observations[-30:]))
    runner.reset(RobotState())
    assert not runner.history.any() and not runner.actions.any()


def test_networks_chain_and_actions_become_joint_targets(checkpoint):
    runner = WalkTheseWaysRunner.from_checkpoint(checkpoint)
    state = RobotState(q=DEFAULT_JOINT_POS + 0.05, dq=np.ones(12))
    runner.step(state, command(vx=0.5))
    out = runner.step(state, command(vx=0.5))
    flat = torch.from_numpy(runner.history.reshape(1, -1))
    with torch.no_grad():
        expected = runner.body(torch.cat([flat, runner.adaptation(flat)], -1))[0].numpy()
    np.testing.assert_allclose(runner.actions, np.clip(expected, -10, 10), rtol=1e-5, atol=1e-6)
    a = runner.actions  # policy order
    scale = np.array([0.125, 0.25, 0.25] * 4)  # hips x0.5
    policy_default = np.array([0.1, 0.8, -1.5, -0.1, 0.8, -1.5, 0.1, 1.0, -1.5, -0.1, 1.0, -1.5])
    policy_targets = policy_default + scale * a
    np.testing.assert_allclose(out.q[[3, 4, 5, 0, 1, 2, 9, 10, 11, 6, 7, 8]], policy_targets,
                               rtol=1e-6)
    np.testing.assert_allclose(out.q[0], -0.1 + 0.125 * a[3], rtol=1e-6)  # FR hip
    assert np.all(out.kp == 20.0) and np.all(out.kd == 0.5)


def test_config_round_trip_and_bad_checkpoints(checkpoint, tmp_path):
    cfg = WtwConfig(kp=25.0, clip_actions=5.0)
    cfg.save(tmp_path)
    assert WtwConfig.load(tmp_path / "wtw_config.json") == cfg
    with pytest.raises(FileNotFoundError, match="adaptation_module_latest.jit"):
        WalkTheseWaysRunner.from_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="permutation"):
        WtwConfig(policy_to_sdk=(0,) * 12)
    adaptation = torch.jit.script(mlp([2100, 8, 3]))
    body = torch.jit.script(mlp([2102, 8, 12]))
    with pytest.raises(ValueError, match="adaptation module"):
        WalkTheseWaysRunner(adaptation, body)
