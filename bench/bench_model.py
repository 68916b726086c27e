"""Benchmarks of the MoRE model, printed next to their targets.

    python bench/bench_model.py            # CPU: tiny, small (~60 M), pretrained-shape configs
    python bench/bench_model.py --quick    # fewer repetitions
    python bench/bench_model.py --gpu      # also the full Fuyu-8B config (random weights), CUDA

Figures: act() latency p50/p99; act() vs transformers generate() with and without KV cache
(both from the camera frame: generate's time includes the same input preparation);
the MixLoRA layer vs the plain frozen MLP; weight memory fp32/bf16/int8/nf4.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch
from common import Report, pretrained_shape_backbone, timed
from transformers import LogitsProcessor, LogitsProcessorList

from more_policy.model import SHORT_PROMPT_TEMPLATE, MoREConfig, MoREPolicy
from more_policy.model.counting import count_parameters
from more_policy.model.mixlora import MixLoRAFFN
from more_policy.model.quantization import weight_memory_bytes

INSTRUCTION = "go to the red ball"


class ActionTokensOnly(LogitsProcessor):
    """generate()'s equivalent of act()'s restriction of the argmax to the action tokens."""

    def __init__(self, offset: int, num_bins: int):
        self.offset, self.num_bins = offset, num_bins

    def __call__(self, input_ids, scores):
        masked = torch.full_like(scores, float("-inf"))
        masked[:, self.offset:self.offset + self.num_bins] = scores[
            :, self.offset:self.offset + self.num_bins]
        return masked


def frame(policy: MoREPolicy, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (480, 640, 3), dtype=np.uint8)


def bench_act(report: Report, policy: MoREPolicy, label: str, repeats: int, batch: int = 1,
              sync=lambda: None) -> float:
    images = [frame(policy, i) for i in range(batch)]
    texts = [INSTRUCTION] * batch
    t = timed(lambda: policy.act(images, texts), repeats, sync=sync)
    result = policy.act(images, texts)
    p50 = float(np.percentile(t, 50))
    report.add(f"{label} act() B={batch} p50", p50, "ms",
               note=f"{1e3 / p50 * batch:.1f} actions/s")
    report.add(f"{label} act() B={batch} p99", np.percentile(t, 99), "ms")
    if policy.device.type == "cpu":
        t_cpu = timed(lambda: policy.act(images, texts), repeats, warmup=0, cpu=True)
        report.add(f"{label} act() B={batch} CPU time p50", np.percentile(t_cpu, 50), "ms")
    report.add(f"{label} act() prefill B={batch}", result.prefill_ms, "ms")
    report.add(f"{label} act() decode B={batch}", result.decode_ms, "ms")
    return p50


def bench_forward(report: Report, policy: MoREPolicy, label: str, repeats: int,
                  batch: int) -> None:
    """A training-style forward: teacher-forced Q logits for all 12 dimensions."""
    images = [frame(policy, i) for i in range(batch)]
    bins = torch.randint(0, policy.num_bins, (batch, 12))
    inputs = policy.prepare(images, [INSTRUCTION] * batch, bins)
    t = np.median(timed(lambda: policy(inputs), repeats, cpu=True))
    target = 7.5 if label == "tiny" and batch == 1 else None  # ~5 ms, with 50 % headroom
    report.add(f"{label} forward (12 dims, teacher-forced) B={batch}", t, "ms CPU", target)


def bench_generate(report: Report, policy: MoREPolicy, label: str, repeats: int) -> None:
    images, texts = [frame(policy)], [INSTRUCTION]
    processors = LogitsProcessorList([ActionTokensOnly(policy.token_offset, policy.num_bins)])

    def generate(use_cache: bool):  # from the camera frame, as act() is timed
        inputs = policy.prepare(images, texts)
        with torch.no_grad():
            return policy.model.generate(
                input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"],
                attention_mask=inputs["attention_mask"], max_new_tokens=12, min_new_tokens=12,
                do_sample=False, use_cache=use_cache, logits_processor=processors,
                pad_token_id=0)

    tokens = generate(True)[:, -12:]
    same = torch.equal(tokens.cpu(), policy.act(images, texts).token_ids)
    # Interleaved calls: load from other jobs on a shared machine hits both alike.
    act_ms, cached_ms = [], []
    for _ in range(repeats):
        act_ms.append(timed(lambda: policy.act(images, texts), 1, warmup=1, cpu=True)[0])
        cached_ms.append(timed(lambda: generate(True), 1, warmup=1, cpu=True)[0])
    t_act, t_cached = np.median(act_ms), np.median(cached_ms)
    t_uncached = np.median(timed(lambda: generate(False), max(3, repeats // 2), cpu=True))
    report.add(f"{label} act() tokens differ from generate()", float(not same), "bool", 0)
    report.add(f"{label} act() CPU", t_act, "ms")
    report.add(f"{label} generate() cached CPU", t_cached, "ms")
    report.add(f"{label} generate() uncached CPU", t_uncached, "ms")
    report.add(f"{label} act() speed-up vs uncached generate()", t_uncached / t_act, "x", 3,
               higher_is_better=True)
    report.add(f"{label} act() speed-up vs cached generate()", t_cached / t_act, "x", 1,
               higher_is_better=True)


def bench_mixlora(report: Report, hidden: int, inner: int, tokens: int, repeats: int,
                  label: str) -> None:
    from transformers import PersimmonConfig
    from transformers.models.persimmon.modeling_persimmon import PersimmonMLP

    torch.manual_seed(0)
    mlp = PersimmonMLP(PersimmonConfig(hidden_size=hidden, intermediate_size=inner,
                                       hidden_act="relu2")).requires_grad_(False)
    moe = MixLoRAFFN(mlp, up="dense_h_to_4h", down="dense_4h_to_h", act="act", gate=None,
                     num_experts=8, top_k=2, rank=32, alpha=64.0, dropout=0.0)
    x = torch.randn(1, tokens, hidden)
    with torch.no_grad():
        t_base = np.median(timed(lambda: mlp(x), repeats, cpu=True))
        t_moe = np.median(timed(lambda: moe(x), repeats, cpu=True))
    report.add(f"MixLoRA / MLP CPU time, {label}", t_moe / t_base, "x", 1.6,
               note=f"{t_moe:.2f} / {t_base:.2f} ms")


def bench_memory(report: Report) -> None:
    for name, dtype, quant in [("fp32", "float32", None), ("bf16", "bfloat16", None),
                               ("int8", "float32", "int8"), ("nf4", "float32", "nf4")]:
        policy = MoREPolicy.from_config(MoREConfig(backbone="small", dtype=dtype),
                                        quantization=quant)
        adapters = sum(p.numel() * p.element_size() for p in policy.adapter_state_dict().values())
        report.add(f"small backbone weights {name}",
                   (weight_memory_bytes(policy.model) - adapters) / 2**20, "MiB")
        del policy
    full = count_parameters(MoREConfig(backbone="full"))
    report.add("Fuyu-8B MoRE parameters, |total - 9.82 B (paper)|",
               abs(full.total - 9.82e9) / 1e9, "B", 0.05, note=f"total {full.total / 1e9:.3f} B")
    report.add("Fuyu-8B MoRE trainable parameters", full.trainable / 1e9, "B")
    report.add("Fuyu-8B MoRE active per token", full.active_per_token / 1e9, "B")
    report.add("Fuyu-8B bf16 weights (2 B/param)", full.backbone * 2 / 2**30, "GiB",
               note="17.5 GiB measured")


def bench_gpu(report: Report, repeats: int) -> None:
    device = torch.device("cuda")
    sync = torch.cuda.synchronize
    print(f"\n== GPU: {torch.cuda.get_device_name(device)} ==")
    for quant in (None, "nf4"):
        torch.cuda.empty_cache()
        policy = MoREPolicy.from_config(MoREConfig(backbone="full", dtype="bfloat16",
                                                   adapter_dtype="bfloat16"),
                                        device="cuda", quantization=quant)
        label = f"Fuyu-8B {quant or 'bf16'}"
        report.add(f"{label} weight memory", torch.cuda.memory_allocated() / 2**30, "GiB")
        p50 = bench_act(report, policy, label, repeats, sync=sync)
        report.add(f"{label} act() rate B=1", 1e3 / p50, "Hz", 10 if quant is None else None,
                   higher_is_better=True)
        bench_act(report, policy, label, max(3, repeats // 2), batch=16, sync=sync)
        del policy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--gpu", action="store_true", help="also the full Fuyu-8B on CUDA")
    args = parser.parse_args()
    repeats = 5 if args.quick else 20
    torch.set_grad_enabled(False)
    print(f"MoRE model bench: torch {torch.__version__}, {platform.processor() or 'cpu'}, "
          f"{torch.get_num_threads()} threads")
    report = Report()
    with tempfile.TemporaryDirectory(prefix="bench_model_") as tmp:
        configs = {"tiny": MoREConfig(backbone="tiny"), "small": MoREConfig(backbone="small"),
                   "pretrained-shape": MoREConfig(  # the 'small' preset's coming backbone
                       backbone=pretrained_shape_backbone(Path(tmp) / "backbone"),
                       image_size=96, prompt_template=SHORT_PROMPT_TEMPLATE)}
        for name, cfg in configs.items():
            with report.section(f"{name} policy"):
                policy = MoREPolicy.from_config(cfg)
                for batch in (1, 8):
                    bench_forward(report, policy, name, repeats, batch)
                bench_act(report, policy, name, repeats)
                if name == "small":
                    bench_act(report, policy, name, max(3, repeats // 4), batch=8)
                bench_generate(report, policy, name, max(3, repeats // 2))
                del policy
    with report.section("MixLoRA layer"):
        bench_mixlora(report, 640, 2560, 90, repeats, "N=8 K=2 r=32, small dims")
        bench_mixlora(report, 4096, 16384, 32, max(3, repeats // 4),
                      "N=8 K=2 r=32, Fuyu-8B dims")
    with report.section("memory"):
        bench_memory(report)
    if torch.cuda.is_available():
        with report.section("GPU"):
            bench_gpu(report, repeats)
    elif args.gpu:
        print("no CUDA device: GPU figures skipped")
    return report.finish()


if __name__ == "__main__":
    raise SystemExit(main())
