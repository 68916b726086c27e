"""What every bench script shares: time a callable, keep each figure next to its target,
print one summary, write it as JSON and exit non-zero when a figure misses its target.

    from common import Report, timed

    report = Report()            # bench_model.py -> outputs/bench/model.json
    ms = timed(lambda: policy.act(images, texts), repeats=20)
    report.add("tiny act() p50", np.median(ms), "ms", target=50)            # lower is better
    report.add("render", fps, "frames/s", target=30, higher_is_better=True)
    report.add("act() vs generate()", speedup, "x")                        # no target: info
    with report.section("ROS latency"):      # an exception here becomes a failed row,
        ...                                  # and the script carries on
    sys.exit(report.finish())                # summary + JSON; 1 if any figure missed

A JSON file holds {"bench", "rows": [{name, measured, target, unit, pass}], "missed"}; `pass`
is null for figures without a target. bench/run_all.py (`make bench`) runs every script and
names each missed figure.
"""

from __future__ import annotations

import json
import math
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

OUT_DIR = Path(__file__).resolve().parents[1] / "outputs" / "bench"


def timed(fn: Callable[[], object], repeats: int, warmup: int = 2,
          sync: Callable[[], object] = lambda: None, cpu: bool = False) -> np.ndarray:
    """Milliseconds per call: wall clock, or this process's CPU time with ``cpu`` (steadier on
    a shared machine, where other jobs stretch wall-clock figures; CPU-only work)."""
    clock = time.process_time if cpu else time.perf_counter
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        sync()
        times.append((clock() - start) * 1e3)
    return np.array(times)


@dataclass
class Row:
    name: str
    measured: float | None        # None: the measurement itself failed (see note)
    target: float | None
    unit: str
    passed: bool | None           # None: informational figure without a target
    higher_is_better: bool = False
    note: str = ""


class Report:
    def __init__(self, bench: str | None = None, out_dir: Path = OUT_DIR) -> None:
        """``bench`` defaults to the running script's name less 'bench_' (what run_all reads)."""
        self.bench = bench or Path(sys.argv[0]).stem.removeprefix("bench_")
        self.out_dir = Path(out_dir)
        self.rows: list[Row] = []

    def add(self, name: str, measured: float, unit: str, target: float | None = None,
            higher_is_better: bool = False, note: str = "") -> bool | None:
        """Record (and print at once) one figure; returns whether it met its target."""
        measured = float(measured)
        passed = None
        if target is not None:
            passed = math.isfinite(measured) and (
                measured >= target if higher_is_better else measured <= target)
        row = Row(name, measured, target, unit, passed, higher_is_better, note)
        self.rows.append(row)
        print(self._line(row), flush=True)
        return passed

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        """Run one group of measurements; an exception is recorded as a failed row named
        ``name`` (so the script still runs to its end) instead of ending the script."""
        try:
            yield
        except Exception as e:  # noqa: BLE001 - any failure of a measurement is reported
            traceback.print_exc()
            row = Row(name, None, None, "", False, note=f"error: {type(e).__name__}: {e}")
            self.rows.append(row)
            print(self._line(row), flush=True)

    @property
    def missed(self) -> list[Row]:
        return [r for r in self.rows if r.passed is False]

    def finish(self) -> int:
        """Print the summary, write OUT_DIR/<bench>.json; 0 if every target was met, else 1."""
        print(f"\n== {self.bench}: summary")
        print(f"  {'name':<52} {'measured':>12} {'target':>12} {'unit':<10} pass")
        for row in self.rows:
            print(self._line(row))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{self.bench}.json"
        rows = [{**asdict(r), "pass": r.passed} for r in self.rows]
        for r in rows:
            del r["passed"]
        path.write_text(json.dumps({"bench": self.bench, "rows": rows,
                                    "missed": [r.name for r in self.missed]}, indent=2))
        verdict = (f"missed {len(self.missed)}: " + ", ".join(r.name for r in self.missed)
                   if self.missed else "all targets met")
        print(f"== {self.bench}: {verdict} ({path})")
        return 1 if self.missed else 0

    @staticmethod
    def _line(row: Row) -> str:
        measured = "error" if row.measured is None else f"{row.measured:.4g}"
        target = "" if row.target is None else \
            f"{'>=' if row.higher_is_better else '<='} {row.target:.4g}"
        verdict = {None: "-", True: "OK", False: "MISSED"}[row.passed]
        note = f"  ({row.note})" if row.note else ""
        return f"  {row.name:<52} {measured:>12} {target:>12} {row.unit:<10} {verdict}{note}"


def pretrained_shape_backbone(directory: Path) -> str:
    """A random Fuyu of the pretrained backbone's shape (pretrain/model.py BackboneShape),
    saved as its checkpoint will be: benches then hold after the 'small' preset switches."""
    import torch

    from more_policy.pretrain.model import BackboneShape, build_backbone, save_backbone

    model, tokenizer = build_backbone(BackboneShape(), seed=0)
    save_backbone(model, tokenizer, directory, dtype=torch.float32)
    return str(directory)
