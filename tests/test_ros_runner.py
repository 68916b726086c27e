"""The container runner (`more run sim --record`): the sim stack from more_bringup/config/sim.yaml
in one process (the simulated robot as its child), recording an mcap bag that `eval-bag` then
replays through the same random policy exactly."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from collections import Counter

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]

pytest.importorskip("rclpy")
pytest.importorskip("mujoco")

from ros_procs import REPO, isolated_domain  # noqa: E402

from more_policy.data.ros_messages import (  # noqa: E402
    COMMAND_TOPIC,
    DIAGNOSTICS_TOPIC,
    EPISODE_TOPIC,
    IMAGE_TOPIC,
    INSTRUCTION_TOPIC,
    JOINT_STATES_TOPIC,
    STATUS_TOPIC,
)
from more_policy.data.rosbag import read_bag  # noqa: E402
from more_policy.nodes.bag_eval import eval_bag  # noqa: E402

RUN_CLI = """
import argparse, sys
from more_policy.nodes.cli import register
parser = argparse.ArgumentParser(prog="more")
register(parser.add_subparsers())
args = parser.parse_args(sys.argv[1:])
sys.exit(args.func(args))
"""


def test_parse_overrides_and_unknown_nodes():
    from more_policy.nodes.runner import STACKS, build_nodes, parse_overrides

    assert parse_overrides(["policy_node.checkpoint=/ckpt", "go2_sim_node.seed=3",
                            "go2_sim_node.publish_instruction=true"]) == {
        "policy_node": {"checkpoint": "/ckpt"},
        "go2_sim_node": {"seed": 3, "publish_instruction": True}}
    with pytest.raises(ValueError, match="NODE.PARAM=VALUE"):
        parse_overrides(["checkpoint=/ckpt"])
    with pytest.raises(ValueError, match="not in this stack"):
        build_nodes(STACKS["go2"], REPO / "more_bringup/config/go2.yaml",
                    {"go2_sim_node": {"seed": 1}})


@pytest.mark.timeout(240)
def test_run_sim_records_a_bag_that_eval_bag_reproduces(tmp_path):
    from more_policy.model.loading import load_policy

    bag = tmp_path / "run"
    sdk_domain = random.randint(1, 99)
    with isolated_domain():
        runner = subprocess.Popen(
            [sys.executable, "-c", RUN_CLI, "run", "sim", "--checkpoint", "random-tiny",
             "--auto-instruction", "--seed", "2", "--record", str(bag), "--duration", "25",
             "--set", f"go2_sim_node.dds_domain_id={sdk_domain}",
             "--set", f"controller_node.dds_domain_id={sdk_domain}",
             "--set", "policy_node.max_rate_hz=4.0"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        try:
            policy = load_policy("random-tiny")  # meanwhile, for the offline replay
            output, _ = runner.communicate(timeout=180)
        finally:
            if runner.poll() is None:
                runner.send_signal(signal.SIGKILL)
                runner.wait()
    assert runner.returncode == 0, output[-4000:]
    assert (bag / "metadata.yaml").is_file(), output[-4000:]
    messages = read_bag(bag)
    counts = Counter(m.topic for m in messages)
    for topic in (IMAGE_TOPIC, INSTRUCTION_TOPIC, COMMAND_TOPIC, STATUS_TOPIC,
                  JOINT_STATES_TOPIC, DIAGNOSTICS_TOPIC, EPISODE_TOPIC):
        assert counts[topic] > 0, (topic, counts, output[-4000:])
    assert counts[JOINT_STATES_TOPIC] > 200  # ~50 Hz for most of 25 s
    episode = json.loads([m for m in messages if m.topic == EPISODE_TOPIC][-1].msg.data)
    instruction = [m for m in messages if m.topic == INSTRUCTION_TOPIC][0].msg.data
    assert episode["task"] == "go_to" and episode["seed"] == 2
    assert episode["instruction"] == instruction  # the sim published its own instruction

    report = eval_bag(bag, policy, tmp_path / "eval")
    assert report["samples"] == counts[COMMAND_TOPIC]
    assert report["frames_matched_exactly"] == 1.0
    assert report["token_accuracy"] == 1.0
    assert report["instructions"] == [instruction]


@pytest.mark.timeout(120)
def test_run_go2_without_a_robot_starts_and_stops_cleanly():
    """`more run go2` with config/go2.yaml on a machine with no Go2 and no camera: every node
    accepts the robot's parameter file, the camera retries instead of dying, and the runner
    exits cleanly."""
    sdk_domain = random.randint(1, 99)
    with isolated_domain():
        result = subprocess.run(
            [sys.executable, "-c", RUN_CLI, "run", "go2", "--checkpoint", "random-tiny",
             "--quantization", "none", "--network-interface", "lo", "--duration", "4",
             "--set", "controller_node.controller=analytic",
             "--set", f"controller_node.dds_domain_id={sdk_domain}",
             "--set", "policy_node.device=cpu"],
            cwd=REPO, capture_output=True, text=True, timeout=100)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "camera_node, controller_node, policy_node" in log
    assert "retrying" in log  # no RealSense here
    assert "policy ready" in log
