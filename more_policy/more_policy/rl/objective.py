"""One training step's loss for any autoregressive Q-model, plus its EMA target network.

A Q-model is an ``nn.Module`` with

    model.make_state(images: list[HxWx3 uint8], instructions: list[str]) -> state
    model(state, action_bins (B, D) | None) -> QOutput

where ``QOutput.action_logits[:, i]`` (B, D, A) predicts dimension i given ``action_bins[:, :i]``
(without bins, only ``[:, 0]`` is used: the prompt prefix alone). The MoRE policy (train.py's
adapter) and the small tabular model of the known-answer tests both go through this same code.

Target network, two modes (``RLConfig.target_mode``):
- "ema" (the paper's): an EMA of the online weights, updated after every optimizer step; the
  targets of each batch come from a fresh no-grad forward over s (teacher-forced) and over the
  prompt prefix of s' (non-terminal transitions only).
- "periodic": a frozen snapshot of the online weights, replaced every ``target_refresh_every``
  updates (DQN's hard update). A state's values under the snapshot (one teacher-forced pass,
  :func:`state_values`) are computed the first time it is drawn after a refresh, as s or as
  the s' of the previous step, and then reused until the next one: the same values as
  recomputing the whole dataset at each refresh, with one no-grad pass per state and refresh
  instead of two per transition and step. Trades target freshness for throughput (see
  bench/bench_train.py).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from more_policy.rl.losses import (
    bellman_targets,
    imitation_loss,
    q_learning_loss,
    state_values,
    targets_from_values,
)

RL_CONFIG_FILE = "rl_config.json"
TARGET_MODES = ("ema", "periodic")


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
    target_mode: str = "ema"          # "ema" (per-step EMA, tau) | "periodic" (frozen snapshot)
    target_refresh_every: int = 1000  # periodic: updates between snapshots (tau's time scale)
    # Not in the paper (off = paper): the terminate dimension as a two-way decision, whose
    # conservative term also pushes the other decision's best bin at full weight
    # (q_learning_loss's stop_bins).
    binary_terminate: bool = False

    def __post_init__(self) -> None:
        if self.objective not in ("q", "il"):
            raise ValueError(f"objective must be 'q' or 'il', got {self.objective!r}")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"gamma and tau must lie in [0, 1], got {self.gamma}, {self.tau}")
        if self.alpha < 0 or self.beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got {self.alpha}, {self.beta}")
        if self.target_mode not in TARGET_MODES:
            raise ValueError(f"target_mode must be one of {TARGET_MODES}, got "
                             f"{self.target_mode!r}")
        if self.target_refresh_every < 1:
            raise ValueError(f"target_refresh_every must be >= 1, got "
                             f"{self.target_refresh_every}")

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
    """A copy of the *trainable* parameters only; frozen weights are shared, not copied.

    After each optimizer step :meth:`update` moves it toward the online weights: an EMA with
    ``tau``, or, with ``refresh_every`` > 0, a hard copy every ``refresh_every`` updates.
    ``with target.applied(model):`` swaps the target tensors into the model in place (no copy)
    for a no-grad forward. They are kept in float32 whatever the weights' dtype (a tau = 0.999
    update rounds away in bf16). Works with the unwrapped module under DDP and DeepSpeed ZeRO <= 2;
    with parameter sharding (ZeRO-3, FSDP) the swap would see shards, so the trainer refuses those.
    """

    def __init__(self, model: nn.Module, tau: float, refresh_every: int = 0) -> None:
        self.tau, self.refresh_every, self.updates = tau, refresh_every, 0
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
    def update(self, model: nn.Module) -> bool:
        """One optimizer step happened; returns whether the periodic snapshot was replaced."""
        self.updates += 1
        if not self.refresh_every:
            for p, t in self._trainable(model):
                t.lerp_(p.detach().to(t.dtype), 1.0 - self.tau)
            return False
        if self.updates % self.refresh_every:
            return False
        for p, t in self._trainable(model):
            t.copy_(p.detach())
        return True

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
        return {"tau": self.tau, "updates": self.updates,
                "params": {n: t.clone() for n, t in self.params.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state["params"]) != set(self.params):
            raise KeyError("target network state does not match the model's trainable weights")
        self.tau, self.updates = state["tau"], state.get("updates", 0)
        for n, t in state["params"].items():
            self.params[n].copy_(t)


def select_rows(state: Any, rows: Tensor) -> Any:
    """Rows ``rows`` (1-D indices) of a batched model state (tensors, lists, dicts of those)."""
    if isinstance(state, Tensor):
        return state[rows.to(state.device)]
    if isinstance(state, list):
        return [state[i] for i in rows.tolist()]
    if isinstance(state, dict):
        return {k: select_rows(v, rows) for k, v in state.items()}
    raise TypeError(f"cannot index model states of type {type(state).__name__}")


class Objective:
    """Computes the RL (or IL) loss of a batch and maintains the target network."""

    def __init__(self, cfg: RLConfig, model: nn.Module,
                 action_token_slice: slice | None = None,
                 stop_bins: Tensor | None = None) -> None:
        """``stop_bins``: (A,) bool, the last dimension's bins that decode to "terminate",
        needed by ``cfg.binary_terminate``."""
        if cfg.objective == "q" and cfg.binary_terminate and stop_bins is None:
            raise ValueError("binary_terminate needs the model's stop_bins (which bins of the "
                             "last dimension decode to terminate)")
        self.cfg = cfg
        self.action_token_slice = action_token_slice
        self.stop_bins = stop_bins if cfg.binary_terminate else None
        self.target = None
        if cfg.objective == "q":
            periodic = cfg.target_mode == "periodic"
            self.target = TargetNetwork(model, cfg.tau,
                                        cfg.target_refresh_every if periodic else 0)
        # periodic: (episode, step) -> the snapshot's state_values of that state (D,)
        self._values: dict[tuple[int, ...], Tensor] = {}

    def __call__(self, model: nn.Module, unwrapped: nn.Module, batch: dict[str, Any],
                 fresh_targets: bool = False) -> tuple[Tensor, dict[str, Tensor]]:
        """``model`` may be a DDP wrapper (its forward syncs gradients); ``unwrapped`` is the
        bare module used for the target network's no-grad forwards. ``fresh_targets``: neither
        read nor fill the periodic cache (batches of another dataset, e.g. evaluation)."""
        # Target forwards first, so no parameter swap happens while a graph is alive.
        targets = None
        if self.cfg.objective == "q":
            targets = self.compute_targets(unwrapped, batch) if fresh_targets else \
                self.targets(unwrapped, batch)
        return self.loss(model, batch, targets)

    def targets(self, unwrapped: nn.Module, batch: dict[str, Any]) -> Tensor:
        """Bellman targets (B, D) of a training batch from the target network."""
        if self.cfg.target_mode == "ema":
            return self.compute_targets(unwrapped, batch)
        for key in ("transition_ids", "next_action_bins"):
            if key not in batch:
                raise KeyError(f"target_mode 'periodic' needs batch[{key!r}] (transition ids "
                               f"(episode, step) and the dataset action at s') to reuse state "
                               f"values between refreshes")
        ids = [tuple(row) for row in batch["transition_ids"].tolist()]  # (episode, step)
        live = (batch["dones"] == 0).tolist()
        # s' of a live transition is the state of transition (episode, step + 1): its value is
        # column 0 of that state's teacher-forced pass, computed once for both uses.
        next_ids = [(e, t + 1) if alive else None for (e, t), alive in zip(ids, live)]
        self._fill_state_values(unwrapped, batch["state"], batch["action_bins"], ids)
        self._fill_state_values(unwrapped, batch["next_state"], batch["next_action_bins"],
                                next_ids)
        values = torch.stack([self._values[key] for key in ids])                   # (B, D)
        next_value = torch.stack([self._values[key][0] if key else values.new_zeros(())
                                  for key in next_ids])                             # (B,)
        return targets_from_values(values, next_value, batch["rewards"], batch["dones"],
                                   self.cfg.gamma,
                                   batch["mc_returns"] if self.cfg.mc_lower_bound else None)

    def _fill_state_values(self, unwrapped: nn.Module, states: Any, action_bins: Tensor,
                           keys: list[tuple[int, ...] | None]) -> None:
        """The snapshot's :func:`state_values` of the rows whose key is not cached yet (one
        teacher-forced forward over those rows; None keys are skipped)."""
        first_row: dict[tuple[int, ...], int] = {}
        for i, key in enumerate(keys):
            if key is not None and key not in self._values:
                first_row.setdefault(key, i)
        if not first_row:
            return
        index = torch.tensor(sorted(first_row.values()))
        values = self.snapshot_values(unwrapped, select_rows(states, index),
                                      action_bins[index.to(action_bins.device)])
        for i, row in zip(index.tolist(), values):
            self._values[keys[i]] = row

    def snapshot_values(self, unwrapped: nn.Module, states: Any, action_bins: Tensor
                        ) -> Tensor:
        """The target network's :func:`state_values` (B, D) of states, teacher-forced on
        action_bins: the one no-grad pass a state costs per periodic refresh."""
        with self.target.applied(unwrapped):
            return state_values(unwrapped(states, action_bins).action_logits)

    def compute_targets(self, unwrapped: nn.Module, batch: dict[str, Any]) -> Tensor:
        """Eq. 7 targets from the target network: a teacher-forced forward over s, and over
        the prompt prefix of s' (no action tokens) where the transition is not terminal."""
        bins = batch["action_bins"]
        live = torch.nonzero(batch["dones"] == 0)[:, 0]
        with self.target.applied(unwrapped):
            now = unwrapped(batch["state"], bins).action_logits             # (B, D, A)
            # A terminal row's next value is multiplied by 0: any finite logits do.
            next_first = now.new_zeros(now.shape[0], now.shape[-1])         # (B, A)
            if live.numel():
                nxt = unwrapped(select_rows(batch["next_state"], live), None)
                next_first[live.to(now.device)] = nxt.action_logits[:, 0].to(now.dtype)
        return bellman_targets(now, next_first, batch["rewards"], batch["dones"], self.cfg.gamma,
                               batch["mc_returns"] if self.cfg.mc_lower_bound else None)

    def loss(self, model: nn.Module, batch: dict[str, Any], targets: Tensor | None
             ) -> tuple[Tensor, dict[str, Tensor]]:
        """The online forward and the loss (``targets`` from :meth:`targets` for "q")."""
        bins = batch["action_bins"]
        out: QOutput = model(batch["state"], bins)
        if self.cfg.objective == "q":
            vocab = out.vocab_logits if self.cfg.conservative_vocab else None
            loss, metrics = q_learning_loss(out.action_logits, bins, targets,
                                            alpha=self.cfg.alpha, vocab_logits=vocab,
                                            action_token_slice=self.action_token_slice,
                                            stop_bins=self.stop_bins)
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
        if self.target is not None and self.target.update(unwrapped):
            self._values.clear()  # a new snapshot: every state's values are stale

    def state_dict(self) -> dict[str, Any]:
        # The periodic cache is not saved: the snapshot recomputes the same values on resume.
        return {"target": self.target.state_dict() if self.target else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.target is not None:
            self.target.load_state_dict(state["target"])
            self._values.clear()
