"""`more benchmark gates|table1`: what the six sim tasks demand, measured (issue 13).

    more benchmark gates --out artifacts/results/benchmark     # gates.json, gates.md
    more benchmark table1 --out artifacts/results/benchmark [--cnn DIR]   # table1.json, .md
        [--policy "MoRE=artifacts/more-small" ...]   # more rows: any `more eval --policy` spec

Gates (each printed with its figure and target):
- observability: share of scripted-expert frames (up to terminate) with a task-relevant
  object in the image (baselines.views.RELEVANT) >= 0.95 per task;
- perception oracle (one frame, perfect image-space features, no memory) >= 0.95 per task;
- blind (best open-loop schedule fitted on training scenes, seed 0) <= 0.10 per task;
- scripted expert >= 0.95 per task in command and physics modes.
Everything is evaluated on held-out scenes (eval seed 10000 by default). Table I rows: random,
blind, perception oracle, CNN baseline (when a checkpoint directory is given), any named
policies (MoRE checkpoints, their IL variant) and the expert;
success with a 95 % Wilson interval, progress with a 95 % t-interval, per task.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

EVAL_SEED, TRAIN_SEED = 10000, 0
GATES = {"blind": ("<=", 0.10), "observability": (">=", 0.95), "oracle": (">=", 0.95),
         "expert_command": (">=", 0.95), "expert_physics": (">=", 0.95)}
Z_95 = 1.959964


@dataclass
class BenchmarkConfig:
    """What the gates and Table I run on."""

    out: str = "artifacts/results/benchmark"
    episodes: int = 32  # per task, held-out scenes
    physics_episodes: int = 16  # per task, the expert in physics mode (slow)
    blind_fit_episodes: int = 16  # training scenes per task for the blind schedule search
    eval_seed: int = EVAL_SEED
    train_seed: int = TRAIN_SEED
    tasks: str = "all"
    cnn: str | None = None  # CNN baseline checkpoint directory (Table I row)
    policies: dict[str, str] = field(default_factory=dict)  # row name -> policy spec

    def __post_init__(self) -> None:
        reserved = {"Random", "Blind", "Perception oracle", "CNN baseline", "Scripted expert"}
        if clash := reserved & set(self.policies):
            raise ValueError(f"row names {sorted(clash)} are taken by the built-in rows")


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + Z_95**2 / (2 * n)) / (1 + Z_95**2 / n)
    half = Z_95 * math.sqrt(p * (1 - p) / n + Z_95**2 / (4 * n * n)) / (1 + Z_95**2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def observability(tasks, episodes: int, seed: int) -> dict[str, float]:
    """Per task: share of expert frames (the terminate step's included, later ones not) with a
    task-relevant object in view."""
    from more_policy.baselines.views import frame_views, relevant_in_view
    from more_policy.sim.env import make_env
    from more_policy.sim.expert import ScriptedExpert
    from more_policy.sim.generate import episode_seed, parse_tasks

    shares = {}
    for task in parse_tasks(tasks):
        env = make_env(task, seed=seed, render=False)
        seen = total = 0
        for i in range(episodes):
            env.reset(seed=episode_seed(seed, task, i))
            expert = ScriptedExpert(env.action_space)
            expert.reset(env.scene, env.instruction, env.base_pose())
            done = False
            while not done:
                seen += relevant_in_view(frame_views(env), task)
                total += 1
                _, _, done, _ = env.step(expert.act(env.base_pose()))
        env.close()
        shares[task] = seen / total
    return shares


def checkpoint_fingerprint(spec: str) -> str | None:
    """sha256 over a checkpoint directory's files (None for a spec that is not a directory):
    a learned row's cached evaluation is reused only while its weights are the same."""
    root = Path(spec)
    if not root.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _evaluate(policy, cfg: BenchmarkConfig, mode: str = "command", episodes: int | None = None,
              *, label: str | None = None, fingerprint: str | None = None):
    """Evaluate on the held-out scenes; results are kept in ``out/runs/`` and reused by the
    other command (gates then table1) or a rerun with another row added, when mode, seed,
    episodes and tasks match, and for a learned policy its checkpoint's fingerprint."""
    from more_policy.sim.evaluate import EpisodeResult, EvalResult, evaluate

    episodes = episodes or cfg.episodes
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", label or policy.name)  # a row name is free text
    cache = Path(cfg.out) / "runs" / f"{stem}_{mode}.json"
    key = {"seed": cfg.eval_seed, "episodes_per_task": episodes, "mode": mode,
           "fingerprint": fingerprint}
    reusable = fingerprint is not None or not getattr(policy, "needs_images", True)
    if cache.exists() and reusable:
        saved = json.loads(cache.read_text())
        if {k: saved.get(k) for k in key} == key and list(saved["success_rate"]) == _tasks(cfg):
            result = EvalResult(saved["policy"], cfg.eval_seed, mode, episodes,
                                tasks=saved["success_rate"], progress=saved["progress"],
                                episodes=[EpisodeResult(**e) for e in saved["episodes"]])
            print(result.table(), flush=True)
            return result
    factory = None
    if mode == "physics":
        from more_policy.control.gait import GaitController

        factory = GaitController
    result = evaluate(policy, cfg.tasks, episodes, cfg.eval_seed, mode=mode,
                      controller_factory=factory, progress=False)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({**result.to_dict(), "fingerprint": fingerprint}, indent=1))
    print(result.table(), flush=True)
    return result


