"""MixLoRA: a mixture of LoRA experts sharing one frozen FFN (MoRE's expert layer).

Expert k computes ``E_k(x) = (W_down + dW_down^k) f((W_up + dW_up^k) x)`` with LoRA deltas
``dW = scale * B @ A`` on both FFN linears (and on the gate of gated FFNs); the router gives
``G(x) = softmax(top_k(W_g x))`` and the layer returns ``sum_k G(x)_k E_k(x)``.

Cost: the frozen up (and gate) projection runs once per token; each expert then works only on
the tokens routed to it (rank-r LoRA maths plus the activation); because ``W_down`` is linear the
weighted expert activations are summed first and ``W_down`` runs once per token too. Experts
loop in Python (N iterations), tokens never do. B matrices start at zero, so at initialisation
the layer equals the frozen FFN.

Small backbones with a large rank (hidden 64, rank 32) are cheaper the other way round: each
expert's weights merged, ``W + scale * A_k B_k``, and one matmul per projection and expert on its
pairs (see :meth:`MixLoRAFFN.merging_is_cheaper`); same maths, float rounding aside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class RouterStats:
    """One forward's routing statistics for one layer (over non-padding tokens)."""

    top1_counts: torch.Tensor  # (num_experts,) tokens whose top-1 expert is k (no grad)
    mean_probs: torch.Tensor  # (num_experts,) mean full-softmax router probability (with grad)
    num_tokens: torch.Tensor  # () a tensor, so that recording never waits for the GPU

    @property
    def top1_fraction(self) -> torch.Tensor:  # (num_experts,)
        return self.top1_counts / self.num_tokens.clamp(min=1)

    def balance_loss(self) -> torch.Tensor:
        """Switch-style ``N * sum_k f_k P_k`` (1.0 for a perfectly uniform router)."""
        n = self.mean_probs.numel()
        return n * torch.sum(self.top1_fraction.to(self.mean_probs) * self.mean_probs)


def _lora_pair(num_experts: int, rank: int, d_in: int, d_out: int,
               dtype) -> tuple[nn.Parameter, nn.Parameter]:
    """A (N, d_in, r) and B (N, r, d_out), stored input-major so ``x @ A[k] @ B[k]`` needs no
    transposes; A as peft inits it (kaiming-uniform of the (r, d_in) matrix), B zero."""
    a = torch.empty(num_experts, rank, d_in, dtype=dtype)
    for k in range(num_experts):
        nn.init.kaiming_uniform_(a[k], a=math.sqrt(5))
    b = torch.zeros(num_experts, rank, d_out, dtype=dtype)
    return nn.Parameter(a.transpose(1, 2).contiguous()), nn.Parameter(b)


