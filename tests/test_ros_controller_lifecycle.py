"""controller_node as a managed (lifecycle) node over real DDS: a stand-in Go2 process
(robot_dds_peer.py) records every rt/lowcmd, the test drives the transitions through the
node's lifecycle services. Nothing reaches the motors before activate; activate stands up
(position gains), deactivate damps; the robot's IMU comes out as sensor_msgs/Imu; SIGINT
ends the node within 2 s without a traceback."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.ros]

rclpy = pytest.importorskip("rclpy")

from child_env import python_env  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from ros_procs import REPO, NodeProcess, Probe, isolated_domain  # noqa: E402
from sensor_msgs.msg import Imu  # noqa: E402

from more_policy.nodes.interfaces import SENSOR_QOS  # noqa: E402

INACTIVE_S = 1.5  # configured but not active: must stay silent on rt/lowcmd
ACTIVE_S = 2.0
SLACK_S = 0.1  # a LowCmd in flight when a transition returns


def change_state(probe: Probe, transition: int) -> float:
    """Request a transition; returns time.monotonic() when it completed."""
    client = probe.node.create_client(ChangeState, "/controller_node/change_state")
    assert client.wait_for_service(timeout_sec=20)
    future = client.call_async(ChangeState.Request(transition=Transition(id=transition)))
    assert probe.wait_for(future.done, 20), f"transition {transition} got no answer"
    assert future.result().success, f"transition {transition} failed"
    return time.monotonic()


def state_label(probe: Probe) -> str:
    """The node's lifecycle state, or "" when the query got no answer in 5 s: a request sent
    right after discovery can lose its response (the server's reply writer not yet matched),
    and a state query is safe to repeat, so callers poll this inside probe.wait_for."""
    client = probe.node.create_client(GetState, "/controller_node/get_state")
    try:
        assert client.wait_for_service(timeout_sec=20)
        future = client.call_async(GetState.Request())
        if not probe.wait_for(future.done, 5):
            return ""
        return future.result().current_state.label
    finally:
        probe.node.destroy_client(client)


@pytest.mark.timeout(120)
def test_lifecycle_gates_lowcmd_and_sigint_is_clean(tmp_path):
    sdk_domain = random.randint(1, 99)
    out = tmp_path / "peer.json"
    with isolated_domain():
        rclpy.init()
        probe = Probe("lifecycle_probe")
        imus = probe.listen(Imu, "/imu/data", SENSOR_QOS)
        node = NodeProcess("more_policy.nodes.controller_node", {
            "autostart": "false", "dds_domain_id": sdk_domain, "network_interface": "lo",
            "standup_damping_s": 0.2, "standup_ramp_s": 0.5, "state_timeout_s": 0.5})
        peer = None
        try:
            assert probe.wait_for(lambda: state_label(probe) == "unconfigured", 30)
            configured = change_state(probe, Transition.TRANSITION_CONFIGURE)
            # The peer (LowState at 200 Hz, every LowCmd logged) outlives all transitions.
            peer = subprocess.Popen(
                [sys.executable, str(REPO / "tests" / "robot_dds_peer.py"), "--domain",
                 str(sdk_domain), "--out", str(out), "--stand", "--hz", "200", "--wait-peer",
                 "0", "--seconds", str(INACTIVE_S + ACTIVE_S + 3.0)],
                env=python_env())
            # LowState flows (the IMU is published from it) before the silent stretch starts:
            # the peer's start-up takes seconds on a loaded machine.
            assert probe.wait_for(lambda: imus, 30), "no LowState reached the controller"
            time.sleep(INACTIVE_S)
            activate_sent = time.monotonic()
            change_state(probe, Transition.TRANSITION_ACTIVATE)
            assert probe.wait_for(lambda: state_label(probe) == "active", 15)
            time.sleep(ACTIVE_S)
            deactivated = change_state(probe, Transition.TRANSITION_DEACTIVATE)
            assert probe.wait_for(lambda: state_label(probe) == "inactive", 15)
            assert peer.wait(timeout=30) == 0
            seconds, code = node.stop_timed(signal.SIGINT)
        finally:
            if peer is not None and peer.poll() is None:
                peer.kill()
            node.stop()
            probe.close()
            rclpy.shutdown()
    log = node.output()
    commands = json.loads(out.read_text())["commands"]  # (receive time, pure damping)
    assert configured < activate_sent
    assert not [t for t, _ in commands if t < activate_sent], "LowCmd before activate"
    active = [damping for t, damping in commands if activate_sent <= t < deactivated]
    assert active and not all(active), "no stand-up (position gains) while active"
    after = [damping for t, damping in commands if t > deactivated + SLACK_S]
    assert after and all(after), "not damped after deactivate"
    assert code == 0, log
    assert seconds < 2.0, f"SIGINT took {seconds:.2f} s\n{log}"
    assert "Traceback" not in log, log
    # the peer's standing robot: level (identity quaternion), +1 g on z
    assert imus, "no sensor_msgs/Imu from LowState"
    imu = imus[-1]
    assert imu.header.frame_id == "base_link"
    assert (imu.orientation.w, imu.orientation.x, imu.orientation.y, imu.orientation.z) == \
        (1.0, 0.0, 0.0, 0.0)
    assert imu.linear_acceleration.z == pytest.approx(9.81, abs=1e-3)
