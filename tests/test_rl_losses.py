"""The objective's pieces on hand-computed numbers: Eq. 7 targets, Eq. 8 terms, IL, EMA target."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from more_policy.rl import (
    Objective,
    QOutput,
    RLConfig,
    TargetNetwork,
    bellman_targets,
    imitation_loss,
    q_learning_loss,
)


def logit(q):
    return math.log(q / (1 - q))


def test_bellman_targets_by_hand():
    # B = 2, D = 3, A = 2. Target Q values chosen so every max is unambiguous.
    q = torch.tensor([[[0.1, 0.2], [0.3, 0.6], [0.8, 0.4]],
                      [[0.5, 0.5], [0.05, 0.15], [0.25, 0.35]]])
    next_first = torch.tensor([[0.7, 0.9], [0.2, 0.4]])
    rewards, dones = torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0])
    t = bellman_targets(torch.logit(q), torch.logit(next_first), rewards, dones, gamma=0.5)
    expected = torch.tensor([[0.6, 0.8, 0.0 + 0.5 * 0.9],   # bootstrap from s'
                             [0.15, 0.35, 1.0]])            # terminal: r only
    torch.testing.assert_close(t, expected)
    floored = bellman_targets(torch.logit(q), torch.logit(next_first), rewards, dones, 0.5,
                              mc_returns=torch.tensor([0.7, 0.2]))
    torch.testing.assert_close(floored, torch.tensor([[0.7, 0.8, 0.7], [0.2, 0.35, 1.0]]))
    assert not floored.requires_grad


def test_q_learning_loss_terms_and_gradients():
    q = torch.tensor([[[0.2, 0.7, 0.4], [0.9, 0.1, 0.3]]])          # B=1, D=2, A=3
    logits = torch.logit(q).requires_grad_()
    bins, targets = torch.tensor([[1, 0]]), torch.tensor([[0.5, 1.0]])
    loss, m = q_learning_loss(logits, bins, targets, alpha=0.5)
    td = 0.5 * ((0.7 - 0.5) ** 2 + (0.9 - 1.0) ** 2) / 2
    conservative = 0.5 * (0.2 ** 2 + 0.4 ** 2 + 0.1 ** 2 + 0.3 ** 2) / 4
    assert m["td_loss"].item() == pytest.approx(td)
    assert m["conservative_loss"].item() == pytest.approx(conservative)
    assert loss.item() == pytest.approx(td + 0.5 * conservative)
    loss.backward()
    grad = logits.grad[0]
    assert grad[0, 0] > 0 and grad[0, 2] > 0 and grad[1, 1] > 0   # others pushed down
    assert grad[0, 1] > 0 and grad[1, 0] < 0                     # taken: toward the target


def test_binary_terminate_pushes_the_other_decisions_best_bin_at_a_dataset_token_weight():
    q = torch.tensor([[[0.2, 0.7, 0.4, 0.6], [0.9, 0.1, 0.85, 0.3]],    # B=2, D=2, A=4
                      [[0.5, 0.5, 0.5, 0.5], [0.35, 0.2, 0.1, 0.95]]])
    logits = torch.logit(q).requires_grad_()
    bins = torch.tensor([[1, 0], [2, 3]])  # row 0 continues (bin 0), row 1 terminates (bin 3)
    stop_bins = torch.tensor([False, False, True, True])  # bins 2 and 3 decode to terminate
    targets = torch.full((2, 2), 0.9)
    plain, m0 = q_learning_loss(logits, bins, targets, alpha=0.5)
    loss, m = q_learning_loss(logits, bins, targets, alpha=0.5, stop_bins=stop_bins)
    # row 0: the best terminate bin is 2 (0.85), not the one data uses; row 1: continue bin 0
    decision = 0.5 * (0.85 ** 2 + 0.35 ** 2) / 4  # per (B, D) token
    assert m["decision_loss"].item() == pytest.approx(decision)
    assert loss.item() == pytest.approx(plain.item() + 0.5 * decision)
    assert m["conservative_loss"] == m0["conservative_loss"] and "decision_loss" not in m0
    loss.backward()
    extra = logits.grad.clone()
    logits.grad = None
    plain.backward()
    extra -= logits.grad
    # the only gradients that change: each row's best bin of the other decision, pushed down
    changed = extra.abs() > 1e-9
    assert changed.sum() == 2 and changed[0, 1, 2] and changed[1, 1, 0]
    assert extra[0, 1, 2] > 0 and extra[1, 1, 0] > 0


def test_vocab_term_covers_only_non_action_tokens():
    action = torch.zeros(1, 2, 4)
    vocab = torch.full((1, 2, 10), -2.0)
    vocab[..., 3:7] = 50.0  # the action tokens' entries must be excluded from the term
    _, m = q_learning_loss(action, torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2),
                           vocab_logits=vocab, action_token_slice=slice(3, 7))
    assert m["vocab_loss"].item() == pytest.approx(0.5 * torch.sigmoid(torch.tensor(-2.0)) ** 2)
    with pytest.raises(ValueError, match="action_token_slice"):
        q_learning_loss(action, torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2),
                        vocab_logits=vocab)


def test_imitation_loss_is_cross_entropy_over_action_tokens():
    logits = torch.randn(3, 12, 256, generator=torch.Generator().manual_seed(0))
    bins = torch.randint(0, 256, (3, 12), generator=torch.Generator().manual_seed(1))
    loss, m = imitation_loss(logits, bins)
    manual = -F.log_softmax(logits, -1).gather(-1, bins[..., None]).mean()
    assert loss.item() == pytest.approx(manual.item(), rel=1e-5)
    bins[0] = logits[0].argmax(-1)
    assert imitation_loss(logits, bins)[1]["token_accuracy"] >= 12 / 36


class TwoPart(nn.Module):
    """A frozen 'backbone' and a trainable head: the target must copy only the head."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(3, 4)
        self.backbone.requires_grad_(False)
        self.head = nn.Linear(4, 2 * 5)

    def forward(self, state, action_bins=None):
        h = self.head(torch.relu(self.backbone(state)))
        return QOutput(action_logits=h.view(-1, 2, 5), balance_loss=h.pow(2).mean())


