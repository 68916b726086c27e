"""Train MoRE with offline RL (or the IL baseline) on an episode dataset, with accelerate.

    more train --config run.yaml --data DIR --out DIR                   # one process
    accelerate launch --config_file configs/accelerate/cpu_ddp_2proc.yaml \
        -m more_policy.train --data DIR --out DIR                       # 2 CPU procs, gloo
    accelerate launch --config_file configs/accelerate/gpu_ddp_bf16.yaml --num_processes 8 \
        -m more_policy.train --config run.yaml --data DIR --out DIR        # 8 GPUs, DDP bf16

Only the LoRA experts, routers and action rows train (~0.4 B of 9.8 B parameters), so DDP fits:
every GPU holds the frozen bf16 backbone (17.5 GiB) plus the adapters' AdamW state (~5 GiB).
DeepSpeed ZeRO stages 0-2 (configs/accelerate/gpu_deepspeed_zero2.yaml) are accepted:
they shard optimizer state and gradients but keep whole weights on every GPU. ZeRO-3 and FSDP
are refused (train_backends.py says why): the EMA target network swaps whole trainable
tensors in place and checkpoints hold them whole.

One readable loop (nanoGPT style): sample a batch from this rank's stream, compute the
objective (rl/objective.py), step AdamW under a warmup + cosine schedule, update the EMA target,
log, checkpoint atomically, evaluate. A checkpoint holds everything an exact resume needs: the
trainable weights, optimizer, schedule, target network, every rank's data position and RNG.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from more_policy.data import BatchPrefetcher, EpisodeDataset
from more_policy.rl.objective import Objective, QOutput, RLConfig
from more_policy.train_backends import (
    check_parallelism,
    configure_deepspeed,
)

if TYPE_CHECKING:
    from accelerate import Accelerator

CHECKPOINTS = "checkpoints"
TRAIN_CONFIG_FILE = "train_config.json"


@dataclass
class TrainConfig:
    data: str = ""
    out_dir: str = "runs/more"
    model: dict[str, Any] = field(default_factory=lambda: {"backbone": "tiny"})  # MoREConfig
    rl: RLConfig = field(default_factory=RLConfig)
    batch_size: int = 16              # per process (paper: 16 per GPU)
    grad_accum: int = 1
    max_steps: int = 1000
    max_seconds: float = 0.0          # 0: none; else stop (checkpoint + final/) after this long
    lr: float = 2e-5                  # QUART scripts: 2e-5, cosine, 3 % warmup
    min_lr_ratio: float = 0.1
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    mixed_precision: str = "auto"     # auto (bf16 on a bf16-capable GPU) | no | bf16 | fp16
    gradient_checkpointing: bool = False
    seed: int = 0
    shuffle_block: int = 8
    decode_threads: int = 4           # JPEG decoding threads per process
    log_every: int = 10
    log_with: str = "csv"             # csv | tensorboard | csv,tensorboard
    save_every: int = 500
    keep_checkpoints: int = 2
    eval_every: int = 0               # 0: never; calls the evaluation hook
    eval_data: str = ""               # optional held-out dataset for the built-in evaluation
    eval_batches: int = 4
    resume: str = "auto"              # auto (latest checkpoint in out_dir) | never | a path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training options {unknown}; known: {sorted(known)}")
        data = dict(data)
        if isinstance(data.get("rl"), dict):
            data["rl"] = RLConfig(**data["rl"])
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        text = Path(path).read_text()
        if str(path).endswith((".yaml", ".yml")):
            import yaml

            return cls.from_dict(yaml.safe_load(text) or {})
        return cls.from_dict(json.loads(text))


class PolicyQModel(nn.Module):
    """Adapts MoREPolicy to the Q-model interface of rl/objective.py."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy

    @property
    def action_token_slice(self) -> slice:
        return slice(self.policy.token_offset, self.policy.token_offset + self.policy.num_bins)

    def make_state(self, images, instructions) -> dict[str, list]:
        return {"images": list(images), "instructions": list(instructions)}

    def forward(self, state: dict[str, list], action_bins: torch.Tensor | None) -> QOutput:
        out = self.policy(self.policy.prepare(state["images"], state["instructions"],
                                              action_bins))
        return QOutput(out.action_logits, out.vocab_logits, out.balance_loss,
                       expert_load=out.router_stats["top1_fraction"])


