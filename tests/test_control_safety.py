"""One test per safety rule; each measures how long (control time and wall time) it takes."""

from __future__ import annotations

import time

import numpy as np
import pytest

from more_policy.actions import ActionSpace
from more_policy.control.safety import (
    Fault,
    SafeController,
    SafetyConfig,
    SafetyMonitor,
    tilt_angle,
)
from more_policy.control.stand import StandController
from more_policy.robot.go2 import (
    DEFAULT_JOINT_POS,
    JOINT_LOWER,
    JOINT_UPPER,
    TORQUE_LIMIT,
    VELOCITY_LIMIT,
    MotorCommand,
    RobotState,
)

DT = 0.02  # 50 Hz control
SPACE = ActionSpace()


def is_damping(cmd: MotorCommand) -> bool:
    return bool(np.all(cmd.kp == 0) and np.all(cmd.kd > 0) and np.all(cmd.tau == 0))


def walk_command(vx=0.5, yaw=0.3) -> np.ndarray:
    c = SPACE.default_command()
    c[SPACE.index("vel_x")], c[SPACE.index("yaw_rate")] = vx, yaw
    return c


def run_until_damping(ctrl: SafeController, states, start_tick: int, max_ticks: int = 50,
                      fresh: bool = True):
    """Step ticks from ``start_tick`` (``fresh``: a new LowState arrives every tick); returns
    (ticks until damping, wall seconds of that step)."""
    for k in range(max_ticks):
        now = (start_tick + k) * DT
        state = states(now)
        if fresh:
            ctrl.monitor.state_received(now)
        t0 = time.perf_counter()
        out = ctrl.step(state, now)
        wall = time.perf_counter() - t0
        if is_damping(out):
            return k, wall
    raise AssertionError(f"no damping within {max_ticks} ticks")


def healthy_controller(config: SafetyConfig | None = None) -> SafeController:
    ctrl = SafeController(StandController(), SafetyMonitor(config))
    for k in range(5):  # a few healthy ticks first
        ctrl.monitor.state_received(k * DT)
        assert not is_damping(ctrl.step(RobotState(), k * DT))
    return ctrl


def test_command_clamped_to_action_space_ranges():
    monitor = SafetyMonitor()
    wild = walk_command()
    wild[SPACE.index("vel_x")], wild[SPACE.index("body_height")] = 9.0, -3.0
    t0 = time.perf_counter()
    out = monitor.set_command(wild, now=0.0)
    wall = time.perf_counter() - t0
    assert out[SPACE.index("vel_x")] == SPACE.high[SPACE.index("vel_x")]
    assert out[SPACE.index("body_height")] == SPACE.low[SPACE.index("body_height")]
    assert np.all((monitor.active_command(0.01) >= SPACE.low)
                  & (monitor.active_command(0.01) <= SPACE.high))
    assert monitor.status.clamped_commands == 1
    bad = walk_command(vx=0.3)
    bad[2] = np.nan
    assert monitor.set_command(bad, now=0.02) is None  # rejected, the clamped one stays
    assert monitor.status.rejected_commands == 1
    assert monitor.active_command(0.03)[SPACE.index("vel_x")] == SPACE.high[0]
    print(f"clamp cost {wall * 1e6:.1f} us")


def test_command_timeout_gives_the_stand_command():
    cfg = SafetyConfig(command_timeout_s=0.3)
    monitor = SafetyMonitor(cfg)
    cmd = walk_command(vx=0.8, yaw=-0.5)
    cmd[SPACE.index("body_height")] = -0.08
    monitor.set_command(cmd, now=1.0)
    np.testing.assert_allclose(monitor.active_command(1.29), cmd)  # fresh: unchanged
    assert not monitor.status.command_timed_out
    # too old: the stand command (the controllers' envelope bounds the deceleration)
    np.testing.assert_allclose(monitor.active_command(1.32), SPACE.default_command())
    assert monitor.status.command_timed_out
    monitor.set_command(cmd, now=3.0)  # a fresh command resumes at once
    assert monitor.active_command(3.0)[SPACE.index("vel_x")] == 0.8


def test_state_timeout_gives_damping_but_tolerates_one_late_state():
    ctrl = healthy_controller(SafetyConfig(state_timeout_s=0.05))
    stale = RobotState()  # the loop keeps passing the last state it got
    late = 5 * DT + 0.05 + 0.001  # one tick sees the state too old, the next one is fresh
    ctrl.monitor.state_received(4 * DT)
    assert not is_damping(ctrl.step(stale, late))
    ctrl.monitor.state_received(late)
    assert not is_damping(ctrl.step(stale, late + DT))
    ticks, wall = run_until_damping(ctrl, lambda now: stale, start_tick=10, fresh=False)
    latency = 10 * DT + ticks * DT - late  # the last state arrived at ``late``
    print(f"state lost -> damping after {latency * 1e3:.0f} ms control time, "
          f"{wall * 1e6:.0f} us wall")
    assert ctrl.monitor.status.fault is Fault.STATE_TIMEOUT
    assert 0.05 <= latency <= 0.05 + 2 * DT + 1e-9


@pytest.mark.parametrize("field,value,fault", [
    ("q", np.nan, Fault.JOINT_SENSOR), ("dq", np.inf, Fault.JOINT_SENSOR),
    ("tau", -np.inf, Fault.JOINT_SENSOR), ("quat", np.zeros(4), Fault.IMU_SENSOR),
    ("quat", np.full(4, np.nan), Fault.IMU_SENSOR), ("gyro", np.nan, Fault.IMU_SENSOR),
    ("accel", 1e3, Fault.IMU_SENSOR), ("foot_force", np.nan, Fault.FOOT_SENSOR),
    ("foot_force", 32767.0, Fault.FOOT_SENSOR), ("foot_force", -32768.0, Fault.FOOT_SENSOR)])
