"""Hugging Face's FuyuProcessor made usable here (no torchvision), for tools that want it.

MoREPolicy.prepare builds Fuyu's input layout directly (faster, batched, left-padded); this
processor gives the same token ids and patches for square images of the configured size (a
test checks it), so datasets or scripts written against FuyuProcessor interoperate.

The workaround: without torchvision, FuyuImageProcessor falls back to a PIL backend whose
``patchify_image`` is numpy code, but FuyuProcessor hands it torch tensors (TypeError). The
subclass below patchifies torch tensors with ``unfold`` in the same (row, col, channel) order.
"""

from __future__ import annotations

import torch
from transformers import FuyuProcessor
from transformers.models.fuyu.image_processing_pil_fuyu import FuyuImageProcessorPil


class TorchPatchifyFuyuImageProcessor(FuyuImageProcessorPil):
    def patchify_image(self, image, patch_size=None) -> torch.Tensor:
        # image (B, C, H, W) -> (B, num_patches, C * ph * pw), each patch (row, col, channel)
        patch_size = patch_size if patch_size is not None else self.patch_size
        ph, pw = patch_size["height"], patch_size["width"]
        image = torch.as_tensor(image)
        b, c = image.shape[:2]
        patches = image.unfold(2, ph, ph).unfold(3, pw, pw)  # (B, C, nh, nw, ph, pw)
        patches = patches.contiguous().view(b, c, -1, ph, pw).permute(0, 2, 3, 4, 1)
        return patches.reshape(b, -1, c * ph * pw)


def make_fuyu_processor(tokenizer, image_size: int, patch_size: int) -> FuyuProcessor:
    image_processor = TorchPatchifyFuyuImageProcessor(
        size={"height": image_size, "width": image_size},
        patch_size={"height": patch_size, "width": patch_size})
    return FuyuProcessor(image_processor=image_processor, tokenizer=tokenizer)
