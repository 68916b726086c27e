"""The command envelope (control/envelope.py): what any in-range command becomes, the gait
family it lets through, and the property that no in-range command makes the robot fall.

Physics tests run the real control loop (safety monitor + envelope + analytic controller) on
MuJoCo in-process, in simulated time (sim.bridge.PhysicsLink), without DDS.
"""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from more_policy.actions import WTW_SLOTS, ActionSpace
from more_policy.control.envelope import CommandEnvelope, EnvelopeConfig
from more_policy.control.gait import GaitController
from more_policy.control.gait_clock import WTW_TO_SDK_FEET, foot_phases
from more_policy.control.gait_governor import blend_to_trot
from more_policy.control.loop import ControlLoop
from more_policy.control.safety import SafetyMonitor
from more_policy.control.wtw import projected_gravity
from more_policy.robot.go2 import RobotState

SPACE = ActionSpace()
DT = 0.02
GAITS = {"trot": (0.5, 0.0, 0.0), "pace": (0.0, 0.0, 0.5), "bound": (0.0, 0.5, 0.0),
         "pronk": (0.0, 0.0, 0.0), "trot-pace blend": (0.25, 0.0, 0.25),
         "bound-pronk blend": (0.0, 0.25, 0.0)}
# The saturated command the demo's policy sent when the robot fell (issue 14).
DEMO_SATURATED = SPACE.default_command(vel_y=0.5, yaw_rate=1.05, gait_phase=0.0,
                                       gait_offset=0.0, gait_bound=0.0)
CONTACT_FORCE = 5.0  # N on a foot sensor: in contact
FELL_HEIGHT, FELL_UPRIGHT = 0.15, 0.5  # the task environment's fall rule


def command(**dims) -> np.ndarray:
    return SPACE.default_command(**dims)


# -- the envelope itself (no physics) ---------------------------------------------------------
def test_envelope_limits_speed_turning_load_and_ramps_acceleration():
    env = CommandEnvelope()
    cfg = env.config
    speeds = [env.apply(command(vel_x=2.1))[0] for _ in range(100)]
    assert speeds[0] == pytest.approx(cfg.max_acceleration * DT)  # ramped up
    assert speeds[-1] == pytest.approx(cfg.max_speed)  # 2.1 commanded, capped
    for _ in range(100):
        out = env.apply(command(vel_x=1.5, yaw_rate=1.0))
    assert out[2] == pytest.approx(1.0)  # the path's curvature is kept ...
    assert out[0] * out[2] == pytest.approx(cfg.max_lateral_acceleration)  # ... slower
    stopping = [env.apply(command())[0] for _ in range(20)]
    assert np.all(np.diff(stopping) <= 0)
    assert stopping[-1] == 0.0
    stop_time = (np.argmax(np.array(stopping) == 0.0) + 1) * DT
    assert stop_time <= cfg.max_speed / cfg.max_deceleration + DT  # bounded deceleration


def test_envelope_ramps_gait_switches_and_slows_unsupported_gaits():
    env = CommandEnvelope()
    cfg = env.config
    gait = [SPACE.index(n) for n in ("gait_phase", "gait_offset", "gait_bound")]
    slow = cfg.unsupported_gait_speed
    env.apply(command(vel_x=slow))  # a trot
    outs = [env.apply(command(vel_x=slow, gait_phase=0.0)) for _ in range(150)]  # -> pronk
    executed = np.array([o[gait] for o in outs])
    steps = np.abs(np.remainder(np.diff(executed, axis=0) + 0.5, 1.0) - 0.5)
    assert steps.max() <= cfg.gait_slew_rate * DT + 1e-9  # no foot jumps
    np.testing.assert_allclose(executed[-1], [0.0, 0.0, 0.0], atol=1e-9)  # pronk arrived
    assert outs[-1][SPACE.index("step_frequency")] >= cfg.min_unsupported_frequency
    # without the blend to a trot, a fast pronk is capped
    unblended = CommandEnvelope(EnvelopeConfig(unsupported_gait_speed=2.5, trot_speed=3.0))
    for _ in range(150):
        out = unblended.apply(command(vel_x=1.5, gait_phase=0.0))
    assert out[0] == pytest.approx(cfg.max_unsupported_speed)


