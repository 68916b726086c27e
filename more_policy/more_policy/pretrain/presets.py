"""Named pretraining configurations: the committed backbone and a CI-seconds one."""

from __future__ import annotations

from more_policy.pretrain.data import SplitSpec
from more_policy.pretrain.model import BackboneShape
from more_policy.pretrain.train import PretrainConfig


def sim_fuyu() -> PretrainConfig:
    """artifacts/backbones/sim-fuyu-256 (hidden 256, 4 layers, 96 px, patch 12; 3.9 M
    parameters, 7.6 MB in bf16), 4000 steps of batch 16 on 7200 frames: 0.6-1.4 s/step on one
    core (40-90 min by load). A 600-step run was not enough
    (artifacts/results/pretrain-sim-fuyu-256-600: VQA at the answer priors)."""
    return PretrainConfig()


def sim_fuyu_without_coordinates() -> PretrainConfig:
    """The same run in Fuyu's plain 3-channel layout (artifacts/results/
    pretrain-sim-fuyu-256-4000-nocoord): what the coordinate channels are measured against."""
    return PretrainConfig(name="sim-fuyu-256-nocoord",
                          out_dir="outputs/pretrain/sim-fuyu-256-nocoord",
                          save_dir="outputs/pretrain/sim-fuyu-256-nocoord/backbone",
                          shape=BackboneShape(coordinate_channels=False))


def tiny() -> PretrainConfig:
    """Seconds-sized: proves pretrain -> save -> MoRE -> act, learns nothing useful."""
    return PretrainConfig(
        name="sim-fuyu-tiny", out_dir="outputs/pretrain/sim-fuyu-tiny",
        save_dir="outputs/pretrain/sim-fuyu-tiny/backbone",
        shape=BackboneShape(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                            vocab_size=512, patch_size=16, image_size=32),
        train_split=SplitSpec("train", 1, 2), heldout_split=SplitSpec("heldout", 1, 1),
        unseen_split=SplitSpec("unseen", 1, 1, colors="unseen"),
        max_steps=3, batch_size=4, checkpoint_every=2, eval_every=3, eval_samples=8,
        progress=False)


PRESETS = {"sim-fuyu-256": sim_fuyu, "sim-fuyu-256-nocoord": sim_fuyu_without_coordinates,
           "tiny": tiny}


def pretrain_preset(name: str) -> PretrainConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown pretraining preset {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name]()
