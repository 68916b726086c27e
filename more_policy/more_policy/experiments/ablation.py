"""The paper's ablation (Table II) at small scale: same data, same seeds, five variants.

    MoRE                   offline RL + mixture of LoRA experts + failed sub-optimal data
    w/o RL                 imitation (cross-entropy on the dataset tokens) on expert data
    w/o MoE                offline RL with ONE dense LoRA of rank top_k * r on every FFN: the
                           same parameters per token as top-k of N rank-r experts
    w/o sub-optimal data   offline RL + MoE on expert data only
    IL on mixed data       imitation on the SAME mixed data MoRE trains on (expert + failed):
                           the paper's premise that RL, not the data, turns failures into signal

Every run is an experiments.reproduce run under ``out/<variant>/seed_<s>/`` reading the shared
datasets in ``out/data``; finished runs (summary.json present) are not redone. Results:
``ablation.json`` (per run and aggregated), ``table2.md`` (mean and 95 % t-interval over seeds
per task and average; success, then progress towards the goal as a graded companion) and
``ablation.png``.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from more_policy.experiments.config import ExperimentConfig
from more_policy.experiments.reproduce import run_experiment
from more_policy.model.config import MoREConfig
from more_policy.plotting import pyplot
from more_policy.sim.evaluate import TABLE_NAMES

VARIANTS = {"more": "MoRE", "wo_rl": "w/o RL", "wo_moe": "w/o MoE",
            "wo_suboptimal": "w/o sub-optimal data", "il_mixed": "IL on mixed data"}
# Two-sided 95 % Student-t quantiles by degrees of freedom (no scipy dependency).
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228}


def dense_equivalent(model: MoREConfig) -> MoREConfig:
    """MoE config -> one dense LoRA with the same per-token (active) adapter parameters:
    top_k experts of rank r on both FFN linears == one LoRA of rank top_k * r. lora_alpha is
    scaled with the rank so the update scale alpha / r stays the same."""
    rank = model.top_k * model.lora_rank
    return replace(model, num_experts=1, top_k=1, lora_rank=rank,
                   lora_alpha=model.lora_alpha * rank / model.lora_rank)


def variant_config(base: ExperimentConfig, variant: str, seed: int) -> ExperimentConfig:
    if variant not in VARIANTS:
        raise ValueError(f"unknown ablation variant {variant!r}; known: {list(VARIANTS)}")
    changes: dict = {"seed": seed, "name": f"{base.name}-{variant}-s{seed}",
                     "objective": "q", "use_suboptimal": True}
    if variant == "wo_rl":
        changes.update(objective="il", use_suboptimal=False)
    elif variant == "wo_moe":
        changes.update(model=dense_equivalent(base.model))
    elif variant == "wo_suboptimal":
        changes.update(use_suboptimal=False)
    elif variant == "il_mixed":
        changes.update(objective="il")
    return base.with_overrides(**changes)


def interval(values: list[float]) -> tuple[float, float | None]:
    """Mean and the 95 % t-interval half-width (None for a single value)."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, None
    sem = float(np.std(values, ddof=1)) / math.sqrt(len(values))
    return mean, T_975.get(len(values) - 1, 1.96) * sem


METRICS = {"success_rate": "Success rate",
           "progress": "Progress towards the goal region (1 - final / initial distance, clipped "
                       "to [0, 1]; 0 for a failed episode)"}


def aggregate(runs: dict[str, list[dict]], metric: str = "success_rate"
              ) -> dict[str, dict[str, dict]]:
    """variant -> column (tasks..., 'average') -> {mean, ci95, values} of one run metric."""
    table = {}
    for variant, summaries in runs.items():
        columns = {}
        for task in summaries[0][metric]:
            columns[task] = [s[metric][task] for s in summaries]
        columns["average"] = [float(np.mean(list(s[metric].values()))) for s in summaries]
        table[variant] = {}
        for column, values in columns.items():
            mean, half = interval(values)
            table[variant][column] = {"mean": mean, "ci95": half, "values": values}
    return table


