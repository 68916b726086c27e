"""Experiment configs and the ablation's arithmetic (fast, no sim)."""

from __future__ import annotations

import math

import pytest

from more_policy.experiments import ExperimentConfig, preset
from more_policy.experiments.ablation import (
    VARIANTS,
    aggregate,
    dense_equivalent,
    interval,
    markdown,
    variant_config,
)
from more_policy.model import MoREConfig, MoREConfigError
from more_policy.model.counting import count_parameters


def test_dense_lora_matches_the_moe_active_parameters_per_token():
    moe = preset("small").model
    dense = dense_equivalent(moe)
    assert (dense.num_experts, dense.top_k, dense.lora_rank) == (1, 1, 64)
    assert dense.lora_alpha / dense.lora_rank == moe.lora_alpha / moe.lora_rank
    a, b = count_parameters(moe), count_parameters(dense)
    # identical per-token adapter parameters; only the (tiny) routers differ
    assert a.active_per_token - a.routers == b.active_per_token - b.routers
    assert b.experts < a.experts


def test_variants_change_only_what_the_ablation_names():
    base = preset("smoke")
    cfgs = {v: variant_config(base, v, seed=3) for v in VARIANTS}
    assert all(c.seed == 3 and c.data == base.data for c in cfgs.values())
    assert (cfgs["more"].objective, cfgs["more"].use_suboptimal) == ("q", True)
    assert (cfgs["wo_rl"].objective, cfgs["wo_rl"].use_suboptimal) == ("il", False)
    assert cfgs["wo_moe"].model.num_experts == 1 and cfgs["wo_moe"].use_suboptimal
    assert (cfgs["wo_suboptimal"].objective, cfgs["wo_suboptimal"].use_suboptimal) == ("q", False)
    assert (cfgs["il_mixed"].objective, cfgs["il_mixed"].use_suboptimal) == ("il", True)
    with pytest.raises(ValueError, match="unknown ablation variant"):
        variant_config(base, "wo_everything", 0)


def test_interval_is_a_student_t_95_percent_half_width():
    assert interval([0.5]) == (0.5, None)
    mean, half = interval([0.2, 0.4, 0.6])
    assert mean == pytest.approx(0.4)
    assert half == pytest.approx(4.303 * 0.2 / math.sqrt(3))


def test_table_has_paper_layout_with_intervals():
    runs = {"more": [{"success_rate": {"go_to": 1.0, "crawl": 0.0}, "average": 0.5},
                     {"success_rate": {"go_to": 0.5, "crawl": 0.5}, "average": 0.5}]}
    table = aggregate(runs)
    assert table["more"]["go_to"]["mean"] == 0.75 and table["more"]["average"]["ci95"] == 0.0
    text = markdown(table, [0, 1], 4)
    assert text.splitlines()[0] == "| Method | Go to | Crawl | Avg |"
    assert "| MoRE | 0.75 ± 3.18 | 0.25 ± 3.18 | 0.50 ± 0.00 |" in text
    runs["more"][0]["progress"] = {"go_to": 0.9, "crawl": 0.1}
    runs["more"][1]["progress"] = {"go_to": 0.7, "crawl": 0.5}
    progress = aggregate(runs, "progress")
    assert progress["more"]["go_to"]["mean"] == pytest.approx(0.8)
    assert progress["more"]["average"]["values"] == pytest.approx([0.5, 0.6])
    assert markdown(progress, [0, 1], 4, "progress").splitlines()[-1].startswith("Progress")


def test_config_round_trips_and_rejects_bad_values(tmp_path):
    cfg = preset("small")
    assert ExperimentConfig.load(cfg.save(tmp_path / "e.json")) == cfg
    with pytest.raises(ValueError, match="objective"):
        cfg.with_overrides(objective="bc")
    with pytest.raises(ValueError, match="unknown experiment options"):
        ExperimentConfig.from_dict({"nme": "x"})
    with pytest.raises(ValueError, match="unknown experiment preset"):
        preset("huge")


def test_config_sections_are_typed_and_typos_fail_on_load(tmp_path):
    cfg = ExperimentConfig.from_dict({"model": {"backbone": "tiny", "num_experts": 2},
                                      "train": {"batch_size": 4}, "objective": "il"})
    assert isinstance(cfg.model, MoREConfig) and cfg.model.num_experts == 2
    train = cfg.train_config("data", tmp_path / "run", steps=30)
    assert (train.batch_size, train.max_steps, train.save_every, train.seed) == (4, 30, 3, 0)
    assert train.model == cfg.model and train.rl.objective == "il" and train.data == "data"
    assert "max_steps" not in cfg.to_dict()["train"]  # the experiment plans it
    with pytest.raises(MoREConfigError, match="num_expert"):
        ExperimentConfig.from_dict({"model": {"num_expert": 2}})
    with pytest.raises(ValueError, match="unknown training options"):
        ExperimentConfig.from_dict({"train": {"batchsize": 4}})
    with pytest.raises(ValueError, match="unknown data options"):
        ExperimentConfig.from_dict({"data": {"image_sise": 64}})
    with pytest.raises(ValueError, match="set by the experiment"):
        ExperimentConfig.from_dict({"train": {"max_steps": 4}})
    with pytest.raises(ValueError, match="contradicts"):
        ExperimentConfig.from_dict({"objective": "q", "train": {"rl": {"objective": "il"}}})


def test_committed_train_config_is_the_small_preset_more_run():
    """configs/train/more-small.json (what the recipe runs start from with `more train
    --config ... --set rl.X=...`) is the `small` preset's MoRE run of 2,000 updates."""
    from pathlib import Path

    from more_policy.training.config import TrainConfig

    committed = TrainConfig.load(Path(__file__).parents[1] / "configs/train/more-small.json")
    expected = preset("small").train_config(committed.data, committed.out_dir, 2000)
    assert committed == expected
