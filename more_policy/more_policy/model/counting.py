"""Parameter counts of a MoRE configuration, built on the meta device (no memory, no weights)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch

from more_policy.model.adapters import inject_more_adapters
from more_policy.model.backbone_registry import get_backbone
from more_policy.model.config import MoREConfig

PAPER_TOTAL = 9.82e9  # MoRE's reported total (Fuyu-8B + experts), arXiv 2503.08007


@dataclass
class ParameterCounts:
    total: int  # backbone + everything MoRE adds
    backbone: int  # frozen
    trainable: int  # experts, routers, attention LoRA, action-token rows
    experts: int  # expert LoRA pairs (all N experts)
    routers: int
    attention_lora: int
    action_rows: int  # action-token embedding + head rows and the per-dimension bias
    active_per_token: int  # what one token touches: backbone + K of N experts + the rest

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def count_parameters(cfg: MoREConfig, num_bins: int = 256) -> ParameterCounts:
    """Counts for ``cfg`` (a random-config name or checkpoint path; only its config is read)."""
    adapter = get_backbone(cfg.backbone_kind)
    if cfg.is_random_backbone:
        config = adapter.random_config(cfg.backbone)
    else:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(cfg.backbone, local_files_only=True)
    with torch.device("meta"):
        model = adapter.model_class()(config)
    backbone = sum(p.numel() for p in model.parameters())
    moe_layers = inject_more_adapters(model, adapter, replace(cfg, dtype="float32"), num_bins,
                                      seed=0)
    experts = routers = 0
    for layer in moe_layers:
        routers += layer.router.weight.numel()
        experts += sum(p.numel() for n, p in layer.named_parameters()
                       if n.endswith(("_A", "_B")) and "." not in n)
    named = dict(model.named_parameters())
    attention_lora = sum(p.numel() for n, p in named.items() if ".lora_" in n)
    action_rows = sum(p.numel() for n, p in named.items()
                      if n.endswith(("action_rows", "dim_bias")))
    total = sum(p.numel() for p in named.values())
    trainable = sum(p.numel() for p in named.values() if p.requires_grad)
    idle_experts = experts * (cfg.num_experts - cfg.top_k) // cfg.num_experts
    return ParameterCounts(total=total, backbone=backbone, trainable=trainable, experts=experts,
                           routers=routers, attention_lora=attention_lora,
                           action_rows=action_rows, active_per_token=total - idle_experts)