def markdown(table: dict[str, dict[str, dict]], seeds: list[int], episodes: int,
             metric: str = "success_rate") -> str:
    columns = list(next(iter(table.values())))
    head = ["Method"] + [TABLE_NAMES.get(c, "Avg") for c in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, row in table.items():
        cells = [f"{row[c]['mean']:.2f}" + (f" ± {row[c]['ci95']:.2f}" if row[c]["ci95"]
                                            is not None else "") for c in columns]
        lines.append("| " + " | ".join([VARIANTS[variant], *cells]) + " |")
    lines.append("")
    lines.append(f"{METRICS[metric]}, mean over seeds {seeds} ± 95 % t-interval half-width; "
                 f"{episodes} closed-loop episodes per task and seed.")
    return "\n".join(lines)


def plot(tables: dict[str, dict[str, dict[str, dict]]], path: Path) -> None:
    """One panel per metric (success, progress): bars per variant, 95 % intervals."""
    plt = pyplot()
    fig, axes = plt.subplots(len(tables), 1, figsize=(8, 3.2 * len(tables)), squeeze=False)
    for ax, (metric, table) in zip(axes[:, 0], tables.items()):
        columns = list(next(iter(table.values())))
        width = 0.8 / len(table)
        for i, (variant, row) in enumerate(table.items()):
            x = np.arange(len(columns)) + (i - (len(table) - 1) / 2) * width
            errors = [row[c]["ci95"] or 0.0 for c in columns]
            ax.bar(x, [row[c]["mean"] for c in columns], width, yerr=errors, capsize=2,
                   label=VARIANTS[variant])
        ax.set_xticks(range(len(columns)), [TABLE_NAMES.get(c, "Avg") for c in columns])
        ax.set_ylim(0, 1)
        ax.set_ylabel("success rate" if metric == "success_rate" else "progress to goal")
    axes[0, 0].legend(fontsize=7)
    axes[0, 0].set_title("Ablation (Table II layout), mean ± 95 % interval over seeds",
                         fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_ablation(base: ExperimentConfig, seeds: list[int], out_dir: str | Path, *,
                 variants: list[str] | None = None, publish_dir: str | Path | None = None,
                 progress: bool = True) -> dict:
    if not seeds:
        raise ValueError("the ablation needs at least one seed")
    variants = variants or list(VARIANTS)
    out = Path(out_dir)
    runs: dict[str, list[dict]] = {}
    for variant in variants:
        for seed in seeds:
            run_dir = out / variant / f"seed_{seed}"
            done = run_dir / "summary.json"
            summary = json.loads(done.read_text()) if done.exists() else run_experiment(
                variant_config(base, variant, seed), run_dir, data_root=out / "data",
                progress=progress)
            runs.setdefault(variant, []).append(summary)
    tables = {metric: aggregate(runs, metric) for metric in METRICS}
    text = "\n\n".join(markdown(table, seeds, base.eval_episodes, metric)
                       for metric, table in tables.items())
    result = {"seeds": seeds, "eval_episodes_per_task": base.eval_episodes,
              "base_config": base.to_dict(), "table": tables["success_rate"],
              "progress_table": tables["progress"], "markdown": text,
              "runs": {v: [{k: s[k] for k in ("name", "seed", "success_rate", "average",
                                              "progress", "final_losses", "plan", "seconds")}
                           for s in ss] for v, ss in runs.items()}}
    (out / "ablation.json").write_text(json.dumps(result, indent=2))
    (out / "table2.md").write_text(text + "\n")
    plot(tables, out / "ablation.png")
    if publish_dir is not None:
        target = Path(publish_dir) / "results" / "ablation"
        target.mkdir(parents=True, exist_ok=True)
        for name in ("ablation.json", "table2.md", "ablation.png"):
            shutil.copy2(out / name, target / name)
        first = out / variants[0] / f"seed_{seeds[0]}" / "eval"
        for name in ("q_values.png", "expert_usage.png"):
            if (first / name).exists():
                shutil.copy2(first / name, target / f"{variants[0]}_{name}")
    return result
