"""MoREConfig: everything needed to rebuild a MoRE policy (backbone reference + adapters)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

# QUART's template, which Fuyu-8B checkpoints were fine-tuned with; backbones we train from
# scratch get the bare instruction (the ~10 constant tokens cost 15 % of a small-preset step and
# tell a model that only ever sees robot instructions nothing).
QUART_PROMPT_TEMPLATE = "What action should the legged robot take to {instruction}?"
SHORT_PROMPT_TEMPLATE = "{instruction}"
BACKBONE_KINDS = ("fuyu", "idefics3")
RANDOM_BACKBONES = ("tiny", "small", "full")  # 'full' = the real architecture, random weights
DTYPES = ("float32", "bfloat16", "float16")


class MoREConfigError(ValueError):
    """A configuration value the model cannot be built with."""


@dataclass
class MoREConfig:
    """Backbone reference and mixture-of-LoRA-experts hyper-parameters.

    ``backbone`` is either a random-config name ('tiny' for tests, 'small' (~60 M) for
    benchmarks and the demo, 'full' for the real architecture with random weights) or a local
    Hugging Face checkpoint directory.

    Balance loss convention (Switch Transformer): per layer ``N * sum_k f_k * P_k`` where f_k is
    the fraction of tokens whose top-1 expert is k and P_k the mean router probability of k,
    averaged over layers. A perfectly uniform router scores 1.0; the paper's ``1/N`` form is
    this value divided by N**2. The trainer multiplies it by beta (paper: 0.002).
    """

    backbone_kind: str = "fuyu"
    backbone: str = "tiny"
    dtype: str = "float32"  # frozen backbone weights
    adapter_dtype: str = "float32"  # LoRA, experts, routers, action-token rows
    num_experts: int = 8
    top_k: int = 2
    lora_rank: int = 32
    lora_alpha: float = 64.0
    lora_dropout: float = 0.05
    attn_lora_rank: int = 32
    attn_lora_alpha: float = 64.0
    train_action_embeddings: bool = True
    # A trainable (12, num_bins) logit bias per action dimension. The 256 action tokens are
    # shared by all 12 dimensions; without it a small model leaks tokens that are common in one
    # dimension into the others (measured: the binary terminate dimension chose bin 192, a
    # frequent frequency bin, at the first step, so every episode ended at once).
    action_dim_bias: bool = True
    router_init_std: float = 0.02
    prompt_template: str | None = None  # None: short for 'tiny'/'small', else QUART's
    image_size: int | None = None  # None: the backbone's default (240 for Fuyu-8B, QUART)

    def __post_init__(self) -> None:
        if self.backbone_kind not in BACKBONE_KINDS:
            raise MoREConfigError(f"backbone_kind must be one of {BACKBONE_KINDS}, got "
                                  f"{self.backbone_kind!r}")
        for name in ("dtype", "adapter_dtype"):
            if getattr(self, name) not in DTYPES:
                raise MoREConfigError(f"{name} must be one of {DTYPES}, got "
                                      f"{getattr(self, name)!r}")
        if self.num_experts < 1 or not 1 <= self.top_k <= self.num_experts:
            raise MoREConfigError(f"need 1 <= top_k <= num_experts, got top_k={self.top_k}, "
                                  f"num_experts={self.num_experts}")
        if self.lora_rank < 1 or self.attn_lora_rank < 0:
            raise MoREConfigError("lora_rank must be >= 1 and attn_lora_rank >= 0")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise MoREConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.prompt_template is None:
            small = self.backbone in RANDOM_BACKBONES and self.backbone != "full"
            self.prompt_template = SHORT_PROMPT_TEMPLATE if small else QUART_PROMPT_TEMPLATE
        if "{instruction}" not in self.prompt_template:
            raise MoREConfigError("prompt_template must contain '{instruction}'")

    @property
    def is_random_backbone(self) -> bool:
        return self.backbone in RANDOM_BACKBONES

    @property
    def lora_scaling(self) -> float:
        return self.lora_alpha / self.lora_rank

    def format_prompt(self, instruction: str) -> str:
        return self.prompt_template.format(instruction=instruction.strip().rstrip("?."))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MoREConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise MoREConfigError(f"unknown MoREConfig fields {sorted(unknown)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> MoREConfig:
        path = Path(text_or_path)
        text = path.read_text() if path.suffix == ".json" and path.exists() else str(text_or_path)
        return cls.from_dict(json.loads(text))
