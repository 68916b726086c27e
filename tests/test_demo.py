"""`more demo` (the README's main job) end to end at its smallest settings, twice in a row in
the same folder (a rerun replaces the previous results)."""

from __future__ import annotations

import json
import subprocess
import sys

import imageio.v2 as imageio
import pytest

pytestmark = [pytest.mark.sim, pytest.mark.ros, pytest.mark.slow]

TABLE_HEAD = ("stage", "task", "success", "reason", "files")


def demo(out, ros_seconds: int) -> subprocess.CompletedProcess:
    # Its own process, as a user runs it (the Unitree SDK allows one DDS domain per process).
    return subprocess.run(
        [sys.executable, "-m", "more_policy.cli", "demo", "--out", str(out), "--checkpoint",
         "random-tiny", "--episodes", "1", "--ros-tasks", "go_to", "--ros-seconds",
         str(ros_seconds)], capture_output=True, text=True, timeout=400)


def summary_rows(stdout: str) -> list[list[str]]:
    """The final table: header, then one row per stage and task."""
    lines = stdout[stdout.rindex("=== summary"):].splitlines()[1:]
    assert lines[0].split() == list(TABLE_HEAD), lines[0]
    return [line.split(None, 3) for line in lines[1:] if line.strip()]


@pytest.mark.timeout(900)
def test_demo_runs_sim_policy_and_ros_stack_twice(tmp_path, ros_domain):
    out = tmp_path / "demo"
    first = demo(out, 15)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    expert = json.loads((out / "expert" / "results.json").read_text())
    assert len(expert["success_rate"]) == 6 and expert["average"] == 1.0
    videos = sorted((out / "expert").glob("*.mp4"))
    assert len(videos) == 6
    frame = imageio.mimread(videos[0])[-1]
    assert frame.shape[0] > 240 and frame.shape[1] >= 2 * 240  # camera | top-down, caption
    policy = json.loads((out / "policy" / "results.json").read_text())
    assert policy["policy"] == "random-tiny" and len(policy["episodes"]) == 6
    assert (out / "success.png").stat().st_size > 0
    outcome = json.loads((out / "ros" / "outcomes.json").read_text())["go_to"]
    assert outcome["task"] == "go_to" and outcome["instruction"]
    assert (out / "ros" / "go_to.mp4").stat().st_size > 0
    # The stack answered exactly what the model computes offline on the recorded frames.
    assert outcome["bag_token_accuracy"] == 1.0
    assert "token accuracy 1.0" in first.stdout
    assert "CPU-minutes" in first.stdout

    rows = summary_rows(first.stdout)
    assert [(r[0], r[1]) for r in rows if r[0] == "expert"] == [
        ("expert", t) for t in expert["success_rate"]]
    assert len([r for r in rows if r[0] == "policy"]) == 6
    assert [r[1] for r in rows if r[0] == "ros"] == ["go_to"]
    for stage, task, success, rest in rows:
        assert success in ("yes", "no")
        reason = rest.split(str(out), 1)[0].strip()
        assert reason, f"{stage}/{task}: no reason"
        assert (success == "yes") == (reason == "success") or stage == "ros"
        assert str(out) in rest, f"{stage}/{task}: no file location"

    # Rerun into the same folder: no FileExistsError on the bag, fresh results.
    (out / "expert" / "stale.mp4").write_bytes(b"")
    second = demo(out, 10)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert not (out / "expert" / "stale.mp4").exists()
    assert len(summary_rows(second.stdout)) == len(rows)


def test_episode_outcome_names_the_controller_fault():
    """A failed ROS episode is printed with the controller's fault read from /diagnostics."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    from more_policy.demo import controller_fault, ros_reason

    def diagnostics(fault: str, detail: str = "") -> DiagnosticArray:
        return DiagnosticArray(status=[DiagnosticStatus(values=[
            KeyValue(key="fault", value=fault), KeyValue(key="fault_detail", value=detail)])])

    healthy = diagnostics("")
    assert controller_fault([healthy, healthy]) is None
    tilted = diagnostics("tilt limit", "tilt 0.90 rad > 0.8")
    later = diagnostics("state timeout", "last LowState 0.300 s ago")
    fault = controller_fault([healthy, tilted, later])
    assert fault == "tilt limit: tilt 0.90 rad > 0.8"
    outcome = {"success": False, "failure": "fell", "controller_fault": fault, "commands": 5,
               "goal_distance": 1.0}
    assert "tilt limit" in ros_reason(outcome, 20.0)
