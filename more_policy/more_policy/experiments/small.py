"""Named experiment presets: the CPU-sized 'small' MoRE on the pretrained sim-world backbone,
'small-random' on a random frozen 'tiny' Fuyu (hidden 64, 2 layers, patch 16: what pretraining
is measured against), and the test-sized 'smoke' run. CPU seconds per offline-RL update (target
forward over s and the prompt prefix of s', online forward + backward, AdamW, EMA), one thread,
2-core machine shared with one or two training runs, by bench/bench_train.py against the
pre-issue-16 code (its prompt, dropout, per-forward preparation, target pass, MixLoRA forward and
peft's factored attention LoRA) in the same process, interleaved rounds (session 7):
  tiny ('small-random') @ 96 px, batch 32, 8 rounds (--shape tiny --compile): 0.37 s before,
         0.20 s now (1.88x); with the frame cache 0.17 s (2.18x); periodic target mode refreshed
         every 2000 updates (one no-grad pass per state and refresh, ~20 k transitions) 0.14 s
         (2.66x), with the frame cache 0.108 s (3.44x), also compiled 0.095 s (3.89x; 3.87x of
         the baseline's updates in a 45-min run with its 17 CPU-s of compilation).
  pretrained backbone's shape ('small'; hidden 256, 4 layers, patch 12 -> 64 patches; random
         weights) @ 96 px, batch 32, 3 rounds (--shape pretrained): 3.26 s before, 2.05 s now
         (1.59x; compute-bound: target 0.82, forward 0.50, backward 0.68), periodic at the
         preset's 39,400 transitions 1.45 s (2.26x), periodic + frame cache 1.40 s (2.33x): the
         3x is not reached on this shape (forward + backward alone are 1.1-1.3 s against the
         1.09 s a 3x needs; padding is 3.5 % of its tokens, so length bucketing cannot close it).
Both sides run with train()'s heap setting, which also speeds the baseline. The frame feature cache
(frame_cache_frames, on in 'small-random': ~9 KB per frame, ~190 MB for ~20 k frames) keeps each
frame's projected patches, so after the first epoch no frame is decoded or projected again; it
changes no value. The EMA target's two no-grad forwards (s with the target adapters, s' prefix) are
~40 % of a step and share nothing with the online forward but the projected patches, so the 3x (the
fast configuration) needs the periodic target mode (TrainConfig rl.target_mode = "periodic") and
the frame cache (the compiled decoder, compile = True, adds ~13 %; off by default: 15-33 CPU-s of
compilation, paid again by every short run). The EMA target stays the default (periodic learned the
known-answer MDP slower at a 10-update time scale, faster at 100).
Earlier wall-clock figures (bench/bench_e2e.py, before issue 16):
  tiny   @ 96 px, batch 32: 0.38 s/step idle, 0.62 s/step averaged over the real 44-min run
  hidden-256 4-layer Fuyu (not a preset) @ 96 px, batch 16: 1.6 s/step
  'small' (~60 M backbone, 18 M trainable) @ 60-90 px, batch 16: 10-12 s/step
i.e. now ~17000 updates per core-hour with the EMA target, ~27000-35000 periodic + cache +
compiled (was ~4000-6000 in practice) vs ~2000 vs ~300.
No LoRA dropout: it cost 1.2x per update, and a random backbone trained from scratch on its own
data has no pre-trained features for dropout to protect. With rank 32 on a hidden-64 model the LoRA
deltas are full rank, so the adapters can reshape the whole network. The MoE layout stays the
paper's: 8 experts, top-2, rank 32, on every decoder FFN, plus the attention LoRA.
"""

from __future__ import annotations

from dataclasses import replace

from more_policy.experiments.config import DataConfig, ExperimentConfig, train_options
from more_policy.model.config import MoREConfig

PRETRAINED_BACKBONE = "artifacts/backbones/sim-fuyu-256"  # `more pretrain`; from the repo root


def small_random() -> ExperimentConfig:
    """The random frozen 'tiny' Fuyu: what the pretrained backbone is measured against (and,
    before it existed, the 'small' run: 0.00 success, its adapters had nothing to read)."""
    return ExperimentConfig(
        name="more-small-random",
        data=DataConfig(image_size=96, expert_episodes=40, failed_episodes=40),
        model=MoREConfig(backbone="tiny", image_size=96, num_experts=8, top_k=2, lora_rank=32,
                         lora_alpha=64.0, attn_lora_rank=32, attn_lora_alpha=64.0,
                         lora_dropout=0.0),
        # A random tiny backbone needs a far larger step than the 2e-5 of fine-tuning Fuyu-8B.
        train=train_options(batch_size=32, lr=1e-3, warmup_ratio=0.03, log_every=25,
                            decode_threads=1, shuffle_block=16, frame_cache_frames=25_000),
        train_budget_s=45 * 60, eval_episodes=16)


def small() -> ExperimentConfig:
    """MoRE on the pretrained sim-world Fuyu (hidden 256, 4 layers, patch 12 at 96 px,
    `more pretrain`, loaded from its checkpoint directory like Fuyu-8B), 150 expert episodes per
    task and 100 failed ones per QUARD-Auto task (~32 k transitions; ~5 min to generate on
    one core). Adapters and lr as 'small-random' (not tuned). No frame feature cache: 64 KB a
    frame (~2 GB for the dataset) to save ~1 % of a compute-bound step. Measured in the real
    2000-update runs (two at once on the 2-core machine): 2.3-3.0 s per offline-RL update
    (96 min), 1.4-1.7 s per IL update (55 min)."""
    cfg = small_random()
    return cfg.with_overrides(
        name="more-small",
        data=DataConfig(image_size=96, expert_episodes=150, failed_episodes=100),
        model=replace(cfg.model, backbone=PRETRAINED_BACKBONE),
        train=replace(cfg.train, frame_cache_frames=0))


def smoke() -> ExperimentConfig:
    """Seconds-sized: proves the pipeline end to end, learns nothing useful."""
    return ExperimentConfig(
        name="more-smoke",
        data=DataConfig(image_size=32, expert_episodes=1, failed_episodes=1,
                        max_attempts_per_failure=3, max_steps=30),
        model=MoREConfig(backbone="tiny", image_size=32, num_experts=4, top_k=2, lora_rank=4,
                         attn_lora_rank=4),
        train=train_options(batch_size=4, lr=3e-3, warmup_ratio=0.1, log_every=1,
                            decode_threads=1),
        max_train_steps=4, eval_episodes=1, eval_max_steps=8, eval_batch_size=1)


PRESETS = {"small": small, "small-random": small_random, "smoke": smoke}


def preset(name: str) -> ExperimentConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown experiment preset {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name]()
