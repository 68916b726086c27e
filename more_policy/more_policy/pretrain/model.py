"""The pretrained backbone: a small FuyuForCausalLM, its tokenizer, batches, and the HF save.

Sequences use MoRE's layout exactly (``[image rows][BOS] question [BOA] answer [EOS]``, left-
padded prompts so every answer starts at one column), so the position the action head reads in
MoRE is the one that learned to hold the answer here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import FuyuConfig, FuyuForCausalLM, PreTrainedTokenizerFast

from more_policy.model.backbones import begin_answer_id, resize_images, seeded_build
from more_policy.model.fuyu import FuyuBackbone
from more_policy.model.processor import make_fuyu_processor
from more_policy.model.tokenizer import build_random_tokenizer
from more_policy.pretrain.data import instruction_corpus
from more_policy.pretrain.questions import corpus

IGNORE = -100


@dataclass
class BackboneShape:
    """Architecture of the pretrained Fuyu (Persimmon decoder settings as the random ones)."""

    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 8
    intermediate_size: int = 1024
    vocab_size: int = 1024
    patch_size: int = 12  # 96 px camera frames -> 8 x 8 patches
    image_size: int = 96
    coordinate_channels: bool = True  # patches carry pixel column/row (model/fuyu.py says why)

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} must be a multiple of patch_size "
                             f"{self.patch_size}")
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be a multiple of num_heads")

    def fuyu_config(self) -> FuyuConfig:
        base = FuyuBackbone().random_config("tiny")
        text = base.text_config.to_dict()
        text.update(hidden_size=self.hidden_size, num_hidden_layers=self.num_layers,
                    num_attention_heads=self.num_heads, intermediate_size=self.intermediate_size,
                    vocab_size=self.vocab_size, max_position_embeddings=512)
        return FuyuConfig(text_config=text, patch_size=self.patch_size,
                          image_size=self.image_size, image_token_id=base.image_token_id,
                          pad_token_id=base.pad_token_id,
                          num_channels=3 + 2 * self.coordinate_channels)


def build_backbone(shape: BackboneShape, seed: int) -> tuple[FuyuForCausalLM,
                                                             PreTrainedTokenizerFast]:
    """Random weights from ``seed`` and a tokenizer trained on the question vocabulary."""
    model = seeded_build(FuyuForCausalLM, shape.fuyu_config(), seed, torch.float32)
    tokenizer = build_random_tokenizer(shape.vocab_size, num_bins=0,
                                       corpus=tuple(corpus() + instruction_corpus()))
    return model.train(), tokenizer


class QAEncoder:
    """(images, questions, answers) -> Fuyu model inputs plus answer labels."""

    def __init__(self, model: FuyuForCausalLM, tokenizer, image_size: int):
        self.adapter = FuyuBackbone()
        self.config = model.config
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.prefix = self.adapter.image_prefix_ids(tokenizer, image_size, model.config)
        self.begin_answer = begin_answer_id(tokenizer)
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id or 0

    def __call__(self, images, questions: list[str], answers: list[str]) -> dict:
        tok = self.tokenizer
        prompts = [self.prefix + ids + [self.begin_answer]
                   for ids in tok(questions, add_special_tokens=False)["input_ids"]]
        replies = [ids + [self.eos] for ids in tok(answers, add_special_tokens=False)["input_ids"]]
        p, a = max(map(len, prompts)), max(map(len, replies))
        ids = torch.full((len(prompts), p + a), self.pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full((len(prompts), a), IGNORE, dtype=torch.long)
        for i, (prompt, reply) in enumerate(zip(prompts, replies, strict=True)):
            ids[i, p - len(prompt):p] = torch.tensor(prompt)
            mask[i, p - len(prompt):p] = 1
            ids[i, p:p + len(reply)] = torch.tensor(reply)
            mask[i, p:p + len(reply)] = 1
            labels[i, :len(reply)] = torch.tensor(reply)
        pixels = resize_images(list(images), self.image_size)
        return {"input_ids": ids, "attention_mask": mask,
                "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
                "pixel_values": self.adapter.pixel_values(pixels, self.config), "labels": labels}


def answer_logits(model: FuyuForCausalLM, batch: dict) -> torch.Tensor:
    """(B, A, V) logits predicting each answer token (the first one at the BOA position)."""
    a = batch["labels"].shape[1]
    out = model(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"],
                attention_mask=batch["attention_mask"], position_ids=batch["position_ids"],
                logits_to_keep=a + 1)
    return out.logits[:, :a].float()


def answer_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(),
                                             ignore_index=IGNORE)


def exact_match(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B,) bool: every answer token (and EOS) is the argmax under teacher forcing, which is
    exactly when greedy decoding from BOA produces the answer and stops."""
    ok = (logits.argmax(-1) == labels) | (labels == IGNORE)
    return ok.all(dim=1)


def save_backbone(model: FuyuForCausalLM, tokenizer, directory: Path,
                  dtype: torch.dtype = torch.bfloat16) -> None:
    """A standard HF checkpoint directory: config, safetensors, tokenizer and processor."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(dtype) for k, v in model.state_dict().items()}
    model.config.dtype = dtype
    model.save_pretrained(directory, state_dict=state, safe_serialization=True)
    processor = make_fuyu_processor(tokenizer, model.config.image_size, model.config.patch_size)
    processor.save_pretrained(directory)
