"""Where does a policy stop? Its terminate decision at the scripted expert's own frames.

    more stop-frames artifacts/more-small --data data/val_expert --out results/stop-frames

On expert episodes (use held-out scenes: another generation seed than the training data),
at the expert's stop frame (k = 0) and the k frames before it, this reads the last command
dimension's Q of "terminate" and of "continue" (the two bins the expert uses), teacher-forced
on the expert's other 11 dimensions, and whether the policy's own greedy decoding terminates
there. A Q-policy that times out in closed loop shows up as Q(continue) >= Q(terminate) at k = 0;
one that stops early, as greedy terminations at k > 0. An imitation checkpoint gets the same
table with softmax probabilities in place of Q.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from more_policy.actions import TERMINATE_INDEX
from more_policy.data import EpisodeDataset
from more_policy.data.format import decode_jpeg
from more_policy.plotting import pyplot
from more_policy.rl.objective import RL_CONFIG_FILE
from more_policy.sim.evaluate import TABLE_NAMES


def stop_frame_values(policy, data_dir: str | Path, *, objective: str = "q", before: int = 8,
                      episodes_per_task: int = 8) -> dict:
    """Per task and k in 0..``before`` frames before the expert's stop: mean Q(terminate),
    mean Q(continue) (the two bins the data uses), the fraction of frames where greedy decoding
    terminates, and the best Q over all bins that decode to each decision (what greedy
    decoding compares: an unseen bin can win).
    ``objective`` "il": softmax probabilities in place of Q (an imitation checkpoint)."""
    space = policy.action_space
    go_bin, stop_bin = space.decision_bins()
    stop_side = space.stop_bins()
    episodes: dict[str, list] = {}
    for rows in EpisodeDataset(data_dir, shuffle=False).iter_episode_rows():
        task = rows[0]["task"]
        if rows[0]["source"] == "expert" and rows[-1]["success"] and \
                len(episodes.setdefault(task, [])) < episodes_per_task:
            episodes[task].append(rows)
    if not episodes:
        raise ValueError(f"{data_dir}: no successful expert episodes to read stop frames from")
    table: dict[str, dict[str, list[float]]] = {}
    for task, runs in episodes.items():
        # Q of the data's terminate / continue bin, greedy stops, best bin of each decision
        stats = np.full((len(runs), before + 1, 5), np.nan)
        for e, rows in enumerate(runs):
            picked = [len(rows) - 1 - k for k in range(before + 1) if k < len(rows)]
            images = [decode_jpeg(rows[i]["image"]) for i in picked]
            bins = torch.tensor(np.stack([rows[i]["action_bins"] for i in picked]))
            texts = [rows[0]["instruction"]] * len(picked)
            with torch.no_grad():
                scores = last_dimension_scores(policy, images, texts, bins, objective)
                greedy = policy.act(images, texts).values
            stats[e, :len(picked), 0] = scores[:, stop_bin]
            stats[e, :len(picked), 1] = scores[:, go_bin]
            stats[e, :len(picked), 2] = space.is_terminate(greedy)
            stats[e, :len(picked), 3] = scores[:, stop_side].max(-1)
            stats[e, :len(picked), 4] = scores[:, ~stop_side].max(-1)
        mean = np.nanmean(stats, axis=0)
        table[task] = {"q_terminate": mean[:, 0].round(4).tolist(),
                       "q_continue": mean[:, 1].round(4).tolist(),
                       "greedy_terminates": mean[:, 2].round(4).tolist(),
                       "q_terminate_best": mean[:, 3].round(4).tolist(),
                       "q_continue_best": mean[:, 4].round(4).tolist(),
                       "episodes": len(runs)}
    return {"frames_before_stop": list(range(before + 1)), "tasks": table}


def last_dimension_scores(policy, images, texts, bins: torch.Tensor, objective: str = "q"
                          ) -> np.ndarray:
    """(N, A) scores of the terminate dimension, teacher-forced on ``bins``' other dims:
    sigmoid Q for a Q-function checkpoint, softmax probabilities for an imitation one."""
    logits = policy(policy.prepare(images, texts, bins)).action_logits[:, TERMINATE_INDEX]
    return (logits.softmax(-1) if objective == "il" else logits.sigmoid()).float().numpy()


def checkpoint_objective(checkpoint: str | Path) -> str:
    """"q" or "il": from a published checkpoint's experiment.json or a training run's
    rl_config.json (next to its checkpoint directories); "q" when neither says."""
    checkpoint = Path(checkpoint)
    for path in (checkpoint / "experiment.json", checkpoint / RL_CONFIG_FILE,
                 checkpoint.parent / RL_CONFIG_FILE):
        if path.is_file():
            return json.loads(path.read_text()).get("objective", "q")
    return "q"


def plot_stop_frames(result: dict, path: Path, title: str) -> None:
    plt = pyplot()
    tasks = list(result["tasks"])
    score = "P" if result.get("objective") == "il" else "Q"
    ks = np.asarray(result["frames_before_stop"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(2.8 * len(tasks), 2.8), squeeze=False,
                             sharey=True)
    for ax, task in zip(axes[0], tasks):
        row = result["tasks"][task]
        ax.plot(ks, row["q_terminate"], "o-", color="tab:red", label=f"{score}(terminate)")
        ax.plot(ks, row["q_continue"], "o-", color="tab:blue", label=f"{score}(continue)")
        ax.plot(ks, row["q_terminate_best"], "--", color="tab:red",
                label=f"best {score} of any bin meaning terminate")
        ax.plot(ks, row["q_continue_best"], "--", color="tab:blue",
                label=f"best {score} of any bin meaning continue")
        ax.bar(ks, row["greedy_terminates"], color="0.8", label="greedy stops (share)")
        ax.set_title(TABLE_NAMES.get(task, task), fontsize=9)
        ax.set_xlabel("frames before the expert's stop")
        ax.invert_xaxis()
        ax.set_ylim(0, 1.02)
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_stop_frames(checkpoint: str | Path, data_dir: str | Path, out_dir: str | Path, *,
                      before: int = 8, episodes_per_task: int = 8) -> dict:
    """Load ``checkpoint``, read its stop-frame values, write stop_frames.{json,png} into
    ``out_dir`` and print one line per task."""
    from more_policy.model.loading import load_policy

    policy = load_policy(str(checkpoint))
    policy.eval()
    objective = checkpoint_objective(checkpoint)
    result = stop_frame_values(policy, data_dir, objective=objective, before=before,
                               episodes_per_task=episodes_per_task)
    result.update(checkpoint=str(checkpoint), data=str(data_dir), objective=objective)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "stop_frames.json").write_text(json.dumps(result, indent=1) + "\n")
    plot_stop_frames(result, out / "stop_frames.png",
                     title=f"{Path(checkpoint).name}: terminate vs continue at expert stops")
    for task, row in result["tasks"].items():
        print(f"{task:11s} stop frame: {objective} terminate {row['q_terminate'][0]:.3f} "
              f"continue {row['q_continue'][0]:.3f}, greedy stops "
              f"{row['greedy_terminates'][0]:.2f} (k=0) {np.mean(row['greedy_terminates'][1:]):.2f}"
              f" (k>0)")
    return result