def _tasks(cfg: BenchmarkConfig) -> list[str]:
    from more_policy.sim.generate import parse_tasks

    return parse_tasks(cfg.tasks)


def _fit_blind(cfg: BenchmarkConfig):
    """The fitted blind policy (kept in ``out/runs/blind_fit.json`` for the other command)."""
    from dataclasses import asdict

    from more_policy.baselines.blind import BlindPolicy, Schedule, fit_blind

    cache = Path(cfg.out) / "runs" / "blind_fit.json"
    key = {"train_seed": cfg.train_seed, "episodes": cfg.blind_fit_episodes,
           "tasks": _tasks(cfg)}
    if cache.exists():
        saved = json.loads(cache.read_text())
        if saved["key"] == key:
            return BlindPolicy({t: Schedule(**s) for t, s in saved["schedules"].items()})
    blind = fit_blind(cfg.tasks, cfg.blind_fit_episodes, cfg.train_seed)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"key": key, "schedules": {
        t: asdict(s) for t, s in blind.schedules.items()}}))
    return blind


def run_gates(cfg: BenchmarkConfig) -> dict:
    """Measure the four gates; write gates.json and gates.md under ``cfg.out``."""
    from more_policy.baselines.oracle import OraclePolicy
    from more_policy.sim.evaluate import ExpertPolicy

    blind = _fit_blind(cfg)
    print(f"blind schedules: {blind.to_dict()}", flush=True)
    figures = {"blind": _evaluate(blind, cfg).tasks,
               "observability": observability(cfg.tasks, cfg.episodes, cfg.eval_seed)}
    print(f"observability: {figures['observability']}", flush=True)
    figures["oracle"] = _evaluate(OraclePolicy(), cfg).tasks
    figures["expert_command"] = _evaluate(ExpertPolicy(), cfg).tasks
    figures["expert_physics"] = _evaluate(ExpertPolicy(), cfg, "physics",
                                          cfg.physics_episodes).tasks
    report = {"config": vars(cfg), "blind_schedules": blind.to_dict(), "gates": {}}
    for gate, values in figures.items():
        op, target = GATES[gate]
        ok = {t: (v >= target if op == ">=" else v <= target) for t, v in values.items()}
        report["gates"][gate] = {"target": f"{op} {target}", "per_task": values,
                                 "passed": all(ok.values())}
    report["passed"] = all(g["passed"] for g in report["gates"].values())
    _write_report(cfg, "gates", report, gates_markdown(report))
    return report


def _write_report(cfg: BenchmarkConfig, name: str, data: dict, markdown: str) -> None:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(data, indent=2))
    (out / f"{name}.md").write_text(markdown)


def gates_markdown(report: dict) -> str:
    from more_policy.sim.evaluate import TABLE_NAMES

    tasks = list(next(iter(report["gates"].values()))["per_task"])
    lines = ["| Gate | Target | " + " | ".join(TABLE_NAMES[t] for t in tasks) + " | Passed |",
             "|---" * (len(tasks) + 3) + "|"]
    for gate, g in report["gates"].items():
        cells = " | ".join(f"{g['per_task'][t]:.2f}" for t in tasks)
        lines.append(f"| {gate} | {g['target']} | {cells} | {'yes' if g['passed'] else 'NO'} |")
    cfg = report["config"]
    lines.append(f"\nHeld-out scenes: eval seed {cfg['eval_seed']}, {cfg['episodes']} episodes "
                 f"per task ({cfg['physics_episodes']} in physics mode); blind schedules fitted "
                 f"on {cfg['blind_fit_episodes']} training scenes per task (seed "
                 f"{cfg['train_seed']}).")
    return "\n".join(lines) + "\n"


