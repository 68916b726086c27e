"""Quantized frozen backbones with bitsandbytes (int8 / nf4); adapters stay in higher precision.

bitsandbytes quantizes while transformers loads weights, so :func:`bnb_config` is handed to
``from_pretrained``; random backbones are written to a temporary directory first (see
backbones.py). bitsandbytes 0.50 runs on CPU as well as CUDA.
"""

from __future__ import annotations

import logging
import warnings

import torch

QUANTIZATIONS = (None, "int8", "nf4")
# Kept in full precision: the output head (its action rows are ours) and Fuyu's patch projection.
SKIP_MODULES = ["lm_head", "vision_embed_tokens"]


def bnb_config(kind: str | None, compute_dtype: torch.dtype = torch.float32):
    """BitsAndBytesConfig for ``kind`` ('int8', 'nf4') or None for full precision."""
    if kind not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {kind!r}")
    if kind is None:
        return None
    with warnings.catch_warnings():  # bitsandbytes warns about an optional hub kernel
        warnings.simplefilter("ignore")
        import bitsandbytes  # noqa: F401
    # int8 matmuls log, on every call, that fp32 inputs go through fp16: expected here.
    logging.getLogger("bitsandbytes.autograd._functions").addFilter(_drop_cast_notice)
    from transformers import BitsAndBytesConfig

    if kind == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=SKIP_MODULES)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_compute_dtype=compute_dtype,
                              bnb_4bit_use_double_quant=False,
                              llm_int8_skip_modules=SKIP_MODULES)


def _drop_cast_notice(record: logging.LogRecord) -> bool:
    return "will be cast from" not in record.getMessage()


def weight_memory_bytes(model: torch.nn.Module) -> int:
    """Bytes held by parameters and buffers (quantized weights count their packed size)."""
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        total += t.numel() * t.element_size()
    return total
