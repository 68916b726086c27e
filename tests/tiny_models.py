"""A tiny MoRE Q-model with non-trivial adapters, for tests of the objective and its fast paths."""

from __future__ import annotations

import torch

from more_policy.model import MoREConfig, MoREPolicy
from more_policy.training.model import PolicyQModel


def perturbed_q_model(image_size: int = 32, attn_lora_rank: int = 8, lora_dropout: float = 0.0
                      ) -> tuple[PolicyQModel, torch.Generator]:
    """The tiny policy (seed 2) with every trainable weight moved by N(0, 0.2) noise (every
    LoRA B matrix starts at zero), wrapped as a Q-model; also returns the noise generator
    (seed 0), for tests that draw more from the same stream."""
    policy = MoREPolicy.from_config(MoREConfig(backbone="tiny", image_size=image_size,
                                               lora_rank=8, attn_lora_rank=attn_lora_rank,
                                               lora_dropout=lora_dropout), seed=2)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in policy.trainable_parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.2)
    return PolicyQModel(policy), gen
