"""Second backbone: Idefics3 / SmolVLM (SigLIP vision tower + pixel-shuffle connector + Llama).

Proves the adapter interface: the MoRE policy, MixLoRA (here on a gated FFN: gate, up and down
linears) and decoding run unchanged. One global image per sample, no image splitting:
``<fake_token_around_image> <image> x n <fake_token_around_image> <s> prompt <boa>``.
"""

from __future__ import annotations

import numpy as np
import torch

from more_policy.model.backbones import BackboneAdapter, BackboneError, FFNSpec
from more_policy.model.tokenizer import (
    BOS_TOKEN,
    FAKE_IMAGE_TOKEN,
    IDEFICS_IMAGE_TOKEN,
    SPECIAL_TOKENS,
)


class Idefics3Backbone(BackboneAdapter):
    kind = "idefics3"
    model_type = "idefics3"
    ffn = FFNSpec(mlp_attr="mlp", up="up_proj", down="down_proj", act="act_fn", gate="gate_proj")
    attention_targets = r".*text_model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj)"
    default_image_size = {"tiny": 32, "small": 256, "full": 512}

    # name -> (text hidden, layers, heads, kv heads, ffn, vocab, vision hidden, layers, patch)
    RANDOM = {"tiny": (64, 2, 4, 2, 128, 512, 32, 1, 8),
              "small": (576, 10, 9, 3, 1536, 8192, 256, 4, 16)}

    def model_class(self):
        from transformers import Idefics3ForConditionalGeneration

        return Idefics3ForConditionalGeneration

    def random_config(self, name: str):
        from transformers import Idefics3Config

        if name not in self.RANDOM:
            raise BackboneError(f"unknown random Idefics3 config {name!r}; known: "
                                f"{sorted(self.RANDOM)}")
        hidden, layers, heads, kv, ffn, vocab, v_hidden, v_layers, patch = self.RANDOM[name]
        text = dict(model_type="llama", vocab_size=vocab, hidden_size=hidden,
                    intermediate_size=ffn, num_hidden_layers=layers, num_attention_heads=heads,
                    num_key_value_heads=kv, max_position_embeddings=2048, pad_token_id=0,
                    bos_token_id=1, eos_token_id=2)
        vision = dict(hidden_size=v_hidden, intermediate_size=4 * v_hidden,
                      num_hidden_layers=v_layers, num_attention_heads=max(1, v_hidden // 32),
                      image_size=self.default_image_size[name], patch_size=patch)
        return Idefics3Config(text_config=text, vision_config=vision, scale_factor=2,
                              image_token_id=SPECIAL_TOKENS.index(IDEFICS_IMAGE_TOKEN))

    def decoder_layers(self, model):
        return model.model.text_model.layers

    def _tokens_per_image(self, config) -> int:
        vision = config.vision_config
        return (vision.image_size // vision.patch_size) ** 2 // config.scale_factor ** 2

    def pixel_values(self, images: np.ndarray, config) -> torch.Tensor:
        if images.shape[1] != config.vision_config.image_size:
            raise BackboneError(f"Idefics3 vision tower expects {config.vision_config.image_size}"
                                f"px images, got {images.shape[1]}px (set image_size to match)")
        # (B, H, W, 3) uint8 -> (B, 1 image, 3, H, W) in [-1, 1] (SigLIP normalisation).
        x = torch.from_numpy(images).float().mul_(2.0 / 255.0).sub_(1.0)
        return x.permute(0, 3, 1, 2).unsqueeze(1).contiguous()

    def image_prefix_ids(self, tokenizer, image_size: int, config) -> list[int]:
        fake, image, bos = tokenizer.convert_tokens_to_ids(
            [FAKE_IMAGE_TOKEN, IDEFICS_IMAGE_TOKEN, BOS_TOKEN])
        if image != config.image_token_id:
            raise BackboneError(f"tokenizer's {IDEFICS_IMAGE_TOKEN} id {image} != "
                                f"config.image_token_id {config.image_token_id}")
        return [fake] + [image] * self._tokens_per_image(config) + [fake, bos]
