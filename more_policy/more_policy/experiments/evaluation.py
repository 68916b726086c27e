"""Closed-loop evaluation of a checkpoint that also records what the paper's plots need:
the greedy Q-values at every step of every episode, and which experts each task routes to."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from more_policy.plotting import pyplot
from more_policy.sim.evaluate import TABLE_NAMES, EvalResult, evaluate


class RecordingPolicy:
    """A MoREPolicy for sim.evaluate that keeps per-step Q-values and per-task expert usage."""

    needs_images = True

    def __init__(self, model, name: str):
        self.model, self.name = model, name
        self.traces: dict[tuple[str, int], list[list[float]]] = {}  # (task, seed) -> (T, 12)
        self.usage: dict[str, np.ndarray] = {}  # task -> (layers, experts) summed fractions
        self._slots: dict[int, tuple[str, int]] = {}

    def reset(self, slot: int, env, seed: int) -> None:
        self._slots[slot] = (env.task, seed)
        self.traces[(env.task, seed)] = []

    def act(self, slots: list[int], envs, obs) -> np.ndarray:
        result = self.model.act([o.image for o in obs], [o.instruction for o in obs])
        for row, slot in enumerate(slots):
            self.traces[self._slots[slot]].append(
                [round(q, 4) for q in result.q_values[row].tolist()])
        task = self._slots[slots[0]][0]  # evaluate() batches one task at a time
        usage = result.expert_usage.numpy() * len(slots)
        self.usage[task] = self.usage.get(task, 0) + usage
        return np.asarray(result.values, dtype=float)


def evaluate_checkpoint(checkpoint: str | Path, out_dir: str | Path, *, tasks="all",
                        episodes: int = 20, seed: int = 10_000, image_size: int = 96,
                        max_steps: int = 100, batch_size: int = 8, name: str | None = None,
                        progress: bool = True) -> dict:
    """Evaluate, then write results.json + table1.md + success.png (Table I), q_values.png,
    expert_usage.png and traces.json into ``out_dir``; returns the results dict."""
    from more_policy.model import MoREPolicy

    model = MoREPolicy.from_pretrained(checkpoint)
    model.eval()
    policy = RecordingPolicy(model, name or Path(checkpoint).name)
    result = evaluate(policy, tasks, episodes, seed, batch_size=batch_size,
                      image_size=(image_size, image_size), max_steps=max_steps,
                      progress=progress)
    out = Path(out_dir)
    result.save(out)
    (out / "table1.md").write_text(result.table() + "\n")
    outcome = {(e.task, e.seed): e.success for e in result.episodes}
    traces = [{"task": t, "seed": s, "success": outcome.get((t, s), False), "q_values": q}
              for (t, s), q in policy.traces.items()]
    usage = {t: (u / u.sum(-1, keepdims=True).clip(min=1e-9)).tolist()
             for t, u in policy.usage.items()}
    (out / "traces.json").write_text(json.dumps({"episodes": traces, "expert_usage": usage}))
    plot_q_values(traces, out / "q_values.png", title=f"{result.policy}: greedy Q over episodes")
    if model.config.num_experts > 1:
        plot_expert_usage(usage, out / "expert_usage.png",
                          title=f"{result.policy}: top-1 expert share per task")
    data = result.to_dict()
    data["files"] = sorted(str(p.name) for p in out.iterdir())
    return data


def plot_q_values(traces: list[dict], path: Path, title: str) -> None:
    """Per task: mean Q of the first action dimension (max_a1 Q(s, a1) = V(s)) per step,
    successful and failed episodes separately."""
    plt = pyplot()
    tasks = list(dict.fromkeys(t["task"] for t in traces))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.0 * len(tasks), 2.8), squeeze=False,
                             sharey=True)
    for ax, task in zip(axes[0], tasks):
        for success, color in ((True, "tab:green"), (False, "tab:red")):
            runs = [np.asarray(t["q_values"])[:, 0] for t in traces
                    if t["task"] == task and t["success"] == success and t["q_values"]]
            if not runs:
                continue
            length = max(len(r) for r in runs)
            padded = np.full((len(runs), length), np.nan)
            for i, r in enumerate(runs):
                padded[i, :len(r)] = r
            ax.plot(np.nanmean(padded, axis=0), color=color,
                    label=f"{'success' if success else 'failure'} ({len(runs)})")
        ax.set_title(TABLE_NAMES.get(task, task), fontsize=9)
        ax.set_xlabel("step (5 Hz)")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("V(s) = max Q(s, a1)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_expert_usage(usage: dict[str, list], path: Path, title: str) -> None:
    """Heatmap task x expert of the top-1 routing share, averaged over layers."""
    plt = pyplot()
    tasks = list(usage)
    grid = np.stack([np.asarray(usage[t]).mean(axis=0) for t in tasks])  # (tasks, experts)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * grid.shape[1], 0.9 + 0.45 * len(tasks)))
    im = ax.imshow(grid, cmap="viridis", vmin=0, aspect="auto")
    ax.set_yticks(range(len(tasks)), [TABLE_NAMES.get(t, t) for t in tasks])
    ax.set_xticks(range(grid.shape[1]), [f"E{k}" for k in range(grid.shape[1])])
    for i in range(grid.shape[0]):
        for k in range(grid.shape[1]):
            ax.text(k, i, f"{grid[i, k]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if grid[i, k] < grid.max() * 0.6 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = ["EvalResult", "RecordingPolicy", "evaluate_checkpoint", "plot_expert_usage",
           "plot_q_values"]
