"""CPU-seconds per RL and IL update of the 'small' preset, split by phase, against today's baseline.

    python bench/bench_train.py                     # tiny, then the pretrained shape: ~3 min
    python bench/bench_train.py --shape tiny --rounds 10   # steadier figures on a busy machine

Two backbones: the preset's random 'tiny' Fuyu, and a random Fuyu of the pretrained backbone's
shape (pretrain/model.py BackboneShape: hidden 256, 4 layers, patch 12 at 96 px), loaded from a
checkpoint directory as the pretrained one will be, so that the figures hold after the switch.

Both configurations live in this process and their steps are interleaved, so a machine shared
with other jobs slows them alike. Times are this process's CPU time (one torch thread).
- baseline: the code as it was before the throughput work (issue 16): QUART's prompt template,
  LoRA dropout 0.05, states prepared in every forward, the target forward over [s; s']
  teacher-forced on the dataset bins, the MixLoRA forward that concatenated every expert's
  (pairs, inner) activations on every token (reproduced below: those paths are no longer in
  the library) and peft's factored attention LoRA. Process-wide settings (one thread,
  train()'s heap setting) apply to both.
- new: the preset as configured now (short prompt, its dropout; without its frame feature
  cache, which has rows of its own) and the library: states
  prepared and their patches projected once per step, the target pass over s teacher-forced
  and the prompt prefix of non-terminal s', experts only where their output is read (not at
  padding, on the last layer only at the logits' positions), merged expert and attention-LoRA
  weights where they are cheaper; "periodic" adds the periodic target mode: one no-grad pass
  per dataset state and refresh period (the s' values read from the next step's pass), that
  cost amortised over the period at the preset's dataset size.
- "+cache" rows add the frame feature cache (TrainConfig.frame_cache_frames) in its steady
  state (timed after every frame was drawn once; a 45-min run's first epoch is ~4 % of it);
  "+compile" (--compile) adds the compiled decoder (TrainConfig.compile) to "per+cache", and
  its compilation (CPU seconds of the warm-up beyond per+cache's) is charged to a 45-min run.
Phases: data (read, decode, collate, prepare), target, online forward (+ loss), backward,
optimizer (clip + AdamW), EMA. Target: the RL update takes >= 3x fewer CPU-seconds than the
baseline (the fast configuration: periodic target, frame cache, optionally compiled).

Learning effect of the target mode: updates until max |Q - Q*| < 0.02 on the known-answer MDP
(rl/chain_mdp.py), per-step EMA against a periodic snapshot of the same time scale (1/(1-tau)).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import types
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch._inductor.config
from common import Report, pretrained_shape_backbone

from more_policy.actions import ActionSpace
from more_policy.data import EpisodeDataset, EpisodeWriter
from more_policy.experiments import preset
from more_policy.model import QUART_PROMPT_TEMPLATE, SHORT_PROMPT_TEMPLATE
from more_policy.model.lora_linear import MergingLoraLinear, PeftLoraLinear
from more_policy.rl import chain_mdp
from more_policy.rl.losses import bellman_targets, targets_from_values
from more_policy.rl.objective import Objective, QOutput, RLConfig
from more_policy.training.backends import keep_freed_memory_in_heap
from more_policy.training.config import TrainConfig
from more_policy.training.model import PolicyQModel, build_policy_model, to_batch

TARGET_SPEEDUP = 3.0
# Transitions of each shape's preset dataset: 'small-random' (~20 k) and 'small' (its mixed
# dataset: 1,300 episodes, 39,373 transitions); the periodic target's cost scales with them.
PRESET_TRANSITIONS = {"tiny": 20_000, "pretrained": 39_400}
RUN_SECONDS = 45 * 60  # the 'small' preset's training budget
PHASES = ("data", "target", "forward", "backward", "optimizer", "ema")
INSTRUCTIONS = ("go to the red ball quickly with a trot gait", "crawl under the gate with a "
                "pace gait", "go through the tunnel slowly with a bound gait", "go avoid the "
                "obstacle and reach the blue cube with a trot gait", "distinguish letter b and "
                "go to it fast with a pronk gait", "unload the ball into the right tray")


def write_dataset(root: Path, image_size: int, episodes: int, steps: int, seed: int = 0) -> Path:
    """Random frames and commands with the preset's frame size and instruction lengths."""
    rng = np.random.default_rng(seed)
    space = ActionSpace()
    with EpisodeWriter(root, space) as writer:
        for e in range(episodes):
            frames = rng.integers(0, 256, (steps, image_size, image_size, 3), dtype=np.uint8)
            commands = space.decode(rng.integers(0, space.num_bins, (steps, 12)))
            writer.add_episode(frames, commands, INSTRUCTIONS[e % len(INSTRUCTIONS)],
                               task="go_to", source="expert", success=bool(e % 2))
    return root


