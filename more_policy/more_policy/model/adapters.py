"""Turn a frozen backbone into MoRE: MixLoRA FFNs, attention LoRA (peft), action-token rows.

Only the modules added here train: expert LoRA pairs, routers, the attention LoRA and the 256
new action-token rows of the input embedding and the output head (kept as separate small
parameters so the frozen vocabulary is never copied, resized or saved).
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from peft import LoraConfig, inject_adapter_in_model
from torch import nn

from more_policy.actions import NUM_DIMS
from more_policy.model.backbones import TORCH_DTYPES, BackboneAdapter
from more_policy.model.config import MoREConfig
from more_policy.model.lora_linear import MergingLoraLinear
from more_policy.model.mixlora import MixLoRAFFN


class ActionTokenEmbedding(nn.Module):
    """Frozen input embedding for ids < offset, trainable rows for the action tokens after it."""

    def __init__(self, base: nn.Embedding, num_bins: int, dtype: torch.dtype):
        super().__init__()
        self.base = base
        self.token_offset = base.num_embeddings
        weight = base.weight  # (V, H)
        rows = torch.empty(num_bins, weight.shape[1], dtype=dtype, device=weight.device)
        if weight.device.type != "meta":  # start near the mean word, as for new vocabularies
            std = weight.float().std().item()
            rows.copy_(weight.float().mean(0) + torch.randn_like(rows) * 0.1 * std)
        self.action_rows = nn.Parameter(rows)  # (num_bins, H)

    @property
    def weight(self) -> torch.Tensor:  # for code that inspects get_input_embeddings().weight
        return self.base.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # input_ids (B, L) -> (B, L, H)
        is_action = input_ids >= self.token_offset
        out = self.base(input_ids.clamp(max=self.token_offset - 1))
        rows = self.action_rows[(input_ids - self.token_offset).clamp(min=0)].to(out.dtype)
        return torch.where(is_action.unsqueeze(-1), rows, out)


class ActionTokenHead(nn.Module):
    """The frozen LM head extended with trainable logits rows for the action tokens, plus a
    per-dimension bias on them that the policy adds (the head does not know the dimension)."""

    def __init__(self, base: nn.Module, rows: torch.Tensor):
        super().__init__()
        self.base = base
        self.action_rows = nn.Parameter(rows.clone())  # (num_bins, H)
        self.dim_bias = nn.Parameter(torch.zeros(NUM_DIMS, rows.shape[0], dtype=rows.dtype,
                                                 device=rows.device))  # (12, num_bins)
        # Set (by MoREPolicy.act) where only the action columns are read: the frozen
        # vocabulary's logits (262 k columns for Fuyu-8B) are then not computed.
        self.action_only = False

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # (B, L, H) -> (B, L, V + num_bins), or (B, L, num_bins) with action_only
        action = F.linear(hidden_states.to(self.action_rows.dtype), self.action_rows)
        if self.action_only:
            return action
        logits = self.base(hidden_states)
        return torch.cat([logits, action.to(logits.dtype)], dim=-1)


def inject_more_adapters(model: nn.Module, adapter: BackboneAdapter, cfg: MoREConfig,
                         num_bins: int, seed: int) -> list[MixLoRAFFN]:
    """Freeze ``model`` and add the MoRE adapters in place; returns the MixLoRA layers."""
    dtype = TORCH_DTYPES[cfg.adapter_dtype]
    spec = adapter.ffn
    moe_layers: list[MixLoRAFFN] = []
    device = next(model.parameters()).device
    trainable: list[nn.Parameter] = []
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed + 1)  # adapters: independent of the backbone's random stream
        for layer in adapter.decoder_layers(model):
            moe = MixLoRAFFN(getattr(layer, spec.mlp_attr), up=spec.up, down=spec.down,
                             act=spec.act, gate=spec.gate, num_experts=cfg.num_experts,
                             top_k=cfg.top_k, rank=cfg.lora_rank, alpha=cfg.lora_alpha,
                             dropout=cfg.lora_dropout, router_init_std=cfg.router_init_std,
                             dtype=dtype)
            trainable += [p for n, p in moe.named_parameters() if not n.startswith("base.")]
            setattr(layer, spec.mlp_attr, moe)
            moe_layers.append(moe)
        if cfg.attn_lora_rank > 0:
            lora = LoraConfig(r=cfg.attn_lora_rank, lora_alpha=cfg.attn_lora_alpha,
                              lora_dropout=cfg.lora_dropout,
                              target_modules=adapter.attention_targets, bias="none")
            targets = [m for n, m in model.named_modules()
                       if re.fullmatch(adapter.attention_targets, n)]
            # Plain float linears only: a quantized one (a subclass) keeps peft's bnb layer.
            if targets and all(type(m) is nn.Linear for m in targets):
                lora._register_custom_module({nn.Linear: MergingLoraLinear})
            inject_adapter_in_model(lora, model)
            trainable += [p for n, p in model.named_parameters() if ".lora_" in n]
        embed = ActionTokenEmbedding(model.get_input_embeddings(), num_bins, dtype)
        model.set_input_embeddings(embed)
        head = ActionTokenHead(model.get_output_embeddings(), embed.action_rows.detach())
        model.set_output_embeddings(head)
        if cfg.train_action_embeddings:
            trainable += [embed.action_rows, head.action_rows]
        if cfg.action_dim_bias:
            trainable.append(head.dim_bias)
    model.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)
    return moe_layers


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every weight MoRE added (trainable or not): what a checkpoint stores."""
    return {n: p for n, p in model.named_parameters() if _is_added(n)}


def _is_added(name: str) -> bool:
    leaf = name.rsplit(".", 2)
    return (".lora_" in name or name.endswith(("action_rows", "dim_bias"))
            or leaf[-1] in {"up_A", "up_B", "down_A", "down_B", "gate_A", "gate_B"}
            or leaf[-2] == "router")
