"""`more reproduce` (seeded data -> train -> eval), `more ablation`, `more stop-frames`."""

from __future__ import annotations

import argparse
import json
import sys


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="small",
                   help="experiment preset: small | small-random | smoke")
    p.add_argument("--config", help="ExperimentConfig JSON (replaces --preset)")
    p.add_argument("--out", required=True, help="output directory (data, runs, results)")
    p.add_argument("--train-minutes", type=float,
                   help="wall-clock training budget per run (plans the step count)")
    p.add_argument("--steps", type=int, help="exact training steps (overrides the budget)")
    p.add_argument("--eval-episodes", type=int, help="closed-loop episodes per task")
    p.add_argument("--eval-tasks", help="'all' or comma-separated task names to evaluate")
    p.add_argument("--publish", metavar="DIR",
                   help="copy checkpoint(s) and results under DIR (e.g. artifacts)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("reproduce", help="sim data -> train a small MoRE -> evaluate, "
                                                "from a seed")
    _common(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--finish-by", metavar="HH:MM",
                   help="UTC time by which training + evaluation must end (shrinks the budget)")
    p.set_defaults(func=run_reproduce)

    p = subparsers.add_parser("ablation", help="the paper's ablation (Table II) at small scale: "
                                               "MoRE vs w/o RL, w/o MoE, w/o sub-optimal data")
    _common(p)
    p.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    p.add_argument("--variants", default="all", help="'all' or comma-separated variant names")
    p.set_defaults(func=run_ablation)

    p = subparsers.add_parser("stop-frames", help="a checkpoint's terminate decision at the "
                                                  "scripted expert's stop frames")
    p.add_argument("checkpoint", help="checkpoint directory")
    p.add_argument("--data", required=True, help="expert episode dataset (held-out scenes)")
    p.add_argument("--out", required=True, help="directory for stop_frames.{json,png}")
    p.add_argument("--before", type=int, default=8, help="frames before the stop to read")
    p.add_argument("--episodes-per-task", type=int, default=8)
    p.set_defaults(func=run_stop_frames)


def load_config(args: argparse.Namespace):
    from more_policy.experiments import ExperimentConfig, preset

    cfg = ExperimentConfig.load(args.config) if args.config else preset(args.preset)
    if args.train_minutes is not None:
        cfg = cfg.with_overrides(train_budget_s=args.train_minutes * 60, max_train_steps=0)
    if args.steps is not None:
        cfg = cfg.with_overrides(max_train_steps=args.steps)
    if args.eval_episodes is not None:
        cfg = cfg.with_overrides(eval_episodes=args.eval_episodes)
    if args.eval_tasks is not None:
        cfg = cfg.with_overrides(eval_tasks=args.eval_tasks)
    return cfg


def run_reproduce(args: argparse.Namespace) -> int:
    from more_policy.experiments.reproduce import publish, run_experiment

    try:
        cfg = load_config(args).with_overrides(seed=args.seed)
        finish_by = _utc_today(args.finish_by) if args.finish_by else None
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = run_experiment(cfg, args.out, finish_by=finish_by)
    print(json.dumps({k: summary[k] for k in ("success_rate", "average", "final_losses",
                                              "seconds")}, indent=2))
    if args.publish:
        paths = publish(args.out, args.publish)
        print(f"published {paths['checkpoint']} and {paths['results']}")
    return 0


def run_ablation(args: argparse.Namespace) -> int:
    from more_policy.experiments.ablation import run_ablation as ablate

    try:
        cfg = load_config(args)
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    variants = None if args.variants == "all" else args.variants.split(",")
    table = ablate(cfg, seeds, args.out, variants=variants, publish_dir=args.publish)
    print(table["markdown"])
    return 0


def run_stop_frames(args: argparse.Namespace) -> int:
    from more_policy.experiments.stop_frames import write_stop_frames

    write_stop_frames(args.checkpoint, args.data, args.out, before=args.before,
                      episodes_per_task=args.episodes_per_task)
    return 0


def _utc_today(hhmm: str) -> float:
    """'12:15' -> that UTC time today (or tomorrow if already past) as a time.time() value."""
    from datetime import UTC, datetime, timedelta

    try:
        hour, minute = (int(v) for v in hhmm.split(":"))
        now = datetime.now(UTC)
        when = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    except ValueError:
        raise ValueError(f"--finish-by expects HH:MM (UTC), got {hhmm!r}") from None
    return (when + timedelta(days=1) if when < now else when).timestamp()
