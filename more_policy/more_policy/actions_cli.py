"""`more actions`: show, or write, the command space."""

from __future__ import annotations

import argparse

from more_policy.actions import ActionSpace


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("actions", help="print the 12-d command space (or save it as JSON)")
    p.add_argument("--from", dest="source", help="a checkpoint/dataset dir or action_space.json")
    p.add_argument("--save", metavar="DIR", help="write action_space.json into DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    space = ActionSpace.load(args.source) if args.source else ActionSpace()
    print(f"{'#':>2} {'name':<15} {'symbol':<7} {'unit':<6} {'low':>8} {'high':>8} {'bin':>9}")
    for i, (d, w) in enumerate(zip(space.dims, space.bin_width, strict=True)):
        print(f"{i:>2} {d.name:<15} {d.symbol:<7} {d.unit:<6} {d.low:>8.3f} {d.high:>8.3f} "
              f"{w:>9.5f}")
    print(f"{space.num_bins} bins per dimension, bin-centre decoding")
    if args.save:
        print(f"wrote {space.save(args.save)}")
    return 0
