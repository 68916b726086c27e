"""MixLoRA layer: identity at init, top-k routing equals a per-token reference, statistics."""

import pytest
import torch
from torch import nn
from transformers import FuyuConfig
from transformers.models.persimmon.modeling_persimmon import PersimmonMLP

from more_policy.model.mixlora import MixLoRAFFN, RouterStats

HIDDEN, INNER, N, K, RANK = 32, 96, 8, 2, 4


class GatedMLP(nn.Module):  # the Llama/SmolVLM FFN shape: down(act(gate(x)) * up(x))
    def __init__(self):
        super().__init__()
        self.gate_proj = nn.Linear(HIDDEN, INNER, bias=False)
        self.up_proj = nn.Linear(HIDDEN, INNER, bias=False)
        self.down_proj = nn.Linear(INNER, HIDDEN, bias=False)
        self.act_fn = nn.SiLU()

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


def persimmon_mlp() -> nn.Module:
    torch.manual_seed(0)
    text = FuyuConfig(text_config={"model_type": "persimmon", "hidden_size": HIDDEN,
                                   "intermediate_size": INNER, "hidden_act": "relu2"}).text_config
    return PersimmonMLP(text).requires_grad_(False)


def make_layer(gated: bool = False, dropout: float = 0.0) -> MixLoRAFFN:
    torch.manual_seed(1)
    if gated:
        base = GatedMLP().requires_grad_(False)
        return MixLoRAFFN(base, up="up_proj", down="down_proj", act="act_fn", gate="gate_proj",
                          num_experts=N, top_k=K, rank=RANK, alpha=8.0, dropout=dropout)
    return MixLoRAFFN(persimmon_mlp(), up="dense_h_to_4h", down="dense_4h_to_h", act="act",
                      gate=None, num_experts=N, top_k=K, rank=RANK, alpha=8.0, dropout=dropout)


def randomize_experts(layer: MixLoRAFFN) -> None:
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if not name.startswith("base."):
                p.normal_(std=0.3)


def reference(layer: MixLoRAFFN, x: torch.Tensor) -> torch.Tensor:
    """Per-token, per-expert loop straight from the MixLoRA formula."""
    base, s = layer.base, layer.scaling
    up_w = getattr(base, layer.up_name)
    down_w = getattr(base, layer.down_name)
    act = getattr(base, layer.act_name)
    out = []
    for tok in x.reshape(-1, x.shape[-1]):
        logits = layer.router(tok)
        top, experts = logits.topk(layer.top_k)
        y = torch.zeros(x.shape[-1])
        for g, k in zip(top.softmax(-1), experts.tolist()):
            h = up_w(tok) + (tok @ layer.up_A[k] @ layer.up_B[k]) * s
            if layer.gate_name:
                gate = getattr(base, layer.gate_name)(tok)
                h = act(gate + (tok @ layer.gate_A[k] @ layer.gate_B[k]) * s) * h
            else:
                h = act(h)
            y = y + g * (down_w(h) + (h @ layer.down_A[k] @ layer.down_B[k]) * s)
        out.append(y)
    return torch.stack(out).reshape(x.shape)


@pytest.mark.parametrize("gated", [False, True])
def test_identity_at_initialisation(gated):
    layer = make_layer(gated)
    x = torch.randn(3, 7, HIDDEN)
    torch.testing.assert_close(layer(x), layer.base(x), atol=1e-5, rtol=1e-5)


# The three paths: grouped per expert (factored LoRA), grouped with merged expert weights, and
# gathered (few pairs, decoding).
PATHS = pytest.mark.parametrize("tokens, merged", [(18, False), (18, True), (3, False)],
                                ids=["grouped", "merged", "gathered"])


