"""The attention LoRA (peft's lora.Linear) with the merged weight where that is less work.

peft computes ``W x + s B (A x)``: the frozen projection plus the rank-r path, per token. With
a rank close to the width (the 'small' preset: rank 32 on hidden 64) the rank-r path costs more
than the frozen one, and one matmul with ``W + s B A``, formed once per forward, is cheaper; in
training its weight gradient (a full ``d_out x d_in`` product per token) then counts against it.
:func:`merging_is_cheaper` counts the multiply-adds of both forms for the call at hand, so a
no-grad forward (target pass, evaluation) merges more often than a training one and a one-token
decoding step does not merge at all. Same maths, float rounding aside.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from peft.tuners.lora.layer import Linear as PeftLoraLinear
from torch import nn


def merging_is_cheaper(tokens: int, d_in: int, d_out: int, rank: int, grad: bool) -> bool:
    """Whether ``x (W + s B A)^T`` costs fewer multiply-adds than ``x W^T + s (x A^T) B^T`` for
    ``tokens`` rows of x, forward only or (``grad``) forward and backward of both LoRA factors."""
    full, low_rank = d_in * d_out, rank * (d_in + d_out)
    if not grad:  # merged: form the weight, one matmul; factored: frozen + two thin matmuls
        return rank * full + tokens * full < tokens * (full + low_rank)
    # backward: merged has the input gradient and the merged weight's gradient (both full)
    # plus the chain to A and B; factored has the frozen input gradient and three thin products
    return 3 * rank * full + 3 * tokens * full < 2 * tokens * full + 3 * tokens * low_rank


class MergingLoraLinear(PeftLoraLinear):
    """peft's LoRA linear; its plain single-adapter forward uses the merged weight when
    :func:`merging_is_cheaper` (no dropout, a float ``nn.Linear`` base of the adapter's dtype).
    Every other case (dropout, disabled or several adapters, peft variants) is peft's own."""

    def _merged_weight_applies(self, x: torch.Tensor, kwargs: dict[str, Any]) -> bool:
        base, active = self.get_base_layer(), self.active_adapters
        if (kwargs or self.disable_adapters or self.merged or len(active) != 1
                or self.fan_in_fan_out or type(base) is not nn.Linear):
            return False
        name = active[0]
        if (name not in self.lora_A or name in self.lora_variant
                or not isinstance(self.lora_dropout[name], nn.Identity)):
            return False
        a = self.lora_A[name].weight  # (r, d_in)
        if a.dtype != base.weight.dtype or x.dtype != a.dtype:
            return False
        grad = torch.is_grad_enabled() and a.requires_grad
        return merging_is_cheaper(x.numel() // x.shape[-1], base.in_features, base.out_features,
                                  a.shape[0], grad)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if args or not self._merged_weight_applies(x, kwargs):
            return super().forward(x, *args, **kwargs)
        name, base = self.active_adapters[0], self.get_base_layer()
        weight = torch.addmm(base.weight, self.lora_B[name].weight, self.lora_A[name].weight,
                             alpha=self.scaling[name])  # (d_out, d_in)
        return F.linear(x, weight, base.bias)
