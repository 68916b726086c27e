"""The CNN behaviour-cloning baseline: one camera frame + the instruction -> the 12-d command.

The analogue of the paper's CLIP / VC-1 rows, trained from scratch (torch only): a small
strided CNN whose feature maps are modulated (FiLM) by a bag-of-words embedding of the
instruction, then a flattened spatial map (where the target is in the image matters for the
yaw rate, so no global pooling) and two heads:

- the 11 continuous dimensions by regression on values scaled to [-1, 1] by the ActionSpace
  ranges (a 256-way softmax learned the yaw rate ~7x slower than regression in a probe);
- terminate as one binary logit.

Decoding goes through :class:`~more_policy.actions.ActionSpace` (clip, encode to bins), the
one source of truth, so a baseline command is exactly representable by MoRE's tokens.

A checkpoint directory holds ``cnn_config.json`` (:class:`CNNConfig`, including the word
vocabulary), ``model.safetensors`` and ``action_space.json``; :func:`is_cnn_checkpoint` tells it
apart from a MoRE checkpoint.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from more_policy.actions import NUM_DIMS, TERMINATE_INDEX, ActionSpace
from more_policy.vision import to_model_frame

CONFIG_FILE = "cnn_config.json"
WEIGHTS_FILE = "model.safetensors"
POLICY_KIND = "cnn_bc"
UNKNOWN_WORD = "<unk>"
CONTINUOUS = [i for i in range(NUM_DIMS) if i != TERMINATE_INDEX]


@dataclass
class CNNConfig:
    """Architecture and input format of the baseline (saved with the checkpoint)."""

    image_size: int = 64  # frames are resized (INTER_AREA) to image_size x image_size
    channels: tuple[int, ...] = (24, 32, 48, 64)  # one stride-2 conv block each
    word_dim: int = 64  # bag-of-words instruction embedding
    hidden_dim: int = 256
    dropout: float = 0.1
    vocab: tuple[str, ...] = (UNKNOWN_WORD,)  # index 0 is the unknown word
    kind: str = POLICY_KIND

    def __post_init__(self) -> None:
        self.channels, self.vocab = tuple(self.channels), tuple(self.vocab)
        if self.kind != POLICY_KIND:
            raise ValueError(f"not a CNN baseline config (kind {self.kind!r})")
        if not self.vocab or self.vocab[0] != UNKNOWN_WORD:
            raise ValueError(f"vocab must start with {UNKNOWN_WORD!r}")
        if self.image_size % 2 ** len(self.channels) or not self.channels:
            raise ValueError(f"image_size {self.image_size} must be divisible by "
                             f"2**{len(self.channels)} (one halving per conv block)")

    @property
    def feature_size(self) -> int:
        """Side of the last feature map."""
        return self.image_size // 2 ** len(self.channels)


def words(text: str) -> list[str]:
    """Lower-case alphabetic words: the instruction tokenizer (punctuation and digits dropped)."""
    return re.findall(r"[a-z]+", text.lower())


def build_vocab(instructions) -> tuple[str, ...]:
    """Every word of the training instructions, sorted, after the unknown word."""
    return (UNKNOWN_WORD, *sorted({w for text in instructions for w in words(text)}))


def preprocess_frames(frames, image_size: int) -> np.ndarray:
    """RGB uint8 camera or model frames (H, W, 3) -> (B, 3, S, S) uint8 through the one
    frame rule (:func:`more_policy.vision.to_model_frame`); raises FrameError."""
    out = np.empty((len(frames), 3, image_size, image_size), dtype=np.uint8)
    for i, frame in enumerate(frames):
        out[i] = to_model_frame(frame, image_size).transpose(2, 0, 1)
    return out


class FiLMBlock(nn.Module):
    """Conv 3x3 stride 2 -> GroupNorm -> FiLM by the instruction -> ReLU."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)
        self.norm = nn.GroupNorm(8, c_out, affine=False)
        self.film = nn.Linear(cond_dim, 2 * c_out)
        nn.init.zeros_(self.film.weight)  # starts as the identity modulation
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film(cond)[:, :, None, None].chunk(2, dim=1)
        return torch.relu(self.norm(self.conv(x)) * (1 + gamma) + beta)


@dataclass
class CNNAction:
    """What :meth:`CNNPolicy.act` returns (the fields MoRE's ActResult shares)."""

    values: np.ndarray  # (B, 12) SI command, clipped into the ActionSpace ranges
    bins: np.ndarray  # (B, 12) ActionSpace.encode(values)
    terminate_prob: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (B,)


