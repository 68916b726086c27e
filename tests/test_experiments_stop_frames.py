"""`more stop-frames`: the terminate decision read at the scripted expert's stop frames."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from more_policy.actions import TERMINATE_INDEX
from more_policy.data import EpisodeDataset
from more_policy.data.format import decode_jpeg
from more_policy.experiments.stop_frames import (
    checkpoint_objective,
    stop_frame_values,
    write_stop_frames,
)
from more_policy.model.loading import load_policy
from more_policy.sim.generate import generate

pytestmark = pytest.mark.sim
BEFORE = 3


@pytest.fixture(scope="module")
def expert_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("stop") / "expert"
    generate("go_to,unload", 2, "expert", out, seed=1, image_size=(32, 32), progress=False)
    return out


@pytest.fixture(scope="module")
def policy():
    return load_policy("random-tiny")


def test_reads_q_of_terminate_and_continue_at_the_expert_stop(expert_data, policy):
    result = stop_frame_values(policy, expert_data, before=BEFORE, episodes_per_task=1)
    assert result["frames_before_stop"] == [0, 1, 2, 3]
    assert set(result["tasks"]) == {"go_to", "unload"}
    # k = 0 is the expert's last frame, where its terminate bin is the one reported
    rows = next(EpisodeDataset(expert_data, shuffle=False).iter_episode_rows())
    last = rows[-1]
    bins = torch.tensor([last["action_bins"]])
    with torch.no_grad():
        q = policy(policy.prepare([decode_jpeg(last["image"])], [last["instruction"]], bins)) \
            .action_logits[0, TERMINATE_INDEX].sigmoid()
    stop_bin, go_bin = int(bins[0, TERMINATE_INDEX]), int(rows[0]["action_bins"][TERMINATE_INDEX])
    assert stop_bin != go_bin
    row = result["tasks"][last["task"]]
    assert row["q_terminate"][0] == pytest.approx(float(q[stop_bin]), abs=1e-4)
    assert row["q_continue"][0] == pytest.approx(float(q[go_bin]), abs=1e-4)
    assert row["episodes"] == 1
    stop_side = policy.action_space.stop_bins()
    assert row["q_terminate_best"][0] == pytest.approx(float(q[stop_side].max()), abs=1e-4)
    assert row["q_continue_best"][0] == pytest.approx(float(q[~stop_side].max()), abs=1e-4)
    for row in result["tasks"].values():
        for key in ("q_terminate", "q_continue", "greedy_terminates", "q_terminate_best",
                    "q_continue_best"):
            values = np.asarray(row[key])
            assert values.shape == (BEFORE + 1,) and ((values >= 0) & (values <= 1)).all()
        assert (np.asarray(row["q_terminate_best"]) >= np.asarray(row["q_terminate"]) - 1e-6).all()


def test_imitation_scores_are_probabilities(expert_data, policy):
    result = stop_frame_values(policy, expert_data, objective="il", before=BEFORE)
    for row in result["tasks"].values():
        assert row["episodes"] == 2
        assert (np.add(row["q_terminate"], row["q_continue"]) <= 1 + 1e-6).all()


def test_writes_json_and_plot_and_reads_the_objective(expert_data, tmp_path, capsys):
    result = write_stop_frames("random-tiny", expert_data, tmp_path / "out", before=BEFORE)
    saved = json.loads((tmp_path / "out" / "stop_frames.json").read_text())
    assert saved["tasks"] == result["tasks"] and saved["objective"] == "q"
    assert (tmp_path / "out" / "stop_frames.png").read_bytes()[:4] == b"\x89PNG"
    assert "go_to" in capsys.readouterr().out
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    (run / "rl_config.json").write_text(json.dumps({"objective": "il"}))
    assert checkpoint_objective(run / "final") == "il"
    assert checkpoint_objective(tmp_path) == "q"


def test_a_dataset_without_successful_expert_episodes_is_refused(policy, tmp_path):
    out = tmp_path / "failed"
    generate("go_to", 1, "suboptimal", out, seed=3, image_size=(32, 32), progress=False)
    table = EpisodeDataset(out, shuffle=False).episodes_table().to_pydict()
    assert set(table["source"]) == {"suboptimal"}
    with pytest.raises(ValueError, match="no successful expert episodes"):
        stop_frame_values(policy, out)
