"""One training step's loss for any autoregressive Q-model, plus its EMA target network.

A Q-model is an ``nn.Module`` with

    model.make_state(images: list[HxWx3 uint8], instructions: list[str]) -> state
    model(state, action_bins (B, D) | None) -> QOutput

where ``QOutput.action_logits[:, i]`` (B, D, A) predicts dimension i given ``action_bins[:, :i]``.
The MoRE policy (train.py's adapter) and the small tabular model of the known-answer tests
both go through this same code.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from more_policy.rl.losses import bellman_targets, imitation_loss, q_learning_loss

RL_CONFIG_FILE = "rl_config.json"


@dataclass
class RLConfig:
    """Objective hyper-parameters (saved with every run as rl_config.json)."""

    objective: str = "q"              # "q" (MoRE offline RL) or "il" (imitation baseline)
    gamma: float = 0.995              # discount (QUART-Online MoLE module)
    tau: float = 0.999                # target network EMA: target <- tau*target + (1-tau)*online
    alpha: float = 0.5                # conservative weight on non-dataset tokens (paper)
    beta: float = 0.002               # load-balance weight (paper; the public code used 0.02)
    mc_lower_bound: bool = True       # floor targets at the Monte-Carlo return
    conservative_vocab: bool = True   # also push non-action vocabulary tokens toward Q = 0

    def __post_init__(self) -> None:
        if self.objective not in ("q", "il"):
            raise ValueError(f"objective must be 'q' or 'il', got {self.objective!r}")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"gamma and tau must lie in [0, 1], got {self.gamma}, {self.tau}")
        if self.alpha < 0 or self.beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got {self.alpha}, {self.beta}")

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / RL_CONFIG_FILE
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> RLConfig:
        path = Path(path)
        return cls(**json.loads((path / RL_CONFIG_FILE if path.is_dir() else path).read_text()))


@dataclass
class QOutput:
    action_logits: Tensor                        # (B, D, A)
    vocab_logits: Tensor | None = None           # (B, D, V) full vocabulary, or None
    balance_loss: Tensor | None = None           # scalar
    expert_load: Tensor | None = None            # (layers, experts) top-1 fractions, or None
    extras: dict[str, Any] = field(default_factory=dict)


class TargetNetwork:
    """EMA copy of the *trainable* parameters only; frozen weights are shared, not copied.

    ``with target.applied(model):`` swaps the EMA tensors into the model in place (no copy)
    for a no-grad forward. The EMA is kept in float32 whatever the weights' dtype (a tau = 0.999
    update rounds away in bf16). Works with the unwrapped module under DDP and DeepSpeed ZeRO <= 2;
    with parameter sharding (ZeRO-3, FSDP) the swap would see shards, so the trainer refuses those.
    """

    def __init__(self, model: nn.Module, tau: float) -> None:
        self.tau = tau
        self.params = {n: p.detach().to(torch.float32, copy=True)
                       for n, p in model.named_parameters() if p.requires_grad}
        if not self.params:
            raise ValueError("the model has no trainable parameters")

    def _trainable(self, model: nn.Module):
        named = dict(model.named_parameters())
        missing = set(self.params) - set(named)
        if missing:
            raise KeyError(f"target network parameters missing from model: {sorted(missing)[:3]}")
        return [(named[n], t) for n, t in self.params.items()]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for p, t in self._trainable(model):
            t.lerp_(p.detach().to(t.dtype), 1.0 - self.tau)

    @contextmanager
    def applied(self, model: nn.Module):
        pairs = self._trainable(model)
        saved = [p.data for p, _ in pairs]
        was_training = model.training
        try:
            model.eval()  # targets without dropout
            with torch.no_grad():
                for p, t in pairs:
                    p.data = t.to(p.dtype)  # no copy when the weights are float32
                yield model
        finally:
            for (p, _), data in zip(pairs, saved):
                p.data = data
            model.train(was_training)

    def state_dict(self) -> dict[str, Any]:
        return {"tau": self.tau, "params": {n: t.clone() for n, t in self.params.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state["params"]) != set(self.params):
            raise KeyError("target network state does not match the model's trainable weights")
        self.tau = state["tau"]
        for n, t in state["params"].items():
            self.params[n].copy_(t)


def _concat(a: Any, b: Any) -> Any:
    """Concatenate two model states along the batch (tensors, lists, dicts of those)."""
    if isinstance(a, Tensor):
        return torch.cat([a, b])
    if isinstance(a, list):
        return a + b
    if isinstance(a, dict):
        return {k: _concat(a[k], b[k]) for k in a}
    raise TypeError(f"cannot batch model states of type {type(a).__name__}")


class Objective:
    """Computes the RL (or IL) loss of a batch and maintains the target network."""

    def __init__(self, cfg: RLConfig, model: nn.Module,
                 action_token_slice: slice | None = None) -> None:
        self.cfg = cfg
        self.action_token_slice = action_token_slice
        self.target = TargetNetwork(model, cfg.tau) if cfg.objective == "q" else None

    def __call__(self, model: nn.Module, unwrapped: nn.Module, batch: dict[str, Any]
                 ) -> tuple[Tensor, dict[str, Tensor]]:
        """``model`` may be a DDP wrapper (its forward syncs gradients); ``unwrapped`` is the
        bare module used for the target network's no-grad forwards."""
        bins = batch["action_bins"]
        if self.cfg.objective == "q":
            # Target forwards first, so no parameter swap happens while a graph is alive.
            # One forward over [s_t; s_{t+1}]: position 0 never sees the bins.
            with self.target.applied(unwrapped):
                both = unwrapped(_concat(batch["state"], batch["next_state"]),
                                 torch.cat([bins, bins]))
            b = bins.shape[0]
            targets = bellman_targets(
                both.action_logits[:b], both.action_logits[b:, 0], batch["rewards"],
                batch["dones"], self.cfg.gamma,
                batch["mc_returns"] if self.cfg.mc_lower_bound else None)
        out: QOutput = model(batch["state"], bins)
        if self.cfg.objective == "q":
            vocab = out.vocab_logits if self.cfg.conservative_vocab else None
            loss, metrics = q_learning_loss(out.action_logits, bins, targets,
                                            alpha=self.cfg.alpha, vocab_logits=vocab,
                                            action_token_slice=self.action_token_slice)
            if self.cfg.mc_lower_bound:
                metrics["mc_bound_active"] = (batch["mc_returns"][:, None] >= targets).float() \
                    .mean().detach()
        else:
            loss, metrics = imitation_loss(out.action_logits, bins)
        if out.balance_loss is not None:
            loss = loss + self.cfg.beta * out.balance_loss
            metrics["balance_loss"] = out.balance_loss.detach().float()
        if out.expert_load is not None:
            load = out.expert_load.detach().float()                     # (layers, experts)
            metrics["expert_load_max"] = load.amax()
            for layer, row in enumerate(load):
                metrics[f"expert_load_max/layer{layer}"] = row.amax()
        metrics["loss"] = loss.detach()
        return loss, metrics

    def after_optimizer_step(self, unwrapped: nn.Module) -> None:
        if self.target is not None:
            self.target.update(unwrapped)

    def state_dict(self) -> dict[str, Any]:
        return {"target": self.target.state_dict() if self.target else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.target is not None:
            self.target.load_state_dict(state["target"])
