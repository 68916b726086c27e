"""The full Fuyu-8B MoRE configuration, built on the meta device, matches the paper's size."""

import pytest

from more_policy.model import MoREConfig
from more_policy.model.counting import PAPER_TOTAL, count_parameters


def test_full_fuyu_config_counts_the_papers_9_82_billion():
    counts = count_parameters(MoREConfig(backbone="full"))  # N=8, K=2, rank 32 defaults
    assert counts.total == pytest.approx(PAPER_TOTAL, rel=0.005)
    assert counts.backbone == pytest.approx(9.41e9, rel=0.005)  # Fuyu-8B itself
    # 2 * r * (4096 + 16384) per expert and layer, 8 experts, 36 layers (MORE_FACTS.md).
    assert counts.experts == 2 * 32 * (4096 + 16384) * 8 * 36
    assert counts.routers == 4096 * 8 * 36
    assert counts.attention_lora == 36 * 32 * ((4096 + 12288) + (4096 + 4096))
    assert counts.trainable == (counts.experts + counts.routers + counts.attention_lora
                                + counts.action_rows)
    assert counts.total == counts.backbone + counts.trainable
    # One token runs K=2 of the 8 experts.
    assert counts.active_per_token == counts.total - counts.experts * 6 // 8


def test_small_config_is_about_60_million():
    counts = count_parameters(MoREConfig(backbone="small"))
    assert 50e6 < counts.backbone < 70e6
