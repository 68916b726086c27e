"""Sim-world vision-language pretraining of a small Fuyu backbone (``more pretrain``).

Random scenes of the six tasks, seen from random robot poses, are turned into questions and
answers about the objects; a FuyuForCausalLM trained on them from scratch is saved as a normal
Hugging Face checkpoint directory that ``MoREConfig(backbone=<dir>)`` loads like Fuyu-8B.
"""

from more_policy.pretrain.presets import PRESETS, pretrain_preset

__all__ = ["PRESETS", "pretrain_preset"]
