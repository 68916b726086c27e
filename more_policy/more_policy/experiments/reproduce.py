"""One experiment from a seed: sim data -> offline-RL (or IL) training -> closed-loop eval.

    more reproduce --preset small --out outputs/more-small --publish artifacts

Layout of ``out``::

    data/                   datasets (shared by ablation runs; see experiments/data.py)
    experiment.json         the ExperimentConfig
    plan.json               the number of training steps chosen (and the measured step time)
    train/                  the trainer's run directory (metrics.csv, checkpoints/, final/)
    eval/                   results.json, success.png, q_values.png, expert_usage.png
    loss.png                training curves

With ``max_train_steps == 0`` the step count is planned from a short timing of real training
steps so that training fits ``train_budget_s``; the plan is saved so a rerun resumes the same.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import torch

from more_policy.experiments.config import ExperimentConfig
from more_policy.experiments.data import build_datasets
from more_policy.experiments.evaluation import evaluate_checkpoint
from more_policy.model.checkpoint import copy_checkpoint
from more_policy.plotting import pyplot
from more_policy.training import time_train_steps, train
from more_policy.training.metrics import METRICS_FILE, read_metrics

TIMING_STEPS = 3


def measure_step_seconds(cfg: ExperimentConfig, data_dir: str | Path) -> float:
    """Median wall time of a few real optimizer steps of this experiment's training run."""
    times = time_train_steps(cfg.train_config(data_dir, "unused", 1), TIMING_STEPS + 1)
    return float(statistics.median(times[1:]))  # the first step warms up allocators and caches


def plan_steps(cfg: ExperimentConfig, data_dir: str | Path, plan_path: Path) -> dict:
    if plan_path.exists():
        return json.loads(plan_path.read_text())
    if cfg.max_train_steps > 0:
        plan = {"steps": cfg.max_train_steps, "step_s": None, "budget_s": None}
    else:
        step_s = measure_step_seconds(cfg, data_dir)
        # 10 % headroom for logging, checkpoints and the EMA target updates' variance.
        steps = max(cfg.min_train_steps, int(cfg.train_budget_s / (1.1 * step_s)))
        plan = {"steps": steps, "step_s": step_s, "budget_s": cfg.train_budget_s}
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_text(json.dumps(plan, indent=2))
    return plan


def run_experiment(cfg: ExperimentConfig, out_dir: str | Path, *, data_root: str | Path | None
                   = None, finish_by: float | None = None, eval_reserve_s: float = 360.0,
                   progress: bool = True) -> dict:
    """Run (or finish) one experiment; returns a summary with paths and the eval table.

    ``finish_by`` (a time.time() value) shrinks the training budget so that, after the data
    is built, training plus ``eval_reserve_s`` of evaluation ends by then."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "experiment.json")
    started = time.perf_counter()
    datasets = build_datasets(cfg.data, data_root or out / "data", progress=progress)
    data_dir = datasets["paths"]["mixed" if cfg.use_suboptimal else "expert"]
    data_s = time.perf_counter() - started
    if finish_by is not None and cfg.max_train_steps == 0:
        left = finish_by - time.time() - eval_reserve_s - 60  # 60 s: timing + model builds
        cfg = cfg.with_overrides(train_budget_s=max(60.0, min(cfg.train_budget_s, left)))
    plan = plan_steps(cfg, data_dir, out / "plan.json")
    run_dir = out / "train"
    torch.manual_seed(cfg.seed)
    tcfg = cfg.train_config(data_dir, run_dir, plan["steps"])
    if finish_by is not None:  # the step plan is an estimate; the CPU may slow down later
        tcfg.max_seconds = max(1.0, finish_by - eval_reserve_s - time.time())
    train(tcfg)
    train_s = time.perf_counter() - started - data_s
    curves = read_metrics(run_dir / METRICS_FILE)
    last_step = max(step for step, _ in curves["loss"])
    stopped_at = last_step if last_step < plan["steps"] else None
    plot_losses(curves, out / "loss.png", cfg.name)
    results = evaluate_checkpoint(run_dir / "final", out / "eval", tasks=cfg.eval_tasks,
                                  episodes=cfg.eval_episodes, seed=cfg.eval_seed,
                                  image_size=cfg.data.image_size,
                                  max_steps=cfg.eval_max_steps or cfg.data.max_steps,
                                  batch_size=cfg.eval_batch_size,
                                  name=cfg.name, progress=progress)
    summary = {"name": cfg.name, "seed": cfg.seed, "objective": cfg.objective,
               "use_suboptimal": cfg.use_suboptimal, "model": asdict(cfg.model), "plan": plan,
               "datasets": datasets["tasks"], "data_dir": data_dir,
               "checkpoint": str(run_dir / "final"), "stopped_by_deadline_at": stopped_at,
               "final_losses": {k: v[-1][1] for k, v in curves.items() if v},
               "seconds": {"data": round(data_s, 1), "train": round(train_s, 1),
                           "eval": round(time.perf_counter() - started - data_s - train_s, 1)},
               "success_rate": results["success_rate"], "average": results["average"],
               "progress": results["progress"], "average_progress": results["average_progress"],
               "eval_episodes_per_task": cfg.eval_episodes, "eval_seed": cfg.eval_seed}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def plot_losses(curves: dict[str, list[tuple[int, float]]], path: Path, title: str) -> None:
    plt = pyplot()
    names = [n for n in ("loss", "td_loss", "conservative_loss", "vocab_loss", "il_loss")
             if n in curves]
    fig, ax = plt.subplots(figsize=(6, 3))
    for name in names:
        steps, values = zip(*curves[name])
        ax.plot(steps, values, label=name)
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.set_title(f"{title}: training losses", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def publish(out_dir: str | Path, artifacts: str | Path, max_mb: float = 20.0,
            name: str | None = None) -> dict[str, Path]:
    """Copy the final checkpoint to ``artifacts/<name>/`` (plus experiment.json, plan.json,
    summary.json) and the evaluation files to ``artifacts/results/<name>/``; ``name`` defaults
    to the run's (an ablation run published under a shorter one)."""
    out, artifacts = Path(out_dir), Path(artifacts)
    summary = json.loads((out / "summary.json").read_text())
    name = name or summary["name"]
    ckpt = artifacts / name
    results = artifacts / "results" / name
    for target in (ckpt, results):
        shutil.rmtree(target, ignore_errors=True)
    copy_checkpoint(out / "train" / "final", ckpt)
    for name in ("experiment.json", "plan.json", "summary.json"):
        shutil.copy2(out / name, ckpt / name)
    shutil.copytree(out / "eval", results)
    for name in ("summary.json", "loss.png"):
        shutil.copy2(out / name, results / name)
    (results / "metrics.csv").write_bytes((out / "train" / "metrics.csv").read_bytes())
    size_mb = sum(p.stat().st_size for p in ckpt.rglob("*") if p.is_file()) / 2**20
    if size_mb > max_mb:
        raise RuntimeError(f"checkpoint {ckpt} is {size_mb:.1f} MB (> {max_mb} MB): too big "
                           f"to commit")
    return {"checkpoint": ckpt, "results": results}
