"""bitsandbytes int8 / nf4 backbones on CPU: adapters load onto them, Q-values stay close.

Bounds measured on this fixed input (tiny random Fuyu, adapters perturbed, 8 samples x 12 dims):
int8 max relative Q error 0.0066, teacher-forced argmax agreement 0.99; nf4 relative L2 Q error
0.038, argmax agreement 0.94. The asserted bounds leave a ~4x margin.
"""

import numpy as np
import pytest
import torch
from test_model_policy import CFG, perturb

from more_policy.model import MoREPolicy
from more_policy.model.quantization import bnb_config, weight_memory_bytes

INSTRUCTIONS = ["go to the red ball", "crawl under the gate", "distinguish letter a",
                "go through the tunnel"] * 2


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    policy = MoREPolicy.from_config(CFG)
    perturb(policy, std=0.1)
    directory = tmp_path_factory.mktemp("more_ckpt")
    policy.save_pretrained(directory)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(8)]
    bins = torch.randint(0, 256, (8, 12), generator=torch.Generator().manual_seed(0))
    return directory, policy, images, bins


@pytest.mark.parametrize("kind, max_rel, rel_l2, agreement", [
    ("int8", 0.03, None, 0.9),
    ("nf4", None, 0.15, 0.75),
])
def test_quantized_q_values_stay_close_to_fp32(saved, kind, max_rel, rel_l2, agreement):
    directory, policy, images, bins = saved
    quantized = MoREPolicy.from_pretrained(directory, quantization=kind)
    linear = quantized.moe_layers[0].base.dense_h_to_4h
    assert type(linear).__name__ == {"int8": "Linear8bitLt", "nf4": "Linear4bit"}[kind]
    assert quantized.moe_layers[0].up_A.dtype == torch.float32  # adapters stay full precision
    assert weight_memory_bytes(quantized.model) < weight_memory_bytes(policy.model)
    q = policy.q_values(policy.prepare(images, INSTRUCTIONS, bins))
    qq = quantized.q_values(quantized.prepare(images, INSTRUCTIONS, bins))
    if max_rel is not None:
        assert ((qq - q).abs() / q).max() < max_rel
    if rel_l2 is not None:
        assert (qq - q).norm() / q.norm() < rel_l2
    assert (qq.argmax(-1) == q.argmax(-1)).float().mean() >= agreement
    result = quantized.act(images[:2], INSTRUCTIONS[:2])  # greedy decoding runs quantized too
    assert result.bins.shape == (2, 12)


def test_unknown_quantization_is_a_clear_error():
    with pytest.raises(ValueError, match="quantization must be one of"):
        bnb_config("int4")
