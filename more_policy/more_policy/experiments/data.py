"""The experiments' datasets: expert (six tasks), failed sub-optimal (four tasks), and both.

    expert/      scripted expert episodes of every task (sim labels success; a few may fail)
    failed/      sub-optimal episodes of SUBOPTIMAL_TASKS that FAILED (as the paper's QUARD-Auto
                 subset used for the RL-vs-IL comparison); successful ones are discarded
    mixed/       expert + failed, the MoRE training set
    datasets.json  the DataConfig and per-task counts; a matching file means "already built"

Every run of an ablation reads the same directories, so the variants differ only in what
they train on and how.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from more_policy.actions import ActionSpace
from more_policy.data import EpisodeWriter
from more_policy.data.writer import merge_datasets
from more_policy.experiments.config import SUBOPTIMAL_TASKS, DataConfig
from more_policy.sim.env import make_env
from more_policy.sim.generate import episode_seed, run_episode
from more_policy.sim.scenes import TASKS

SUMMARY_FILE = "datasets.json"
# Sub-optimal scenes are drawn from episode indices past any expert index: different scenes.
SUBOPTIMAL_INDEX_OFFSET = 1_000_000


def build_datasets(cfg: DataConfig, root: str | Path, *, progress: bool = True) -> dict:
    """Generate (or reuse) the three datasets under ``root``; returns the summary dict."""
    root = Path(root)
    summary_path = root / SUMMARY_FILE
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        if summary.get("config") == asdict(cfg):
            return summary
        raise ValueError(f"{root} holds datasets built with another DataConfig "
                         f"({summary.get('config')}); use another directory")
    root.mkdir(parents=True, exist_ok=True)
    space = ActionSpace()
    size = (cfg.image_size, cfg.image_size)
    counts: dict[str, dict[str, int]] = {}
    total = cfg.expert_episodes * len(TASKS) + cfg.failed_episodes * len(SUBOPTIMAL_TASKS)
    bar = tqdm(total=total, desc="sim data", disable=not progress)
    with EpisodeWriter(root / "expert", space, rate_hz=5.0, overwrite=True) as writer:
        for task in TASKS:
            env = make_env(task, seed=cfg.seed, image_size=size, max_steps=cfg.max_steps,
                           action_space=space)
            ok = 0
            for i in range(cfg.expert_episodes):
                rec = run_episode(task, episode_seed(cfg.seed, task, i), "expert", env=env)
                _write(writer, rec, "expert")
                ok += rec.success
                bar.update(1)
            env.close()
            counts[task] = {"expert": cfg.expert_episodes, "expert_successes": ok}
    with EpisodeWriter(root / "failed", space, rate_hz=5.0, overwrite=True) as writer:
        for task in SUBOPTIMAL_TASKS:
            env = make_env(task, seed=cfg.seed, image_size=size, max_steps=cfg.max_steps,
                           action_space=space)
            failed = attempts = 0
            limit = cfg.failed_episodes * cfg.max_attempts_per_failure
            while failed < cfg.failed_episodes and attempts < limit:
                rec = run_episode(task, episode_seed(cfg.seed, task,
                                                     SUBOPTIMAL_INDEX_OFFSET + attempts),
                                  "suboptimal", env=env)
                attempts += 1
                if not rec.success:
                    _write(writer, rec, "suboptimal")
                    failed += 1
                    bar.update(1)
            env.close()
            counts[task].update(failed=failed, suboptimal_attempts=attempts)
    bar.close()
    if not any(c.get("failed", 0) for c in counts.values()):
        raise RuntimeError("no sub-optimal episode failed: the mixed dataset would equal the "
                           "expert one; raise failed_episodes or max_attempts_per_failure")
    merge_datasets([root / "expert", root / "failed"], root / "mixed", overwrite=True)
    summary = {"config": asdict(cfg), "tasks": counts,
               "paths": {k: str(root / k) for k in ("expert", "failed", "mixed")}}
    summary_path.write_text(json.dumps(summary, indent=2))
    return summary


def _write(writer: EpisodeWriter, rec, source: str) -> None:
    writer.add_episode(frames=rec.frames, commands=rec.commands, instruction=rec.instruction,
                       task=rec.task, source=source, success=rec.success, meta=rec.meta)
