"""Offline evaluation of a policy on a rosbag2 recording (mcap or sqlite3), no ROS runtime.

Each recorded /more/command is paired with the camera frame and instruction it was computed
from, the policy is run on them again, and its output is compared with the recording:

* per-dimension error in SI units (mean absolute, RMS, max) and per-dimension token accuracy;
* terminate precision / recall (a decision, so no SI error for it);
* latency: what the recorded /more/status reported on the robot, and offline act() time here.

Frame pairing: the policy node stamps a command when it publishes it, and its status reports
``image_age_ms`` (frame stamp -> inference start) and ``total_ms`` (inference start ->
publish), so the frame's stamp is command stamp - total - image age. Without a status, the
newest frame logged before the command is used (reported as ``frames_matched_exactly``).

The camera topic may carry sensor_msgs/Image or CompressedImage (JPEG/PNG); when the given
topic is absent, its realsense-ros compressed name ``<topic>/compressed`` is used. The bag is
read and checked by :func:`load_samples` before any model is needed.
"""

from __future__ import annotations

import json
import sys
import time
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from more_policy.actions import NUM_DIMS, TERMINATE_INDEX, ActionSpace
from more_policy.data.format import DatasetError
from more_policy.data.ros_messages import (
    COMMAND_TOPIC,
    IMAGE_TOPIC,
    INSTRUCTION_TOPIC,
    STATUS_TOPIC,
    ImageError,
    image_to_rgb,
    stamp_to_ns,
)
from more_policy.data.rosbag import BagMessage, read_bag

EXACT_MATCH_NS = 1_000_000  # a frame within 1 ms of the reconstructed stamp is "the" frame


@dataclass
class Sample:
    """One recorded decision: the inputs it came from and what was published."""

    rgb: np.ndarray  # (H, W, 3) uint8
    instruction: str
    command: object  # the recorded Go2Command
    bins: np.ndarray  # (12,) recorded bins
    exact_frame: bool
    status: object | None  # the recorded PolicyStatus, if any


def _command_values(space: ActionSpace, msg) -> np.ndarray:
    values = [float(getattr(msg, n)) for n in space.names[:TERMINATE_INDEX]]
    return np.array([*values, 1.0 if msg.terminate else 0.0])


IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


def load_samples(bag: str | Path, image_topic: str = IMAGE_TOPIC,
                 instruction_topic: str = INSTRUCTION_TOPIC) -> list[Sample]:
    """Read ``bag`` and pair its commands with their inputs; raises :class:`DatasetError` (or
    FileNotFoundError) with a one-line reason when there is nothing usable to evaluate."""
    compressed_topic = image_topic.rstrip("/") + "/compressed"
    messages = read_bag(bag, (image_topic, compressed_topic, instruction_topic, COMMAND_TOPIC,
                              STATUS_TOPIC))
    if not any(m.topic == image_topic for m in messages):
        if not any(m.topic == compressed_topic for m in messages):
            raise DatasetError(f"{bag}: no camera frame on {image_topic} or {compressed_topic}; "
                               f"pass --image-topic")
        image_topic = compressed_topic
    images = [m for m in messages if m.topic == image_topic]
    msgtype = getattr(images[0].msg, "__msgtype__", "")
    if msgtype not in IMAGE_TYPES:
        raise DatasetError(f"{bag}: {image_topic} carries {msgtype}, expected one of "
                           f"{list(IMAGE_TYPES)}")
    try:
        samples = collect_samples(messages, image_topic, instruction_topic)
    except ImageError as e:
        raise DatasetError(f"{bag}: {image_topic}: {e}") from None
    if not samples:
        raise DatasetError(f"{bag}: no {COMMAND_TOPIC} message with a frame on {image_topic} "
                           f"and an instruction on {instruction_topic} before it; nothing to "
                           f"evaluate")
    return samples


def collect_samples(messages: list[BagMessage], image_topic: str = IMAGE_TOPIC,
                    instruction_topic: str = INSTRUCTION_TOPIC) -> list[Sample]:
    """Pair every recorded command with its frame, instruction and status (see module doc)."""
    images = [m for m in messages if m.topic == image_topic]
    image_stamps = np.array([stamp_to_ns(m.msg.header.stamp) for m in images], dtype=np.int64)
    image_logs = [m.log_ns for m in images]
    instructions = [m for m in messages if m.topic == instruction_topic and m.msg.data.strip()]
    instruction_logs = [m.log_ns for m in instructions]
    statuses = [m for m in messages if m.topic == STATUS_TOPIC and m.msg.total_ms > 0]
    samples, next_status = [], 0
    for cmd in (m for m in messages if m.topic == COMMAND_TOPIC):
        while next_status < len(statuses) and statuses[next_status].log_ns < cmd.log_ns:
            next_status += 1
        status = None
        if next_status < len(statuses) and \
                statuses[next_status].msg.episode_id == cmd.msg.episode_id:
            status = statuses[next_status].msg
            next_status += 1
        frame, exact = None, False
        if status is not None and len(images):
            wanted = stamp_to_ns(cmd.msg.header.stamp) - int(
                1e6 * (status.total_ms + status.image_age_ms))
            nearest = int(np.argmin(np.abs(image_stamps - wanted)))
            if abs(int(image_stamps[nearest]) - wanted) <= EXACT_MATCH_NS:
                frame, exact = images[nearest], True
        if frame is None:
            k = bisect_right(image_logs, cmd.log_ns) - 1
            if k < 0:
                continue  # no frame before this command: nothing to replay
            frame = images[k]
        if status is not None and status.instruction:
            instruction = status.instruction
        else:
            k = bisect_right(instruction_logs, cmd.log_ns) - 1
            if k < 0:
                continue
            instruction = instructions[k].msg.data.strip()
        samples.append(Sample(image_to_rgb(frame.msg), instruction, cmd.msg,
                              np.asarray(cmd.msg.action_bins, dtype=np.int64), exact, status))
    return samples


