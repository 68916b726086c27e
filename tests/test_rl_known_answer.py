"""Known-answer tests of the Q-learning objective on small deterministic MDPs.

The tabular Q-model goes through the same Objective (targets, losses, EMA target network)
as the MoRE policy. Q* is computed exactly by value iteration over the full action space.
"""

from __future__ import annotations

import pytest

from more_policy.rl import RLConfig
from more_policy.rl.chain_mdp import (
    ACTIONS,
    BINS,
    GAMMA,
    HORIZON,
    exact_q,
    exploratory,
    fit,
    good,
    q_error,
    rollouts,
    step,
)


@pytest.mark.parametrize("target", [{"tau": 0.7},  # per-step EMA
                                    {"target_mode": "periodic", "target_refresh_every": 4}])
def test_q_learning_reaches_exact_q_star(target):
    data = rollouts(exploratory, episodes=400, seed=0)
    covered = {(t[0], t[1]) for t in data}
    assert covered == {(s, a) for s in range(HORIZON) for a in ACTIONS}  # full coverage
    # alpha = 0: the conservative term deliberately biases values below Q*; Q* is the fixed
    # point of the TD term alone.
    cfg = RLConfig(gamma=GAMMA, alpha=0.0, conservative_vocab=False, **target)
    model, metrics = fit(cfg, data, steps=400, lr=0.3)
    worst = q_error(model, exact_q())
    for s in range(HORIZON):
        assert model.greedy(s) == good(s)
    assert worst < 0.02, f"max |Q - Q*| = {worst:.4f}"
    assert metrics["td_loss"] < 1e-3


def test_rl_picks_the_rare_success_where_il_copies_the_frequent_failure():
    def frequent_failure(s):
        return ((s + 1) % BINS, (s + 2) % BINS)

    def other_failure(s):
        return ((s + 2) % BINS, (s + 1) % BINS)

    def mixed(s, rng):
        u = rng.random()  # the successful action is the rarest in the data
        if u < 0.3:
            return good(s)
        return frequent_failure(s) if u < 0.75 else other_failure(s)

    data = rollouts(mixed, episodes=2000, seed=1)
    for s in range(HORIZON):
        assert step(s, frequent_failure(s))[1:] == step(s, other_failure(s))[1:] == (0.0, True)
        counts = {a: sum(t[1] == a for t in data if t[0] == s) for a in ACTIONS}
        assert counts[frequent_failure(s)] > max(counts[other_failure(s)], counts[good(s)])
        assert counts[good(s)] > 0
    rl, _ = fit(RLConfig(gamma=GAMMA, tau=0.7), data, steps=300, lr=0.3)
    il, il_metrics = fit(RLConfig(objective="il"), data, steps=300, lr=0.3)
    for s in range(HORIZON):
        assert rl.greedy(s) == good(s)
        assert il.greedy(s) == frequent_failure(s)
    assert 0.2 < il_metrics["token_accuracy"] < 0.9
