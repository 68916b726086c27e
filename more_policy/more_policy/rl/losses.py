"""The autoregressive Q-learning objective of MoRE (Eqs. 7, 8, 10) and the IL baseline.

Pure functions on tensors, independent of any model. Shapes: B batch, D = 12 action
dimensions, A = 256 action bins, V vocabulary size. ``*_logits[:, i]`` are the logits at the
position that predicts dimension i given the dataset bins of dimensions < i (teacher forcing),
and Q = sigmoid(logit).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def state_values(target_logits: Tensor) -> Tensor:
    """(B, D, A) teacher-forced target logits -> (B, D): max over a^{i+1} of
    Q(s, a^{1:i}, a^{i+1}) per dimension i. Column 0 depends on the prompt prefix alone (the
    first action token attends to no action): it is the state's value max_a1 Q(s, a1)."""
    return torch.sigmoid(target_logits.float()).amax(dim=-1)


def bellman_targets(target_logits: Tensor, next_first_logits: Tensor, rewards: Tensor,
                    dones: Tensor, gamma: float, mc_returns: Tensor | None = None) -> Tensor:
    """Eq. 7 targets (B, D) from the target network.

    target_logits (B, D, A): target net, teacher-forced on the dataset action of s_t.
    next_first_logits (B, A): target net's first-dimension logits at s_{t+1}.
    Within a step, dimension i's target is max over a^{i+1} of Q(s, a^{1:i}, a^{i+1});
    the last dimension's is r + gamma * max over a^1 of Q(s', a^1), with no bootstrap past a
    terminal step. ``mc_returns`` (B,) floors every target (Q-Transformer's MC lower bound:
    the return actually obtained after taking the data's action is a lower bound on its Q).
    """
    next_value = torch.sigmoid(next_first_logits.float()).amax(dim=-1)   # (B,)
    return targets_from_values(state_values(target_logits), next_value, rewards, dones, gamma,
                               mc_returns)


def targets_from_values(values: Tensor, next_value: Tensor, rewards: Tensor, dones: Tensor,
                        gamma: float, mc_returns: Tensor | None = None) -> Tensor:
    """:func:`bellman_targets` from :func:`state_values` of s_t (B, D) and the value of
    s_{t+1} (B,) (any finite value where the transition is terminal)."""
    last = rewards.float() + gamma * (1.0 - dones.float()) * next_value  # (B,)
    targets = torch.cat([values[:, 1:], last[:, None]], dim=1)          # (B, D)
    if mc_returns is not None:
        targets = torch.maximum(targets, mc_returns.float()[:, None])
    return targets.detach()


def q_learning_loss(action_logits: Tensor, action_bins: Tensor, targets: Tensor, *,
                    alpha: float = 0.5, vocab_logits: Tensor | None = None,
                    action_token_slice: slice | None = None,
                    stop_bins: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Eq. 8 without the balance term: returns (td + alpha * conservative, metrics).

    action_logits (B, D, A) online; action_bins (B, D) dataset bins; targets (B, D).
    TD: 1/2 mean over dataset tokens of (Q - target)^2. Conservative: 1/2 mean over the
    other A-1 action tokens of Q^2, and, when ``vocab_logits`` (B, D, V) is given, 1/2 mean
    over the non-action vocabulary (``action_token_slice`` marks the action tokens in V).
    ``stop_bins`` (A,) bool, the last dimension's bins that decode to "terminate" (RLConfig's
    binary_terminate): that dimension is a two-way choice, so the conservative term also
    pushes the *other* decision's best bin (the max over its bins, what greedy decoding would
    pick) with the weight of a dataset token (1/(B D), where the mean over A-1 bins gives a
    bin 1/(B D (A-1))): "decision_loss" in the metrics.
    """
    q_all = torch.sigmoid(action_logits.float())                          # (B, D, A)
    taken = F.one_hot(action_bins.long(), q_all.shape[-1]).bool()         # (B, D, A)
    q_taken = q_all[taken].view(action_bins.shape)                        # (B, D)
    td = 0.5 * (q_taken - targets).pow(2).mean()
    others = q_all.masked_fill(taken, 0.0)
    conservative = 0.5 * others.pow(2).sum() / (taken.numel() - taken.sum()).clamp(min=1)
    total = td + alpha * conservative
    if stop_bins is not None:
        stop_bins = stop_bins.to(q_all.device)
        other_side = stop_bins[None, :] != stop_bins[action_bins[:, -1].long()][:, None]  # (B, A)
        q_other_decision = q_all[:, -1].masked_fill(~other_side, 0.0).amax(-1)  # (B,)
        decision = 0.5 * q_other_decision.pow(2).sum() / taken.shape[0] / taken.shape[1]
        total = total + alpha * decision
    metrics = {"td_loss": td.detach(), "conservative_loss": conservative.detach(),
               "q_taken": q_taken.mean().detach(), "q_other": (others.sum() / (
                   taken.numel() - taken.sum()).clamp(min=1)).detach(),
               "q_target": targets.mean().detach(), "q_max": q_all.amax(-1).mean().detach()}
    if stop_bins is not None:
        metrics["decision_loss"] = decision.detach()
    if vocab_logits is not None:
        if action_token_slice is None:
            raise ValueError("vocab_logits needs action_token_slice (where the action tokens "
                             "lie in the vocabulary)")
        keep = torch.ones(vocab_logits.shape[-1], dtype=torch.bool, device=vocab_logits.device)
        keep[action_token_slice] = False
        q_vocab = torch.sigmoid(vocab_logits[..., keep].float())           # (B, D, V-A)
        vocab = 0.5 * q_vocab.pow(2).mean()
        total = total + alpha * vocab
        metrics["vocab_loss"] = vocab.detach()
    metrics["rl_loss"] = total.detach()
    return total, metrics


def imitation_loss(action_logits: Tensor, action_bins: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """IL baseline: cross-entropy of the dataset bin over the A action tokens, per dimension."""
    logits = action_logits.float()                                        # (B, D, A)
    loss = F.cross_entropy(logits.flatten(0, 1), action_bins.long().flatten())
    accuracy = (logits.argmax(-1) == action_bins).float().mean()
    return loss, {"il_loss": loss.detach(), "token_accuracy": accuracy.detach()}

