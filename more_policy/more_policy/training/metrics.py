"""Training scalars to metrics.csv (step, name, value) and/or TensorBoard."""

from __future__ import annotations

import csv
from pathlib import Path

METRICS_FILE = "metrics.csv"


class MetricsLogger:
    """Writes on the main process only (``enabled``); other ranks get a logger that drops."""

    def __init__(self, out_dir: Path, log_with: str, enabled: bool) -> None:
        kinds = {k.strip() for k in log_with.split(",") if k.strip()}
        if kinds - {"csv", "tensorboard"}:
            raise ValueError(f"log_with must name csv and/or tensorboard, got {log_with!r}")
        self.csv = self.tb = None
        if not enabled:
            return
        if "csv" in kinds:
            self.csv = open(out_dir / METRICS_FILE, "a", newline="")  # noqa: SIM115
            self.writer = csv.writer(self.csv)
        if "tensorboard" in kinds:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise RuntimeError("log_with=tensorboard needs `pip install tensorboard`") from e
            self.tb = SummaryWriter(str(out_dir / "tensorboard"))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            if self.csv:
                self.writer.writerow([step, name, f"{value:.6g}"])
            if self.tb:
                self.tb.add_scalar(name, value, step)
        if self.csv:
            self.csv.flush()

    def close(self) -> None:
        for sink in (self.csv, self.tb):
            if sink:
                sink.close()


def read_metrics(path: Path) -> dict[str, list[tuple[int, float]]]:
    """metrics.csv -> {name: [(step, value), ...]} in file order."""
    curves: dict[str, list[tuple[int, float]]] = {}
    with open(path) as f:
        for step, name, value in csv.reader(f):
            curves.setdefault(name, []).append((int(step), float(value)))
    return curves
