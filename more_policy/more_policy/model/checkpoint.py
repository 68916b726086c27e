"""MoRE checkpoints: a directory with only the adapter weights plus what rebuilds the rest.

Layout::

    more_config.json          MoREConfig + backbone seed + token offset + format version
    adapter_model.safetensors experts, routers, attention LoRA, action-token rows
    backbone_config.json      the frozen backbone's config (checked on load)
    action_space.json         ActionSpace.save
    tokenizer/                the tokenizer, action tokens included

The frozen backbone is referenced by ``MoREConfig.backbone``: a local checkpoint path, or a
random-config name rebuilt bit-identically from the stored seed. A local path is stored
relative to the checkpoint directory (``../backbones/sim-fuyu-256``), so a checkpoint and its
backbone can move together and load from any working directory (a launched ROS node's).
This module knows the files only; it takes the policy class as an argument so that policy.py
can import it (no circle).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
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
    config = policy.config
    if not config.is_random_backbone:
        backbone = Path(config.backbone).resolve()
        config = replace(config, backbone=os.path.relpath(backbone, directory.resolve()))
    meta = {"format_version": FORMAT_VERSION, "config": config.to_dict(),
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


def resolve_backbone(cfg: MoREConfig, directory: Path) -> MoREConfig:
    """A relative backbone path is relative to the checkpoint directory; checkpoints written
    before that convention stored it relative to the working directory, which still loads."""
    if cfg.is_random_backbone or Path(cfg.backbone).is_absolute():
        return cfg
    beside = directory / cfg.backbone
    if beside.exists() or not Path(cfg.backbone).exists():
        return replace(cfg, backbone=str(beside.resolve()))
    return cfg


def copy_checkpoint(source, target) -> Path:
    """Copy a checkpoint directory; a local backbone stays referenced relative to the copy."""
    source, target = Path(source), Path(target)
    shutil.copytree(source, target)
    meta = read_meta(target)
    cfg = resolve_backbone(MoREConfig.from_dict(meta["config"]), source)
    if not cfg.is_random_backbone:
        meta["config"]["backbone"] = os.path.relpath(Path(cfg.backbone).resolve(),
                                                     target.resolve())
        (target / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
    return target


def load_pretrained(policy_cls, directory, quantization=None, device="cpu"):
    """MoREPolicy.from_pretrained: rebuild the backbone, then load the adapter weights."""
    directory = Path(directory)
    meta = read_meta(directory)
    cfg = resolve_backbone(MoREConfig.from_dict(meta["config"]), directory)
    policy = policy_cls.from_config(cfg, ActionSpace.load(directory), seed=meta["backbone_seed"],
                                    device=device, quantization=quantization)
    if policy.token_offset != meta["token_offset"]:
        raise ValueError(f"{directory}: backbone vocabulary changed (action tokens at "
                         f"{policy.token_offset}, checkpoint has {meta['token_offset']})")
    state = load_file(directory / WEIGHTS_FILE, device=str(policy.device))
    policy.load_trainable_state_dict(state, strict=True)
    return policy