class OriginalQModel(PolicyQModel):
    """The baseline's Q-model: a state is images + instructions, prepared (resized, patchified,
    projected) again in every forward."""

    def make_state(self, images, instructions) -> dict[str, list]:
        return {"images": list(images), "instructions": list(instructions)}

    def forward(self, state: dict[str, list], action_bins: torch.Tensor | None) -> QOutput:
        out = self.policy(self.policy.prepare(state["images"], state["instructions"],
                                              action_bins))
        return QOutput(out.action_logits, out.vocab_logits, out.balance_loss,
                       expert_load=out.router_stats["top1_fraction"])


def original_targets(objective: Objective, model, batch) -> torch.Tensor:
    """The baseline's target pass: one teacher-forced forward over [s; s'] (every row)."""
    bins, b = batch["action_bins"], len(batch["dones"])
    both = {k: batch["state"][k] + batch["next_state"][k] for k in batch["state"]}
    with objective.target.applied(model):
        logits = model(both, torch.cat([bins, bins])).action_logits
    return bellman_targets(logits[:b], logits[b:, 0], batch["rewards"], batch["dones"],
                           objective.cfg.gamma,
                           batch["mc_returns"] if objective.cfg.mc_lower_bound else None)


def original_mixlora_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
    """The baseline's MixLoRA forward (bound to a MixLoRAFFN): each expert's LoRA delta
    concatenated into (pairs, inner), added to the gathered frozen projection, then mixed."""
    shape = hidden_states.shape
    x = hidden_states.reshape(-1, shape[-1])
    base, act = self.base, getattr(self.base, self.act_name)
    x_adapter = x.to(self.router.weight.dtype)
    router_logits = self.router(x_adapter)
    top_logits, top_experts = router_logits.topk(self.top_k, dim=-1)
    gates = top_logits.softmax(dim=-1)
    self._record_stats(router_logits.softmax(dim=-1), top_experts[:, 0], shape)
    flat_experts = top_experts.reshape(-1)
    order = torch.argsort(flat_experts, stable=True)
    counts = torch.bincount(flat_experts, minlength=self.num_experts).tolist()
    token_of, pair_gate = order // self.top_k, gates.reshape(-1)[order].unsqueeze(-1)
    xs = self.dropout(x_adapter[token_of])

    def expert_lora(inputs, a, b):
        out = [(c @ a[k]) @ b[k] for k, c in enumerate(torch.split(inputs, counts)) if len(c)]
        return torch.cat(out) * self.scaling

    up = getattr(base, self.up_name)(x)
    h = up[token_of] + expert_lora(xs, self.up_A, self.up_B)
    if self.gate_name is None:
        h = act(h)
    else:
        gate = getattr(base, self.gate_name)(x)
        h = act(gate[token_of] + expert_lora(xs, self.gate_A, self.gate_B)) * h
    mixed = torch.zeros_like(up).index_add_(0, token_of, h * pair_gate)
    out = getattr(base, self.down_name)(mixed)
    down_delta = expert_lora(self.dropout(h), self.down_A, self.down_B) * pair_gate
    return out.index_add(0, token_of, down_delta).reshape(shape)


