"""`more control` / `more sim-bridge` argument handling and the no-robot error."""

from __future__ import annotations

import argparse
import random

import pytest

from more_policy.control import cli as control_cli
from more_policy.control.cli import build_controller
from more_policy.control.gait import GaitController
from more_policy.robot.sdk_compat import channels_domain
from more_policy.sim import cli as sim_cli


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="more")
    subparsers = p.add_subparsers(dest="command", required=True)
    control_cli.register(subparsers)
    sim_cli.register(subparsers)  # `more sim-bridge`
    return p


def test_parses_control_and_sim_bridge():
    args = parser().parse_args(["control", "--vel-x", "0.5", "--interface", "lo"])
    assert args.vel_x == 0.5 and args.domain == 0 and args.func.__name__ == "run_control"
    args = parser().parse_args(["sim-bridge", "--start-lying", "--seconds", "3"])
    assert args.start_lying and args.seconds == 3.0 and args.func.__name__ == "run_sim_bridge"
    assert isinstance(build_controller(None), GaitController)
    with pytest.raises(FileNotFoundError, match="adaptation_module_latest.jit"):
        build_controller("/nonexistent")


@pytest.mark.ros
def test_control_without_a_robot_says_so(capsys):
    domain = channels_domain() or random.randint(1, 99)
    args = parser().parse_args(["control", "--domain", str(domain), "--interface", "lo",
                                "--wait-state", "0.5"])
    assert args.func(args) == 2
    assert "no rt/lowstate" in capsys.readouterr().out
