"""Backbone kinds by name: ``MoREConfig.backbone_kind`` -> its adapter (one file each)."""

from __future__ import annotations

from more_policy.model.backbones import BackboneAdapter, BackboneError
from more_policy.model.fuyu import FuyuBackbone
from more_policy.model.idefics3 import Idefics3Backbone

BACKBONES: dict[str, type[BackboneAdapter]] = {"fuyu": FuyuBackbone,
                                                "idefics3": Idefics3Backbone}


def get_backbone(kind: str) -> BackboneAdapter:
    if kind not in BACKBONES:
        raise BackboneError(f"unknown backbone kind {kind!r}; known: {sorted(BACKBONES)}")
    return BACKBONES[kind]()
