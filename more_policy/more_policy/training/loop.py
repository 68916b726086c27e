"""The training loop (nanoGPT style): sample a batch from this rank's stream, compute the
objective (rl/objective.py), step AdamW under a warmup + cosine schedule, update the EMA target,
log, checkpoint atomically, evaluate.

:func:`prepare` builds what the loop steps, :func:`train_step` is one optimizer step and
:func:`train` runs (or resumes) a whole run; :func:`time_train_steps` times real steps of a
config without writing a run (how experiments plan a step count for a time budget).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from more_policy.data import BatchPrefetcher, EpisodeDataset
from more_policy.rl.objective import Objective
from more_policy.training.backends import is_deepspeed, keep_freed_memory_in_heap, make_accelerator
from more_policy.training.checkpointing import find_checkpoint, load_checkpoint, save_checkpoint
from more_policy.training.config import TrainConfig
from more_policy.training.metrics import MetricsLogger
from more_policy.training.model import build_policy_model, to_batch

EvalHook = Callable[[int, nn.Module], dict[str, float] | None]


@dataclass
class Prepared:
    """Everything the loop steps: the accelerate-wrapped model and the pieces around it."""

    accelerator: Any
    dataset: EpisodeDataset
    stream: Any                 # this rank's batch stream (EpisodeDataset.stream)
    model: nn.Module            # as accelerate wrapped it (DDP / DeepSpeed engine / itself)
    unwrapped: nn.Module
    params: list[nn.Parameter]  # the trainable ones
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    objective: Objective

    @property
    def deepspeed_engine(self):
        return self.model if is_deepspeed(self.accelerator) else None


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup then cosine decay to min_lr_ratio (multiplier on cfg.lr)."""
    warmup = max(1, int(cfg.warmup_ratio * cfg.max_steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, cfg.max_steps - warmup))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def prepare(cfg: TrainConfig, model: nn.Module | None = None) -> Prepared:
    """Accelerator, this rank's data stream, the model (``model`` or the MoRE policy of
    cfg.model), AdamW, the schedule and the objective, seeded identically on every rank."""
    from accelerate.utils import set_seed

    if not cfg.data:
        raise ValueError("no training data: set data (more train --data DIR)")
    accelerator = make_accelerator(cfg.mixed_precision, cfg.batch_size, cfg.grad_accum,
                                   cfg.grad_clip)
    set_seed(cfg.seed)  # identical initial weights on every rank
    dataset = EpisodeDataset(cfg.data, gamma=cfg.rl.gamma, seed=cfg.seed,
                             rank=accelerator.process_index,
                             world_size=accelerator.num_processes,
                             shuffle_block=cfg.shuffle_block,
                             decode_images=not cfg.frame_cache_frames)  # the cache decodes
    stream = BatchPrefetcher(dataset.stream(decode_threads=cfg.decode_threads), cfg.batch_size)
    if model is None:
        model = build_policy_model(cfg, dataset.action_space)
    elif cfg.frame_cache_frames:
        raise ValueError("frame_cache_frames is an option of the MoRE policy, not of a model "
                         "handed to the trainer")
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(s, cfg))
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)
    objective = Objective(cfg.rl, unwrapped, getattr(unwrapped, "action_token_slice", None),
                          getattr(unwrapped, "stop_bins", None))
    return Prepared(accelerator, dataset, stream, model, unwrapped, params, optimizer,
                    scheduler, objective)


def train_step(p: Prepared, cfg: TrainConfig) -> tuple[dict[str, torch.Tensor], Any]:
    """One optimizer step over grad_accum micro-batches; returns the last micro-batch's
    metrics and the gradient norm before clipping (None without clipping)."""
    acc = p.accelerator
    for micro in range(cfg.grad_accum):
        batch = to_batch(p.stream.next_batch(cfg.batch_size), p.unwrapped, acc.device)
        sync = nullcontext() if micro == cfg.grad_accum - 1 else acc.no_sync(p.model)
        with sync, acc.autocast():
            loss, metrics = p.objective(p.model, p.unwrapped, batch)
            acc.backward(loss / cfg.grad_accum)
    grad_norm = acc.clip_grad_norm_(p.params, cfg.grad_clip) if cfg.grad_clip > 0 else None
    p.optimizer.step()
    p.optimizer.zero_grad(set_to_none=True)
    p.scheduler.step()
    p.objective.after_optimizer_step(p.unwrapped)
    return metrics, grad_norm


