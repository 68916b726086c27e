"""The `more` command: one CLI over the library (LeRobot style).

Each area registers its own subcommands (``register(subparsers)`` in its ``cli`` module) so
this file stays a table of contents; heavy imports happen only when a subcommand runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that contribute subcommands, in the order `more --help` lists them.
COMMAND_MODULES = (
    "more_policy.actions_cli",
    "more_policy.model.cli",
    "more_policy.data.cli",
    "more_policy.training.cli",
    "more_policy.sim.cli",
    "more_policy.control.cli",
    "more_policy.nodes.cli",
    "more_policy.pretrain.cli",
    "more_policy.experiments.cli",
    "more_policy.experiments.benchmark",
    "more_policy.baselines.cli",
    "more_policy.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="more", description="MoRE-Go2: train, evaluate and deploy the MoRE policy.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
