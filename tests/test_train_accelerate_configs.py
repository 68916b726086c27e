"""configs/accelerate/: every file parses with accelerate's own loader, and the trainer's backend
check accepts whole-weight backends (DDP, DeepSpeed ZeRO <= 2) and refuses weight sharding."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
import torch
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin
from accelerate.utils.launch import prepare_deepspeed_cmd_env
from torch import nn

from more_policy.rl import RLConfig
from more_policy.rl.objective import Objective
from more_policy.training.backends import (
    check_parallelism,
    configure_deepspeed,
    keep_freed_memory_in_heap,
)

CONFIGS = Path(__file__).parents[1] / "configs" / "accelerate"
EXPECTED = {"cpu_single.yaml": ("NO", 1, "no"), "cpu_ddp_2proc.yaml": ("MULTI_GPU", 2, "no"),
            "gpu_ddp_bf16.yaml": ("MULTI_GPU", 8, "bf16"),
            "gpu_deepspeed_zero2.yaml": ("DEEPSPEED", 8, "no")}


def deepspeed_plugin_as_launched(config_file: Path, monkeypatch) -> DeepSpeedPlugin:
    """The plugin a process started by `accelerate launch --config_file ...` builds: the launcher
    turns the file into ACCELERATE_* variables, the plugin reads them."""
    args = launch_command_parser().parse_args(["--config_file", str(config_file), "train.py"])
    args, defaults, _ = _validate_launch_command(args)
    args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
    _, env = prepare_deepspeed_cmd_env(args)
    for key, value in env.items():
        if key.startswith("ACCELERATE_"):
            monkeypatch.setenv(key, value)
    return DeepSpeedPlugin()


def test_config_folder_holds_the_documented_files():
    assert sorted(p.name for p in CONFIGS.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_parses_with_accelerate_and_passes_the_backend_check(name, monkeypatch):
    path = CONFIGS / name
    header = path.read_text().splitlines()
    assert header[0].startswith("# ") and any(line.startswith("# Checked:") for line in header)
    assert any("accelerate launch --config_file configs/accelerate/" + name in line
               for line in header)
    config = load_config_from_file(str(path))
    assert isinstance(config, ClusterConfig)
    kind, processes, precision = EXPECTED[name]
    assert (config.distributed_type.value, config.num_processes, config.mixed_precision) == \
        (kind, processes, precision)
    assert config.use_cpu == name.startswith("cpu")
    plugin = deepspeed_plugin_as_launched(path, monkeypatch) if kind == "DEEPSPEED" else None
    check_parallelism(config.distributed_type, plugin)


def test_deepspeed_zero2_config_gets_batch_and_clipping_filled_and_keeps_fp32_adapters(
        monkeypatch):
    path = CONFIGS / "gpu_deepspeed_zero2.yaml"
    plugin = deepspeed_plugin_as_launched(path, monkeypatch)
    assert plugin.zero_stage == 2 and plugin.deepspeed_config["zero_optimization"]["stage"] == 2
    assert plugin.deepspeed_config["zero_optimization"]["offload_param"]["device"] == "none"
    plugin.set_mixed_precision(load_config_from_file(str(path)).mixed_precision)
    configure_deepspeed(plugin, batch_size=16, grad_accum=1, grad_clip=0.5)
    ds = plugin.deepspeed_config
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"],
            ds["gradient_clipping"]) == (16, 1, 0.5)
    assert not ds["bf16"]["enabled"] and not ds["fp16"]["enabled"]  # no bf16 EMA target
    with pytest.raises(ValueError, match="grad_accum > 1"):
        configure_deepspeed(plugin, batch_size=16, grad_accum=2, grad_clip=0.5)
    with pytest.raises(ValueError, match="train_micro_batch_size_per_gpu=16 .* needs 8"):
        configure_deepspeed(plugin, batch_size=8, grad_accum=1, grad_clip=0.5)


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_deepspeed_stages_up_to_2_are_accepted_and_3_refused(stage):
    plugin = DeepSpeedPlugin(zero_stage=stage)
    if stage <= 2:
        check_parallelism(DistributedType.DEEPSPEED, plugin)
        return
    with pytest.raises(ValueError, match="ZeRO stage 3 is not supported.*shards the weights.*"
                                         "Supported: .*ZeRO stage 0, 1 or 2"):
        check_parallelism(DistributedType.DEEPSPEED, plugin)


@pytest.mark.parametrize("kwargs", [{"sharding_strategy": "FULL_SHARD"},
                                    {"sharding_strategy": "SHARD_GRAD_OP"},
                                    {"sharding_strategy": "HYBRID_SHARD"},
                                    {"sharding_strategy": "NO_SHARD"},
                                    {"fsdp_version": 2, "reshard_after_forward": False}])
def test_every_fsdp_strategy_is_refused_with_the_reason(kwargs):
    plugin = FullyShardedDataParallelPlugin(**kwargs)
    expected = kwargs.get("sharding_strategy", "reshard_after_forward")
    with pytest.raises(ValueError, match=f"FSDP \\(version {plugin.fsdp_version}, {expected}\\) "
                                         "is not supported: .*in-place EMA.*Supported: "):
        check_parallelism(DistributedType.FSDP, None, plugin)


def test_plain_backends_pass_and_unknown_ones_are_refused():
    for kind in (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU):
        check_parallelism(kind)
    with pytest.raises(ValueError, match="backend XLA is not supported"):
        check_parallelism(DistributedType.XLA)


def test_ema_target_of_bf16_weights_is_kept_in_float32_so_updates_register():
    gap = torch.ones(8) * 1.1
    bf16 = torch.ones(8, dtype=torch.bfloat16)
    bf16.lerp_(gap.bfloat16(), 1 - RLConfig().tau)  # why: one EMA step rounds away in bf16
    assert bool((bf16 == 1).all())
    model = nn.Linear(4, 4).to(torch.bfloat16)  # weights as DeepSpeed bf16 mode holds them
    objective = Objective(RLConfig(), model)
    assert {t.dtype for t in objective.target.params.values()} == {torch.float32}
    before = {n: t.clone() for n, t in objective.target.params.items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    objective.target.update(model)
    moved = objective.target.params["weight"] - before["weight"]
    assert torch.allclose(moved, torch.full_like(moved, 1 - RLConfig().tau), rtol=0.05)
    with objective.target.applied(model):
        assert model.weight.dtype == torch.bfloat16  # swapped in at the weights' dtype


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc malloc setting")
def test_glibc_accepts_the_heap_settings():
    # mallopt refuses values out of range (an mmap threshold above its 32 MiB ceiling, say).
    assert keep_freed_memory_in_heap()
    x = torch.ones(4 << 20)  # 16 MiB blocks still allocate, fill and free
    assert float(x.sum()) == 4 << 20