class MixLoRAFFN(nn.Module):
    """Drop-in replacement of a decoder layer's MLP: frozen FFN + N LoRA experts + router."""

    def __init__(self, base_mlp: nn.Module, up: str, down: str, act: str, gate: str | None,
                 num_experts: int, top_k: int, rank: int, alpha: float, dropout: float,
                 router_init_std: float = 0.02, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.base = base_mlp  # frozen; its linears may be bitsandbytes-quantized
        self.up_name, self.down_name, self.act_name, self.gate_name = up, down, act, gate
        up_linear = getattr(base_mlp, up)
        hidden, inner = up_linear.in_features, up_linear.out_features
        self.num_experts, self.top_k, self.rank = num_experts, top_k, rank
        self.scaling = alpha / rank
        self.router = nn.Linear(hidden, num_experts, bias=False, dtype=dtype)
        nn.init.normal_(self.router.weight, std=router_init_std)
        # One stacked tensor per LoRA matrix: up_A (N, hidden, r), up_B (N, r, inner), ...
        self.up_A, self.up_B = _lora_pair(num_experts, rank, hidden, inner, dtype)
        self.down_A, self.down_B = _lora_pair(num_experts, rank, inner, hidden, dtype)
        if gate is not None:
            self.gate_A, self.gate_B = _lora_pair(num_experts, rank, hidden, inner, dtype)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.token_mask: torch.Tensor | None = None  # (B, L) bool, set by the policy
        self.last_stats: RouterStats | None = None
        self.merge_experts = self.merging_is_cheaper()
        # Set by the policy on the last decoder layer: only the last keep_last positions of each
        # row are read after it (the logits), so only they need the experts (None: all).
        self.keep_last: int | None = None
        # Set by the policy where masked tokens (padding) are never read downstream: their
        # experts are skipped (not under activation checkpointing, as keep_last).
        self.skip_masked = False

    def _projections(self) -> list[tuple[nn.Module, torch.Tensor, torch.Tensor]]:
        names = [(self.up_name, "up")] + ([(self.gate_name, "gate")] if self.gate_name else [])
        return [(getattr(self.base, attr), getattr(self, f"{lora}_A"), getattr(self, f"{lora}_B"))
                for attr, lora in names + [(self.down_name, "down")]]

    def merging_is_cheaper(self) -> bool:
        """Whether merged expert weights cost fewer multiply-adds per (token, expert) pair:
        ``d_in * d_out`` merged against ``d_in * d_out / top_k`` (the frozen projection runs once
        per token, shared by its top_k pairs) plus ``rank * (d_in + d_out)`` factored. Only for
        plain float linears of the adapters' dtype (not quantized) and without LoRA dropout
        (which applies to the adapter's input alone)."""
        if not isinstance(self.dropout, nn.Identity):
            return False
        merged = factored = 0.0
        for linear, a, _ in self._projections():
            weight = getattr(linear, "weight", None)
            if type(linear) is not nn.Linear or weight.dtype != a.dtype:
                return False
            d_out, d_in = weight.shape
            merged += d_in * d_out
            factored += d_in * d_out / self.top_k + self.rank * (d_in + d_out)
        return merged < factored

    # Eager under torch.compile (MoREPolicy.compile_decoder): the pairs per expert change every
    # step, and each new split would be a new graph.
    @torch.compiler.disable
    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        shape = hidden_states.shape  # (B, L, hidden)
        x = hidden_states.reshape(-1, shape[-1])  # (T, hidden)
        x_adapter = x.to(self.router.weight.dtype)

        # Router: full softmax for the statistics, renormalised softmax over the top-k to mix.
        router_logits = self.router(x_adapter)  # (T, N)
        probs = router_logits.softmax(dim=-1)
        top_logits, top_experts = router_logits.topk(self.top_k, dim=-1)  # (T, K)
        gates = top_logits.softmax(dim=-1)  # (T, K)
        self._record_stats(probs, top_experts[:, 0], shape)

        rows = self._rows_needing_experts(shape)
        if rows is None:
            return self._experts(x, x_adapter, top_experts, gates, shape)
        # Every token was routed (statistics and balance loss cover all of them); only the
        # rows read downstream go through the experts: not padding (masked out of every
        # attention), and on the last layer only the last keep_last positions (the logits).
        out = self._experts(x[rows], x_adapter[rows], top_experts[rows], gates[rows],
                            torch.Size((len(rows), shape[-1])))
        return out.new_zeros(x.shape).index_copy_(0, rows, out).reshape(shape)

    def _rows_needing_experts(self, shape: torch.Size) -> torch.Tensor | None:
        """Flat indices of the tokens whose expert output is read, or None for all of them."""
        if len(shape) != 3 or shape[1] == 1:  # decoding one token: no host sync
            return None
        b, length = shape[:2]
        need = None
        mask = self.token_mask
        if self.skip_masked and mask is not None and mask.shape == shape[:-1]:
            need = mask.bool()
        keep = self.keep_last
        if keep is not None and keep < length:
            last = torch.zeros(b, length, dtype=torch.bool, device=self.router.weight.device)
            last[:, -keep:] = True
            need = last if need is None else need & last
        if need is None or bool(need.all()):
            return None
        return need.reshape(-1).nonzero().squeeze(1)

    def _experts(self, x: torch.Tensor, x_adapter: torch.Tensor, top_experts: torch.Tensor,
                 gates: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """The mixture's output for tokens x (T, hidden) routed to top_experts with gates."""
        base = self.base
        act = getattr(base, self.act_name)
        # Group the (token, slot) pairs by expert; every expert then works on a contiguous slice.
        flat_experts = top_experts.reshape(-1)  # (P,) P = T * K
        order = torch.argsort(flat_experts, stable=True)
        counts = self._pairs_per_expert(flat_experts)
        token_of = order // self.top_k  # (P,) token of each pair, grouped by expert
        pair_gate = gates.reshape(-1)[order].unsqueeze(-1)  # (P, 1)
        xs = self.dropout(x_adapter[token_of])  # (P, hidden)
        if counts is not None and self.merge_experts:
            return self._forward_merged(xs, token_of, counts, pair_gate, shape)

        up = getattr(base, self.up_name)(x)  # (T, inner) frozen, once per token
        gate = getattr(base, self.gate_name)(x) if self.gate_name is not None else None
        if counts is None:
            return self._forward_gathered(xs, up, gate, token_of, flat_experts[order], pair_gate,
                                          shape)
        # One expert at a time on its own slice of pairs: its (pairs, inner) activations are
        # mixed into the per-token sum right away, never concatenated into a (P, inner) tensor.
        mixed = torch.zeros_like(up)  # (T, inner) gate-weighted sum of expert activations
        down_deltas = []
        # The frozen projections gathered once and split, not gathered per expert: the
        # backward of each gather is a zero-filled (T, inner) gradient, of a split one
        # concatenation (a quarter of the backward pass with 8 experts at hidden 256).
        up_pairs = up.index_select(0, token_of).split(counts)  # (P_k, inner) per expert
        gate_pairs = gate.index_select(0, token_of).split(counts) if gate is not None \
            else [None] * len(counts)
        for k, (tokens, x_k, g_k, up_k, gate_k) in enumerate(zip(
                token_of.split(counts), xs.split(counts), pair_gate.split(counts), up_pairs,
                gate_pairs)):
            if not len(tokens):
                continue
            h = self._lora_into(up_k, x_k, self.up_A[k], self.up_B[k])
            if gate_k is not None:
                h_gate = self._lora_into(gate_k, x_k, self.gate_A[k], self.gate_B[k])
                h = act(h_gate) * h
            else:
                h = act(h)  # (P_k, inner)
            mixed.index_add_(0, tokens, h * g_k.to(h.dtype))
            mid = (self.dropout(h.to(xs.dtype)) @ self.down_A[k]) * (g_k * self.scaling)
            down_deltas.append(mid @ self.down_B[k])  # (P_k, hidden)
        # W_down is linear: project the mixed activations once per token.
        out = getattr(base, self.down_name)(mixed)  # (T, hidden)
        out = out.index_add(0, token_of, torch.cat(down_deltas).to(out.dtype))
        return out.reshape(shape)

    def _forward_merged(self, xs, token_of, counts, pair_gate, shape):
        """Each expert's merged weights on its own pairs: ``sum_k g_k (W_k h + b)`` equals
        ``W_down (sum_k g_k h) + b + ...`` of the factored form because the gates sum to one."""
        merged = [(linear, linear.weight.t() + self.scaling * torch.bmm(a, b))  # (N, in, out)
                  for linear, a, b in self._projections()]
        act = getattr(self.base, self.act_name)
        outs = []
        for k, (x_k, g_k) in enumerate(zip(xs.split(counts), pair_gate.split(counts))):
            if not len(x_k):
                continue
            h = [_affine(x_k, linear, weight[k]) for linear, weight in merged[:-1]]
            h = act(h[0]) if len(h) == 1 else act(h[1]) * h[0]  # gated: act(gate) * up
            linear, weight = merged[-1]
            outs.append(_affine(h, linear, weight[k]) * g_k.to(h.dtype))
        pairs = torch.cat(outs)  # (P, hidden)
        out = pairs.new_zeros(shape.numel() // shape[-1], shape[-1])
        return out.index_add_(0, token_of, pairs).reshape(shape)

    def _forward_gathered(self, xs, up, gate, token_of, pair_expert, pair_gate, shape):
        """Few pairs (decoding): gather each pair's expert matrices, batched matmuls instead of
        one pair of small matmuls per expert (and no host-side counts: no GPU sync)."""
        h = self._gathered_lora(xs, pair_expert, self.up_A, self.up_B, add=up[token_of])
        if gate is not None:
            h_gate = self._gathered_lora(xs, pair_expert, self.gate_A, self.gate_B,
                                         add=gate[token_of])
            h = getattr(self.base, self.act_name)(h_gate) * h
        else:
            h = getattr(self.base, self.act_name)(h)
        mixed = torch.zeros_like(up).index_add_(0, token_of, h * pair_gate.to(h.dtype))
        out = getattr(self.base, self.down_name)(mixed)
        down_delta = self._gathered_lora(self.dropout(h.to(xs.dtype)), pair_expert,
                                         self.down_A, self.down_B, mid_scale=pair_gate)
        out = out.index_add(0, token_of, down_delta.to(out.dtype))
        return out.reshape(shape)

    def _pairs_per_expert(self, flat_experts: torch.Tensor) -> list[int] | None:
        if flat_experts.numel() <= self.num_experts:
            return None  # gathered path: no host-side counts (no GPU sync while decoding)
        return torch.bincount(flat_experts, minlength=self.num_experts).tolist()

    def _lora_into(self, base: torch.Tensor, x: torch.Tensor, a: torch.Tensor,
                   b: torch.Tensor) -> torch.Tensor:
        """``base + scale * x A B`` for one expert: the frozen projection ``base`` (P_k, d_out)
        fused into the last matmul (out of place: autocast casts addmm's inputs, not addmm_'s)."""
        mid = (x @ a) * self.scaling  # (P_k, r)
        if base.dtype == mid.dtype:
            return torch.addmm(base, mid, b)
        return base + (mid @ b).to(base.dtype)  # e.g. a bf16 backbone

    def _gathered_lora(self, xs: torch.Tensor, pair_expert: torch.Tensor, a: torch.Tensor,
                       b: torch.Tensor, add: torch.Tensor | None = None,
                       mid_scale: torch.Tensor | None = None) -> torch.Tensor:
        """Each pair's ``scale * x A_k B_k`` (P, d_out) with its own expert's matrices; the
        scaling and ``mid_scale`` (P, 1) multiply the rank-r product, ``add`` is added."""
        scale = self.scaling if mid_scale is None else mid_scale * self.scaling
        mid = torch.bmm(xs.unsqueeze(1), a[pair_expert]).squeeze(1) * scale  # (P, r)
        out = torch.bmm(mid.unsqueeze(1), b[pair_expert]).squeeze(1)
        return out if add is None else add + out.to(add.dtype)

    def _record_stats(self, probs: torch.Tensor, top1: torch.Tensor, shape) -> None:
        # Padding is weighted out rather than indexed away so that the autograd graph has the
        # same structure with or without a mask (activation checkpointing recomputes it).
        mask = self.token_mask
        if mask is not None and mask.shape == shape[:-1]:
            weight = mask.reshape(-1).to(probs.dtype)
        else:
            weight = probs.new_ones(probs.shape[0])
        num_tokens = weight.sum()
        counts = torch.bincount(top1.detach(), weights=weight.detach(),
                                minlength=self.num_experts)
        mean_probs = (probs * weight[:, None]).sum(0) / num_tokens.clamp(min=1)
        self.last_stats = RouterStats(top1_counts=counts.float(), mean_probs=mean_probs,
                                      num_tokens=num_tokens.detach())

    def extra_repr(self) -> str:
        return (f"num_experts={self.num_experts}, top_k={self.top_k}, rank={self.rank}, "
                f"scaling={self.scaling:g}, gated={self.gate_name is not None}")


def _affine(x: torch.Tensor, linear: nn.Linear, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weight + linear.bias`` (weight (d_in, d_out), the linear's own or a merged one)."""
    if linear.bias is None:
        return x @ weight
    return torch.addmm(linear.bias, x, weight)
