"""load_policy: a MoRE policy from what a user names on a command line or in a ROS parameter.

    load_policy("runs/x/final", "nf4")   # a checkpoint directory (MoREPolicy.from_pretrained)
    load_policy("random-tiny")           # an untrained policy of a random config, for tests

The nodes, `more eval`, `more demo` and the benches all take such a spec through here.
"""

from __future__ import annotations

from more_policy.actions import ActionSpace
from more_policy.model.config import MoREConfig
from more_policy.model.policy import MoREPolicy

RANDOM_CHECKPOINT_PREFIX = "random-"  # 'random-tiny' / 'random-small': untrained, for tests
QUANTIZATION_NAMES = ("none", "int8", "nf4")  # as ROS parameters and CLI flags spell them


def load_policy(spec: str, quantization: str | None = "none", device: str = "cpu",
                seed: int = 0) -> MoREPolicy:
    """A MoREPolicy from a checkpoint directory or 'random-<size>' (seeded by ``seed``)."""
    quantization = quantization or "none"
    if quantization not in QUANTIZATION_NAMES:
        raise ValueError(f"quantization must be one of {QUANTIZATION_NAMES}, got "
                         f"{quantization!r}")
    quantization = None if quantization == "none" else quantization
    if spec.startswith(RANDOM_CHECKPOINT_PREFIX):
        size = spec[len(RANDOM_CHECKPOINT_PREFIX):]
        return MoREPolicy.from_config(MoREConfig(backbone=size), ActionSpace(), seed=seed,
                                      device=device, quantization=quantization)
    return MoREPolicy.from_pretrained(spec, quantization=quantization, device=device)
