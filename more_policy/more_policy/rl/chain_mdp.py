"""A small deterministic MDP with an exactly known Q*, for the objective's known-answer tests
and bench/bench_train.py's measure of how target-network modes learn.

States 0..HORIZON-1 count progress; the action has DIMS dimensions of BINS bins. The "good"
action advances (reward 1 on reaching HORIZON, terminal), the "detour" stays, anything else
fails (terminal, reward 0). Q* comes from value iteration over the full action space.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import torch

from more_policy.rl.objective import Objective, RLConfig
from more_policy.rl.tabular import TabularQModel

DIMS, BINS, HORIZON, GAMMA = 2, 3, 4, 0.9
ACTIONS = list(itertools.product(range(BINS), repeat=DIMS))


def good(s):
    return (s % BINS, (s + 1) % BINS)


def detour(s):
    return ((s + 1) % BINS, s % BINS)


def step(s, a):
    """-> (next state, reward, terminal). Progress 0..3; success after state 3."""
    if a == good(s):
        return (s + 1, 1.0, True) if s == HORIZON - 1 else (s + 1, 0.0, False)
    if a == detour(s):
        return s, 0.0, False
    return s, 0.0, True  # any other action fails the task


def exact_q():
    v = np.zeros(HORIZON)
    for _ in range(200):
        q = {(s, a): r + (0.0 if done else GAMMA * v[n])
             for s in range(HORIZON) for a in ACTIONS for n, r, done in [step(s, a)]}
        v = np.array([max(q[(s, a)] for a in ACTIONS) for s in range(HORIZON)])
    return q


def exploratory(s, rng):
    """A behaviour policy that covers every (state, action): mostly good, some detours."""
    u = rng.random()
    if u < 0.6:
        return good(s)
    if u < 0.75:
        return detour(s)
    return ACTIONS[rng.integers(len(ACTIONS))]


def rollouts(policy, episodes, seed, max_len=30):
    """Transitions (s, a, r, s', done, MC return) of episodes that end at a true terminal."""
    rng = np.random.default_rng(seed)
    out = []
    while episodes:
        s, ep = 0, []
        for _ in range(max_len):
            a = policy(s, rng)
            n, r, done = step(s, a)
            ep.append([s, a, r, n, done])
            s = n
            if done:
                break
        if not ep[-1][4]:
            continue  # truncated: drop it, a cut episode is not a terminal
        ret = 0.0
        for t in reversed(ep):
            ret = t[2] + GAMMA * ret * (not t[4])
            t.append(ret)
        out += ep
        episodes -= 1
    return out


def as_batch(transitions) -> dict[str, torch.Tensor]:
    """Transitions of whole episodes, in order (as :func:`rollouts` returns them)."""
    s, a, r, n, d, g = zip(*transitions)
    ids, episode, step = [], 0, 0
    for done in d:  # (episode, step), as a dataset numbers its transitions
        ids.append((episode, step))
        episode, step = (episode + 1, 0) if done else (episode, step + 1)
    next_actions = [a[i] if d[i] else a[i + 1] for i in range(len(a))]  # the action at s'
    return {"state": torch.tensor(s), "next_state": torch.tensor(n),
            "action_bins": torch.tensor(a), "next_action_bins": torch.tensor(next_actions),
            "rewards": torch.tensor(r, dtype=torch.float32),
            "dones": torch.tensor(d, dtype=torch.float32),
            "mc_returns": torch.tensor(g, dtype=torch.float32),
            "transition_ids": torch.tensor(ids)}


def fit(cfg: RLConfig, transitions, steps: int, lr: float = 0.1, seed: int = 0,
        on_step: Callable[[int, TabularQModel], None] | None = None):
    """Full-batch Adam on the transitions through the shared Objective; -> (model, metrics)."""
    torch.manual_seed(seed)
    model = TabularQModel(HORIZON + 1, DIMS, BINS)
    objective = Objective(cfg, model)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    batch = as_batch(transitions)
    for i in range(steps):
        loss, metrics = objective(model, model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        objective.after_optimizer_step(model)
        if on_step is not None:
            on_step(i, model)
    return model, metrics


def q_error(model: TabularQModel, q_star: dict) -> float:
    """max |Q - Q*| over every (state, first bin) and (state, full action)."""
    worst = 0.0
    for s in range(HORIZON):
        for a in ACTIONS:
            worst = max(worst, abs(float(model.q_values(s, a[:1])[a[1]]) - q_star[(s, a)]))
        for a0 in range(BINS):  # first dimension: Q*(s, a0) = max over a1
            q0 = max(q_star[(s, (a0, a1))] for a1 in range(BINS))
            worst = max(worst, abs(float(model.q_values(s, ())[a0]) - q0))
    return worst
