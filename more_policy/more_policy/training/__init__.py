"""Train MoRE with offline RL (or the IL baseline) on an episode dataset, with accelerate.

    more train --config run.yaml --data DIR --out DIR                   # one process
    accelerate launch --config_file configs/accelerate/cpu_ddp_2proc.yaml \\
        -m more_policy.train --data DIR --out DIR                       # 2 CPU procs, gloo
    accelerate launch --config_file configs/accelerate/gpu_ddp_bf16.yaml --num_processes 8 \\
        -m more_policy.train --config run.yaml --data DIR --out DIR     # 8 GPUs, DDP bf16

Only the LoRA experts, routers and action rows train (~0.4 B of 9.8 B parameters), so DDP fits:
every GPU holds the frozen bf16 backbone (17.5 GiB) plus the adapters' AdamW state (~5 GiB).
DeepSpeed ZeRO stages 0-2 (configs/accelerate/gpu_deepspeed_zero2.yaml) are accepted: they
shard optimizer state and gradients but keep whole weights on every GPU. ZeRO-3 and FSDP are
refused (backends.py says why): the EMA target network swaps whole trainable tensors in place
and checkpoints hold them whole.

    config.py         TrainConfig (typed sections, validated on construction)
    model.py          the MoRE policy as the objective's Q-model; batches
    loop.py           prepare / train_step / train: the loop, top to bottom
    checkpointing.py  atomic checkpoints with everything an exact resume needs
    metrics.py        metrics.csv / TensorBoard
    backends.py       which accelerate backends are accepted, the Accelerator
    cli.py            `more train` and `python -m more_policy.train`
"""

from more_policy.training.config import TrainConfig
from more_policy.training.loop import lr_at, time_train_steps, train

__all__ = ["TrainConfig", "lr_at", "time_train_steps", "train"]
