"""`more train` and `python -m more_policy.train` (the entry `accelerate launch -m` runs)."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = ("train MoRE with offline RL or imitation (accelerate; for several "
               "processes/GPUs: accelerate launch -m more_policy.train ...)")
# Flags that set a TrainConfig field of the same name (dest) directly.
FIELD_FLAGS = ("data", "out_dir", "max_steps", "batch_size", "lr", "save_every", "resume")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help=DESCRIPTION)
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


def config_from_args(args: argparse.Namespace):
    """--config file, then the named flags, then every --set; validated as a whole."""
    from more_policy.training.config import TrainConfig, apply_overrides

    data = (TrainConfig.load(args.config) if args.config else TrainConfig()).to_dict()
    for name in FIELD_FLAGS:
        if getattr(args, name, None) is not None:
            data[name] = getattr(args, name)
    if getattr(args, "objective", None):
        data["rl"]["objective"] = args.objective
    return TrainConfig.from_dict(apply_overrides(data, args.set))


def checked_config(args: argparse.Namespace):
    """The config, or None after saying what is wrong with it (before any work starts)."""
    try:
        return config_from_args(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return None


def run(args: argparse.Namespace) -> int:
    from more_policy.training.loop import train

    cfg = checked_config(args)
    if cfg is None:
        return 2
    print(f"run directory: {train(cfg)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m more_policy.train`: the same as `more train`, launched once per process."""
    from more_policy.training.loop import train

    parser = argparse.ArgumentParser(prog="more_policy.train", description=DESCRIPTION)
    add_arguments(parser)
    cfg = checked_config(parser.parse_args(argv))
    if cfg is None:
        return 2
    train(cfg)
    return 0
