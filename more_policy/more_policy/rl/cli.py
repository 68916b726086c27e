"""`more train`: offline RL (or IL) training of the MoRE policy on an episode dataset."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train MoRE with offline RL or imitation (accelerate; for several "
                      "processes/GPUs: accelerate launch -m more_policy.train ...)")
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML or JSON file of TrainConfig fields")
    p.add_argument("--data", help="episode dataset directory")
    p.add_argument("--out", dest="out_dir", help="run directory (checkpoints, metrics)")
    p.add_argument("--objective", choices=["q", "il"], help="offline RL (q) or imitation")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--save-every", type=int)
    p.add_argument("--resume", help="auto | never | a checkpoint directory")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override any field, e.g. --set rl.alpha=0.3 --set model.num_experts=4")


def run(args: argparse.Namespace) -> int:
    from more_policy.train import config_from_args, train

    print(f"run directory: {train(config_from_args(args))}")
    return 0
