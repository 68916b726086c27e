"""Go2SimBridge, the one sim-on-DDS loop: a Go2Client and the bridge on loopback DDS."""

from __future__ import annotations

import math
import random
import time

import numpy as np
import pytest

from more_policy.robot.go2 import DEFAULT_JOINT_POS, MotorCommand
from more_policy.robot.go2_io import Go2Client, Go2IOConfig
from more_policy.robot.sdk_compat import channels_domain
from more_policy.sim.bridge import Go2SimBridge, SimBridgeConfig


def wait_until(condition, timeout_s: float = 15.0) -> bool:
    end = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < end:
        time.sleep(0.01)
    return condition()


@pytest.mark.ros
@pytest.mark.sim
def test_bridge_steps_the_requested_time_and_keeps_the_last_good_command():
    io = Go2IOConfig(domain_id=channels_domain() or random.randint(1, 99), interface="lo")
    steps, rejected = [], []
    bridge = Go2SimBridge(io, SimBridgeConfig(start_lying=True, log_every=5),
                          after_step=lambda: steps.append(1), on_bad_command=rejected.append)
    client = Go2Client(io)
    stand = MotorCommand(q=DEFAULT_JOINT_POS, kp=np.full(12, 40.0), kd=np.full(12, 1.0))
    try:
        assert wait_until(lambda: (client.send(stand), bridge.endpoint.latest_command())[1]
                          is not None), "no rt/lowcmd reached the bridge"
        bridge.run(0.1)
        assert bridge.physics.time == pytest.approx(0.1) and len(steps) == 50
        assert len(bridge.trajectory) == 10 and client.wait_for_first(5.0)
        np.testing.assert_allclose(bridge.report()["last_command_kp"], 40.0)

        gap = np.abs(bridge.physics.joint_pos() - DEFAULT_JOINT_POS).sum()  # rising from lying
        nan = MotorCommand(q=np.full(12, math.nan), kp=np.full(12, 40.0), kd=np.ones(12))
        client.send(nan)
        assert wait_until(lambda: np.isnan(bridge.endpoint.latest_command().q).all())
        bridge.run(stop=lambda: len(steps) >= 100)  # no time limit: until stop() (per batch)
        assert len(steps) >= 100 and len(rejected) == 1 and "non-finite" in str(rejected[0])
        assert bridge.report()["rejected_commands"] == 1
        # still rising under the stand command
        assert np.abs(bridge.physics.joint_pos() - DEFAULT_JOINT_POS).sum() < gap
    finally:
        client.close()
        bridge.close()