def run_table1(cfg: BenchmarkConfig) -> dict:
    """Table I rows on held-out scenes; write table1.json and table1.md under ``cfg.out``."""
    from more_policy.baselines.oracle import OraclePolicy
    from more_policy.experiments.ablation import interval
    from more_policy.sim.evaluate import ExpertPolicy, RandomPolicy, make_eval_policy

    rows = {"Random": RandomPolicy(), "Blind": _fit_blind(cfg),
            "Perception oracle": OraclePolicy()}
    specs = {**({"CNN baseline": cfg.cnn} if cfg.cnn else {}), **cfg.policies}
    for name, spec in specs.items():
        rows[name] = make_eval_policy(spec)
    rows["Scripted expert"] = ExpertPolicy()
    table = {"config": vars(cfg), "rows": {}}
    for name, policy in rows.items():
        fingerprint = checkpoint_fingerprint(specs[name]) if name in specs else None
        result = _evaluate(policy, cfg, label=name if name in specs else None,
                           fingerprint=fingerprint)
        row = {}
        for task in result.tasks:
            eps = [e for e in result.episodes if e.task == task]
            wins = sum(e.success for e in eps)
            progress, half = interval([e.progress for e in eps])
            row[task] = {"success": wins / len(eps), "success_ci95": wilson(wins, len(eps)),
                         "progress": progress, "progress_ci95_half": half or 0.0,
                         "episodes": len(eps)}
        row["average"] = {"success": result.average, "progress": result.average_progress}
        table["rows"][name] = row
    _write_report(cfg, "table1", table, table1_markdown(table))
    return table


def table1_markdown(table: dict) -> str:
    from more_policy.sim.evaluate import TABLE_NAMES

    first = next(iter(table["rows"].values()))
    tasks = [t for t in first if t != "average"]
    head = "| Method | " + " | ".join(TABLE_NAMES[t] for t in tasks) + " | Avg |"
    lines = [head, "|---" * (len(tasks) + 2) + "|"]
    for name, row in table["rows"].items():
        cells = []
        for t in tasks:
            lo, hi = row[t]["success_ci95"]
            cells.append(f"{row[t]['success']:.2f} [{lo:.2f}, {hi:.2f}]<br>"
                         f"{row[t]['progress']:.2f} ± {row[t]['progress_ci95_half']:.2f}")
        avg = row["average"]
        cells.append(f"{avg['success']:.2f}<br>{avg['progress']:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    cfg = table["config"]
    lines.append(f"\nEach cell: success rate [95 % Wilson interval], then progress towards the "
                 f"goal region ± 95 % t-interval half-width; held-out scenes (eval seed "
                 f"{cfg['eval_seed']}), {cfg['episodes']} episodes per task, command mode.")
    return "\n".join(lines) + "\n"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("benchmark", help="benchmark gates and Table I (baselines)")
    sub = p.add_subparsers(dest="benchmark_command", required=True, metavar="WHAT")
    defaults = BenchmarkConfig()
    for name, helptext, func in (
            ("gates", "observability, oracle, blind and expert gates", _cli_gates),
            ("table1", "Table I: random, blind, oracle, CNN, expert", _cli_table1)):
        q = sub.add_parser(name, help=helptext)
        q.add_argument("--out", default=defaults.out)
        q.add_argument("--episodes", type=int, default=defaults.episodes,
                       help="held-out episodes per task")
        q.add_argument("--physics-episodes", type=int, default=defaults.physics_episodes)
        q.add_argument("--blind-fit-episodes", type=int, default=defaults.blind_fit_episodes)
        q.add_argument("--eval-seed", type=int, default=defaults.eval_seed)
        q.add_argument("--tasks", default="all")
        q.add_argument("--cnn", help="CNN baseline checkpoint directory (Table I row)")
        q.add_argument("--policy", action="append", default=[], metavar="NAME=SPEC",
                       help="another Table I row: a name and a `more eval --policy` spec "
                            "(e.g. MoRE=artifacts/more-small); repeatable")
        q.set_defaults(func=func)


def _config(args: argparse.Namespace) -> BenchmarkConfig:
    policies = {}
    for item in args.policy:
        name, sep, spec = item.partition("=")
        if not (sep and name.strip() and spec.strip()):
            raise ValueError(f"--policy wants NAME=SPEC, got {item!r}")
        policies[name.strip()] = spec.strip()
    return BenchmarkConfig(policies=policies, out=args.out, episodes=args.episodes,
                           physics_episodes=args.physics_episodes,
                           blind_fit_episodes=args.blind_fit_episodes,
                           eval_seed=args.eval_seed, tasks=args.tasks, cnn=args.cnn)


def _cli_gates(args: argparse.Namespace) -> int:
    from more_policy.sim.scenes import SceneError

    try:
        report = run_gates(_config(args))
    except (SceneError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(gates_markdown(report))
    print(f"wrote {Path(args.out) / 'gates.json'}")
    return 0 if report["passed"] else 1


def _cli_table1(args: argparse.Namespace) -> int:
    from more_policy.sim.scenes import SceneError

    try:
        table = run_table1(_config(args))
    except (SceneError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table1_markdown(table))
    print(f"wrote {Path(args.out) / 'table1.json'}")
    return 0


__all__ = ["BenchmarkConfig", "observability", "run_gates", "run_table1", "wilson"]
