"""The paper's backbone: Fuyu (raw 30x30 patches -> one linear -> Persimmon decoder)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from more_policy.model.backbones import BackboneAdapter, BackboneError, FFNSpec
from more_policy.model.tokenizer import BOS_TOKEN, IMAGE_ROW_TOKEN, IMAGE_TOKEN

# A Fuyu built with num_channels = 5 reads two extra channels per pixel: its column and row,
# scaled to [-1, 1]. Fuyu's only notion of where a patch lies is rotary attention along the
# token sequence, which a small model trained from scratch does not learn to turn into
# "left / ahead / right" (measured: goal-column probe r 0.14 after 4000 pretraining steps
# without these channels, 0.46 with them; README, pretrained backbone);
# Fuyu-8B checkpoints keep num_channels = 3 and are unaffected.
COORDINATE_CHANNELS = ("column", "row")


@lru_cache(maxsize=8)
def coordinate_planes(height: int, width: int) -> torch.Tensor:
    """(1, H, W, 2): each pixel's column and row in [-1, 1] (cached: every act() needs them;
    callers only read them)."""
    rows = torch.linspace(-1.0, 1.0, height).view(height, 1).expand(height, width)
    cols = torch.linspace(-1.0, 1.0, width).view(1, width).expand(height, width)
    return torch.stack([cols, rows], dim=-1).unsqueeze(0)


class FuyuBackbone(BackboneAdapter):
    """Fuyu (the paper's backbone): raw 30x30 patches -> one linear -> Persimmon decoder."""

    kind = "fuyu"
    model_type = "fuyu"
    ffn = FFNSpec(mlp_attr="mlp", up="dense_h_to_4h", down="dense_4h_to_h", act="act")
    attention_targets = r".*self_attn\.(query_key_value|dense)"
    default_image_size = {"tiny": 32, "small": 240, "full": 240}
    extra_input_names = ("image_features",)  # from encode_images

    # name -> (hidden, layers, heads, ffn, vocab, patch)
    RANDOM = {"tiny": (64, 2, 4, 256, 512, 16), "small": (640, 10, 10, 2560, 8192, 30)}

    def model_class(self):
        from transformers import FuyuForCausalLM

        return FuyuForCausalLM

    def random_config(self, name: str):
        from transformers import FuyuConfig

        if name == "full":  # Fuyu-8B's architecture (random weights; for counting and benches)
            return FuyuConfig(image_token_id=3, pad_token_id=0)
        if name not in self.RANDOM:
            raise BackboneError(f"unknown random Fuyu config {name!r}; known: "
                                f"{sorted(self.RANDOM) + ['full']}")
        hidden, layers, heads, ffn, vocab, patch = self.RANDOM[name]
        text = dict(model_type="persimmon", vocab_size=vocab, hidden_size=hidden,
                    intermediate_size=ffn, num_hidden_layers=layers, num_attention_heads=heads,
                    max_position_embeddings=2048, hidden_act="relu2", qk_layernorm=True,
                    partial_rotary_factor=0.5, pad_token_id=0, bos_token_id=1, eos_token_id=2)
        return FuyuConfig(text_config=text, patch_size=patch, image_size=self.default_image_size[
            name], image_token_id=3, pad_token_id=0)

    def pixel_values(self, images: np.ndarray, config) -> torch.Tensor:
        # (B, H, W, 3) uint8 -> (B, num_patches, patch*patch*3), each patch (row, col, channel)
        # flattened like FuyuImageProcessor.patchify_image; values scaled to [-1, 1].
        b, h, w, c = images.shape
        p = config.patch_size
        if h % p or w % p:
            raise BackboneError(f"image size {h}x{w} is not a multiple of the patch size {p}")
        x = torch.from_numpy(images).float().mul_(2.0 / 255.0).sub_(1.0)
        extra = config.num_channels - c
        if extra == len(COORDINATE_CHANNELS):
            x = torch.cat([x, coordinate_planes(h, w).expand(b, h, w, extra)], dim=-1)
            c = config.num_channels
        elif extra:
            raise BackboneError(f"the backbone takes {config.num_channels}-channel patches; "
                                f"images have {c} channels")
        x = x.view(b, h // p, p, w // p, p, c).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(b, (h // p) * (w // p), p * p * c)

    def image_prefix_ids(self, tokenizer, image_size: int, config) -> list[int]:
        # Each patch row: one placeholder per patch, then the row-end token; then BOS.
        per_row = image_size // config.patch_size
        ids = tokenizer.convert_tokens_to_ids([IMAGE_TOKEN, IMAGE_ROW_TOKEN, BOS_TOKEN])
        if ids[0] != config.image_token_id:
            raise BackboneError(f"tokenizer's {IMAGE_TOKEN} id {ids[0]} != config.image_token_id "
                                f"{config.image_token_id}")
        return ([ids[0]] * per_row + [ids[1]]) * per_row + [ids[2]]

    def encode_images(self, model, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # The patch projection is frozen: a training step's target and online forwards share it.
        with torch.no_grad():
            features = model.model.get_image_features(inputs["pixel_values"]).last_hidden_state
        rest = {k: v for k, v in inputs.items() if k != "pixel_values"}
        return {**rest, "image_features": features}

    def forward(self, model, input_ids, pixel_values, attention_mask, position_ids,
                past_key_values=None, use_cache: bool = False, logits_to_keep: int = 0,
                image_features: torch.Tensor | None = None):
        encoded = None if image_features is None else {
            "image": BaseModelOutputWithPooling(last_hidden_state=image_features)}
        return model(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask,
                     position_ids=position_ids, past_key_values=past_key_values,
                     use_cache=use_cache, logits_to_keep=logits_to_keep,
                     mm_encoder_outputs=encoded)
