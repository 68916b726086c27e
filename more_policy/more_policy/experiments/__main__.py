"""`python -m more_policy.experiments reproduce|ablation ...` (the same as `more reproduce`)."""

import argparse
import sys

from more_policy.experiments.cli import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m more_policy.experiments")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
