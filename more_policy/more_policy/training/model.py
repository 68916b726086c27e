"""The MoRE policy as the Q-model rl/objective.py trains, and batches in the form it takes."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from more_policy.actions import ActionSpace
from more_policy.data.format import decode_jpeg
from more_policy.model import MoREPolicy
from more_policy.model.backbones import TORCH_DTYPES
from more_policy.rl.objective import QOutput
from more_policy.training.config import TrainConfig


class FrameFeatureCache:
    """Each JPEG frame's projected image patches, kept from its first draw: the patch
    projection is frozen, so later draws of the frame (as s or as s', ~50 per frame in a
    45-min 'small' run) skip decoding, resizing, patchifying and projecting, with the same
    values. Holds at most ``max_frames`` frames (later ones are computed every time); a frame
    costs patches x hidden floats (9 KB for the tiny backbone at 96 px, 64 KB for the
    pretrained one's shape). Fuyu-style backbones only (those whose encode_images projects)."""

    def __init__(self, policy: MoREPolicy, max_frames: int) -> None:
        if "image_features" not in policy.backbone_adapter.extra_input_names:
            raise ValueError(f"the {policy.config.backbone_kind} backbone takes no projected "
                             f"image features: no frame feature cache")
        self.policy, self.max_frames = policy, int(max_frames)
        self._features: dict[bytes, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._features)

    def features(self, frames: list[bytes]) -> torch.Tensor:
        """JPEG frames -> their projected patches (B, patches, hidden)."""
        if not all(isinstance(f, bytes) for f in frames):
            raise TypeError("the frame feature cache takes JPEG bytes (a dataset read with "
                            "decode_images=False)")
        missing = list(dict.fromkeys(f for f in frames if f not in self._features))
        computed = {}
        if missing:
            policy = self.policy
            values = policy.image_inputs([decode_jpeg(f) for f in missing])["pixel_values"].to(
                device=policy.device, dtype=TORCH_DTYPES[policy.config.dtype])
            computed = dict(zip(missing, policy.backbone_adapter.encode_images(
                policy.model, {"pixel_values": values})["image_features"]))
            for frame in missing[:max(0, self.max_frames - len(self._features))]:
                self._features[frame] = computed[frame]
        return torch.stack([self._features.get(f, computed.get(f)) for f in frames])


class PolicyQModel(nn.Module):
    """Adapts MoREPolicy to the Q-model interface of rl/objective.py."""

    def __init__(self, policy: MoREPolicy, frame_cache_frames: int = 0) -> None:
        super().__init__()
        self.policy = policy
        self.frame_cache = FrameFeatureCache(policy, frame_cache_frames) \
            if frame_cache_frames else None

    @property
    def action_token_slice(self) -> slice:
        return slice(self.policy.token_offset, self.policy.token_offset + self.policy.num_bins)

    @property
    def stop_bins(self) -> torch.Tensor:  # (A,) bool: last-dimension bins meaning terminate
        return torch.from_numpy(self.policy.action_space.stop_bins())

    def make_state(self, images, instructions) -> dict[str, torch.Tensor]:
        """The prefix inputs, prepared once (image patches projected): the target and online
        forwards both use them. ``images``: frames, or JPEG bytes with a :attr:`frame_cache`."""
        policy = self.policy
        if self.frame_cache is not None:
            device = policy.device
            return {**{k: v.to(device) for k, v in policy.prompt_inputs(list(instructions))
                       .items()}, "image_features": self.frame_cache.features(images)}
        inputs = policy.prepare(list(images), list(instructions))
        return policy.backbone_adapter.encode_images(policy.model, inputs)

    def forward(self, state: dict[str, torch.Tensor], action_bins: torch.Tensor | None
                ) -> QOutput:
        policy = self.policy
        out = policy(state if action_bins is None else policy.with_actions(state, action_bins))
        return QOutput(out.action_logits, out.vocab_logits, out.balance_loss,
                       expert_load=out.router_stats["top1_fraction"])


def build_policy_model(cfg: TrainConfig, action_space: ActionSpace) -> PolicyQModel:
    policy = MoREPolicy.from_config(cfg.model, action_space, seed=cfg.seed)
    if cfg.gradient_checkpointing:
        policy.model.gradient_checkpointing_enable()
    if cfg.compile:
        policy.compile_decoder()
    return PolicyQModel(policy, cfg.frame_cache_frames)


def to_batch(samples: dict[str, Any], model: nn.Module, device) -> dict[str, Any]:
    """Collated transitions -> the objective's batch (model states + tensors on device)."""
    state = model.make_state(samples["images"], samples["instructions"])
    next_state = model.make_state(samples["next_images"], samples["instructions"])
    out = {k: v.to(device) if isinstance(v, torch.Tensor) else v
           for k, v in (("state", state), ("next_state", next_state))}
    for key in ("action_bins", "next_action_bins", "rewards", "dones", "mc_returns",
                "transition_ids"):
        out[key] = samples[key].to(device)
    return out
