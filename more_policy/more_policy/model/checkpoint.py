"""MoRE checkpoints: a directory with only the adapter weights plus what rebuilds the rest.

Layout::

    more_config.json          MoREConfig + backbone seed + token offset + format version
    adapter_model.safetensors experts, routers, attention LoRA, action-token rows
    backbone_config.json      the frozen backbone's config (checked on load)
    action_space.json         ActionSpace.save
    tokenizer/                the tokenizer, action tokens included

The frozen backbone is referenced by ``MoREConfig.backbone``: a local checkpoint path, or a
random-config name rebuilt bit-identically from the stored seed. This module knows the files
only; it takes the policy class as an argument so that policy.py can import it (no circle).
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from more_policy.actions import ActionSpace
from more_policy.model.config import MoREConfig

FORMAT_VERSION = 1
CONFIG_FILE = "more_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
BACKBONE_CONFIG_FILE = "backbone_config.json"
TOKENIZER_DIR = "tokenizer"


def save_pretrained(policy, directory) -> Path:
    """MoREPolicy.save_pretrained: write ``policy``'s checkpoint directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"format_version": FORMAT_VERSION, "config": policy.config.to_dict(),
            "backbone_seed": policy.seed, "token_offset": policy.token_offset}
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
    weights = {n: t.contiguous().cpu() for n, t in policy.adapter_state_dict().items()}
    save_file(weights, directory / WEIGHTS_FILE, metadata={"format": "pt"})
    (directory / BACKBONE_CONFIG_FILE).write_text(policy.model.config.to_json_string())
    policy.action_space.save(directory)
    policy.tokenizer.save_pretrained(directory / TOKENIZER_DIR)
    return directory


def read_meta(directory) -> dict:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: not a MoRE checkpoint (missing {CONFIG_FILE})")
    meta = json.loads(path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported checkpoint format {meta.get('format_version')}")
    return meta


def load_pretrained(policy_cls, directory, quantization=None, device="cpu"):
    """MoREPolicy.from_pretrained: rebuild the backbone, then load the adapter weights."""
    directory = Path(directory)
    meta = read_meta(directory)
    cfg = MoREConfig.from_dict(meta["config"])
    policy = policy_cls.from_config(cfg, ActionSpace.load(directory), seed=meta["backbone_seed"],
                                    device=device, quantization=quantization)
    if policy.token_offset != meta["token_offset"]:
        raise ValueError(f"{directory}: backbone vocabulary changed (action tokens at "
                         f"{policy.token_offset}, checkpoint has {meta['token_offset']})")
    state = load_file(directory / WEIGHTS_FILE, device=str(policy.device))
    policy.load_trainable_state_dict(state, strict=True)
    return policy
