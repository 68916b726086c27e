"""The control loop in simulated time: safe stand-up from lying, walk on command, e-stop."""

from __future__ import annotations

import numpy as np
import pytest

from more_policy.actions import ActionSpace
from more_policy.control.gait import GaitController
from more_policy.control.loop import ControlLoop, LoopStats
from more_policy.control.stand import StandUpConfig, StandUpSequence
from more_policy.robot.go2 import DEFAULT_JOINT_POS, LYING_JOINT_POS, RobotState

SPACE = ActionSpace()


def test_stand_up_sequence_damps_then_ramps_smoothly():
    cfg = StandUpConfig(damping_s=0.2, ramp_s=1.0, kp=40.0)
    seq = StandUpSequence(cfg)
    lying = RobotState(q=LYING_JOINT_POS.copy())
    commands = []
    while not seq.done:
        commands.append(seq.step(lying))
    assert len(commands) == round((0.2 + 1.0) / 0.02)
    assert all(np.all(c.kp == 0) and np.all(c.kd > 0) for c in commands[:10])  # damping
    targets = np.array([c.q for c in commands[10:]])
    np.testing.assert_allclose(targets[0], LYING_JOINT_POS, atol=1e-12)  # from where it lies
    np.testing.assert_allclose(targets[-1], DEFAULT_JOINT_POS, atol=0.01)
    assert np.abs(np.diff(targets, axis=0)).max() < 0.06  # <= 3 rad/s target motion
    kps = [c.kp[0] for c in commands[10:]]
    assert kps[0] == 0.0 and np.all(np.diff(kps) >= 0) and kps[-1] == pytest.approx(40, rel=0.02)


@pytest.mark.sim
def test_loop_stands_up_from_lying_walks_and_estops_in_physics():
    from more_policy.sim.bridge import LYING_BASE_HEIGHT, PhysicsLink
    from more_policy.sim.physics import Go2Physics

    physics = Go2Physics()
    physics.reset(base_pos=[0.0, 0.0, LYING_BASE_HEIGHT], joint_pos=LYING_JOINT_POS)
    link = PhysicsLink(physics)
    loop = ControlLoop(link, GaitController(), stand_up=StandUpSequence(
        StandUpConfig(damping_s=0.5, ramp_s=1.5)), clock=link.clock)
    for _ in range(150):  # 3 s: stand up and settle
        loop.tick()
    standing = physics.base_pose()[0]
    walk = SPACE.default_command()
    walk[SPACE.index("vel_x")] = 0.5
    for _ in range(150):  # 3 s walking, the command refreshed at 10 Hz like the policy's
        if loop.stats.ticks % 5 == 0:
            loop.set_command(walk)
        loop.tick()
    walked = physics.base_pose()[0]
    assert loop.monitor.status.fault is None
    print(f"stood up to {standing[2]:.3f} m, walked {walked[0] - standing[0]:.2f} m in 3 s")
    assert standing[2] > 0.29 and walked[2] > 0.28
    assert walked[0] - standing[0] == pytest.approx(0.5 * 3, rel=0.3)
    loop.estop("test")
    assert np.all(loop.tick().kp == 0)  # damping on the very next tick
    assert loop.stats.period_jitter_ms() == pytest.approx((0.0, 0.0), abs=1e-6)  # sim time


def test_loop_stats_jitter():
    stats = LoopStats(tick_times=[0.0, 0.020, 0.041, 0.060, 0.080])
    p50, p99 = stats.period_jitter_ms()
    # periods 20, 21, 19, 20 ms around a 20 ms median: deviations 0, 1, 1, 0 ms
    assert p50 == pytest.approx(0.5) and p99 == pytest.approx(1.0)


def test_a_controller_that_raises_latches_damping_and_the_loop_goes_on():
    class Link:  # the robot side, as the loop sees it: one healthy state, commands recorded
        def __init__(self):
            self.sent = []

        def latest_state(self):
            return RobotState()

        def last_receive_time(self):
            return 0.0

        def send(self, cmd):
            self.sent.append(cmd)

    class Failing(GaitController):
        def step(self, state, command):
            raise ArithmeticError("leg out of reach")

    errors = []
    link = Link()
    loop = ControlLoop(link, Failing(), clock=lambda: 0.0, on_error=errors.append)
    for _ in range(3):
        cmd = loop.tick()
        assert np.all(cmd.kp == 0) and np.all(cmd.kd > 0)  # damped, never the last target
    assert len(link.sent) == 3 and loop.stats.errors == 1  # the e-stop latched after tick 1
    assert [type(e) for e in errors] == [ArithmeticError]
    assert "controller error: ArithmeticError" in loop.monitor.status.detail


def test_a_command_times_out_from_when_it_was_produced():
    """A command held up on its way (its stamp says how long) stops the robot as early as a
    lost one would; a stamp from a clock ahead of ours counts from its arrival."""
    now = [10.0]
    loop = ControlLoop(None, GaitController(), clock=lambda: now[0])
    timeout = loop.monitor.config.command_timeout_s
    walk = SPACE.default_command(vel_x=0.5)
    loop.set_command(walk, age_s=timeout - 0.05)
    assert loop.monitor.active_command(now[0])[SPACE.index("vel_x")] == 0.5
    now[0] += 0.06  # 0.06 s after it arrived, timeout + 0.01 s after it was produced
    np.testing.assert_allclose(loop.monitor.active_command(now[0]), SPACE.default_command())
    assert loop.monitor.status.command_timed_out
    loop.set_command(walk, age_s=-1.0)
    assert loop.monitor.command_time == now[0]
    now[0] += timeout - 0.01
    assert loop.monitor.active_command(now[0])[SPACE.index("vel_x")] == 0.5