@pytest.mark.parametrize("dims,trot", [
    (dict(vel_x=1.5), True),  # fast: a trot, at full speed
    (dict(yaw_rate=1.0), True),  # turning in place: a trot
    (dict(vel_x=0.3), False),  # slow: the pronk itself
    (dict(vel_y=0.5, yaw_rate=1.05), False),  # the demo's sidestep while turning
])
def test_envelope_blends_unsupported_gaits_towards_a_trot_when_fast(dims, trot):
    env = CommandEnvelope()
    gait = [SPACE.index(n) for n in ("gait_phase", "gait_offset", "gait_bound")]
    for _ in range(150):
        out = env.apply(command(gait_phase=0.0, **dims))  # a pronk
    np.testing.assert_allclose(out[gait], [0.5, 0.0, 0.0] if trot else [0.0, 0.0, 0.0],
                               atol=1e-9)
    if dims.get("vel_x", 0.0) > env.config.max_unsupported_speed:
        assert out[0] == pytest.approx(env.config.max_speed)  # a trot's speed limit
    halfway = CommandEnvelope()
    between = (env.config.unsupported_gait_speed + env.config.trot_speed) / 2
    for _ in range(150):
        out = halfway.apply(command(vel_x=between, gait_phase=0.0))
    np.testing.assert_allclose(out[gait], blend_to_trot(np.zeros(3), 0.5), atol=1e-6)


