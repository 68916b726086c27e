"""The MoRE policy as the Q-model rl/objective.py trains, and batches in the form it takes."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from more_policy.actions import ActionSpace
from more_policy.model import MoREPolicy
from more_policy.rl.objective import QOutput
from more_policy.training.config import TrainConfig


class PolicyQModel(nn.Module):
    """Adapts MoREPolicy to the Q-model interface of rl/objective.py."""

    def __init__(self, policy: MoREPolicy) -> None:
        super().__init__()
        self.policy = policy

    @property
    def action_token_slice(self) -> slice:
        return slice(self.policy.token_offset, self.policy.token_offset + self.policy.num_bins)

    def make_state(self, images, instructions) -> dict[str, torch.Tensor]:
        """The prefix inputs, prepared once (image patches projected): the target and online
        forwards both use them."""
        policy = self.policy
        inputs = policy.prepare(list(images), list(instructions))
        return policy.backbone_adapter.encode_images(policy.model, inputs)

    def forward(self, state: dict[str, torch.Tensor], action_bins: torch.Tensor | None
                ) -> QOutput:
        policy = self.policy
        out = policy(state if action_bins is None else policy.with_actions(state, action_bins))
        return QOutput(out.action_logits, out.vocab_logits, out.balance_loss,
                       expert_load=out.router_stats["top1_fraction"])


def build_policy_model(cfg: TrainConfig, action_space: ActionSpace) -> PolicyQModel:
    policy = MoREPolicy.from_config(cfg.model, action_space, seed=cfg.seed)
    if cfg.gradient_checkpointing:
        policy.model.gradient_checkpointing_enable()
    if cfg.compile:
        policy.compile_decoder()
    return PolicyQModel(policy)


def to_batch(samples: dict[str, Any], model: nn.Module, device) -> dict[str, Any]:
    """Collated transitions -> the objective's batch (model states + tensors on device)."""
    state = model.make_state(samples["images"], samples["instructions"])
    next_state = model.make_state(samples["next_images"], samples["instructions"])
    out = {k: v.to(device) if isinstance(v, torch.Tensor) else v
           for k, v in (("state", state), ("next_state", next_state))}
    for key in ("action_bins", "rewards", "dones", "mc_returns", "transition_ids"):
        out[key] = samples[key].to(device)
    return out
