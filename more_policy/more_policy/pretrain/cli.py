"""`more pretrain` (train the sim-world Fuyu backbone) and `more pretrain-gates` (its gates)."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("pretrain", help="vision-language pretraining of a small Fuyu "
                                               "backbone on sim scenes (HF checkpoint dir)")
    p.add_argument("--preset", default="sim-fuyu-256",
                   help="sim-fuyu-256 | sim-fuyu-256-nocoord | tiny")
    p.add_argument("--seed", type=int, help="data and initialisation seed (preset: 0)")
    p.add_argument("--steps", type=int, help="optimizer steps (overrides the preset)")
    p.add_argument("--out-dir", help="run directory: data cache, checkpoints, metrics.csv")
    p.add_argument("--save-dir", help="where the Hugging Face backbone directory is written")
    p.add_argument("--no-resume", action="store_true",
                   help="start from scratch even if the run directory has checkpoints")
    p.add_argument("--no-gates", action="store_true", help="skip the VQA and probe gates")
    p.set_defaults(func=run_pretrain)

    p = subparsers.add_parser("pretrain-gates", help="held-out VQA accuracy per family and the "
                                                     "frozen-feature probe of a backbone dir")
    p.add_argument("backbone", help="a pretrained backbone directory (with pretrain_config.json)")
    p.add_argument("--write", action="store_true", help="(re)write <backbone>/gates.json")
    p.set_defaults(func=run_gates)


def run_pretrain(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from pathlib import Path

    from more_policy.pretrain import pretrain_preset
    from more_policy.pretrain.gates import measure_gates
    from more_policy.pretrain.train import pretrain

    cfg = pretrain_preset(args.preset)
    overrides = {"seed": args.seed, "max_steps": args.steps, "out_dir": args.out_dir,
                 "save_dir": args.save_dir}
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    save_dir = pretrain(cfg, resume=not args.no_resume)
    print(f"backbone written to {save_dir}")
    if not args.no_gates:
        gates = measure_gates(Path(save_dir), write=True)
        print(json.dumps(gates, indent=2))
    return 0


def run_gates(args: argparse.Namespace) -> int:
    from pathlib import Path

    from more_policy.pretrain.gates import measure_gates

    print(json.dumps(measure_gates(Path(args.backbone), write=args.write), indent=2))
    return 0
