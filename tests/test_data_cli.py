"""`more convert`, `more dataset` and `more train` through their argparse registration."""

from __future__ import annotations

import argparse
import csv

import pytest
from test_data_quard import write_episode

from more_policy.data.cli import register as register_data
from more_policy.training.cli import register as register_train


def more(argv):
    parser = argparse.ArgumentParser(prog="more")
    sub = parser.add_subparsers(dest="command", required=True)
    register_data(sub)
    register_train(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_convert_info_validate_merge_train(tmp_path, capsys):
    for e in range(2):
        write_episode(tmp_path / "quard" / "go_to" / f"{e:06d}", 55, vx=0.5, seed=e)
    data = tmp_path / "data"
    assert more(["convert", "quard", str(tmp_path / "quard"), "--out", str(data),
                 "--image-size", "16x24"]) == 0
    assert more(["dataset", "info", str(data)]) == 0
    out = capsys.readouterr().out
    assert "2 episodes, 12 steps" in out and "frames (16, 24, 3)" in out
    assert more(["dataset", "validate", str(data)]) == 0
    assert more(["dataset", "merge", str(data), str(data), "--out", str(tmp_path / "m")]) == 0
    assert "4 episodes, 24 steps" in capsys.readouterr().out
    assert more(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--objective",
                 "il", "--max-steps", "2", "--batch-size", "2", "--set", "log_every=1",
                 "--set", "model.num_experts=2", "--set", "model.lora_rank=2"]) == 0
    with open(tmp_path / "run" / "metrics.csv") as f:
        names = {row[1] for row in csv.reader(f)}
    assert {"il_loss", "token_accuracy", "balance_loss"} <= names and "td_loss" not in names
    shard = next((data / "data").iterdir())
    shard.write_bytes(b"PAR1 broken")
    assert more(["dataset", "validate", str(data)]) == 1
    assert shard.name in capsys.readouterr().out
    with pytest.raises(SystemExit):
        more(["convert", "quard", "x", "--out", "y", "--image-size", "big"])
