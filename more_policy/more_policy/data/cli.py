"""`more dataset info|validate|merge` and `more convert quard|rosbag`."""

from __future__ import annotations

import argparse


def _size(text: str) -> tuple[int, int] | None:
    if text.lower() == "keep":
        return None
    h, _, w = text.lower().partition("x")
    try:
        return int(h), int(w or h)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected HxW (e.g. 240x240) or 'keep', got {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    ds = subparsers.add_parser("dataset", help="inspect, check or merge episode datasets")
    sub = ds.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")
    p = sub.add_parser("info", help="summary of a dataset's metadata")
    p.add_argument("dir")
    p.set_defaults(func=run_info)
    p = sub.add_parser("validate", help="read every row and report problems")
    p.add_argument("dir")
    p.add_argument("--no-images", action="store_true", help="skip decoding the JPEG frames")
    p.set_defaults(func=run_validate)
    p = sub.add_parser("merge", help="concatenate datasets (e.g. expert + suboptimal)")
    p.add_argument("sources", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run_merge)

    conv = subparsers.add_parser("convert", help="convert QUARD or rosbag2 data to a dataset")
    sub = conv.add_subparsers(dest="convert_command", required=True, metavar="FORMAT")
    p = sub.add_parser("quard", help="QUARD raw layout <task>/<episode>/{command,image}/")
    p.add_argument("root")
    p.add_argument("--out", required=True)
    p.add_argument("--source", choices=["expert", "suboptimal"], default="expert")
    p.add_argument("--failed", action="store_true", help="mark every episode unsuccessful")
    p.add_argument("--image-size", type=_size, default=(240, 240), help="HxW or 'keep'")
    p.add_argument("--min-frames", type=int, default=50,
                   help="drop episodes with this many raw 50 Hz frames or fewer")
    p.add_argument("--default-ranges", action="store_true",
                   help="keep actions.py's ranges instead of taking them from the data")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run_quard)
    p = sub.add_parser("rosbag", help="rosbag2 recordings (camera, /instruction, commands)")
    p.add_argument("bags", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--task", default="robot")
    p.add_argument("--source", choices=["expert", "suboptimal"], default="expert")
    p.add_argument("--success", choices=["terminated", "all", "none"], default="terminated")
    p.add_argument("--image-topic")
    p.add_argument("--instruction-topic")
    p.add_argument("--command-topic")
    p.add_argument("--image-size", type=_size, default=(240, 240), help="HxW or 'keep'")
    p.add_argument("--rate", type=float, help="Hz; default: the recorded command rate")
    p.add_argument("--action-space", help="a dataset/checkpoint dir or action_space.json")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run_rosbag)


def run_info(args) -> int:
    from more_policy.data.reader import describe

    print(describe(args.dir))
    return 0


def run_validate(args) -> int:
    from more_policy.data.validate import validate_dataset

    problems = validate_dataset(args.dir, decode_images=not args.no_images, progress=True)
    for problem in problems:
        print(f"problem: {problem}")
    print(f"{args.dir}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


def run_merge(args) -> int:
    from more_policy.data import merge_datasets
    from more_policy.data.reader import describe

    print(describe(merge_datasets(args.sources, args.out, overwrite=args.overwrite)))
    return 0


def run_quard(args) -> int:
    from more_policy.data.quard import convert_quard
    from more_policy.data.reader import describe

    out = convert_quard(args.root, args.out, source=args.source, success=not args.failed,
                        image_size=args.image_size, min_frames=args.min_frames,
                        data_ranges=not args.default_ranges, overwrite=args.overwrite)
    print(describe(out))
    return 0


def run_rosbag(args) -> int:
    from more_policy.actions import ActionSpace
    from more_policy.data.reader import describe
    from more_policy.data.rosbag import convert_rosbag

    topics = {k: v for k, v in (("image", args.image_topic),
                                ("instruction", args.instruction_topic),
                                ("command", args.command_topic)) if v}
    space = ActionSpace.load(args.action_space) if args.action_space else None
    out = convert_rosbag(args.bags, args.out, action_space=space, topics=topics,
                         task=args.task, source=args.source, success=args.success,
                         image_size=args.image_size, rate_hz=args.rate,
                         overwrite=args.overwrite)
    print(describe(out))
    return 0
