"""MoRE checkpoints: a directory with only the adapter weights plus what rebuilds the rest.

Layout::

    more_config.json          MoREConfig + backbone seed + token offset + format version
    adapter_model.safetensors experts, routers, attention LoRA, action-token rows
    backbone_config.json      the frozen backbone's config (checked on load)
    action_space.json         ActionSpace.save
    tokenizer/                the tokenizer, action tokens included

The frozen backbone is referenced by ``MoREConfig.backbone``: a local checkpoint path, or a
random-config name rebuilt bit-identically from the stored seed.
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
RANDOM_CHECKPOINT_PREFIX = "random-"  # 'random-tiny' / 'random-small': untrained, for tests
QUANTIZATION_NAMES = ("none", "int8", "nf4")  # as ROS parameters and CLI flags spell them


def save_policy(policy, directory) -> Path:
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


def load_policy(policy_cls, directory, quantization=None, device="cpu"):
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


def load_model(spec: str, quantization: str | None = "none", device: str = "cpu", seed: int = 0):
    """A MoREPolicy from a checkpoint directory or 'random-<size>' (an untrained model of a
    random config, e.g. random-tiny): what the nodes, `more eval` and `more demo` accept."""
    from more_policy.model.policy import MoREPolicy

    quantization = quantization or "none"
    if quantization not in QUANTIZATION_NAMES:
        raise ValueError(f"quantization must be one of {QUANTIZATION_NAMES}, got "
                         f"{quantization!r}")
    quantization = None if quantization == "none" else quantization
    if spec.startswith(RANDOM_CHECKPOINT_PREFIX):
        size = spec[len(RANDOM_CHECKPOINT_PREFIX):]
        return MoREPolicy.from_config(MoREConfig(backbone=size), ActionSpace(), seed=seed,
                                      device=device, quantization=quantization)
    return MoREPolicy.from_pretrained(spec, quantization=quantization, device=device)