def test_target_network_is_an_ema_of_trainable_weights_only():
    torch.manual_seed(0)
    model = TwoPart()
    target = TargetNetwork(model, tau=0.9)
    assert set(target.params) == {"head.weight", "head.bias"}
    before = target.params["head.weight"].clone()
    with torch.no_grad():
        model.head.weight.add_(1.0)
    target.update(model)
    torch.testing.assert_close(target.params["head.weight"],
                               0.9 * before + 0.1 * model.head.weight)
    online = model.head.weight.detach().clone()
    x = torch.randn(5, 3)
    with target.applied(model):
        out_target = model(x).action_logits
        torch.testing.assert_close(model.head.weight, target.params["head.weight"])
    torch.testing.assert_close(model.head.weight, online)  # restored
    assert not out_target.requires_grad
    fresh = TargetNetwork(model, tau=0.5)
    fresh.load_state_dict(target.state_dict())
    assert fresh.tau == 0.9
    torch.testing.assert_close(fresh.params["head.bias"], target.params["head.bias"])


def test_objective_uses_beta_and_only_online_gradients():
    torch.manual_seed(0)
    model = TwoPart()
    cfg = RLConfig(beta=0.25, conservative_vocab=False)
    objective = Objective(cfg, model)
    batch = {"state": torch.randn(4, 3), "next_state": torch.randn(4, 3),
             "action_bins": torch.randint(0, 5, (4, 2)), "rewards": torch.tensor([0, 0, 1., 0]),
             "dones": torch.tensor([0, 0, 1., 1]), "mc_returns": torch.tensor([.9, .95, 1, 0])}
    loss, m = objective(model, model, batch)
    assert loss.item() == pytest.approx((m["rl_loss"] + 0.25 * m["balance_loss"]).item())
    loss.backward()
    assert model.head.weight.grad is not None and model.backbone.weight.grad is None
    il = Objective(RLConfig(objective="il"), model)
    assert il.target is None and "il_loss" in il(model, model, batch)[1]
    with pytest.raises(ValueError, match="stop_bins"):
        Objective(RLConfig(binary_terminate=True), model)
    binary = Objective(RLConfig(binary_terminate=True, conservative_vocab=False), model,
                       stop_bins=torch.tensor([False, False, False, True, True]))
    assert "decision_loss" in binary(model, model, batch)[1]


def test_config_round_trip_and_validation(tmp_path):
    cfg = RLConfig(alpha=0.1, mc_lower_bound=False)
    cfg.save(tmp_path)
    assert RLConfig.load(tmp_path) == cfg
    with pytest.raises(ValueError, match="objective"):
        RLConfig(objective="ppo")
    with pytest.raises(ValueError, match="gamma"):
        RLConfig(gamma=1.5)
