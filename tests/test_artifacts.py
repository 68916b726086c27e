"""The committed checkpoint still loads with today's code and acts like its published results."""

import json
from pathlib import Path

import numpy as np
import pytest

from more_policy.model.loading import load_policy
from more_policy.sim.env import make_env

pytestmark = pytest.mark.sim  # renders a MuJoCo frame

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.mark.parametrize("name", ["more-small", "more-small-il"])
def test_committed_checkpoint_loads_and_acts_on_a_sim_frame(name):
    checkpoint = ARTIFACTS / name
    size_mb = sum(p.stat().st_size for p in checkpoint.rglob("*") if p.is_file()) / 2**20
    assert size_mb < 20
    experiment = json.loads((checkpoint / "experiment.json").read_text())
    summary = json.loads((checkpoint / "summary.json").read_text())
    assert summary["name"] == experiment["name"] and summary["checkpoint"].endswith("final")
    model = load_policy(str(checkpoint), None)
    assert model.config.num_experts == experiment["model"]["num_experts"] == 8
    env = make_env("go_to", seed=10_000, image_size=(96, 96))
    try:
        obs = env.reset()
        result = model.act([obs.image], [obs.instruction])
    finally:
        env.close()
    assert result.bins.shape == (1, 12) and np.isfinite(result.values).all()
    assert ((result.q_values > 0) & (result.q_values < 1)).all()