def test_envelope_trot_blend_releases_slowly_when_the_command_slows():
    env = CommandEnvelope()
    cfg = env.config
    gait = [SPACE.index(n) for n in ("gait_phase", "gait_offset", "gait_bound")]
    for _ in range(150):
        env.apply(command(vel_x=1.5, gait_phase=0.0))  # a fast pronk: a trot
    release = round(cfg.trot_release_s / DT)
    outs = [env.apply(command(vel_x=0.3, gait_phase=0.0)) for _ in range(2 * release)]
    to_trot = np.remainder(outs[release // 4][gait] - [0.5, 0.0, 0.0] + 0.5, 1.0) - 0.5
    assert np.abs(to_trot).max() < 0.25  # a quarter of the release in: still mostly a trot
    np.testing.assert_allclose(outs[-1][gait], [0.0, 0.0, 0.0], atol=1e-9)  # pronk again


def test_envelope_walking_posture_only_while_moving():
    extreme = dict(body_height=0.10, body_pitch=0.4, stance_width=0.10, swing_height=0.18)
    posture = [SPACE.index(n) for n in ("body_height", "body_pitch", "stance_width",
                                        "swing_height")]
    standing, walking = CommandEnvelope(), CommandEnvelope()
    for _ in range(100):
        still = standing.apply(command(**extreme))
        moving = walking.apply(command(vel_x=1.0, **extreme))
    cfg = walking.config
    np.testing.assert_allclose(still[posture], [0.10, 0.4, cfg.min_stance_width, 0.18])
    np.testing.assert_allclose(moving[posture], [cfg.max_walking_height, cfg.max_walking_pitch,
                                                 cfg.min_walking_stance_width,
                                                 cfg.max_walking_swing_height])


def test_walk_these_ways_runner_applies_the_same_envelope():
    import torch
    from torch import nn

    from more_policy.control.wtw import WalkTheseWaysRunner

    def net(n_in, n_out):
        return torch.jit.script(nn.Sequential(nn.Linear(n_in, n_out)))

    runner = WalkTheseWaysRunner(net(2100, 2), net(2102, 12))
    scales = np.array(runner.config.command_scales)
    for _ in range(5):
        runner.step(RobotState(), command(vel_x=2.1, body_pitch=0.3))
    slots = runner.last_observation[3:18] / scales
    assert slots[WTW_SLOTS.index("x_vel")] == pytest.approx(
        5 * EnvelopeConfig().max_acceleration * DT, rel=1e-5)  # ramped, not 2.1
    assert slots[WTW_SLOTS.index("pitch")] < 0  # nose down: negative in walk-these-ways


def test_pitch_sign_matches_walk_these_ways_orientation_reward():
    """corl_rewards._reward_orientation_control: the desired base orientation is a rotation
    by -pitch_slot about y; its projected gravity must be that of our nose-down pose."""
    from more_policy.sim.physics import yaw_pitch_quat

    nose_down = 0.3  # rad, actions.py convention
    slot = SPACE.to_wtw_command(command(body_pitch=nose_down))[WTW_SLOTS.index("pitch")]
    half = -slot / 2.0
    desired = np.array([np.cos(half), 0.0, np.sin(half), 0.0])  # wxyz, angle -slot about y
    np.testing.assert_allclose(projected_gravity(desired),
                               projected_gravity(yaw_pitch_quat(0.0, nose_down)), atol=1e-12)
    assert projected_gravity(desired)[0] > 0  # nose down: gravity leans towards the nose
    np.testing.assert_allclose(SPACE.from_wtw_command(SPACE.to_wtw_command(
        command(body_pitch=nose_down)))[SPACE.index("body_pitch")], nose_down)


# -- physics ----------------------------------------------------------------------------------
class PhysicsRun:
    """The control loop on MuJoCo in simulated time; records contacts, falls and faults."""

    def __init__(self):
        from more_policy.sim.bridge import PhysicsLink
        from more_policy.sim.physics import Go2Physics

        self.physics = Go2Physics()
        self.link = PhysicsLink(self.physics, DT)
        self.controller = GaitController()
        self.loop = ControlLoop(self.link, self.controller, SafetyMonitor(),
                                clock=self.link.clock)
        self._rot = np.zeros(9)
        self.fell_at: float | None = None

    def hold(self, cmd: np.ndarray, seconds: float, on_tick=None) -> None:
        """Hold ``cmd`` (re-sent at 10 Hz, like the policy) for ``seconds``."""
        cmd = cmd.copy()
        cmd[SPACE.index("terminate")] = 0.0  # the controller node turns terminate into a stand
        for k in range(int(round(seconds / DT))):
            if k % 5 == 0:
                self.loop.set_command(cmd)
            self.loop.tick()
            pos, quat = self.physics.base_pose()
            mujoco.mju_quat2Mat(self._rot, quat)
            if self.fell_at is None and (pos[2] < FELL_HEIGHT or self._rot[8] < FELL_UPRIGHT):
                self.fell_at = self.physics.time
            if on_tick is not None:
                on_tick()

    def assert_upright(self, what: str) -> None:
        assert self.fell_at is None, f"fell at {self.fell_at:.2f} s under {what}"
        assert self.loop.monitor.status.fault is None, \
            f"{self.loop.monitor.status.reason()} under {what}"


def contact_phases(contacts: np.ndarray, gait_index: np.ndarray) -> np.ndarray:
    """(4,) phase of each foot's contact pattern against the gait clock (first Fourier
    component of the contact signal over the gait index), in cycles."""
    basis = np.exp(-2j * np.pi * gait_index)  # (T,)
    return np.angle(contacts.T @ basis) / (2 * np.pi)  # (4,)


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("name", list(GAITS))
def test_contact_pattern_matches_the_commanded_gait(name):
    gait = np.array(GAITS[name])
    run = PhysicsRun()
    run.hold(command(vel_x=0.5, gait_phase=gait[0], gait_offset=gait[1], gait_bound=gait[2]),
             2.0)  # walk into the gait (it ramps in)
    contacts, index = [], []

    def record():
        contacts.append(run.physics.state().foot_force > CONTACT_FORCE)
        index.append(run.controller.clock.gait_index)

    run.hold(command(vel_x=0.5, gait_phase=gait[0], gait_offset=gait[1], gait_bound=gait[2]),
             4.0, on_tick=record)
    run.assert_upright(name)
    assert run.controller.governor.trips == 0  # the commanded gait ran, not the fallback
    measured = contact_phases(np.array(contacts, dtype=float), np.array(index))
    expected = foot_phases(0.0, *gait)[WTW_TO_SDK_FEET]  # SDK foot order
    # relative to the front-right foot; circular distance in cycles
    error = np.remainder((measured - measured[0]) - (expected - expected[0]) + 0.5, 1.0) - 0.5
    print(f"{name}: contact phases {np.round(measured - measured[0], 2) % 1} "
          f"expected {np.round(expected - expected[0], 2) % 1}")
    # A pronk's front feet bounce off on landing and touch down again ~0.2 cycle after the
    # rear ones (measured 0.22): closer to a pronk than to a bound (0.5), but not exact.
    assert np.abs(error).max() < (0.25 if name == "pronk" else 0.1)
    duty = np.mean(contacts, axis=0)
    assert np.all(duty < 0.95), f"feet never lift: duty {duty}"  # it steps, not shuffles


def random_commands(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    return [rng.uniform(SPACE.low, SPACE.high) for _ in range(n)]


def corner_commands(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    low, high = SPACE.low, SPACE.high
    return [high, low, DEMO_SATURATED] + [np.where(rng.uniform(size=12) < 0.5, low, high)
                                          for _ in range(n)]


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.timeout(1500)  # ~70 s a chunk on an idle core, 6 min on a loaded 2-core host
@pytest.mark.parametrize("chunk", [
    0,  # corners + the demo's saturated command + 125 random: in CI
    pytest.param(1, marks=pytest.mark.property),
    pytest.param(2, marks=pytest.mark.property),
    pytest.param(3, marks=pytest.mark.property),
])
def test_no_in_range_command_makes_it_fall(chunk):
    """500 uniform random in-range commands (4 chunks of 125) plus the corners and the demo's
    saturated command, each held 5 s and switched abruptly: no fall, no safety fault.
    Chunks 1-3 run with `make test-property`, not in CI."""
    rng = np.random.default_rng(chunk)
    commands = random_commands(rng, 125)
    if chunk == 0:
        commands = corner_commands(rng, 16) + commands
    run = PhysicsRun()
    for i, cmd in enumerate(commands):
        run.hold(cmd, 5.0)
        run.assert_upright(f"command {i} {np.round(cmd, 2).tolist()}")
    print(f"chunk {chunk}: {len(commands)} commands x 5 s, no fall, no fault")


# The two random commands that fell in the property run (chunk 2 command 67, chunk 3 command
# 48) before the envelope blended turning gaits without support into a trot: each a pace/bound
# blend turning at -0.8 rad/s, switched to from another such blend; the trunk rolled over
# (tilt fault) ~1 s after the switch. (previous command, the command that fell.)
TURNING_BLEND_FALLS = {
    "chunk2-67": (np.array([1.681, 0.068, -0.858, 0.362, 0.946, 0.655, 2.74, 0.042, 0.147,
                            0.132, 0.126, 0.806]),
                  np.array([0.244, 0.048, -0.8, 0.275, 0.766, 0.358, 3.645, 0.045, 0.109,
                            0.13, 0.125, 0.878])),
    "chunk3-48": (np.array([0.922, 0.147, -0.405, 0.217, 0.106, 0.805, 3.751, 0.067, 0.165,
                            0.221, 0.086, 0.881]),
                  np.array([0.994, 0.187, -0.796, 0.746, 0.147, 0.958, 3.421, 0.006, 0.123,
                            0.146, 0.13, 0.086])),
}


@pytest.mark.parametrize("name", list(TURNING_BLEND_FALLS))
def test_envelope_runs_the_fallen_turning_blends_as_a_trot(name):
    """The rule they were missing: turning at w counts as moving at w * turn_radius, so a
    gait without support turning at 0.8 rad/s blends fully into a trot (chunk 3's command is
    also faster than trot_speed); the switch between the two blends never happens."""
    previous, fell = TURNING_BLEND_FALLS[name]
    env = CommandEnvelope()
    gait = [SPACE.index(n) for n in ("gait_phase", "gait_offset", "gait_bound")]
    assert env.deficit(np.remainder(fell[gait], 1.0), 0.25) > env.config.unsupported_deficit
    for _ in range(250):
        before = env.apply(previous)
    outs = [env.apply(fell) for _ in range(100)]
    np.testing.assert_allclose(before[gait], [0.5, 0.0, 0.0], atol=1e-9)
    assert env.trot_blend == 1.0
    np.testing.assert_allclose(np.array([o[gait] for o in outs]),
                               np.tile([0.5, 0.0, 0.0], (100, 1)), atol=1e-9)  # stays a trot
    assert outs[-1][SPACE.index("yaw_rate")] == pytest.approx(fell[SPACE.index("yaw_rate")])


@pytest.mark.sim
@pytest.mark.slow
def test_the_fallen_turning_blend_switch_stays_upright():
    """Chunk 2's fall without its long history: the previous command held 5.24 s puts the
    switch at the gait phase where the old envelope rolled over (tilt fault at 5.84 s)."""
    previous, fell = TURNING_BLEND_FALLS["chunk2-67"]
    run = PhysicsRun()
    run.hold(previous, 5.24)
    run.hold(fell, 5.0)
    run.assert_upright("the switch from chunk 2 command 66 to 67")


@pytest.mark.sim
@pytest.mark.parametrize("vx,yaw", [(0.5, 0.0), (0.5, 1.0)])
def test_stale_command_stands_still_within_0_6_s_in_simulated_time(vx, yaw):
    """The same stop as tests/test_robot_dds_safety.py, in-process and in simulated time (no
    scheduling noise): the last command, then nothing."""
    run = PhysicsRun()
    run.hold(command(vel_x=vx, yaw_rate=yaw), 3.0)
    last = run.loop.monitor.command_time
    still_since = None
    for _ in range(60):  # 1.2 s without a command
        run.loop.tick()
        state = run.physics.state()
        still = np.all(state.foot_force > CONTACT_FORCE) and np.abs(state.dq).max() < 0.5
        still_since = (still_since or run.physics.time) if still else None
    run.assert_upright("a stale command")
    assert run.loop.monitor.status.command_timed_out and still_since is not None
    print(f"{vx} m/s, {yaw} rad/s: standing still {still_since - last:.2f} s after the last "
          f"command")
    assert still_since - last <= 0.6
