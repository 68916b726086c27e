"""Pretraining loop: next-token loss on the answers, AdamW + warmup/cosine, exact resume.

Batches come from a generator seeded by (seed, step) and dropout is off, so a run resumed from
any checkpoint ends with the same weights as an uninterrupted one; checkpoints are written to a
temporary directory and renamed into place (a killed save leaves no half checkpoint).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from more_policy.pretrain.data import QASplit, SplitSpec, load_or_render
from more_policy.pretrain.model import (
    BackboneShape,
    QAEncoder,
    answer_logits,
    answer_loss,
    build_backbone,
    exact_match,
    save_backbone,
)
from more_policy.training.loop import lr_at

CHECKPOINTS = "checkpoints"
DEFAULT_WEIGHTS = {"colour": 1.0, "shape": 0.5, "letter": 2.0, "side": 1.5, "distance": 0.5,
                   "presence": 0.5, "caption": 1.0, "goal": 2.0}


@dataclass
class PretrainConfig:
    name: str = "sim-fuyu-256"
    out_dir: str = "outputs/pretrain/sim-fuyu-256"  # run state: data cache, checkpoints, log
    save_dir: str = "artifacts/backbones/sim-fuyu-256"  # the final HF directory
    seed: int = 0
    shape: BackboneShape = field(default_factory=BackboneShape)
    train_split: SplitSpec = field(default_factory=lambda: SplitSpec("train", 300, 4))
    heldout_split: SplitSpec = field(
        default_factory=lambda: SplitSpec("heldout", 30, 4, phrasing="heldout"))
    unseen_split: SplitSpec = field(
        default_factory=lambda: SplitSpec("unseen", 30, 4, colors="unseen"))
    max_steps: int = 4000
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    family_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    eval_every: int = 500
    eval_samples: int = 256
    threads: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ValueError("max_steps, batch_size and checkpoint_every must be >= 1")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if isinstance(self.shape, dict):
            self.shape = BackboneShape(**self.shape)
        for name in ("train_split", "heldout_split", "unseen_split"):
            if isinstance(getattr(self, name), dict):
                setattr(self, name, SplitSpec(**getattr(self, name)))


def latest_checkpoint(out_dir: Path) -> Path | None:
    done = sorted((out_dir / CHECKPOINTS).glob("step_*"))
    return done[-1] if done else None


RUN_INDEPENDENT = ("progress", "save_dir")  # settings a resumed run may change


def _start_or_check_run(out_dir: Path, cfg: PretrainConfig, resume: bool) -> None:
    """A fresh run clears the old checkpoints and metrics (the data cache stays); a resumed one
    must have the configuration it was started with, or its schedule and batches would change."""
    config_file = out_dir / "pretrain_config.json"
    wanted = {k: v for k, v in json.loads(json.dumps(asdict(cfg))).items()
              if k not in RUN_INDEPENDENT}
    if resume and latest_checkpoint(out_dir) is not None and config_file.exists():
        saved = {k: v for k, v in json.loads(config_file.read_text()).items()
                 if k not in RUN_INDEPENDENT}
        changed = sorted(k for k in wanted.keys() | saved.keys() if wanted.get(k) != saved.get(k))
        if changed:
            raise ValueError(f"{out_dir} holds a run started with other settings "
                             f"({', '.join(changed)}); resume it with those, or start over "
                             "with --no-resume")
    if not resume:
        shutil.rmtree(out_dir / CHECKPOINTS, ignore_errors=True)
        (out_dir / "metrics.csv").unlink(missing_ok=True)
    config_file.write_text(json.dumps(asdict(cfg), indent=2))


def _save_checkpoint(out_dir: Path, step: int, model, optimizer, scheduler, keep: int) -> None:
    final = out_dir / CHECKPOINTS / f"step_{step:07d}"
    tmp = out_dir / CHECKPOINTS / f".tmp_step_{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save({"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state()},
               tmp / "state.pt")
    os.replace(tmp, final)
    for old in sorted((out_dir / CHECKPOINTS).glob("step_*"))[:-keep]:
        shutil.rmtree(old)


def batch_at(split: QASplit, index, cfg: PretrainConfig, step: int):
    """The training batch of ``step``: a pure function of (seed, step)."""
    rng = np.random.default_rng([cfg.seed, step])
    picks = [split.sample(rng, index, cfg.family_weights) for _ in range(cfg.batch_size)]
    return (split.images[[p[0] for p in picks]], [p[2] for p in picks], [p[3] for p in picks])


@torch.no_grad()
def heldout_accuracy(model, encoder: QAEncoder, split: QASplit, samples: int, seed: int,
                     batch_size: int = 32) -> float:
    was_training = model.training
    model.eval()
    rng = np.random.default_rng([seed, 7])
    index = split.by_family()
    picks = [split.sample(rng, index, {f: 1.0 for f in index}) for _ in range(samples)]
    correct = 0
    for s in range(0, samples, batch_size):
        chunk = picks[s:s + batch_size]
        batch = encoder(split.images[[p[0] for p in chunk]], [p[2] for p in chunk],
                        [p[3] for p in chunk])
        correct += int(exact_match(answer_logits(model, batch), batch["labels"]).sum())
    model.train(was_training)
    return correct / samples


def pretrain(cfg: PretrainConfig, resume: bool = True) -> Path:
    """Train (or resume) and write the HF backbone directory; returns its path."""
    torch.set_num_threads(cfg.threads)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _start_or_check_run(out_dir, cfg, resume)
    size = cfg.shape.image_size
    train_split = load_or_render(out_dir / "data" / "train.npz", cfg.train_split, cfg.seed, size,
                                 cfg.progress)
    heldout = load_or_render(out_dir / "data" / "heldout.npz", cfg.heldout_split, cfg.seed, size,
                             cfg.progress)
    index = train_split.by_family()
    model, tokenizer = build_backbone(cfg.shape, cfg.seed)
    encoder = QAEncoder(model, tokenizer, size)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": other, "weight_decay": 0.0}], lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(s, cfg))
    start = 0
    checkpoint = latest_checkpoint(out_dir) if resume else None
    if checkpoint is not None:
        state = torch.load(checkpoint / "state.pt", map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start = int(state["step"])
    log = (out_dir / "metrics.csv").open("a", newline="")
    writer = csv.writer(log)
    bar = tqdm(total=cfg.max_steps, initial=start, desc=f"pretrain {cfg.name}",
               disable=not cfg.progress)
    started = time.monotonic()
    for step in range(start, cfg.max_steps):
        images, questions, answers = batch_at(train_split, index, cfg, step)
        batch = encoder(images, questions, answers)
        loss = answer_loss(answer_logits(model, batch), batch["labels"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        writer.writerow([step + 1, "loss", f"{loss.item():.5f}"])
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        done = step + 1
        if done % cfg.eval_every == 0 or done == cfg.max_steps:
            acc = heldout_accuracy(model, encoder, heldout, cfg.eval_samples, cfg.seed)
            writer.writerow([done, "heldout_exact_match", f"{acc:.4f}"])
            bar.write(f"step {done}: held-out exact match {acc:.3f} "
                      f"({time.monotonic() - started:.0f} s)")
        if done % cfg.checkpoint_every == 0 or done == cfg.max_steps:
            log.flush()
            _save_checkpoint(out_dir, done, model, optimizer, scheduler, cfg.keep_checkpoints)
    bar.close()
    log.close()
    model.eval()
    save_dir = Path(cfg.save_dir)
    save_backbone(model, tokenizer, save_dir)
    (save_dir / "pretrain_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    return save_dir