@dataclass
class Setup:
    name: str
    cfg: TrainConfig
    original: bool = False  # the baseline's target pass and MixLoRA forward
    times: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PHASES})

    def build(self, data: Path) -> None:
        cache = self.cfg.frame_cache_frames
        dataset = EpisodeDataset(data, gamma=self.cfg.rl.gamma, seed=self.cfg.seed,
                                 shuffle_block=self.cfg.shuffle_block, decode_images=not cache)
        self.stream = dataset.stream(decode_threads=self.cfg.decode_threads)
        torch.manual_seed(self.cfg.seed)
        self.model = build_policy_model(self.cfg, dataset.action_space)
        if cache:  # steady state: every frame drawn once (a run's first epoch, ~4 % of it)
            for _ in range(-(-len(dataset) // self.cfg.batch_size)):
                to_batch(self.stream.next_batch(self.cfg.batch_size), self.model, "cpu")
        if self.original:
            self.model = OriginalQModel(self.model.policy)
        self.model.train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=self.cfg.lr)
        self.objective = Objective(self.cfg.rl, self.model, self.model.action_token_slice)
        if self.original:
            for layer in self.model.policy.moe_layers:
                layer.forward = types.MethodType(original_mixlora_forward, layer)
            for module in self.model.modules():  # peft's factored attention LoRA
                if isinstance(module, MergingLoraLinear):
                    module.forward = types.MethodType(PeftLoraLinear.forward, module)

    def step(self) -> None:
        """One update as train.py runs it, each phase timed in CPU seconds."""
        clock, t = time.process_time, {}
        start = clock()
        batch = to_batch(self.stream.next_batch(self.cfg.batch_size), self.model, "cpu")
        t["data"] = clock()
        targets = None
        if self.cfg.rl.objective == "q":
            if self.original:
                targets = original_targets(self.objective, self.model, batch)
            elif self.cfg.rl.target_mode == "periodic":
                # The cache would hide the cost: time the one pass each state costs per
                # refresh (amortised in per_update). The s' values would come from the next
                # steps' passes; the loss costs the same with these stand-in targets.
                values = self.objective.snapshot_values(self.model, batch["state"],
                                                        batch["action_bins"])
                targets = targets_from_values(values, values[:, 0], batch["rewards"],
                                              batch["dones"], self.cfg.rl.gamma)
            else:
                targets = self.objective.compute_targets(self.model, batch)
        t["target"] = clock()
        loss, _ = self.objective.loss(self.model, batch, targets)
        t["forward"] = clock()
        loss.backward()
        t["backward"] = clock()
        torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        t["optimizer"] = clock()
        self.objective.after_optimizer_step(self.model)
        t["ema"] = clock()
        previous = start
        for phase in PHASES:
            self.times[phase].append(t[phase] - previous)
            previous = t[phase]

    def median(self, phase: str) -> float:
        return float(np.median(self.times[phase]))

    def per_update(self, amortised_target: float | None = None) -> dict[str, float]:
        out = {p: self.median(p) for p in PHASES}
        if amortised_target is not None:
            out["target"] *= amortised_target
        return out


def report(title: str, baseline: dict[str, float], rows: dict[str, dict[str, float]]) -> dict:
    print(f"\n{title}: CPU seconds per update (median)")
    print(f"  {'phase':<10} {'baseline':>9} " + " ".join(f"{n:>9}" for n in rows))
    for phase in PHASES:
        print(f"  {phase:<10} {baseline[phase]:>9.4f} " +
              " ".join(f"{r[phase]:>9.4f}" for r in rows.values()))
    total = sum(baseline.values())
    ratios = {n: total / sum(r.values()) for n, r in rows.items()}
    print(f"  {'total':<10} {total:>9.4f} " +
          " ".join(f"{sum(r.values()):>9.4f}" for r in rows.values()))
    print(f"  {'speed-up':<10} {'1.00x':>9} " + " ".join(f"{v:>8.2f}x" for v in ratios.values()))
    return ratios


def updates_to_q_star(target: dict, max_updates: int = 3000, every: int = 10) -> int | None:
    data = chain_mdp.rollouts(chain_mdp.exploratory, episodes=400, seed=0)
    q_star, reached = chain_mdp.exact_q(), []

    def check(i, model):
        if not reached and i % every == every - 1 and chain_mdp.q_error(model, q_star) < 0.02:
            reached.append(i + 1)

    cfg = RLConfig(gamma=chain_mdp.GAMMA, alpha=0.0, conservative_vocab=False, **target)
    chain_mdp.fit(cfg, data, steps=max_updates, lr=0.3, on_step=check)
    return reached[0] if reached else None


def learning_effect() -> None:
    print("\nTarget mode vs learning: updates until max |Q - Q*| < 0.02 (known-answer MDP)")
    for scale in (10, 100):
        ema = updates_to_q_star({"tau": 1 - 1 / scale})
        periodic = updates_to_q_star({"target_mode": "periodic", "target_refresh_every": scale})
        print(f"  time scale {scale:>4} updates: ema {ema or '> 3000':>6}   periodic "
              f"{periodic or '> 3000':>6}")


def bench_shape(label: str, new: TrainConfig, old: TrainConfig, data: Path, rounds: int,
                refresh_every: int, compiled: bool = False) -> tuple[dict, dict]:
    """Baseline, new and periodic RL setups (+ periodic with the compiled decoder) and
    baseline/new IL setups, steps interleaved."""
    periodic = replace(new, rl=RLConfig(target_mode="periodic",
                                        target_refresh_every=refresh_every))
    # Per update, a refresh period computes each state once: N / (K * B) of a pass over B states.
    transitions = PRESET_TRANSITIONS[label]
    amortised = min(1.0, transitions / (refresh_every * new.batch_size))
    frames = 2 * transitions  # more than the preset's frames: every one is kept
    rl_setups = [Setup("baseline", old, original=True), Setup("new", new),
                 Setup("periodic", periodic),
                 Setup("ema+cache", replace(new, frame_cache_frames=frames)),
                 Setup("per+cache", replace(periodic, frame_cache_frames=frames))]
    if compiled:
        rl_setups.append(Setup("+compile", replace(periodic, frame_cache_frames=frames,
                                                   compile=True)))
    il = RLConfig(objective="il")
    il_setups = [Setup("baseline", replace(old, rl=il), original=True),
                 Setup("new", replace(new, rl=il))]
    for s in rl_setups + il_setups:
        s.build(data)
    warmup = {}
    for _ in range(3 if compiled else 2):  # warm-up: allocators, caches, compilation
        for s in rl_setups + il_setups:
            start = time.process_time()
            s.step()
            warmup[s.name] = warmup.get(s.name, 0.0) + time.process_time() - start
    for s in rl_setups + il_setups:
        s.times = {ph: [] for ph in PHASES}
    for _ in range(rounds):  # interleaved, so that load elsewhere hits all alike
        for s in rl_setups + il_setups:
            s.step()
    print(f"\n== {label}: {new.model.backbone} @ {new.model.image_size} px, batch "
          f"{new.batch_size}, dropout {new.model.lora_dropout}, one thread, {rounds} "
          f"interleaved rounds")
    rows = {s.name: s.per_update(amortised if s.cfg.rl.target_mode == "periodic" else None)
            for s in rl_setups[1:]}
    rl = report("RL update", rl_setups[0].per_update(), rows)
    print(f"  (periodic: refresh every {refresh_every} updates, target cost x{amortised:.2f}"
          f" for {transitions} transitions)")
    print("  (cache: the frame feature cache in its steady state, every frame drawn once)")
    if compiled:
        rl["compiled_run"] = amortised_run_speedup(rl_setups[0], rows["+compile"],
                                                   warmup["+compile"] - warmup["per+cache"])
    il_ratio = report("IL update", il_setups[0].per_update(), {"new": il_setups[1].per_update()})
    return rl, il_ratio


def amortised_run_speedup(baseline: Setup, compiled: dict[str, float], compile_s: float,
                          run_s: float = RUN_SECONDS) -> float:
    """Updates in a run of run_s CPU seconds, compiled (its compilation first) over baseline."""
    base_step = sum(baseline.per_update().values())
    ratio = (run_s - compile_s) / sum(compiled.values()) * base_step / run_s
    print(f"  (compiled: {compile_s:.0f} CPU-s of compilation; over a {run_s / 60:.0f}-min run "
          f"{ratio:.2f}x the baseline's updates)")
    return ratio


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", choices=("tiny", "pretrained", "both"), default="both",
                   help="backbone: the preset's tiny one, the pretrained one's shape, or both")
    p.add_argument("--rounds", type=int, default=6, help="timed steps per setup (tiny)")
    p.add_argument("--pretrained-rounds", type=int, default=3,
                   help="timed steps per setup (pretrained shape: ~10x the tiny step)")
    p.add_argument("--refresh-every", type=int, default=2000,
                   help="periodic target mode: updates between snapshots")
    p.add_argument("--compile", action="store_true",
                   help="also time the periodic mode with the compiled decoder (TrainConfig."
                        "compile; its compilation takes minutes on a busy machine)")
    p.add_argument("--skip-learning", action="store_true",
                   help="skip the target-mode learning comparison")
    p.add_argument("--default-heap", action="store_true",
                   help="leave glibc's heap settings as the pre-issue trainer did (train() and "
                        "this bench otherwise keep freed blocks, which speeds both sides)")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch._inductor.config.compile_threads = 1  # compilation in this process: its CPU time
    if not args.default_heap:
        keep_freed_memory_in_heap()
    exp = preset("small-random")
    # the frame cache has rows of its own; compile=False, as in the preset
    new = replace(exp.train, model=exp.model, rl=RLConfig(), frame_cache_frames=0)
    summary = Report()
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        data = write_dataset(Path(tmp) / "data", exp.data.image_size, episodes=12, steps=40)
        shapes = {"tiny": exp.model}
        if args.shape != "tiny":
            shapes["pretrained"] = replace(
                exp.model, backbone=pretrained_shape_backbone(Path(tmp) / "backbone"),
                prompt_template=SHORT_PROMPT_TEMPLATE)
        if args.shape == "pretrained":
            del shapes["tiny"]
        for label, model in shapes.items():
            cfg = replace(new, model=model)
            old = replace(cfg, model=replace(model, prompt_template=QUART_PROMPT_TEMPLATE,
                                             lora_dropout=0.05))
            rounds = args.rounds if label == "tiny" else args.pretrained_rounds
            rl, il = bench_shape(label, cfg, old, data, rounds, args.refresh_every,
                                 args.compile)
            summary.add(f"{label}: RL update speed-up vs baseline (EMA target)", rl["new"], "x",
                        TARGET_SPEEDUP, higher_is_better=True)
            summary.add(f"{label}: RL update speed-up vs baseline (periodic target)",
                        rl["periodic"], "x")
            summary.add(f"{label}: RL update speed-up vs baseline (EMA, frame cache)",
                        rl["ema+cache"], "x")
            summary.add(f"{label}: RL update speed-up vs baseline (periodic, frame cache)",
                        rl["per+cache"], "x", TARGET_SPEEDUP, higher_is_better=True)
            if args.compile:
                summary.add(f"{label}: RL update speed-up vs baseline (periodic, frame cache, "
                            f"compiled)", rl["+compile"], "x", TARGET_SPEEDUP,
                            higher_is_better=True)
                summary.add(f"{label}: updates in a 45-min run vs baseline (periodic, frame "
                            f"cache, compiled, compilation included)", rl["compiled_run"], "x")
            summary.add(f"{label}: IL update speed-up vs baseline", il["new"], "x")
    if not args.skip_learning:
        learning_effect()
    return summary.finish()


if __name__ == "__main__":
    raise SystemExit(main())
