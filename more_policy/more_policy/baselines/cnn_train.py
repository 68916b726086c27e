"""Behaviour cloning of the CNN baseline on expert episodes.

    more baseline train --data data/expert --out artifacts/baselines/cnn   # the committed run

The successful episodes are decoded once into memory at the model's input size (30k frames at
64 px are ~0.4 GB), a few episodes are held out for a validation loss, and the loop samples
seeded random minibatches with a small random-shift augmentation (a few pixels; colours are
left alone because the instruction names them). Loss: smooth-L1 on the scaled continuous
dimensions + binary cross-entropy on terminate. Every ``save_every`` steps the checkpoint and
``trainer_state.pt`` (optimizer, step, RNG) are written, so ``--resume`` continues exactly.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from more_policy.baselines.cnn import CNNConfig, CNNPolicy, build_vocab, preprocess_frames
from more_policy.data import EpisodeDataset
from more_policy.data.format import decode_jpeg

STATE_FILE = "trainer_state.pt"


@dataclass
class CNNTrainConfig:
    """One behaviour-cloning run (saved in the checkpoint's cnn_config.json)."""

    data: tuple[str, ...] = ()  # episode dataset directories (successful episodes are used)
    out: str = "outputs/baselines/cnn"
    steps: int = 2800
    batch_size: int = 64
    lr: float = 1.5e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    terminate_weight: float = 1.0  # BCE weight relative to the regression loss
    max_shift: int = 4  # random-shift augmentation, pixels at the model's input size
    val_episodes: int = 12  # held out (spread over the data) for the validation loss
    # budget in CPU minutes of this process (one torch thread = one core; wall time varies
    # on a shared machine): training stops early and saves when it is spent
    max_cpu_minutes: float = 30.0
    save_every: int = 1000
    seed: int = 0
    model: CNNConfig = field(default_factory=CNNConfig)

    def __post_init__(self) -> None:
        self.data = tuple(str(d) for d in self.data)
        if isinstance(self.model, dict):
            self.model = CNNConfig(**self.model)
        if not self.data:
            raise ValueError("no training data: give at least one dataset directory")
        if self.steps < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(f"need steps >= 1, batch_size >= 1, lr > 0; got {self.steps}, "
                             f"{self.batch_size}, {self.lr}")


@dataclass
class Frames:
    """Decoded training frames at the model's input size."""

    images: torch.Tensor  # (N, 3, S, S) uint8
    instructions: list[str]
    commands: torch.Tensor  # (N, 12) float32
    episode: np.ndarray  # (N,) episode number in load order


def load_frames(dirs, image_size: int, *, progress: bool = True) -> Frames:
    """Every step of every successful episode of the datasets ``dirs``."""
    images, instructions, commands, episode = [], [], [], []
    count = 0
    for root in dirs:
        dataset = EpisodeDataset(root, shuffle=False, decode_images=False)
        rows_of = tqdm(dataset.iter_episode_rows(), desc=f"decode {Path(root).name}",
                       disable=not progress, unit="ep")
        for rows in rows_of:
            if not rows[0]["success"]:
                continue
            images.append(preprocess_frames([decode_jpeg(r["image"]) for r in rows], image_size))
            instructions += [r["instruction"] for r in rows]
            commands += [r["command"] for r in rows]
            episode += [count] * len(rows)
            count += 1
    if not count:
        raise ValueError(f"no successful episodes in {list(dirs)}")
    return Frames(torch.from_numpy(np.concatenate(images)), instructions,
                  torch.tensor(np.asarray(commands), dtype=torch.float32), np.asarray(episode))


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator
                 ) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (edge pixels repeated)."""
    if max_shift <= 0:
        return images
    n, _, h, w = images.shape
    padded = F.pad(images.float(), [max_shift] * 4, mode="replicate")
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def bc_loss(model: CNNPolicy, images, bags, commands, terminate_weight: float
            ) -> tuple[torch.Tensor, dict[str, float]]:
    """Smooth-L1 on the scaled continuous dims + weighted BCE on terminate."""
    scaled, logit = model(images, bags)
    regression = F.smooth_l1_loss(scaled, model.scale(commands), beta=0.1)
    terminate = F.binary_cross_entropy_with_logits(logit, commands[:, -1].clamp(0, 1))
    loss = regression + terminate_weight * terminate
    return loss, {"loss": loss.item(), "regression": regression.item(),
                  "terminate": terminate.item()}


def _lr_factor(step: int, cfg: CNNTrainConfig) -> float:
    """Linear warm-up, then cosine decay to 5 % of the peak."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


