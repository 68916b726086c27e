"""TrainConfig: one training run (data, model, objective, schedule, logging, checkpoints).

Every nested section is a dataclass (``model``: MoREConfig, ``rl``: RLConfig) and every key
is checked when the config is built, so a typo fails before any data or model is loaded.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from more_policy.model.config import MoREConfig
from more_policy.rl.objective import RLConfig

TRAIN_CONFIG_FILE = "train_config.json"
MIXED_PRECISIONS = ("auto", "no", "bf16", "fp16")


@dataclass
class TrainConfig:
    data: str = ""
    out_dir: str = "runs/more"
    model: MoREConfig = field(default_factory=MoREConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    batch_size: int = 16              # per process (paper: 16 per GPU)
    grad_accum: int = 1
    max_steps: int = 1000
    max_seconds: float = 0.0          # 0: none; else stop (checkpoint + final/) after this long
    lr: float = 2e-5                  # QUART scripts: 2e-5, cosine, 3 % warmup
    min_lr_ratio: float = 0.1
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    mixed_precision: str = "auto"     # auto (bf16 on a bf16-capable GPU) | no | bf16 | fp16
    gradient_checkpointing: bool = False
    compile: bool = False             # torch.compile the decoder (MoREPolicy.compile_decoder)
    frame_cache_frames: int = 0       # >0: keep up to this many frames' projected patches
    seed: int = 0
    shuffle_block: int = 8
    decode_threads: int = 4           # JPEG decoding threads per process
    log_every: int = 10
    log_with: str = "csv"             # csv | tensorboard | csv,tensorboard
    save_every: int = 500
    keep_checkpoints: int = 2
    eval_every: int = 0               # 0: never; calls the evaluation hook
    eval_data: str = ""               # optional held-out dataset for the built-in evaluation
    eval_batches: int = 4
    resume: str = "auto"              # auto (latest checkpoint in out_dir) | never | a path

    def __post_init__(self) -> None:
        # Sections given as plain dicts (YAML, JSON, keyword arguments) become dataclasses here.
        if isinstance(self.model, dict):
            self.model = MoREConfig.from_dict(self.model)
        if isinstance(self.rl, dict):
            self.rl = section_from_dict(RLConfig, self.rl, "rl")
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISIONS}, got "
                             f"{self.mixed_precision!r}")
        if self.batch_size < 1 or self.grad_accum < 1 or self.max_steps < 0:
            raise ValueError(f"need batch_size >= 1, grad_accum >= 1, max_steps >= 0; got "
                             f"{self.batch_size}, {self.grad_accum}, {self.max_steps}")
        if self.log_every < 1 or self.keep_checkpoints < 1:
            raise ValueError(f"log_every and keep_checkpoints must be >= 1, got "
                             f"{self.log_every}, {self.keep_checkpoints}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return section_from_dict(cls, data, "training")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / TRAIN_CONFIG_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """A YAML or JSON file of TrainConfig fields (missing ones keep their defaults)."""
        text = Path(path).read_text()
        if str(path).endswith((".yaml", ".yml")):
            import yaml

            return cls.from_dict(yaml.safe_load(text) or {})
        return cls.from_dict(json.loads(text))


def section_from_dict(cls, data: dict[str, Any], what: str):
    """``cls(**data)`` with unknown keys reported by name (a bare TypeError would not say which
    section of the config they were in)."""
    if not isinstance(data, dict):
        raise ValueError(f"{what} options must be a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} options {unknown}; known: {sorted(known)}")
    return cls(**data)


def set_option(data: dict[str, Any], dotted_key: str, value: Any) -> None:
    """Set ``a.b.c`` in nested dicts; every part but the last must name an existing section,
    so a misspelt or too-deep key is an error instead of a silently ignored value."""
    *sections, name = dotted_key.split(".")
    node, path = data, []
    for part in sections:
        path.append(part)
        child = node.get(part) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            what = "is not a section" if part in node else "does not exist"
            sections = sorted(k for k, v in node.items() if isinstance(v, dict))
            raise ValueError(f"cannot set {dotted_key!r}: {'.'.join(path)!r} {what}"
                             + (f"; sections there: {sections}" if sections else ""))
        node = child
    node[name] = value


def apply_overrides(base: Any, overrides: list[str]) -> dict[str, Any]:
    """A config dataclass (or dict) plus ``KEY=JSON`` strings (``--set``) -> a plain dict;
    values that are not valid JSON are taken as strings."""
    data = json.loads(json.dumps(asdict(base) if is_dataclass(base) else base))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        set_option(data, key, parsed)
    return data