def build_policy_model(cfg: TrainConfig, action_space) -> PolicyQModel:
    from more_policy.model import MoREConfig, MoREPolicy

    policy = MoREPolicy.from_config(MoREConfig(**cfg.model), action_space, seed=cfg.seed)
    if cfg.gradient_checkpointing:
        policy.model.gradient_checkpointing_enable()
    return PolicyQModel(policy)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup then cosine decay to min_lr_ratio (multiplier on cfg.lr)."""
    warmup = max(1, int(cfg.warmup_ratio * cfg.max_steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, cfg.max_steps - warmup))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class MetricsLogger:
    """Scalars to metrics.csv (step, name, value) and/or TensorBoard, main process only."""

    def __init__(self, out_dir: Path, log_with: str, enabled: bool) -> None:
        kinds = {k.strip() for k in log_with.split(",") if k.strip()}
        if kinds - {"csv", "tensorboard"}:
            raise ValueError(f"log_with must name csv and/or tensorboard, got {log_with!r}")
        self.csv = self.tb = None
        if not enabled:
            return
        if "csv" in kinds:
            self.csv = open(out_dir / "metrics.csv", "a", newline="")  # noqa: SIM115
            self.writer = csv.writer(self.csv)
        if "tensorboard" in kinds:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise RuntimeError("log_with=tensorboard needs `pip install tensorboard`") from e
            self.tb = SummaryWriter(str(out_dir / "tensorboard"))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            if self.csv:
                self.writer.writerow([step, name, f"{value:.6g}"])
            if self.tb:
                self.tb.add_scalar(name, value, step)
        if self.csv:
            self.csv.flush()

    def close(self) -> None:
        for sink in (self.csv, self.tb):
            if sink:
                sink.close()


def to_batch(samples: dict[str, Any], model: nn.Module, device) -> dict[str, Any]:
    """Collated transitions -> the objective's batch (model states + tensors on device)."""
    state = model.make_state(samples["images"], samples["instructions"])
    next_state = model.make_state(samples["next_images"], samples["instructions"])
    out = {k: v.to(device) if isinstance(v, torch.Tensor) else v
           for k, v in (("state", state), ("next_state", next_state))}
    for key in ("action_bins", "rewards", "dones", "mc_returns", "transition_ids"):
        out[key] = samples[key].to(device)
    return out


def find_checkpoint(out_dir: Path, resume: str) -> Path | None:
    if resume == "never":
        return None
    if resume != "auto":
        path = Path(resume)
        if not (path / "trainer_state.pt").exists():
            raise FileNotFoundError(f"no checkpoint at {path} (trainer_state.pt missing)")
        return path
    done = sorted((out_dir / CHECKPOINTS).glob("step_*"))
    return done[-1] if done else None