class CNNTrainer:
    """The loop: ``CNNTrainer(cfg).train()`` -> the trained :class:`CNNPolicy`."""

    def __init__(self, cfg: CNNTrainConfig, *, frames: Frames | None = None,
                 progress: bool = True):
        self.cfg, self.progress = cfg, progress
        torch.manual_seed(cfg.seed)
        self.frames = frames or load_frames(cfg.data, cfg.model.image_size, progress=progress)
        if cfg.model.vocab == CNNConfig().vocab:  # the vocabulary comes from the data
            cfg.model.vocab = build_vocab(set(self.frames.instructions))
        self.model = CNNPolicy(cfg.model)
        n_episodes = int(self.frames.episode.max()) + 1
        val = set(np.linspace(0, n_episodes - 1, min(cfg.val_episodes, n_episodes // 5))
                  .round().astype(int).tolist())
        in_val = np.isin(self.frames.episode, list(val))
        self.train_index, self.val_index = np.flatnonzero(~in_val), np.flatnonzero(in_val)
        self.bags = self.model.encode_instructions(self.frames.instructions)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr,
                                           weight_decay=cfg.weight_decay)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.step, self.history, self.cpu_seconds = 0, [], 0.0

    def batch(self, index: np.ndarray, augment: bool):
        i = torch.from_numpy(index)
        images = self.frames.images[i]
        if augment:
            images = random_shift(images, self.cfg.max_shift, self.generator)
        return images, self.bags[i], self.frames.commands[i]

    def validation_loss(self) -> dict[str, float]:
        """Mean loss over the held-out episodes (eval mode, no augmentation)."""
        if not len(self.val_index):
            return {}
        self.model.eval()
        totals, n = {}, 0
        with torch.no_grad():
            for start in range(0, len(self.val_index), 256):
                idx = self.val_index[start:start + 256]
                _, parts = bc_loss(self.model, *self.batch(idx, False), self.cfg.terminate_weight)
                for k, v in parts.items():
                    totals[k] = totals.get(k, 0.0) + v * len(idx)
                n += len(idx)
        self.model.train()
        return {f"val_{k}": v / n for k, v in totals.items()}

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        pick = torch.randint(len(self.train_index), (cfg.batch_size,), generator=self.generator)
        images, bags, commands = self.batch(self.train_index[pick.numpy()], True)
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.lr * _lr_factor(self.step, cfg)
        loss, parts = bc_loss(self.model, images, bags, commands, cfg.terminate_weight)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.step += 1
        return parts

    def train(self) -> CNNPolicy:
        cfg = self.cfg
        wall_start, last = time.monotonic(), time.process_time()
        self.model.train()
        bar = tqdm(total=cfg.steps, initial=self.step, desc="cnn bc", disable=not self.progress)
        running = None
        while self.step < cfg.steps:
            parts = self.train_step()
            now = time.process_time()
            self.cpu_seconds, last = self.cpu_seconds + now - last, now
            running = parts["loss"] if running is None else 0.98 * running + 0.02 * parts["loss"]
            bar.update(1)
            bar.set_postfix(loss=f"{running:.4f}")
            out_of_time = self.cpu_seconds > cfg.max_cpu_minutes * 60
            if self.step % cfg.save_every == 0 or self.step == cfg.steps or out_of_time:
                self.history.append({"step": self.step, "train_loss": running,
                                     "cpu_minutes": self.cpu_seconds / 60,
                                     "wall_minutes": (time.monotonic() - wall_start) / 60,
                                     **self.validation_loss()})
                bar.write(json.dumps(self.history[-1]))
                self.save()
                last = time.process_time()  # validation and saving are not training time
            if out_of_time:
                bar.write(f"stopped at step {self.step}: the {cfg.max_cpu_minutes} CPU-minute "
                          "budget is spent")
                break
        bar.close()
        return self.model

    # -- checkpointing -------------------------------------------------------------------
    def save(self) -> Path:
        out = Path(self.cfg.out)
        run = {**asdict(self.cfg), "model": None, "step": self.step,
               "frames": len(self.train_index), "val_frames": len(self.val_index),
               "cpu_minutes": self.cpu_seconds / 60,
               "history": self.history}
        self.model.save_pretrained(out, extra=run)
        torch.save({"step": self.step, "history": self.history, "cpu_seconds": self.cpu_seconds,
                    "optimizer": self.optimizer.state_dict(),
                    "generator": self.generator.get_state()}, out / STATE_FILE)
        return out

    def resume(self) -> bool:
        """Continue from ``cfg.out`` if it holds a run; returns whether it did."""
        out = Path(self.cfg.out)
        if not (out / STATE_FILE).is_file():
            return False
        trained = CNNPolicy.from_pretrained(out)
        if trained.config != self.model.config:
            raise ValueError(f"{out} holds a run with another model config; use another --out")
        self.model.load_state_dict(trained.state_dict())
        state = torch.load(out / STATE_FILE, weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.step, self.history = int(state["step"]), list(state["history"])
        self.cpu_seconds = float(state["cpu_seconds"])
        return True