def test_invalid_sensor_data_gives_damping_on_the_same_tick(field, value, fault, caplog):
    ctrl = healthy_controller()
    bad = RobotState()
    data = np.asarray(getattr(bad, field), dtype=np.float64).copy()
    data[...] = value if np.ndim(value) else data * 0 + value
    if np.ndim(value) == 0 and field not in ("quat",):
        data = np.where(np.arange(data.size) == 1, value, data)  # one element is enough
    setattr(bad, field, data)
    ticks, _ = run_until_damping(ctrl, lambda now: bad if now >= 5 * DT else RobotState(),
                                 start_tick=5)
    assert ticks == 0 and ctrl.monitor.status.fault is fault
    assert field.split("_")[0] in ctrl.monitor.status.detail or fault is Fault.IMU_SENSOR
    ctrl.step(bad, 6 * DT)  # latched: logged once, not per tick
    logged = [r for r in caplog.records if r.name == "more_policy.control.safety"]
    assert len(logged) == 1 and fault.value in logged[0].getMessage()


def test_estop_gives_damping_on_the_next_tick():
    ctrl = healthy_controller()
    ctrl.monitor.estop(now=5 * DT, reason="test")
    ticks, wall = run_until_damping(ctrl, lambda now: RobotState(), start_tick=5)
    print(f"e-stop -> damping after {ticks} ticks, {wall * 1e6:.0f} us wall")
    assert ticks == 0 and ctrl.monitor.status.fault is Fault.ESTOP
    # latched: healthy states do not bring the stiffness back until an operator clears it
    assert is_damping(ctrl.step(RobotState(), 10 * DT))
    ctrl.monitor.clear()
    ctrl.monitor.state_received(11 * DT)
    assert not is_damping(ctrl.step(RobotState(), 11 * DT))


def test_tilt_limit_gives_damping():
    ctrl = healthy_controller(SafetyConfig(tilt_limit_rad=0.8))

    def tilting(now):  # rolls over at 2 rad/s from tick 5
        angle = 2.0 * (now - 5 * DT)
        return RobotState(quat=np.array([np.cos(angle / 2), np.sin(angle / 2), 0.0, 0.0]))

    ticks, wall = run_until_damping(ctrl, tilting, start_tick=5)
    angle = 2.0 * ticks * DT
    print(f"tilt -> damping at {angle:.2f} rad after {ticks} ticks, {wall * 1e6:.0f} us wall")
    assert ctrl.monitor.status.fault is Fault.TILT
    assert 0.8 < angle <= 0.8 + 2.0 * DT
    assert tilt_angle(np.array([np.cos(0.15), 0, np.sin(0.15), 0])) == pytest.approx(0.3)


def test_joint_position_limit_gives_damping_and_targets_are_clipped():
    ctrl = healthy_controller()
    out = ctrl.monitor.limit(MotorCommand(q=JOINT_UPPER + 1.0, kp=np.full(12, 20.0),
                                          kd=np.ones(12)), RobotState(q=JOINT_UPPER.copy()))
    assert np.all(out.q <= JOINT_UPPER)

    def drifting(now):  # calf of FR runs past its lower limit
        q = DEFAULT_JOINT_POS.copy()
        q[2] = JOINT_LOWER[2] + 0.3 - 2.0 * (now - 5 * DT)
        return RobotState(q=q)

    ticks, wall = run_until_damping(ctrl, drifting, start_tick=5)
    beyond = JOINT_LOWER[2] - drifting((5 + ticks) * DT).q[2]
    print(f"joint limit -> damping {beyond:.3f} rad past the limit, {wall * 1e6:.0f} us")
    assert ctrl.monitor.status.fault is Fault.JOINT_POSITION
    assert 0.1 < beyond <= 0.1 + 2.0 * DT + 1e-9


def test_joint_velocity_limit_gives_damping():
    ctrl = healthy_controller()

    def spinning(now):
        dq = np.zeros(12)
        dq[7] = 1.05 * VELOCITY_LIMIT[7] if now >= 8 * DT else 0.5 * VELOCITY_LIMIT[7]
        return RobotState(dq=dq)

    ticks, wall = run_until_damping(ctrl, spinning, start_tick=5)
    print(f"over-speed -> damping after {ticks - 3} ticks, {wall * 1e6:.0f} us wall")
    assert ticks == 3 and ctrl.monitor.status.fault is Fault.JOINT_VELOCITY


def test_torque_limit_bounds_commanded_torque():
    monitor = SafetyMonitor()
    state = RobotState(dq=np.full(12, 2.0))
    cmd = MotorCommand(q=state.q + 5.0, kp=np.full(12, 60.0), kd=np.full(12, 2.0),
                       tau=np.full(12, 100.0))
    t0 = time.perf_counter()
    out = monitor.limit(cmd, state)
    wall = time.perf_counter() - t0
    requested = np.abs(cmd.torque(state.q, state.dq))
    asked = out.kp * (out.q - state.q) + out.kd * (out.dq - state.dq) + out.tau
    print(f"torque limiting {wall * 1e6:.0f} us")
    assert np.all(np.abs(asked) <= TORQUE_LIMIT + 1e-9)
    assert np.all(np.abs(out.tau) <= TORQUE_LIMIT)
    np.testing.assert_allclose(np.abs(asked), np.minimum(requested, TORQUE_LIMIT))
