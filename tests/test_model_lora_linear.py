"""The attention LoRA's merged weight: same outputs and gradients as peft's factored forward,
chosen only where it is less work, and used by the tiny MoRE policy's training step."""

import types

import numpy as np
import pytest
import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora.layer import Linear as PeftLoraLinear
from tiny_models import perturbed_q_model
from torch import nn

from more_policy.model.lora_linear import MergingLoraLinear, merging_is_cheaper
from more_policy.rl import Objective, RLConfig


def lora_model(d_in: int, d_out: int, rank: int, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("proj", nn.Linear(d_in, d_out))
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=dropout,
                        target_modules=["proj"])
    config._register_custom_module({nn.Linear: MergingLoraLinear})
    inject_adapter_in_model(config, model)
    model.requires_grad_(False)
    for name, p in model.named_parameters():
        if ".lora_" in name:
            p.requires_grad_(True)
            nn.init.normal_(p, std=0.3)  # B starts at zero: make the delta non-trivial
    return model


def peft_forward(module: MergingLoraLinear, x: torch.Tensor) -> torch.Tensor:
    return PeftLoraLinear.forward(module, x)


@pytest.mark.parametrize("grad", [True, False])
def test_merged_weight_equals_peft_forward_and_gradients(grad):
    model = lora_model(16, 48, rank=8)
    layer = model.proj
    assert isinstance(layer, MergingLoraLinear)
    x = torch.randn(4, 50, 16)
    assert layer._merged_weight_applies(x, {}) or grad  # 200 rows: merged without gradients
    results = []
    for forward in (layer.forward, types.MethodType(peft_forward, layer)):
        model.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(grad):
            y = forward(x)
        if grad:
            (y.square().sum()).backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        results.append((y.detach(), grads))
    (y_merged, g_merged), (y_peft, g_peft) = results
    torch.testing.assert_close(y_merged, y_peft, atol=1e-5, rtol=1e-5)
    assert len(g_merged) == len(g_peft) == (2 if grad else 0)
    for a, b in zip(g_merged, g_peft):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_merging_is_chosen_by_the_work_it_saves():
    # tiny backbone's fused qkv (64 -> 192, rank 32) on a training batch: merged is cheaper
    assert merging_is_cheaper(2000, 64, 192, 32, grad=True)
    # pretrained shape's qkv (256 -> 768): the merged weight's gradient costs more in training,
    # the merged forward less without gradients; one decoding token never merges
    assert not merging_is_cheaper(2000, 256, 768, 32, grad=True)
    assert merging_is_cheaper(2000, 256, 768, 32, grad=False)
    assert not merging_is_cheaper(1, 64, 192, 32, grad=False)


def test_dropout_keeps_peft_forward():
    model = lora_model(16, 48, rank=8, dropout=0.1)
    assert not model.proj._merged_weight_applies(torch.randn(2, 50, 16), {})


def test_policy_loss_and_gradients_equal_the_factored_attention_lora():
    """One RL loss on the tiny MoRE policy (no dropout, rank 32: merged attention LoRA) equals
    the loss with peft's factored forward, gradients included."""
    model, gen = perturbed_q_model(image_size=64, attn_lora_rank=32)
    model.train()
    lora = [m for m in model.modules() if isinstance(m, MergingLoraLinear)]
    assert lora
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(8)]
    instructions = ["go to the red ball", "crawl under the gate", "stop", "go left"]
    batch = {"state": model.make_state(frames[:4], instructions),
             "next_state": model.make_state(frames[4:], instructions),
             "action_bins": torch.randint(0, 256, (4, 12), generator=gen),
             "rewards": torch.tensor([0.0, 1.0, 0.0, 0.5]), "dones": torch.tensor([0, 1, 0, 0.]),
             "mc_returns": torch.tensor([0.3, 1.0, 0.0, 0.6])}
    x = batch["state"]["input_ids"]
    assert lora[0]._merged_weight_applies(torch.zeros(*x.shape, 64), {})
    results = []
    for factored in (False, True):
        for m in lora:  # the instance attribute shadows the class's forward
            if factored:
                m.forward = types.MethodType(peft_forward, m)
        objective = Objective(RLConfig(), model, model.action_token_slice)
        model.zero_grad(set_to_none=True)
        loss, _ = objective(model, model, batch)
        loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in model.parameters()
                                       if p.grad is not None]))
    for m in lora:
        del m.forward
    (loss_merged, g_merged), (loss_factored, g_factored) = results
    assert loss_merged == pytest.approx(loss_factored, rel=1e-5, abs=1e-6)
    for a, b in zip(g_merged, g_factored):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)