class CNNPolicy(nn.Module):
    """Frame + instruction -> scaled continuous dims (B, 11) and a terminate logit (B,)."""

    def __init__(self, config: CNNConfig, action_space: ActionSpace | None = None):
        super().__init__()
        self.config, self.space = config, action_space or ActionSpace()
        self.word_index = {w: i for i, w in enumerate(config.vocab)}
        self.words = nn.Linear(len(config.vocab), config.word_dim)
        blocks, c_in = [], 3 + 2  # RGB + two coordinate channels
        for c_out in config.channels:
            blocks.append(FiLMBlock(c_in, c_out, config.word_dim))
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        side = config.feature_size
        self.head = nn.Sequential(
            nn.Linear(c_in * side * side + config.word_dim, config.hidden_dim), nn.ReLU(),
            nn.Dropout(config.dropout), nn.Linear(config.hidden_dim, config.hidden_dim),
            nn.ReLU(), nn.Linear(config.hidden_dim, len(CONTINUOUS) + 1))
        ramp = torch.linspace(-1.0, 1.0, config.image_size)
        self.register_buffer("coords", torch.stack(torch.meshgrid(ramp, ramp, indexing="ij")),
                             persistent=False)
        low, high = self.space.low[CONTINUOUS], self.space.high[CONTINUOUS]
        self.register_buffer("low", torch.tensor(low, dtype=torch.float32), persistent=False)
        self.register_buffer("high", torch.tensor(high, dtype=torch.float32), persistent=False)

    # -- inputs --------------------------------------------------------------------------
    def encode_instructions(self, instructions: list[str]) -> torch.Tensor:
        """Bag of words (B, V): counts of each vocabulary word, unknown words in slot 0."""
        bag = torch.zeros(len(instructions), len(self.config.vocab))
        for i, text in enumerate(instructions):
            if not isinstance(text, str):
                raise ValueError(f"instructions must be strings, got {type(text).__name__}")
            for w in words(text):
                bag[i, self.word_index.get(w, 0)] += 1.0
        return bag.to(self.coords.device)

    def scale(self, commands: torch.Tensor) -> torch.Tensor:
        """SI commands (B, 12) -> continuous dims scaled to [-1, 1] (B, 11), the targets."""
        return 2 * (commands[:, CONTINUOUS] - self.low) / (self.high - self.low) - 1

    def unscale(self, scaled: torch.Tensor) -> torch.Tensor:
        return self.low + (scaled + 1) * (self.high - self.low) / 2

    # -- model ---------------------------------------------------------------------------
    def forward(self, images: torch.Tensor, bags: torch.Tensor):
        """images (B, 3, S, S) uint8, bags (B, V) -> (scaled continuous (B, 11), logit (B,))."""
        x = images.float() / 127.5 - 1.0
        x = torch.cat([x, self.coords.expand(len(x), -1, -1, -1)], dim=1)
        cond = torch.relu(self.words(bags))
        for block in self.blocks:
            x = block(x, cond)
        out = self.head(torch.cat([x.flatten(1), cond], dim=1))
        return out[:, :-1], out[:, -1]

    @torch.no_grad()
    def act(self, images, instructions: list[str]) -> CNNAction:
        """Batched greedy command for raw RGB frames (any size) and instruction strings."""
        if len(images) != len(instructions):
            raise ValueError(f"{len(images)} images but {len(instructions)} instructions")
        was_training = self.training
        self.eval()
        pixels = torch.from_numpy(preprocess_frames(images, self.config.image_size))
        scaled, logit = self(pixels.to(self.coords.device), self.encode_instructions(instructions))
        self.train(was_training)
        values = np.zeros((len(images), NUM_DIMS))
        values[:, CONTINUOUS] = self.unscale(scaled.clamp(-1, 1)).double().cpu().numpy()
        prob = torch.sigmoid(logit).double().cpu().numpy()
        values[:, TERMINATE_INDEX] = (prob >= 0.5).astype(float)
        values = self.space.clip(values)
        return CNNAction(values, self.space.encode(values), prob)

    # -- persistence ---------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, extra: dict | None = None) -> Path:
        """Write cnn_config.json (+ ``extra`` run metadata), model.safetensors, action space."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {**asdict(self.config), **({"training": extra} if extra else {})}
        (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()},
                  str(directory / WEIGHTS_FILE))
        self.space.save(directory)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> CNNPolicy:
        directory = Path(directory)
        if not is_cnn_checkpoint(directory):
            raise FileNotFoundError(f"{directory}: not a CNN baseline checkpoint "
                                    f"(missing {CONFIG_FILE})")
        meta = json.loads((directory / CONFIG_FILE).read_text())
        meta.pop("training", None)
        try:
            config = CNNConfig(**meta)
        except TypeError as e:
            raise ValueError(f"{directory / CONFIG_FILE}: malformed config: {e}") from e
        model = cls(config, ActionSpace.load(directory))
        model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
        model.eval()
        return model


def is_cnn_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a CNN baseline checkpoint directory (it has cnn_config.json)."""
    return (Path(path) / CONFIG_FILE).is_file()
