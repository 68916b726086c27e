"""MoREPolicy: a frozen VLM with MixLoRA experts, read as a per-dimension Q-function.

Sequence layout (Fuyu): ``[image rows][BOS] prompt [BOA] a_1 ... a_11``; the logits at BOA give
dimension 1's Q-values, the logits after ``a_i`` give dimension i+1's (teacher forcing). Prompts
are left-padded so every sample's answer starts at the same column; position ids skip padding.
``Q = sigmoid(logit)`` of the 256 action tokens (Q-Transformer / MoRE, Eq. 7-8).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from more_policy.actions import NUM_DIMS, ActionSpace
from more_policy.model import checkpoint
from more_policy.model.adapters import adapter_state_dict, inject_more_adapters
from more_policy.model.backbone_registry import get_backbone
from more_policy.model.backbones import TORCH_DTYPES, begin_answer_id, resize_images
from more_policy.model.config import MoREConfig
from more_policy.model.mixlora import MixLoRAFFN
from more_policy.model.quantization import bnb_config
from more_policy.model.tokenizer import ensure_action_tokens


@dataclass
class MoREOutput:
    action_logits: torch.Tensor  # (B, D, num_bins); D = 12 with action_bins, else 1
    vocab_logits: torch.Tensor  # (B, D, V) full vocabulary at the same positions
    balance_loss: torch.Tensor  # () Switch convention, mean over layers (see MoREConfig)
    router_stats: dict[str, torch.Tensor]  # top1_fraction, mean_probs: (num_layers, N)

    @property
    def q_values(self) -> torch.Tensor:  # (B, D, num_bins)
        return torch.sigmoid(self.action_logits)


@dataclass
class ActResult:
    bins: torch.Tensor  # (B, 12) int64
    token_ids: torch.Tensor  # (B, 12) int64
    values: np.ndarray  # (B, 12) decoded SI command (bin centres)
    q_values: torch.Tensor  # (B, 12) Q of each chosen token
    expert_usage: torch.Tensor  # (num_layers, num_experts) top-1 fractions over all tokens
    prefill_ms: float = 0.0
    decode_ms: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class MoREPolicy(nn.Module):
    """Use :meth:`from_config` (new adapters) or :meth:`from_pretrained` (a saved checkpoint)."""

    def __init__(self, cfg: MoREConfig, model: nn.Module, tokenizer, action_space: ActionSpace,
                 seed: int = 0, quantization: str | None = None):
        super().__init__()
        self.config = cfg
        self.model = model
        self.tokenizer = tokenizer
        self.action_space = action_space
        self.seed = seed
        self.quantization = quantization
        self.backbone_adapter = get_backbone(cfg.backbone_kind)
        self.token_offset = self.backbone_adapter.text_config(model.config).vocab_size
        self.num_bins = action_space.num_bins
        ensure_action_tokens(tokenizer, self.token_offset, self.num_bins)
        self.moe_layers: list[MixLoRAFFN] = inject_more_adapters(
            model, self.backbone_adapter, cfg, self.num_bins, seed)
        kind = cfg.backbone if cfg.is_random_backbone else "full"
        self.image_size = cfg.image_size or self.backbone_adapter.default_image_size[kind]
        self._image_prefix = self.backbone_adapter.image_prefix_ids(tokenizer, self.image_size,
                                                                    model.config)
        self._begin_answer = begin_answer_id(tokenizer)
        self._prompt_ids = functools.lru_cache(maxsize=4096)(self._tokenize)  # same few prompts
        # Built or loaded policies start in eval mode (no LoRA dropout); a trainer calls train().
        self.eval()

    # -- construction --------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: MoREConfig, action_space: ActionSpace | None = None, seed: int = 0,
                    device: str = "cpu", quantization: str | None = None) -> MoREPolicy:
        """A fresh policy: random backbone ('tiny'/'small'/'full') or a local checkpoint path."""
        backbone = get_backbone(cfg.backbone_kind)
        qconfig = bnb_config(quantization, compute_dtype=TORCH_DTYPES[cfg.dtype])
        if cfg.is_random_backbone:
            model, tokenizer = backbone.build_random(cfg.backbone, seed, cfg.dtype, device, qconfig)
        else:
            model, tokenizer = backbone.load(cfg.backbone, cfg.dtype, device, qconfig)
        return cls(cfg, model, tokenizer, action_space or ActionSpace(), seed, quantization)

    @classmethod
    def from_pretrained(cls, directory, quantization: str | None = None,
                        device: str = "cpu") -> MoREPolicy:
        return checkpoint.load_pretrained(cls, directory, quantization=quantization,
                                          device=device)

    def save_pretrained(self, directory) -> None:
        checkpoint.save_pretrained(self, directory)

    # -- parameters ----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().action_rows.device

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Detached views of the trainable weights (copy them for an EMA target network)."""
        return {n: p.detach() for n, p in self.model.named_parameters() if p.requires_grad}

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """Every weight MoRE added (trainable ones plus frozen action rows if any)."""
        return {n: p.detach() for n, p in adapter_state_dict(self.model).items()}

    @torch.no_grad()
    def load_trainable_state_dict(self, state: dict[str, torch.Tensor], strict: bool = True):
        """Copy weights (a subset of :meth:`adapter_state_dict` names) into the model."""
        params = adapter_state_dict(self.model)
        unknown = sorted(set(state) - set(params))
        missing = sorted(set(self.trainable_state_dict()) - set(state))
        if unknown or (strict and missing):
            raise KeyError(f"adapter weights mismatch: unknown {unknown[:5]}, missing "
                           f"{missing[:5]} ({len(unknown)} unknown, {len(missing)} missing)")
        for name, value in state.items():
            if params[name].shape != value.shape:
                raise ValueError(f"{name}: shape {tuple(value.shape)} != model's "
                                 f"{tuple(params[name].shape)}")
            params[name].copy_(value)

    @contextlib.contextmanager
    def using_weights(self, state: dict[str, torch.Tensor]) -> Iterator[None]:
        """Temporarily run with other adapter weights (a target network sharing the backbone)."""
        saved = {n: t.clone() for n, t in self.trainable_state_dict().items()}
        self.load_trainable_state_dict(state)
        try:
            yield
        finally:
            self.load_trainable_state_dict(saved)

    def compile_decoder(self) -> None:
        """torch.compile each decoder layer (attention, norms, residuals fused; the MixLoRA
        experts stay eager), with dynamic shapes: one graph for every batch and prompt length.
        Same maths, float rounding aside; the first forwards and backwards pay the compilation."""
        for layer in self.backbone_adapter.decoder_layers(self.model):
            layer.compile(dynamic=True)

    # -- inputs --------------------------------------------------------------------------
    def prepare(self, images, instructions: list[str],
                action_bins: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Images (HxWx3 uint8, any size) + instructions (+ dataset bins (B, 12)) -> tensors."""
        if isinstance(instructions, str):
            raise TypeError("instructions must be a list of strings, one per image")
        if len(images) != len(instructions) or not instructions:
            raise ValueError(f"need one instruction per image, got {len(images)} images and "
                             f"{len(instructions)} instructions")
        inputs = {**self.prompt_inputs(instructions), **self.image_inputs(images)}
        device, dtype = self.device, TORCH_DTYPES[self.config.dtype]
        inputs = {k: v.to(device=device, dtype=dtype if v.is_floating_point() else None)
                  for k, v in inputs.items()}
        return inputs if action_bins is None else self.with_actions(inputs, action_bins)

    def image_inputs(self, images) -> dict[str, torch.Tensor]:
        """The pixel values (and backbone-specific image inputs) of :meth:`prepare`, on the
        CPU in float32."""
        pixels = resize_images(list(images), self.image_size)
        return {"pixel_values": self.backbone_adapter.pixel_values(pixels, self.model.config),
                **self.backbone_adapter.extra_inputs(pixels)}

    def prompt_inputs(self, instructions: list[str]) -> dict[str, torch.Tensor]:
        """The token ids (image placeholders, prompt, BOA), attention mask and position ids of
        :meth:`prepare`, on the CPU."""
        seqs = [[*self._image_prefix, *self._prompt_ids(self.config.format_prompt(text)),
                 self._begin_answer] for text in instructions]
        lengths = np.array([len(s) for s in seqs])
        length = int(lengths.max())
        ids = np.full((len(seqs), length), self.tokenizer.pad_token_id or 0, dtype=np.int64)
        for i, s in enumerate(seqs):  # left padding: the answer starts at the same column
            ids[i, length - len(s):] = s
        input_ids = torch.from_numpy(ids)
        attention_mask = torch.from_numpy(np.arange(length) >= length - lengths[:, None]).long()
        return {"input_ids": input_ids, "attention_mask": attention_mask,
                "position_ids": (attention_mask.cumsum(-1) - 1).clamp(min=0)}

    def with_actions(self, inputs: dict[str, torch.Tensor],
                     action_bins: torch.Tensor) -> dict[str, torch.Tensor]:
        """Prefix inputs from :meth:`prepare` + dataset bins (B, 12) -> the teacher-forced
        inputs (a_1..a_11 follow BOA; the last action token is never an input). A trainer
        prepares each state once and reuses it for the target and the online forwards."""
        n = inputs["input_ids"].shape[0]
        action_bins = torch.as_tensor(action_bins, dtype=torch.long)
        if action_bins.shape != (n, NUM_DIMS):
            raise ValueError(f"action_bins must have shape ({n}, {NUM_DIMS}), got "
                             f"{tuple(action_bins.shape)}")
        if action_bins.min() < 0 or action_bins.max() >= self.num_bins:
            raise ValueError(f"action_bins must lie in [0, {self.num_bins})")
        action_bins = action_bins.to(inputs["input_ids"].device)
        tokens = action_bins[:, :-1] + self.token_offset
        mask = torch.cat([inputs["attention_mask"], torch.ones_like(tokens)], dim=1)
        return {**inputs, "input_ids": torch.cat([inputs["input_ids"], tokens], dim=1),
                "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
                "action_bins": action_bins}

    def _tokenize(self, prompt: str) -> tuple[int, ...]:
        return tuple(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    # -- forward -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _mask_tokens(self, attention_mask: torch.Tensor | None, keep: int) -> Iterator[None]:
        # The last layer's FFN output is read only at the ``keep`` positions of the logits
        # (its attention keys and values, the KV cache, come before it), and no layer's is
        # read at padding (masked out of every attention). Not with activation checkpointing,
        # whose recomputation runs outside this context.
        skip = not self.model.is_activation_checkpointing
        for layer in self.moe_layers:
            layer.token_mask, layer.skip_masked = attention_mask, skip
        if keep and skip:
            self.moe_layers[-1].keep_last = keep
        try:
            yield
        finally:
            for layer in self.moe_layers:
                layer.token_mask, layer.skip_masked, layer.keep_last = None, False, None

    def _backbone(self, inputs: dict[str, torch.Tensor], keep: int, past=None,
                  use_cache: bool = False):
        extra = {k: v for k, v in inputs.items() if k in self.backbone_adapter.extra_input_names}
        with self._mask_tokens(inputs["attention_mask"][:, -inputs["input_ids"].shape[1]:], keep):
            return self.backbone_adapter.forward(
                self.model, inputs["input_ids"], inputs.get("pixel_values"),
                inputs["attention_mask"], inputs["position_ids"], past_key_values=past,
                use_cache=use_cache, logits_to_keep=keep, **extra)

    def forward(self, inputs: dict[str, torch.Tensor]) -> MoREOutput:
        """Logits at the positions that predict each action dimension (12 with action_bins,
        else only the first dimension: what the Bellman target needs at the next state)."""
        num_dims = NUM_DIMS if "action_bins" in inputs else 1
        out = self._backbone(inputs, keep=num_dims)
        vocab_logits = out.logits.float()  # (B, D, V)
        action_logits = self._with_dim_bias(  # (B, D, num_bins)
            vocab_logits[..., self.token_offset:self.token_offset + self.num_bins], first_dim=0)
        stats = [layer.last_stats for layer in self.moe_layers]
        balance = torch.stack([s.balance_loss() for s in stats]).mean()
        router_stats = {"top1_fraction": torch.stack([s.top1_fraction for s in stats]),
                        "mean_probs": torch.stack([s.mean_probs.detach() for s in stats])}
        return MoREOutput(action_logits, vocab_logits, balance, router_stats)

    def _with_dim_bias(self, action: torch.Tensor, first_dim: int) -> torch.Tensor:
        """(B, D, num_bins) action-token logits at the positions of dimensions first_dim..
        -> the same with each dimension's bias added (float32)."""
        bias = self.model.get_output_embeddings().dim_bias  # (12, num_bins)
        return action.float() + bias[first_dim:first_dim + action.shape[1]].float()

    @contextlib.contextmanager
    def _action_columns_only(self) -> Iterator[None]:
        head = self.model.get_output_embeddings()
        head.action_only = True
        try:
            yield
        finally:
            head.action_only = False

    def q_values(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """sigmoid(action logits): (B, 12, num_bins) (or (B, 1, num_bins) without bins)."""
        return self(inputs).q_values

    # -- greedy decoding -----------------------------------------------------------------
    def _expert_counts(self) -> torch.Tensor:  # (num_layers, N) top-1 counts of the last call
        return torch.stack([layer.last_stats.top1_counts for layer in self.moe_layers])

    @torch.no_grad()
    def act(self, images, instructions: list[str], use_cache: bool = True) -> ActResult:
        """Greedy per-dimension argmax over the action tokens, batched.

        With ``use_cache`` the image+prompt prefix runs once and each of the 12 steps feeds one
        token through the KV cache; without it every step re-runs the whole sequence (the
        reference the cached path must equal). Never changes the module's mode: a policy is in
        eval mode once built or loaded; after training, call ``eval()`` before acting.
        """
        with self._action_columns_only():
            return self._act(images, instructions, use_cache)

    def _act(self, images, instructions: list[str], use_cache: bool) -> ActResult:
        device = self.device
        t0 = time.perf_counter()
        inputs = self.prepare(images, instructions)
        _sync(device)
        t_prep = time.perf_counter()
        out = self._backbone(inputs, keep=1, use_cache=use_cache)
        counts = self._expert_counts()
        _sync(device)
        t_prefill = time.perf_counter()
        bins, qs = [], []
        mask, pos, ids = inputs["attention_mask"], inputs["position_ids"], inputs["input_ids"]
        for step in range(NUM_DIMS):
            logits = self._with_dim_bias(out.logits[:, -1:], first_dim=step)[:, 0]  # (B, A)
            best = logits.argmax(dim=-1)  # (B,)
            bins.append(best)
            qs.append(torch.sigmoid(logits.gather(-1, best[:, None]))[:, 0])
            if step == NUM_DIMS - 1:
                break
            token = (best + self.token_offset)[:, None]  # (B, 1)
            mask = torch.cat([mask, torch.ones_like(token)], dim=1)
            pos = torch.cat([pos, pos[:, -1:] + 1], dim=1)
            if use_cache:
                step_inputs = {"input_ids": token, "attention_mask": mask,
                               "position_ids": pos[:, -1:]}
                out = self._backbone(step_inputs, keep=1, past=out.past_key_values,
                                     use_cache=True)
            else:
                ids = torch.cat([ids, token], dim=1)
                out = self._backbone({**inputs, "input_ids": ids, "attention_mask": mask,
                                      "position_ids": pos}, keep=1)
            counts = counts + self._expert_counts()
        _sync(device)
        t_end = time.perf_counter()
        bins_t = torch.stack(bins, dim=1).cpu()  # (B, 12)
        return ActResult(
            bins=bins_t, token_ids=bins_t + self.token_offset,
            values=self.action_space.decode(bins_t.numpy()),
            q_values=torch.stack(qs, dim=1).cpu(),
            expert_usage=(counts / counts.sum(-1, keepdim=True).clamp(min=1)).cpu(),
            prefill_ms=(t_prefill - t_prep) * 1e3, decode_ms=(t_end - t_prefill) * 1e3,
            timings={"prepare_ms": (t_prep - t0) * 1e3})