def _stats(values) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {}
    return {"mean": float(values.mean()), "p50": float(np.percentile(values, 50)),
            "p90": float(np.percentile(values, 90)), "max": float(values.max()),
            "count": int(values.size)}


def _precision_recall(predicted: np.ndarray, recorded: np.ndarray) -> dict[str, float | None]:
    tp = int(np.sum(predicted & recorded))
    fp, fn = int(np.sum(predicted & ~recorded)), int(np.sum(~predicted & recorded))
    return {"precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None,
            "true_positives": tp, "false_positives": fp, "false_negatives": fn}


def eval_bag(bag: str | Path, policy, out_dir: str | Path | None = None, plot: bool = True,
             batch_size: int = 8, image_topic: str = IMAGE_TOPIC,
             instruction_topic: str = INSTRUCTION_TOPIC) -> dict:
    """Compare ``policy`` with the commands recorded in ``bag``; returns (and writes) a report."""
    samples = load_samples(bag, image_topic, instruction_topic)
    return evaluate_samples(samples, policy, bag, out_dir, plot, batch_size)


def evaluate_samples(samples: list[Sample], policy, bag: str | Path,
                     out_dir: str | Path | None = None, plot: bool = True,
                     batch_size: int = 8) -> dict:
    """The report of :func:`eval_bag` for samples already loaded from ``bag``."""
    space: ActionSpace = policy.action_space
    predicted_values, predicted_bins, act_ms = [], [], []
    try:
        from tqdm import tqdm
        batches = tqdm(range(0, len(samples), batch_size), desc="eval-bag", unit="batch",
                       file=sys.stderr)
    except ImportError:
        batches = range(0, len(samples), batch_size)
    for start in batches:
        batch = samples[start:start + batch_size]
        t0 = time.perf_counter()
        result = policy.act([s.rgb for s in batch], [s.instruction for s in batch])
        act_ms.append(1e3 * (time.perf_counter() - t0) / len(batch))
        predicted_values.append(np.asarray(result.values, dtype=np.float64))
        predicted_bins.append(np.asarray(result.bins, dtype=np.int64))
    pred = np.concatenate(predicted_values)  # (N, 12)
    pred_bins = np.concatenate(predicted_bins)  # (N, 12)
    rec = np.stack([_command_values(space, s.command) for s in samples])  # (N, 12)
    rec_bins = np.stack([s.bins for s in samples])  # (N, 12)
    error = np.abs(pred - rec)  # (N, 12)
    token_hits = pred_bins == rec_bins  # (N, 12)
    statuses = [s.status for s in samples if s.status is not None]
    report = {
        "bag": str(bag), "samples": len(samples),
        "frames_matched_exactly": float(np.mean([s.exact_frame for s in samples])),
        "instructions": sorted({s.instruction for s in samples}),
        "per_dimension": {
            d.name: {"unit": d.unit, "mae": float(error[:, i].mean()),
                     "rmse": float(np.sqrt((error[:, i] ** 2).mean())),
                     "max_error": float(error[:, i].max()),
                     "token_accuracy": float(token_hits[:, i].mean())}
            for i, d in enumerate(space.dims) if i != TERMINATE_INDEX},
        "token_accuracy": float(token_hits.mean()),
        "action_accuracy": float(token_hits.all(axis=1).mean()),  # all 12 tokens right
        "terminate": _precision_recall(space.is_terminate(pred), space.is_terminate(rec)),
        "latency_ms": {
            "recorded_total": _stats([s.total_ms for s in statuses]),
            "recorded_prefill": _stats([s.prefill_ms for s in statuses]),
            "recorded_decode": _stats([s.decode_ms for s in statuses]),
            "recorded_image_age": _stats([s.image_age_ms for s in statuses]),
            "offline_act_per_sample": _stats(act_ms),
        },
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval_bag.json").write_text(json.dumps(report, indent=2))
        if plot:
            plot_comparison(rec, pred, space, out / "eval_bag.png")
            report["plot"] = str(out / "eval_bag.png")
    return report


def plot_comparison(recorded: np.ndarray, predicted: np.ndarray, space: ActionSpace,
                    path: Path) -> None:
    """One panel per dimension: recorded vs re-computed command over the samples."""
    from more_policy.plotting import pyplot

    plt = pyplot()
    predicted = predicted.copy()
    predicted[:, TERMINATE_INDEX] = space.is_terminate(predicted)  # the decision, as recorded
    fig, axes = plt.subplots(3, 4, figsize=(16, 9), sharex=True)
    for i, ax in enumerate(axes.flat[:NUM_DIMS]):
        dim = space.dims[i]
        ax.step(range(len(recorded)), recorded[:, i], where="post", label="recorded")
        ax.step(range(len(predicted)), predicted[:, i], where="post", label="policy",
                linestyle="--")
        ax.set_title(f"{dim.name} [{dim.unit}]", fontsize=9)
        ax.set_ylim(dim.low - 0.05 * (dim.high - dim.low), dim.high + 0.05 * (dim.high - dim.low))
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("recorded commands vs policy (eval-bag)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
