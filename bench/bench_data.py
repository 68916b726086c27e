"""Episode dataset benchmark: bytes per sample, write and read throughput, reader memory.

    python bench/bench_data.py [--episodes 60] [--size 240]

Frames are synthetic scenes (smooth gradients, a few coloured boxes, sensor noise) at QUART's
240x240, so JPEG sizes resemble rendered/camera frames more than flat or random images do.
Figures are extrapolated to QUARD's scale (2.3 M samples).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from common import Report

from more_policy.actions import ActionSpace
from more_policy.data import EpisodeDataset, EpisodeWriter

QUARD_SAMPLES = 2_262_137  # QUARD 1,822,405 + QUARD-Auto 440,732
# name -> (target, unit, higher is better)
TARGETS = {"bytes_per_sample": (40_000, "B", False), "read_per_s": (300, "1/s", True),
           "write_per_s": (100, "1/s", True), "reader_rss_growth_mib": (300, "MiB", False)}


def scene(rng: np.random.Generator, size: int, t: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([0.4 + 0.3 * y, 0.5 + 0.2 * x, 0.6 - 0.3 * y], axis=-1)
    img = base * 255
    for _ in range(3):
        c = rng.integers(0, size - 40, 2) + t
        img[c[0] % (size - 40):c[0] % (size - 40) + 40, c[1] % (size - 40):
            c[1] % (size - 40) + 30] = rng.integers(0, 255, 3)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument("--steps", type=int, default=80, help="steps per episode (16 s at 5 Hz)")
    parser.add_argument("--size", type=int, default=240)
    parser.add_argument("--read", type=int, default=3000, help="transitions to read")
    parser.add_argument("--threads", type=int, default=2, help="decode threads (2nd run)")
    args = parser.parse_args()
    space, rng = ActionSpace(), np.random.default_rng(0)
    report = Report()
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp, \
            report.section("dataset write/read"):
        root = Path(tmp) / "d"
        frames = [np.stack([scene(rng, args.size, t) for t in range(args.steps)])
                  for _ in range(min(args.episodes, 8))]
        commands = rng.uniform(space.low, space.high, (args.steps, 12))
        start = time.perf_counter()
        with EpisodeWriter(root, space) as writer:
            for e in range(args.episodes):
                writer.add_episode(frames[e % len(frames)], commands, "go to the red ball",
                                   "go_to", success=bool(e % 2))
        write_s = time.perf_counter() - start
        samples = args.episodes * args.steps
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        ds = EpisodeDataset(root, seed=0)
        rss0 = rss_mib()
        read_rates = {}
        for threads in (1, args.threads):
            stream = ds.stream(decode_threads=threads)
            start = time.perf_counter()
            for _ in range(args.read // 16):
                stream.next_batch(16)
            read_rates[threads] = args.read // 16 * 16 / (time.perf_counter() - start)
        got = {"bytes_per_sample": size / samples, "write_per_s": samples / write_s,
               "read_per_s": read_rates[1], "reader_rss_growth_mib": rss_mib() - rss0}
        print(f"dataset: {args.episodes} episodes x {args.steps} steps, {args.size}x{args.size}"
              f" JPEG q95, {len(ds.meta['shards'])} shards, {size / 2**20:.1f} MiB")
        for name, value in got.items():
            target, unit, higher = TARGETS[name]
            report.add(name, value, unit, target, higher_is_better=higher)
        print("  read = transitions (s, a, r, s', done, MC return) with both frames decoded, "
              "one process, batches of 16")
        report.add(f"read_per_s, {args.threads} decode threads", read_rates[args.threads], "1/s")
        print(f"  at QUARD scale ({QUARD_SAMPLES:,} samples): "
              f"{got['bytes_per_sample'] * QUARD_SAMPLES / 2**30:.1f} GiB on disk; one reader "
              f"process streams an epoch in {QUARD_SAMPLES / got['read_per_s'] / 3600:.1f} h")
    return report.finish()


if __name__ == "__main__":
    raise SystemExit(main())
