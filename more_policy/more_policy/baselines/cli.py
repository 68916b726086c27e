"""`more baseline train`: behaviour cloning of the CNN baseline (evaluate it with
`more eval --policy <its directory>`)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    base = subparsers.add_parser("baseline", help="non-VLA baseline policies (CNN BC)")
    sub = base.add_subparsers(dest="baseline_command", required=True, metavar="ACTION")
    p = sub.add_parser("train", help="behaviour-clone the CNN baseline on expert episodes")
    p.add_argument("--data", nargs="+", required=True, help="episode dataset directories")
    p.add_argument("--out", required=True, help="checkpoint directory (also the resume state)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--max-cpu-minutes", type=float, default=None,
                   help="budget in CPU minutes (default 30); training stops and saves")
    p.add_argument("--image-size", type=int, default=None,
                   help="model input side in pixels (frames are area-resized)")
    p.add_argument("--save-every", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    import torch

    from more_policy.baselines.cnn import CNNConfig
    from more_policy.baselines.cnn_train import CNNTrainConfig, CNNTrainer
    from more_policy.data import DatasetError

    given = {k: v for k, v in vars(args).items() if v is not None}  # unset: dataclass default
    model = {k: given[k] for k in ("image_size",) if k in given}
    run = {k: given[k] for k in ("steps", "batch_size", "lr", "max_cpu_minutes", "save_every",
                                 "seed") if k in given}
    try:
        cfg = CNNTrainConfig(data=tuple(args.data), out=args.out, model=CNNConfig(**model), **run)
        trainer = CNNTrainer(cfg)
        if args.resume and trainer.resume():
            print(f"resumed {args.out} at step {trainer.step}")
        print(f"{len(trainer.train_index)} training frames, {len(trainer.val_index)} validation "
              f"frames, {sum(p.numel() for p in trainer.model.parameters()):,} parameters, "
              f"{torch.get_num_threads()} torch thread(s)")
        trainer.train()
    except (DatasetError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {trainer.save()}")
    return 0
