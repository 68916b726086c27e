"""`more model`: inspect, create, count, quantize-check and query MoRE checkpoints."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("model", help="MoRE model tools: info, init, count, quantize, act")
    sub = p.add_subparsers(dest="model_command", required=True, metavar="ACTION")

    info = sub.add_parser("info", help="print a checkpoint's configuration and sizes")
    info.add_argument("checkpoint", help="a MoRE checkpoint directory")
    info.set_defaults(func=run_info)

    init = sub.add_parser("init", help="write a fresh (untrained) MoRE checkpoint")
    _add_config_arguments(init)
    init.add_argument("--seed", type=int, default=0, help="random backbone + adapter seed")
    init.add_argument("--out", required=True, help="output checkpoint directory")
    init.set_defaults(func=run_init)

    count = sub.add_parser("count", help="parameter counts (built on the meta device)")
    _add_config_arguments(count, default_backbone="full")
    count.set_defaults(func=run_count)

    quant = sub.add_parser("quantize", help="load a checkpoint on an int8/nf4 backbone and "
                                            "report weight memory and Q-value error vs fp32")
    quant.add_argument("checkpoint")
    quant.add_argument("--to", choices=["int8", "nf4"], default="nf4")
    quant.add_argument("--samples", type=int, default=4, help="random frames to compare on")
    quant.set_defaults(func=run_quantize)

    act = sub.add_parser("act", help="one greedy action for an image file and an instruction")
    act.add_argument("checkpoint")
    act.add_argument("--image", required=True, help="an RGB image file (png, jpg)")
    act.add_argument("--instruction", required=True)
    act.add_argument("--quantization", choices=["int8", "nf4"])
    act.set_defaults(func=run_act)


def _add_config_arguments(p: argparse.ArgumentParser, default_backbone: str = "tiny") -> None:
    p.add_argument("--backbone", default=default_backbone,
                   help="tiny | small | full (random weights) or a local HF checkpoint directory")
    p.add_argument("--backbone-kind", default="fuyu", choices=["fuyu", "idefics3"])
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--attn-rank", type=int, default=32)


def _config(args: argparse.Namespace):
    from more_policy.model import MoREConfig

    return MoREConfig(backbone_kind=args.backbone_kind, backbone=args.backbone,
                      num_experts=args.experts, top_k=args.top_k, lora_rank=args.rank,
                      lora_alpha=2.0 * args.rank, attn_lora_rank=args.attn_rank,
                      attn_lora_alpha=2.0 * args.attn_rank)


def _print_counts(counts) -> None:
    for name, value in counts.as_dict().items():
        print(f"  {name:<18} {value:>15,d}  ({value / 1e6:,.2f} M)")


def run_info(args: argparse.Namespace) -> int:
    from more_policy.actions import ActionSpace
    from more_policy.model import MoREConfig
    from more_policy.model.checkpoint import read_meta, resolve_backbone
    from more_policy.model.counting import count_parameters

    meta = read_meta(args.checkpoint)
    cfg = resolve_backbone(MoREConfig.from_dict(meta["config"]), Path(args.checkpoint))
    print(f"checkpoint {args.checkpoint}")
    print(json.dumps(meta, indent=2))
    space = ActionSpace.load(args.checkpoint)
    print(f"action space: {len(space)} dims x {space.num_bins} bins, tokens "
          f"{meta['token_offset']}..{meta['token_offset'] + space.num_bins - 1}")
    _print_counts(count_parameters(cfg, space.num_bins))
    return 0


def run_init(args: argparse.Namespace) -> int:
    from more_policy.model import MoREPolicy

    policy = MoREPolicy.from_config(_config(args), seed=args.seed)
    policy.save_pretrained(args.out)
    print(f"wrote {args.out} ({sum(p.numel() for p in policy.trainable_parameters()):,d} "
          f"trainable weights)")
    return 0


def run_count(args: argparse.Namespace) -> int:
    from more_policy.model.counting import PAPER_TOTAL, count_parameters

    counts = count_parameters(_config(args))
    _print_counts(counts)
    if args.backbone == "full" and args.backbone_kind == "fuyu":
        print(f"  paper (MoRE, Fuyu-8B): {PAPER_TOTAL / 1e9:.2f} B total; this config "
              f"{counts.total / 1e9:.3f} B")
    return 0


def run_quantize(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from more_policy.model import MoREPolicy
    from more_policy.model.quantization import weight_memory_bytes

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(args.samples)]
    texts = ["go to the red ball"] * args.samples
    reference = MoREPolicy.from_pretrained(args.checkpoint)
    quantized = MoREPolicy.from_pretrained(args.checkpoint, quantization=args.to)
    bins = reference.act(images, texts).bins
    with torch.no_grad():
        q = reference.q_values(reference.prepare(images, texts, bins))
        qq = quantized.q_values(quantized.prepare(images, texts, bins))
    agree = (quantized.act(images, texts).bins == bins).float().mean().item()
    print(f"backbone weights: fp32 {weight_memory_bytes(reference.model) / 2**20:,.1f} MiB, "
          f"{args.to} {weight_memory_bytes(quantized.model) / 2**20:,.1f} MiB")
    print(f"Q-values: max |dQ| {(qq - q).abs().max().item():.4g}, relative L2 "
          f"{((qq - q).norm() / q.norm()).item():.4g}; greedy actions agree {agree:.1%}")
    print(f"quantization happens at load: MoREPolicy.from_pretrained(dir, quantization="
          f"{args.to!r}); the checkpoint itself is unchanged")
    return 0


def run_act(args: argparse.Namespace) -> int:
    import imageio.v3 as iio
    import numpy as np

    from more_policy.model import MoREPolicy

    image = np.asarray(iio.imread(args.image))
    image = np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image[..., :3]
    policy = MoREPolicy.from_pretrained(args.checkpoint, quantization=args.quantization)
    result = policy.act([image], [args.instruction])
    print(f"prefill {result.prefill_ms:.1f} ms, decode {result.decode_ms:.1f} ms")
    for name, value, b, q in zip(policy.action_space.names, result.values[0], result.bins[0],
                                 result.q_values[0], strict=True):
        print(f"  {name:<15} {value:>9.4f}  bin {int(b):>3}  Q {float(q):.3f}")
    return 0