@pytest.mark.parametrize("gated", [False, True])
@PATHS
def test_grouped_experts_equal_per_token_reference(gated, tokens, merged):
    layer = make_layer(gated)
    layer.merge_experts = merged
    randomize_experts(layer)
    x = torch.randn(1, tokens, HIDDEN)
    with torch.no_grad():
        got = layer(x)
        assert (got - layer.base(x)).abs().max() > 1e-2  # the experts really change the output
        torch.testing.assert_close(got, reference(layer, x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("gated", [False, True])
@PATHS
def test_gradients_equal_per_token_reference(gated, tokens, merged):
    # The grouped path updates gathered frozen projections in place and mixes each expert as it
    # goes: its gradients (adapters, router, input) must be the reference formula's.
    layer = make_layer(gated)
    layer.merge_experts = merged
    randomize_experts(layer)
    x = torch.randn(1, tokens, HIDDEN, requires_grad=True)
    weights = torch.randn(1, tokens, HIDDEN)
    params = [p for p in layer.parameters() if p.requires_grad]
    got = torch.autograd.grad((layer(x) * weights).sum(), [x, *params])
    want = torch.autograd.grad((reference(layer, x) * weights).sum(), [x, *params])
    assert got[0].abs().max() > 1e-3 and all(g.abs().max() > 0 for g in got[2:4])
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)


def test_merged_expert_weights_where_they_cost_fewer_multiply_adds():
    def layer(hidden, inner, rank, dropout=0.0, dtype=torch.float32):
        mlp = PersimmonMLP(FuyuConfig(text_config={
            "model_type": "persimmon", "hidden_size": hidden, "intermediate_size": inner,
            "hidden_act": "relu2"}).text_config).to(dtype)
        return MixLoRAFFN(mlp, up="dense_h_to_4h", down="dense_4h_to_h", act="act", gate=None,
                          num_experts=8, top_k=2, rank=rank, alpha=64.0, dropout=dropout)

    assert layer(64, 256, 32).merge_experts  # the tiny preset: 33 k vs 37 k per pair
    assert not layer(256, 1024, 32).merge_experts  # the pretrained shape: 524 k vs 344 k
    assert not layer(64, 256, 4).merge_experts  # a small rank keeps the factored form cheap
    assert not layer(64, 256, 32, dropout=0.1).merge_experts  # dropout is on the LoRA input only
    assert not layer(64, 256, 32, dtype=torch.bfloat16).merge_experts  # other-dtype base


def test_router_statistics_and_balance_loss():
    layer = make_layer()
    randomize_experts(layer)
    x = torch.randn(4, 5, HIDDEN)
    layer(x)
    stats = layer.last_stats
    logits = layer.router(x.reshape(-1, HIDDEN))
    expected = torch.bincount(logits.argmax(-1), minlength=N).float() / 20
    torch.testing.assert_close(stats.top1_fraction, expected)
    torch.testing.assert_close(stats.mean_probs, logits.softmax(-1).mean(0))
    assert stats.num_tokens == 20
    manual = N * (expected * logits.softmax(-1).mean(0)).sum()
    torch.testing.assert_close(stats.balance_loss(), manual)
    # Switch convention: a perfectly balanced router scores exactly 1.
    sixteen = torch.tensor(16.0)
    uniform = RouterStats(torch.full((N,), 2.0), torch.full((N,), 1.0 / N), num_tokens=sixteen)
    assert uniform.balance_loss().item() == pytest.approx(1.0)
    # Collapsed routing (all tokens and all probability on one expert) scores N.
    collapsed = RouterStats(torch.eye(N)[0] * 16, torch.eye(N)[0], num_tokens=sixteen)
    assert collapsed.balance_loss().item() == pytest.approx(N)


def test_token_mask_excludes_padding_from_statistics():
    layer = make_layer()
    randomize_experts(layer)
    x = torch.randn(2, 6, HIDDEN)
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[0, :4] = 0
    layer.token_mask = mask
    layer(x)
    assert layer.last_stats.num_tokens == 8
    keep = x[mask.bool()]
    torch.testing.assert_close(layer.last_stats.mean_probs, layer.router(keep).softmax(-1).mean(0))


def test_each_token_uses_exactly_top_k_experts():
    # Zero every expert except one: tokens not routed to it must see the frozen FFN exactly.
    layer = make_layer()
    randomize_experts(layer)
    with torch.no_grad():
        for name in ("up_B", "down_B"):
            getattr(layer, name)[1:].zero_()
    x = torch.randn(1, 40, HIDDEN)
    with torch.no_grad():
        diff = (layer(x) - layer.base(x)).abs().amax(-1)[0]  # (40,)
        routed = (layer.router(x[0]).topk(K).indices == 0).any(-1)
    assert routed.any() and (~routed).any()
    assert torch.all(diff[~routed] < 1e-5)
    assert torch.all(diff[routed] > 1e-4)


def test_gradients_reach_experts_and_router_only():
    layer = make_layer(dropout=0.1).train()
    with torch.no_grad():
        layer.up_B.normal_(std=0.1)
        layer.down_B.normal_(std=0.1)
    x = torch.randn(2, 8, HIDDEN)
    loss = layer(x).pow(2).sum() + layer.last_stats.balance_loss()
    loss.backward()
    for name, p in layer.named_parameters():
        if name.startswith("base."):
            assert p.grad is None, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
