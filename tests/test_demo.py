"""`more demo` (the README's main job) end to end at its smallest settings."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.sim, pytest.mark.ros, pytest.mark.slow]


@pytest.mark.timeout(300)
def test_demo_runs_sim_policy_and_ros_stack(tmp_path, ros_domain):
    # Its own process, as a user runs it (the Unitree SDK allows one DDS domain per process).
    out = tmp_path / "demo"
    run = subprocess.run(
        [sys.executable, "-m", "more_policy.cli", "demo", "--out", str(out), "--checkpoint",
         "random-tiny", "--episodes", "1", "--ros-tasks", "go_to", "--ros-seconds", "15"],
        capture_output=True, text=True, timeout=280)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    expert = json.loads((out / "expert" / "results.json").read_text())
    assert len(expert["success_rate"]) == 6 and expert["average"] == 1.0
    assert len(list((out / "expert").glob("*.mp4"))) == 6
    policy = json.loads((out / "policy" / "results.json").read_text())
    assert policy["policy"] == "random-tiny" and len(policy["episodes"]) == 6
    outcome = json.loads((out / "ros" / "outcomes.json").read_text())["go_to"]
    assert outcome["task"] == "go_to" and outcome["instruction"]
    assert (out / "ros" / "go_to.mp4").stat().st_size > 0
    # The stack answered exactly what the model computes offline on the recorded frames.
    assert outcome["bag_token_accuracy"] == 1.0
    assert "token accuracy 1.0" in run.stdout


def test_episode_outcome_names_the_controller_fault():
    """A failed ROS episode is printed with the controller's fault read from /diagnostics."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    from more_policy.demo import controller_fault

    def diagnostics(fault: str, detail: str = "") -> DiagnosticArray:
        return DiagnosticArray(status=[DiagnosticStatus(values=[
            KeyValue(key="fault", value=fault), KeyValue(key="fault_detail", value=detail)])])

    healthy = diagnostics("")
    assert controller_fault([healthy, healthy]) is None
    tilted = diagnostics("tilt limit", "tilt 0.90 rad > 0.8")
    later = diagnostics("state timeout", "last LowState 0.300 s ago")
    assert controller_fault([healthy, tilted, later]) == "tilt limit: tilt 0.90 rad > 0.8"