def save_checkpoint(accelerator, out_dir: Path, step: int, unwrapped: nn.Module, optimizer,
                    scheduler, objective: Objective, stream, keep: int,
                    deepspeed_engine=None) -> Path:
    """Every rank writes its data/RNG state into a temporary directory; the main process adds
    the shared state and renames it into place (atomic: a killed save leaves only .tmp).
    Under DeepSpeed every rank's engine writes its shard of the optimizer state instead."""
    final = out_dir / CHECKPOINTS / f"step_{step:07d}"
    tmp = out_dir / CHECKPOINTS / f".tmp_step_{step:07d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    rank = accelerator.process_index
    torch.save({"stream": stream.state_dict(), "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
               tmp / f"rank_{rank}.pt")
    if deepspeed_engine is not None:
        deepspeed_engine.save_checkpoint(str(tmp / "deepspeed"), tag="state", save_latest=False,
                                         exclude_frozen_parameters=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        trainable = {n: p.detach().cpu().clone() for n, p in unwrapped.named_parameters()
                     if p.requires_grad}
        torch.save({"step": step, "trainable": trainable,
                    "optimizer": None if deepspeed_engine else optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "objective": objective.state_dict(),
                    "world_size": accelerator.num_processes}, tmp / "trainer_state.pt")
        if hasattr(unwrapped, "policy"):
            unwrapped.policy.save_pretrained(tmp / "policy")
        os.replace(tmp, final)
        for old in sorted((out_dir / CHECKPOINTS).glob("step_*"))[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(path: Path, accelerator, unwrapped: nn.Module, optimizer, scheduler,
                    objective: Objective, stream, deepspeed_engine=None) -> int:
    state = torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=False)
    if state["world_size"] != accelerator.num_processes:
        raise ValueError(f"{path} was written by {state['world_size']} processes; exact resume "
                         f"needs the same number, got {accelerator.num_processes}")
    params = dict(unwrapped.named_parameters())
    with torch.no_grad():
        for name, value in state["trainable"].items():
            params[name].copy_(value)
    if deepspeed_engine is not None:  # restores the fp32 master weights of this rank's shard
        deepspeed_engine.load_checkpoint(str(path / "deepspeed"), tag="state",
                                         load_module_strict=False,
                                         load_lr_scheduler_states=False)
    else:
        optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    objective.load_state_dict(state["objective"])
    mine = torch.load(path / f"rank_{accelerator.process_index}.pt", weights_only=False)
    stream.load_state_dict(mine["stream"])
    torch.set_rng_state(mine["rng"])
    if mine["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(mine["cuda_rng"])
    return int(state["step"])


@torch.no_grad()
def evaluate(objective: Objective, unwrapped: nn.Module, stream, cfg: TrainConfig,
             device) -> dict[str, float]:
    """Mean objective metrics over a few batches of the held-out dataset."""
    unwrapped.eval()
    totals: dict[str, float] = {}
    for _ in range(cfg.eval_batches):
        _, metrics = objective(unwrapped, unwrapped,
                               to_batch(stream.next_batch(cfg.batch_size), unwrapped, device),
                               fresh_targets=True)
        for k, v in metrics.items():
            totals[f"eval/{k}"] = totals.get(f"eval/{k}", 0.0) + float(v) / cfg.eval_batches
    unwrapped.train()
    return totals


EvalHook = Callable[[int, nn.Module], dict[str, float] | None]


def out_of_time(cfg: TrainConfig, started: float, accelerator: Accelerator) -> bool:
    """Whether ``cfg.max_seconds`` of training have passed; every process agrees (a rank that
    stopped alone would hang the others in the next all-reduce)."""
    if cfg.max_seconds <= 0:
        return False
    late = torch.tensor(float(time.perf_counter() - started > cfg.max_seconds),
                        device=accelerator.device)
    return bool(accelerator.reduce(late, "max") > 0)


def train(cfg: TrainConfig, model: nn.Module | None = None,
          eval_hook: EvalHook | None = None) -> Path:
    """Run (or resume) training; returns the output directory. ``model`` overrides the MoRE
    policy built from cfg.model (any Q-model, see rl/objective.py)."""
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import set_seed
    from tqdm import tqdm

    if not cfg.data:
        raise ValueError("no training data: set data (more train --data DIR)")
    precision = cfg.mixed_precision
    if precision == "auto":  # the launch config's mixed_precision, else bf16 where supported
        precision = os.environ.get("ACCELERATE_MIXED_PRECISION") or (
            "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no")
    # cpu=True lets accelerate see a torchrun launch without GPUs as multi-process (gloo).
    accelerator = Accelerator(mixed_precision=precision, cpu=not torch.cuda.is_available(),
                              kwargs_handlers=[
        DistributedDataParallelKwargs(find_unused_parameters=True)])  # unrouted experts idle
    check_parallelism(accelerator.distributed_type, accelerator.state.deepspeed_plugin,
                      getattr(accelerator.state, "fsdp_plugin", None))
    deepspeed = accelerator.distributed_type.value == "DEEPSPEED"
    if deepspeed:
        configure_deepspeed(accelerator.state.deepspeed_plugin, cfg.batch_size,
                            cfg.grad_accum, cfg.grad_clip)
    out_dir = Path(cfg.out_dir)
    set_seed(cfg.seed)  # identical initial weights on every rank
    dataset = EpisodeDataset(cfg.data, gamma=cfg.rl.gamma, seed=cfg.seed,
                             rank=accelerator.process_index,
                             world_size=accelerator.num_processes,
                             shuffle_block=cfg.shuffle_block)
    stream = BatchPrefetcher(dataset.stream(decode_threads=cfg.decode_threads), cfg.batch_size)
    if model is None:
        model = build_policy_model(cfg, dataset.action_space)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(s, cfg))
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)
    objective = Objective(cfg.rl, unwrapped, getattr(unwrapped, "action_token_slice", None))
    engine = model if deepspeed else None
    eval_stream = EpisodeDataset(cfg.eval_data, gamma=cfg.rl.gamma, shuffle=False).stream() \
        if cfg.eval_data else None

    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / TRAIN_CONFIG_FILE).write_text(json.dumps(asdict(cfg), indent=2))
        cfg.rl.save(out_dir)
        dataset.action_space.save(out_dir)
    step = 0
    checkpoint = find_checkpoint(out_dir, cfg.resume)
    if checkpoint is not None:
        step = load_checkpoint(checkpoint, accelerator, unwrapped, optimizer, scheduler,
                               objective, stream, engine)
        accelerator.print(f"resumed from {checkpoint} at step {step}")
    logger = MetricsLogger(out_dir, cfg.log_with, accelerator.is_main_process)
    bar = tqdm(total=cfg.max_steps, initial=step, desc="train",
               disable=not accelerator.is_local_main_process)
    started = time.perf_counter()
    while step < cfg.max_steps:
        for micro in range(cfg.grad_accum):
            batch = to_batch(stream.next_batch(cfg.batch_size), unwrapped, accelerator.device)
            sync = nullcontext() if micro == cfg.grad_accum - 1 else accelerator.no_sync(model)
            with sync, accelerator.autocast():
                loss, metrics = objective(model, unwrapped, batch)
                accelerator.backward(loss / cfg.grad_accum)
        grad_norm = accelerator.clip_grad_norm_(params, cfg.grad_clip) if cfg.grad_clip > 0 \
            else None
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        objective.after_optimizer_step(unwrapped)
        step += 1
        bar.update(1)
        last = step == cfg.max_steps or out_of_time(cfg, started, accelerator)
        if step % cfg.log_every == 0 or last:
            names = sorted(metrics)
            values = accelerator.reduce(torch.stack([metrics[n].float().to(accelerator.device)
                                                     for n in names]), "mean")
            logged = {n: float(v) for n, v in zip(names, values)}
            logged["lr"] = scheduler.get_last_lr()[0]
            if grad_norm is not None:
                logged["grad_norm"] = float(grad_norm)
            logged["steps_per_s"] = step / max(time.perf_counter() - started, 1e-9)
            logger.log(step, logged)
            bar.set_postfix(loss=f"{logged['loss']:.4f}")
        if cfg.save_every and (step % cfg.save_every == 0 or last):
            save_checkpoint(accelerator, out_dir, step, unwrapped, optimizer, scheduler,
                            objective, stream, cfg.keep_checkpoints, engine)
        if cfg.eval_every and step % cfg.eval_every == 0:
            results = evaluate(objective, unwrapped, eval_stream, cfg, accelerator.device) \
                if eval_stream else {}
            if eval_hook is not None:
                results.update(eval_hook(step, unwrapped) or {})
            if results and accelerator.is_main_process:
                logger.log(step, results)
        if last and step < cfg.max_steps:
            accelerator.print(f"time budget of {cfg.max_seconds:g} s used up at step {step}")
            break
    bar.close()
    logger.close()
    stream.close()
    if accelerator.is_main_process and hasattr(unwrapped, "policy"):
        unwrapped.policy.save_pretrained(out_dir / "final")
    accelerator.wait_for_everyone()
    return out_dir


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    data = json.loads(json.dumps(asdict(TrainConfig.load(args.config)))) if args.config \
        else asdict(TrainConfig())
    for name in ("data", "out_dir", "max_steps", "batch_size", "lr", "save_every", "resume"):
        if getattr(args, name, None) is not None:
            data[name] = getattr(args, name)
    if getattr(args, "objective", None):
        data["rl"]["objective"] = args.objective
    for item in args.set:
        key, _, value = item.partition("=")
        if not value:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        target, *rest = key.split(".")
        if rest:
            data.setdefault(target, {})[rest[0]] = parsed
        else:
            data[target] = parsed
    return TrainConfig.from_dict(data)


def main(argv: list[str] | None = None) -> int:
    from more_policy.rl.cli import add_arguments

    parser = argparse.ArgumentParser(prog="more_policy.train", description=__doc__.split("\n")[0])
    add_arguments(parser)
    train(config_from_args(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
