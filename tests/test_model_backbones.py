"""Backbone adapters: Fuyu's processor layout, random-config determinism, the Idefics3 adapter."""

import numpy as np
import pytest
import torch
from test_model_policy import INSTRUCTIONS, images, perturb

from more_policy.model import MoREConfig, MoREPolicy
from more_policy.model.backbone_registry import get_backbone
from more_policy.model.backbones import BackboneError
from more_policy.model.processor import make_fuyu_processor
from more_policy.model.tokenizer import action_token, build_random_tokenizer

IDEFICS = MoREConfig(backbone_kind="idefics3", backbone="tiny", lora_rank=8, attn_lora_rank=8,
                     lora_dropout=0.0)


@pytest.fixture(scope="module")
def fuyu():
    return MoREPolicy.from_config(MoREConfig(backbone="tiny", lora_rank=4, attn_lora_rank=4))


def test_prepare_matches_hugging_face_fuyu_processor(fuyu):
    processor = make_fuyu_processor(fuyu.tokenizer, image_size=32, patch_size=16)
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    ref = processor(images=[image], text=[fuyu.config.format_prompt("go to the red ball")],
                    return_legacy_image_output=False)
    ours = fuyu.prepare([image], ["go to the red ball"])
    assert torch.equal(ref["input_ids"], ours["input_ids"])
    torch.testing.assert_close(ref["pixel_values"].reshape(ours["pixel_values"].shape),
                               ours["pixel_values"], atol=1e-5, rtol=0)


def test_random_tokenizer_layout():
    tok = build_random_tokenizer(512)
    assert len(tok) == 512 + 256
    assert tok.convert_tokens_to_ids([action_token(0), action_token(255)]) == [512, 767]
    text = "What action should the legged robot take to go to the red ball?"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]).strip() == text
    assert build_random_tokenizer(512).get_vocab() == tok.get_vocab()  # deterministic


def test_random_backbone_is_rebuilt_identically_from_its_seed():
    adapter = get_backbone("fuyu")
    a, _ = adapter.build_random("tiny", seed=7, dtype="float32")
    b, _ = adapter.build_random("tiny", seed=7, dtype="float32")
    c, _ = adapter.build_random("tiny", seed=8, dtype="float32")
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_unknown_backbones_are_clear_errors(tmp_path):
    with pytest.raises(BackboneError, match="unknown backbone kind"):
        get_backbone("gpt2")
    with pytest.raises(BackboneError, match="unknown random Fuyu config"):
        get_backbone("fuyu").random_config("huge")
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(BackboneError, match="expects model_type 'fuyu'"):
        get_backbone("fuyu").load(str(tmp_path), "float32")


def test_idefics3_backbone_runs_the_same_policy(tmp_path):
    policy = MoREPolicy.from_config(IDEFICS)
    assert policy.moe_layers[0].gate_name == "gate_proj"  # MixLoRA on a gated FFN
    lora = [n for n, p in policy.model.named_parameters() if ".lora_" in n]
    assert lora and all("text_model" in n for n in lora)  # the vision tower stays untouched
    inputs = policy.prepare(images(), INSTRUCTIONS)
    base, _ = get_backbone("idefics3").build_random("tiny", seed=0, dtype="float32")
    with torch.no_grad():
        ours = policy(inputs).vocab_logits[:, 0, :policy.token_offset]
        ref = base(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"],
                   attention_mask=inputs["attention_mask"], position_ids=inputs["position_ids"],
                   logits_to_keep=1).logits[:, 0]
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)  # identity at init

    perturb(policy)
    cached = policy.act(images(), INSTRUCTIONS)
    reference = policy.act(images(), INSTRUCTIONS, use_cache=False)
    assert torch.equal(cached.bins, reference.bins)
    torch.testing.assert_close(cached.q_values, reference.q_values, atol=1e-5, rtol=1e-5)

    policy.save_pretrained(tmp_path)
    loaded = MoREPolicy.from_pretrained(tmp_path)
    assert torch.equal(loaded.act(images(), INSTRUCTIONS).bins, cached.bins)


def test_local_checkpoint_directory_gets_action_tokens(tmp_path, fuyu):
    # A stand-in for a downloaded Fuyu checkpoint: weights + a tokenizer without action tokens.
    model, _ = get_backbone("fuyu").build_random("tiny", seed=0, dtype="float32")
    model.save_pretrained(tmp_path)
    build_random_tokenizer(512, num_bins=0).save_pretrained(tmp_path)
    cfg = MoREConfig(backbone=str(tmp_path), image_size=32, lora_rank=4, attn_lora_rank=4)
    policy = MoREPolicy.from_config(cfg)
    assert policy.token_offset == 512
    assert policy.tokenizer.convert_tokens_to_ids(action_token(3)) == 515
    # Same weights and seed as the random 'tiny' policy: the same Q-values.
    inputs = fuyu.prepare(images(), INSTRUCTIONS)
    torch.testing.assert_close(policy.q_values(inputs), fuyu.q_values(inputs))
    policy.save_pretrained(tmp_path / "more")
    assert MoREPolicy.from_pretrained(tmp_path / "more", quantization="int8").quantization == "int8"


def test_coordinate_channels_tell_each_patch_where_it_lies():
    from transformers import FuyuConfig

    from more_policy.model.fuyu import FuyuBackbone

    adapter = FuyuBackbone()
    rgb = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    plain = adapter.pixel_values(rgb, FuyuConfig(patch_size=16, num_channels=3))
    coord = adapter.pixel_values(rgb, FuyuConfig(patch_size=16, num_channels=5))
    assert plain.shape == (2, 4, 16 * 16 * 3) and coord.shape == (2, 4, 16 * 16 * 5)
    pixels = coord.view(2, 4, 16, 16, 5)  # (row, col, channel) inside each patch
    assert torch.equal(pixels[..., :3].reshape(2, 4, -1), plain)  # colours unchanged
    # patch 1 is the top-right one: right half of the columns, top half of the rows
    assert pixels[0, 1, 0, 0, 3] > 0 > pixels[0, 0, 0, 0, 3]
    assert pixels[0, 2, 0, 0, 4] > 0 > pixels[0, 1, 0, 0, 4]
    assert pixels[0, 3, -1, -1, 3:].tolist() == [1.0, 1.0]
    with pytest.raises(BackboneError, match="4-channel"):
        adapter.pixel_values(rgb, FuyuConfig(patch_size=16, num_channels=4))
