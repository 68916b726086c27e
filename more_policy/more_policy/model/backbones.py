"""Frozen vision-language backbones behind one small adapter interface.

A backbone adapter knows how to build (random config) or load (local checkpoint) its Hugging
Face model, how images become pixel values and placeholder tokens, where the decoder layers'
FFN linears live (for MixLoRA) and which attention linears take the plain LoRA. Adding an
architecture is one subclass in its own file (fuyu.py, idefics3.py) plus one entry in
backbone_registry.py, which maps ``MoREConfig.backbone_kind`` to it.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from more_policy.model.tokenizer import BEGIN_ANSWER_TOKEN, build_random_tokenizer
from more_policy.vision import to_model_frame

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class BackboneError(ValueError):
    """A backbone path, kind or configuration that cannot be used."""


@dataclass(frozen=True)
class FFNSpec:
    """Names of the FFN linears inside a decoder layer's MLP module (``gate`` may be None)."""

    mlp_attr: str  # attribute of the decoder layer holding the MLP
    up: str
    down: str
    act: str  # attribute of the MLP module holding the activation
    gate: str | None = None  # gated MLPs: act(gate(x)) * up(x)


def resize_images(images: list[np.ndarray], size: int) -> np.ndarray:
    """List of HxWx3 uint8 camera or model frames -> (B, size, size, 3) uint8 model frames
    (:func:`more_policy.vision.to_model_frame`: crop to 4:3, squash, as QUART squashes)."""
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        img = np.asarray(img)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise BackboneError(f"image {i}: expected an HxWx3 uint8 array, got shape "
                                f"{img.shape} dtype {img.dtype}")
        out[i] = to_model_frame(img, size)
    return out


def seeded_build(model_cls: type[PreTrainedModel], config, seed: int, dtype: torch.dtype,
                  device: str = "cpu") -> PreTrainedModel:
    """Random weights that depend only on (config, seed, device): rebuilt identically later.

    Small configs are drawn on the CPU (so any device gets the same weights); the full-size
    one is drawn on its target device in its target dtype (it would not fit otherwise).
    """
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        model = model_cls._from_config(config, dtype=dtype)
    return model.eval()


def _quantized_from_random(model_cls, config, seed: int, dtype: torch.dtype,
                           quantization_config, device: str, build_device: str) -> PreTrainedModel:
    """bitsandbytes quantizes while loading, so a random backbone goes through a temp dir."""
    from transformers.utils import logging as hf_logging

    model = seeded_build(model_cls, config, seed, dtype, build_device)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a temp-dir round trip, not a load worth reporting
    try:
        with tempfile.TemporaryDirectory(prefix="more_backbone_") as tmp:
            model.save_pretrained(tmp)
            del model
            return model_cls.from_pretrained(
                tmp, dtype=dtype, quantization_config=quantization_config, device_map=device,
                local_files_only=True).eval()
    finally:
        if bars:
            hf_logging.enable_progress_bar()


class BackboneAdapter:
    """Interface every backbone implements (see fuyu.py for the reference one)."""

    kind: str
    model_type: str  # config.json's model_type of a compatible checkpoint
    ffn: FFNSpec
    attention_targets: str  # regex of the attention linears for the peft LoRA
    default_image_size: dict[str, int]
    extra_input_names: tuple[str, ...] = ()  # model inputs besides ids, pixels, mask, positions

    # -- construction --------------------------------------------------------------------
    def random_config(self, name: str):
        raise NotImplementedError

    def model_class(self) -> type[PreTrainedModel]:
        raise NotImplementedError

    def build_random(self, name: str, seed: int, dtype: str, device: str = "cpu",
                     quantization_config=None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        config = self.random_config(name)
        build_device = device if name == "full" else "cpu"
        if quantization_config is None:
            model = seeded_build(self.model_class(), config, seed, TORCH_DTYPES[dtype],
                                  build_device).to(device)
        else:
            model = _quantized_from_random(self.model_class(), config, seed, TORCH_DTYPES[dtype],
                                           quantization_config, device, build_device)
        tokenizer = build_random_tokenizer(self.text_config(config).vocab_size)
        return model, tokenizer

    def load(self, path: str, dtype: str, device: str = "cpu",
             quantization_config=None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        from transformers import AutoTokenizer

        directory = Path(path)
        config_file = directory / "config.json"
        if not config_file.is_file():
            raise BackboneError(f"backbone {path!r}: expected a local Hugging Face checkpoint "
                                f"directory with config.json (no hub downloads are made); or a "
                                f"random config name 'tiny', 'small', 'full'")
        model_type = json.loads(config_file.read_text()).get("model_type")
        if model_type != self.model_type:
            raise BackboneError(f"backbone {path!r} is a {model_type!r} checkpoint; backbone_kind "
                                f"{self.kind!r} expects model_type {self.model_type!r}")
        model = self.model_class().from_pretrained(
            directory, dtype=TORCH_DTYPES[dtype], quantization_config=quantization_config,
            device_map=device, local_files_only=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        return model, tokenizer

    # -- structure -----------------------------------------------------------------------
    @staticmethod
    def text_config(config):
        return config.get_text_config()

    def decoder_layers(self, model: PreTrainedModel) -> nn.ModuleList:
        return model.model.language_model.layers

    # -- inputs --------------------------------------------------------------------------
    def pixel_values(self, images: np.ndarray, config) -> torch.Tensor:
        raise NotImplementedError

    def image_prefix_ids(self, tokenizer: PreTrainedTokenizerBase, image_size: int,
                         config) -> list[int]:
        raise NotImplementedError

    def extra_inputs(self, images: np.ndarray) -> dict[str, torch.Tensor]:
        return {}

    def encode_images(self, model: PreTrainedModel,
                      inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Prepared inputs with the frozen image encoder's output in place of the pixels, for
        inputs that several forwards reuse; unchanged where the backbone cannot take that."""
        return inputs

    def forward(self, model: PreTrainedModel, input_ids: torch.Tensor,
                pixel_values: torch.Tensor | None, attention_mask: torch.Tensor,
                position_ids: torch.Tensor, past_key_values=None, use_cache: bool = False,
                logits_to_keep: int = 0, **extra):
        return model(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask,
                     position_ids=position_ids, past_key_values=past_key_values,
                     use_cache=use_cache, logits_to_keep=logits_to_keep, **extra)


def begin_answer_id(tokenizer) -> int:
    return tokenizer.convert_tokens_to_ids(BEGIN_ANSWER_TOKEN)


__all__ = ["BackboneAdapter", "BackboneError", "FFNSpec", "TORCH_DTYPES", "begin_answer_id",
           "resize_images"]