def train(cfg: TrainConfig, model: nn.Module | None = None,
          eval_hook: EvalHook | None = None) -> Path:
    """Run (or resume) training; returns the output directory. ``model`` overrides the MoRE
    policy built from cfg.model (any Q-model, see rl/objective.py)."""
    from tqdm import tqdm

    keep_freed_memory_in_heap()
    p = prepare(cfg, model)
    acc = p.accelerator
    eval_stream = EpisodeDataset(cfg.eval_data, gamma=cfg.rl.gamma, shuffle=False,
                                 decode_images=not cfg.frame_cache_frames).stream() \
        if cfg.eval_data else None
    out_dir = Path(cfg.out_dir)
    if acc.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(out_dir)
        cfg.rl.save(out_dir)
        p.dataset.action_space.save(out_dir)
    step = 0
    checkpoint = find_checkpoint(out_dir, cfg.resume)
    if checkpoint is not None:
        step = load_checkpoint(checkpoint, acc, p.unwrapped, p.optimizer, p.scheduler,
                               p.objective, p.stream, p.deepspeed_engine)
        acc.print(f"resumed from {checkpoint} at step {step}")
    logger = MetricsLogger(out_dir, cfg.log_with, acc.is_main_process)
    bar = tqdm(total=cfg.max_steps, initial=step, desc="train",
               disable=not acc.is_local_main_process)
    started = time.perf_counter()
    while step < cfg.max_steps:
        metrics, grad_norm = train_step(p, cfg)
        step += 1
        bar.update(1)
        last = step == cfg.max_steps or out_of_time(cfg, started, acc)
        if step % cfg.log_every == 0 or last:
            logged = mean_over_ranks(acc, metrics)
            logged["lr"] = p.scheduler.get_last_lr()[0]
            if grad_norm is not None:
                logged["grad_norm"] = float(grad_norm)
            logged["steps_per_s"] = step / max(time.perf_counter() - started, 1e-9)
            logger.log(step, logged)
            bar.set_postfix(loss=f"{logged['loss']:.4f}")
        if cfg.save_every and (step % cfg.save_every == 0 or last):
            save_checkpoint(acc, out_dir, step, p.unwrapped, p.optimizer, p.scheduler,
                            p.objective, p.stream, cfg.keep_checkpoints, p.deepspeed_engine)
        if cfg.eval_every and step % cfg.eval_every == 0:
            results = evaluate(p, eval_stream, cfg) if eval_stream else {}
            if eval_hook is not None:
                results.update(eval_hook(step, p.unwrapped) or {})
            if results and acc.is_main_process:
                logger.log(step, results)
        if last and step < cfg.max_steps:
            acc.print(f"time budget of {cfg.max_seconds:g} s used up at step {step}")
            break
    bar.close()
    logger.close()
    p.stream.close()
    if acc.is_main_process and hasattr(p.unwrapped, "policy"):
        p.unwrapped.policy.save_pretrained(out_dir / "final")
    acc.wait_for_everyone()
    return out_dir


def time_train_steps(cfg: TrainConfig, steps: int) -> list[float]:
    """Wall seconds of each of ``steps`` real optimizer steps of ``cfg`` (model, data,
    objective and accelerator as in :func:`train`); nothing is written."""
    p = prepare(cfg)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        train_step(p, cfg)
        times.append(time.perf_counter() - start)
    p.stream.close()
    return times


def mean_over_ranks(accelerator, metrics: dict[str, torch.Tensor]) -> dict[str, float]:
    names = sorted(metrics)
    values = accelerator.reduce(torch.stack([metrics[n].float().to(accelerator.device)
                                             for n in names]), "mean")
    return {n: float(v) for n, v in zip(names, values)}


@torch.no_grad()
def evaluate(p: Prepared, stream, cfg: TrainConfig) -> dict[str, float]:
    """Mean objective metrics over a few batches of the held-out dataset."""
    p.unwrapped.eval()
    totals: dict[str, float] = {}
    for _ in range(cfg.eval_batches):
        _, metrics = p.objective(p.unwrapped, p.unwrapped, to_batch(
            stream.next_batch(cfg.batch_size), p.unwrapped, p.accelerator.device),
            fresh_targets=True)
        for k, v in metrics.items():
            totals[f"eval/{k}"] = totals.get(f"eval/{k}", 0.0) + float(v) / cfg.eval_batches
    p.unwrapped.train()
    return totals


def out_of_time(cfg: TrainConfig, started: float, accelerator) -> bool:
    """Whether ``cfg.max_seconds`` of training have passed; every process agrees (a rank that
    stopped alone would hang the others in the next all-reduce)."""
    if cfg.max_seconds <= 0:
        return False
    late = torch.tensor(float(time.perf_counter() - started > cfg.max_seconds),
                        device=accelerator.device)
    return bool(accelerator.reduce(late, "max") > 0)
