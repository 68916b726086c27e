"""Controller + MuJoCo sim over real DDS (two processes): stand up, stand, walk on command."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time

import numpy as np
import pytest
from child_env import python_env, stopped_after

from more_policy.actions import ActionSpace
from more_policy.control.gait import GaitController
from more_policy.control.loop import ControlLoop
from more_policy.control.safety import SafetyConfig, SafetyMonitor
from more_policy.control.stand import StandUpConfig, StandUpSequence
from more_policy.robot.go2_io import Go2Client, Go2IOConfig
from more_policy.robot.sdk_compat import channels_domain

SPACE = ActionSpace()


@pytest.mark.ros
@pytest.mark.sim
@pytest.mark.slow
def test_controller_and_sim_over_dds_stand_up_and_walk(tmp_path):
    domain = channels_domain() or random.randint(1, 99)
    log = tmp_path / "bridge.json"
    env = python_env()
    bridge = subprocess.Popen(
        [sys.executable, "-m", "more_policy.sim.cli", "sim-bridge", "--domain", str(domain),
         "--seconds", "8", "--start-lying", "--log", str(log)], env=env)
    client = Go2Client(Go2IOConfig(domain_id=domain, interface="lo"))
    loop = ControlLoop(client, GaitController(), SafetyMonitor(SafetyConfig(
        state_timeout_s=0.2, command_timeout_s=2.0)), StandUpSequence(StandUpConfig(
            damping_s=0.5, ramp_s=1.5)))
    with stopped_after(loop, client, bridge):
        assert client.wait_for_first(20.0), "no rt/lowstate from the sim bridge"
        loop.start()
        time.sleep(3.0)  # stand up (2 s) and stand
        walk = SPACE.default_command()
        walk[SPACE.index("vel_x")] = 0.5
        end = time.monotonic() + 4.0
        while time.monotonic() < end:  # the policy side publishes at ~5 Hz
            loop.set_command(walk)
            time.sleep(0.2)
        status = loop.monitor.status  # before the bridge's run ends (then: state timeout)
        fault, detail = status.fault, status.detail
        ticks, pressed = loop.stats.ticks, time.monotonic()
        loop.estop("test")
        while not np.all(loop.last_command.kp == 0) and time.monotonic() - pressed < 1.0:
            time.sleep(0.001)
        estop_latency, estop_ticks = time.monotonic() - pressed, loop.stats.ticks - ticks
        time.sleep(0.1)
        loop.stop()
        bridge.wait(timeout=30)
    assert bridge.returncode == 0
    report = json.loads(log.read_text())
    t, x, y, z, yaw = np.array(report["trajectory"]).T
    assert report["bad_crc"] == 0 and report["commands_received"] > 0.8 * 50 * 8
    assert fault is None, detail
    lying, standing = z[t < 0.3].mean(), z[(t > 2.3) & (t < 2.9)].mean()
    print(f"trunk {lying:.3f} m lying -> {standing:.3f} m standing")
    assert lying < 0.16 and standing > 0.28
    window = (t > 4.0) & (t < 7.0)  # walking, after the speed-up
    tw = t[window]
    speed = np.hypot(np.diff(x[window]), np.diff(y[window])).sum() / (tw[-1] - tw[0])
    lowest = z[(t > 2.3) & (t < 7.0)].min()  # standing and walking, before the e-stop
    print(f"walking over DDS: {speed:.3f} m/s for 0.5 commanded; lowest trunk {lowest:.3f} m")
    assert speed == pytest.approx(0.5, rel=0.25) and lowest > 0.2
    print(f"e-stop -> damping sent after {estop_latency * 1e3:.1f} ms ({estop_ticks} tick)")
    assert estop_ticks <= 1 and estop_latency < 0.25  # the next tick, on a loaded machine
    assert report["last_command_kp"] == [0.0] * 12  # the sim received the damping
