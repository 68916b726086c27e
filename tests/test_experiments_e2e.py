"""Smoke-size end to end: sim data -> offline-RL training -> closed-loop eval -> artefacts,
through `more reproduce` and `more ablation` (the real small run is the same code, longer)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from more_policy.data import EpisodeDataset
from more_policy.experiments.ablation import VARIANTS
from more_policy.experiments.cli import register
from more_policy.experiments.config import SUBOPTIMAL_TASKS
from more_policy.model import MoREPolicy
from more_policy.sim.scenes import TASKS

pytestmark = [pytest.mark.slow, pytest.mark.sim]


def more(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="more")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reproduce_smoke_writes_a_loadable_checkpoint_and_table(tmp_path, capsys):
    out, artifacts = tmp_path / "run", tmp_path / "artifacts"
    assert more("reproduce", "--preset", "smoke", "--out", str(out), "--steps", "6",
                "--publish", str(artifacts)) == 0
    printed = capsys.readouterr().out
    assert '"success_rate"' in printed

    # data: expert episodes for all six tasks, only FAILED sub-optimal ones for four
    data = json.loads((out / "data" / "datasets.json").read_text())
    expert = EpisodeDataset(data["paths"]["expert"], shuffle=False).episodes_table().to_pydict()
    failed = EpisodeDataset(data["paths"]["failed"], shuffle=False).episodes_table().to_pydict()
    mixed = EpisodeDataset(data["paths"]["mixed"], shuffle=False).episodes_table().to_pydict()
    assert sorted(set(expert["task"])) == sorted(TASKS)
    assert set(expert["source"]) == {"expert"}
    assert set(failed["task"]) <= set(SUBOPTIMAL_TASKS) and failed["task"]
    assert not any(failed["success"]) and set(failed["source"]) == {"suboptimal"}
    assert len(mixed["task"]) == len(expert["task"]) + len(failed["task"])

    # training: the planned step count ran, losses are finite and logged
    summary = json.loads((out / "summary.json").read_text())
    assert summary["plan"]["steps"] == 6 and summary["data_dir"].endswith("mixed")
    assert np.isfinite(summary["final_losses"]["loss"]) and "td_loss" in summary["final_losses"]
    assert png(out / "loss.png")

    # the published checkpoint is small, loads, and acts
    ckpt = artifacts / "more-smoke"
    size = sum(p.stat().st_size for p in ckpt.rglob("*") if p.is_file())
    assert size < 20 * 2**20
    policy = MoREPolicy.from_pretrained(ckpt)
    image = np.zeros((32, 32, 3), np.uint8)
    act = policy.act([image], ["go to the red ball"])
    assert act.values.shape == (1, 12) and act.q_values.shape == (1, 12)

    # Table I: six tasks + average, one episode each, on scenes disjoint from training data
    results = artifacts / "results" / "more-smoke"
    table = json.loads((results / "results.json").read_text())
    assert list(table["success_rate"]) == list(TASKS)
    assert all(v in (0.0, 1.0) for v in table["success_rate"].values())
    assert table["average"] == pytest.approx(np.mean(list(table["success_rate"].values())))
    assert len(table["episodes"]) == len(TASKS) and table["seed"] == summary["eval_seed"]
    assert (results / "table1.md").read_text().startswith("Method")
    for name in ("success.png", "q_values.png", "expert_usage.png", "loss.png"):
        assert png(results / name), name
    traces = json.loads((results / "traces.json").read_text())
    steps = {(e["task"], e["seed"]): e["steps"] for e in table["episodes"]}
    for episode in traces["episodes"]:  # one 12-d Q vector per policy step, each in (0, 1)
        q = np.asarray(episode["q_values"])
        assert q.shape == (steps[(episode["task"], episode["seed"])], 12)
        assert ((q > 0) & (q < 1)).all()
    usage = np.asarray(traces["expert_usage"]["go_to"])  # (layers, experts), rows sum to 1
    assert usage.shape == (2, 4) and np.allclose(usage.sum(-1), 1.0)

    # a rerun finds everything done: same plan, data reused
    assert json.loads((out / "plan.json").read_text())["steps"] == 6


def test_ablation_smoke_runs_every_variant_on_shared_data(tmp_path):
    out = tmp_path / "ablation"
    assert more("ablation", "--preset", "smoke", "--out", str(out), "--seeds", "0",
                "--steps", "3", "--eval-tasks", "go_to,crawl",
                "--publish", str(tmp_path / "artifacts")) == 0
    result = json.loads((out / "ablation.json").read_text())
    assert list(result["table"]) == list(VARIANTS)
    for row in result["table"].values():
        assert list(row) == ["go_to", "crawl", "average"]
        assert row["average"]["ci95"] is None and len(row["average"]["values"]) == 1
    configs = {v: json.loads((out / v / "seed_0" / "experiment.json").read_text())
               for v in VARIANTS}
    assert configs["wo_rl"]["objective"] == "il" and not configs["wo_rl"]["use_suboptimal"]
    assert configs["wo_moe"]["model"]["num_experts"] == 1
    assert configs["wo_suboptimal"]["objective"] == "q"
    assert not configs["wo_suboptimal"]["use_suboptimal"] and configs["more"]["use_suboptimal"]
    data_dirs = {v: json.loads((out / v / "seed_0" / "summary.json").read_text())["data_dir"]
                 for v in VARIANTS}
    assert data_dirs["more"] == data_dirs["wo_moe"] == data_dirs["il_mixed"] == str(
        out / "data" / "mixed")
    assert configs["il_mixed"]["objective"] == "il"
    assert data_dirs["wo_rl"] == data_dirs["wo_suboptimal"] == str(out / "data" / "expert")
    table = (out / "table2.md").read_text()
    assert all(name in table for name in VARIANTS.values())
    assert table.splitlines()[0] == "| Method | Go to | Crawl | Avg |"
    published = tmp_path / "artifacts" / "results" / "ablation"
    assert png(published / "ablation.png") and png(published / "more_expert_usage.png")
    assert png(published / "more_q_values.png")
