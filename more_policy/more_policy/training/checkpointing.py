"""Trainer checkpoints: everything an exact resume needs, written atomically.

    checkpoints/step_0000500/
        trainer_state.pt   trainable weights, optimizer, schedule, target network, world size
        rank_<i>.pt        each rank's data-stream position and RNG states
        deepspeed/         (DeepSpeed only) each rank's shard of the optimizer state
        policy/            the MoRE checkpoint (save_pretrained) at this step
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from torch import nn

from more_policy.rl.objective import Objective

CHECKPOINTS = "checkpoints"
TRAINER_STATE_FILE = "trainer_state.pt"


def find_checkpoint(out_dir: Path, resume: str) -> Path | None:
    """The checkpoint ``resume`` names: 'never', 'auto' (the latest in out_dir) or a path."""
    if resume == "never":
        return None
    if resume != "auto":
        path = Path(resume)
        if not (path / TRAINER_STATE_FILE).exists():
            raise FileNotFoundError(f"no checkpoint at {path} ({TRAINER_STATE_FILE} missing)")
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
                    "world_size": accelerator.num_processes}, tmp / TRAINER_STATE_FILE)
        if hasattr(unwrapped, "policy"):
            unwrapped.policy.save_pretrained(tmp / "policy")
        os.replace(tmp, final)
        for old in sorted((out_dir / CHECKPOINTS).glob("step_*"))[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(path: Path, accelerator, unwrapped: nn.Module, optimizer, scheduler,
                    objective: Objective, stream, deepspeed_engine=None) -> int:
    """Restore everything save_checkpoint wrote; returns the step to continue from."""
    state = torch.load(path / TRAINER_STATE_FILE, map_location="cpu", weights_only=False)
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
