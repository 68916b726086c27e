"""Training speed of the experiment presets on this machine (one CPU thread by default).

    python bench/bench_e2e.py                 # tiny @96 px batch 32 (the 'small' preset)
    python bench/bench_e2e.py --backbone small --image-size 90 --batch-size 16

Prints seconds per offline-RL optimizer step (target forward over s and s', online forward and
backward, AdamW, EMA update) next to the target that the 'small' preset's hour of training on
one core assumes, and the updates that fit in an hour.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import torch
from common import Report

TARGET_STEP_S = 0.8  # the 'small' preset assumes >= 4500 updates in an hour on one core


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default="tiny", help="random Fuyu config: tiny | small")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from more_policy.experiments import preset
    from more_policy.experiments.data import build_datasets
    from more_policy.experiments.reproduce import measure_step_seconds

    cfg = preset("small")
    cfg = cfg.with_overrides(
        model=dataclasses.replace(cfg.model, backbone=args.backbone, image_size=args.image_size),
        train=dataclasses.replace(cfg.train, batch_size=args.batch_size),
        data=dataclasses.replace(cfg.data, image_size=args.image_size, expert_episodes=2,
                                 failed_episodes=1))
    report = Report()
    label = f"{args.backbone} @ {args.image_size}px, batch {args.batch_size}, {args.threads} thr"
    with report.section(f"{label}: s/step"), \
            tempfile.TemporaryDirectory(prefix="bench_e2e_") as tmp:
        data = build_datasets(cfg.data, tmp, progress=False)
        start = time.perf_counter()
        step_s = measure_step_seconds(cfg, data["paths"]["mixed"])
        report.add(f"{label}: s/step", step_s, "s", target=TARGET_STEP_S,
                   note="the 'small' preset's assumption")
        report.add(f"{label}: updates/hour", 3600 / step_s, "1/h")
        report.add("timing took", time.perf_counter() - start, "s")
    return report.finish()


if __name__ == "__main__":
    raise SystemExit(main())
