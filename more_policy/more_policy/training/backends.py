"""Which accelerate backends the trainer accepts, and the DeepSpeed values it must fill in.

The EMA target network (rl/objective.py) swaps whole trainable tensors into the model in place
and checkpoints copy them whole, so every rank must hold whole weights between steps:

    one process, DDP (CPU gloo or GPU NCCL)    whole weights everywhere             accepted
    DeepSpeed ZeRO 0 / 1 / 2                   shards optimizer state and grads     accepted
    DeepSpeed ZeRO 3                           shards the weights                   refused
    FSDP1 FULL_SHARD / SHARD_GRAD_OP / HYBRID  weights sharded outside fwd/bwd      refused
    FSDP1 NO_SHARD                             plain DDP under another name         refused
    FSDP2 (any reshard_after_forward)          weights are always DTensor shards    refused

(SHARD_GRAD_OP only skips the re-shard between forward and backward; after backward each rank
again holds a flat slice, e.g. 45 of 90 elements of a two-layer MLP on rank 0 and 0 elements of
the second layer: measured with torch 2.13 FSDP1 on 2 gloo processes.)
"""

from __future__ import annotations

import ctypes
import os
import platform
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from accelerate import Accelerator

SUPPORTED_BACKENDS = ("one process, DDP (CPU or GPU) and DeepSpeed ZeRO stage 0, 1 or 2 "
                      "(see configs/accelerate/)")


def check_parallelism(distributed_type, deepspeed_plugin=None, fsdp_plugin=None) -> None:
    """Raise ValueError for a backend that shards the weights. Arguments are accelerate's
    DistributedType (or its value) and the plugins, as found on AcceleratorState."""
    kind = getattr(distributed_type, "value", distributed_type)
    if kind == "DEEPSPEED":
        stage = int(deepspeed_plugin.zero_stage) if deepspeed_plugin is not None else None
        if stage is None or stage > 2:
            raise ValueError(f"DeepSpeed ZeRO stage {stage} is not supported: stage 3 shards the "
                             "weights, which the in-place EMA target network and whole-weight "
                             f"checkpoints cannot use. Supported: {SUPPORTED_BACKENDS}")
    elif kind == "FSDP":
        strategy = getattr(getattr(fsdp_plugin, "sharding_strategy", None), "name", None)
        version = getattr(fsdp_plugin, "fsdp_version", None)
        raise ValueError(f"FSDP (version {version}, {strategy or 'reshard_after_forward'}) is not "
                         "supported: FULL_SHARD, SHARD_GRAD_OP, HYBRID_SHARD and FSDP2 keep "
                         "only a shard of each weight between steps, which the in-place EMA "
                         "target network and whole-weight checkpoints cannot use; NO_SHARD is "
                         "plain DDP (use configs/accelerate/gpu_ddp_bf16.yaml). "
                         f"Supported: {SUPPORTED_BACKENDS}")
    elif kind not in ("NO", "MULTI_CPU", "MULTI_GPU"):
        raise ValueError(f"accelerate backend {kind} is not supported. "
                         f"Supported: {SUPPORTED_BACKENDS}")


def configure_deepspeed(deepspeed_plugin, batch_size: int, grad_accum: int,
                        grad_clip: float) -> None:
    """Fill the DeepSpeed config values accelerate cannot infer (the trainer passes it no
    dataloader); a conflicting explicit value is an error rather than silently overridden."""
    if grad_accum != 1:
        raise ValueError("grad_accum > 1 is not supported with DeepSpeed (its engine steps "
                         "inside backward); raise batch_size instead: ZeRO frees the memory")
    config = deepspeed_plugin.deepspeed_config
    for key, value in (("train_micro_batch_size_per_gpu", batch_size),
                       ("gradient_accumulation_steps", 1), ("gradient_clipping", grad_clip)):
        current = config.get(key, "auto")
        if current == "auto":
            config[key] = value
        elif current != value:
            raise ValueError(f"DeepSpeed config sets {key}={current} but the training config "
                             f"needs {value}; set it to 'auto' in the DeepSpeed config")


def make_accelerator(mixed_precision: str, batch_size: int, grad_accum: int,
                     grad_clip: float) -> Accelerator:
    """The Accelerator of this launch (one process, torchrun or `accelerate launch`), checked
    against the backends above; ``mixed_precision`` 'auto' takes the launch config's value,
    else bf16 where the GPU supports it."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    precision = mixed_precision
    if precision == "auto":
        precision = os.environ.get("ACCELERATE_MIXED_PRECISION") or (
            "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no")
    # cpu=True lets accelerate see a torchrun launch without GPUs as multi-process (gloo).
    accelerator = Accelerator(mixed_precision=precision, cpu=not torch.cuda.is_available(),
                              kwargs_handlers=[
        DistributedDataParallelKwargs(find_unused_parameters=True)])  # unrouted experts idle
    check_parallelism(accelerator.distributed_type, accelerator.state.deepspeed_plugin,
                      getattr(accelerator.state, "fsdp_plugin", None))
    if is_deepspeed(accelerator):
        configure_deepspeed(accelerator.state.deepspeed_plugin, batch_size, grad_accum,
                            grad_clip)
    return accelerator


def is_deepspeed(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type.value == "DEEPSPEED"


def keep_freed_memory_in_heap() -> bool:
    """Have glibc keep freed activation-sized blocks for reuse instead of returning them to the
    system: with its defaults, blocks of a few MiB are mmap'ed and unmapped again, so every
    step page-faults its activations in afresh (measured 3-10 % of a tiny-preset RL step on
    the CPU). Blocks up to 32 MiB (glibc's ceiling) come from the heap, which is never trimmed
    below 1 GiB of free memory. Returns whether it applied (glibc only)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    libc = ctypes.CDLL("libc.so.6")
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(
        libc.mallopt(m_trim_threshold, 1 << 30))
