"""Convert the QUARD raw layout (QUART's public data) into an episode dataset.

Raw layout: ``<root>/<task>/<episode>/command/NNN.npy`` and ``image/NNN.png`` (640x480 RGB),
NNN the 50 Hz step index (``depth/`` and ``info.csv`` are not needed). A command file holds
either a dict (x_vel_cmd, y_vel_cmd, yaw_vel_cmd, body_height_cmd, step_frequency_cmd,
'gait ' with a trailing space and 3 values, footswing_height_cmd, pitch_cmd, roll_cmd,
stance_width_cmd) or a 12-vector in QUART's order [T, dx, dy, dyaw, height, freq, g0, g1, g2,
swing, pitch, stance]; both are reordered to the paper's order (actions.py).

As QUART trained: keep every 10th step (50 -> 5 Hz), drop episodes with ``min_frames`` raw
frames or fewer, terminate = 1 on the last kept sample only, and take each dimension's range
from the data (gait parameters and terminate stay [0, 1]).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from more_policy.actions import NUM_DIMS, TERMINATE_INDEX, ActionSpace
from more_policy.data.format import DatasetError
from more_policy.data.writer import EpisodeWriter

RAW_RATE_HZ = 50.0
# Raw dict key -> our dimension name (roll is not part of the 12-d action).
DICT_KEYS = {"x_vel_cmd": "vel_x", "y_vel_cmd": "vel_y", "yaw_vel_cmd": "yaw_rate",
             "step_frequency_cmd": "step_frequency", "body_height_cmd": "body_height",
             "pitch_cmd": "body_pitch", "stance_width_cmd": "stance_width",
             "footswing_height_cmd": "swing_height"}
GAIT_KEY = "gait "  # sic: QUARD's key has a trailing space
GAIT_DIMS = ("gait_phase", "gait_offset", "gait_bound")
QUART_ORDER = ("terminate", "vel_x", "vel_y", "yaw_rate", "body_height", "step_frequency",
               "gait_phase", "gait_offset", "gait_bound", "swing_height", "body_pitch",
               "stance_width")
FIXED_RANGES = {"gait_phase": (0.0, 1.0), "gait_offset": (0.0, 1.0), "gait_bound": (0.0, 1.0),
                "terminate": (0.0, 1.0)}
GAIT_NAMES = {(0.5, 0.0, 0.0): "trotting", (0.0, 0.0, 0.0): "pronking",
              (0.0, 0.5, 0.0): "bounding", (0.0, 0.0, 0.5): "pacing"}


@dataclass
class QuardEpisode:
    task: str
    path: Path
    steps: list[int]         # kept 50 Hz step indices
    commands: np.ndarray     # (T, 12) paper order, terminate set on the last step


def read_command(path: Path, space: ActionSpace) -> np.ndarray:
    """One QUARD command file -> 12 values in the paper's order (terminate 0)."""
    try:
        raw = np.load(path, allow_pickle=True)
    except (OSError, ValueError, EOFError) as e:
        raise DatasetError(f"{path}: unreadable command file: {e}") from e
    values = np.zeros(NUM_DIMS)
    if raw.dtype == object and raw.shape == ():
        raw = raw.item()
    if isinstance(raw, dict):
        missing = [k for k in (*DICT_KEYS, GAIT_KEY) if k not in raw]
        if missing:
            raise DatasetError(f"{path}: command dict lacks keys {missing}")
        for key, name in DICT_KEYS.items():
            values[space.index(name)] = float(np.asarray(raw[key]).reshape(-1)[0])
        gait = np.asarray(raw[GAIT_KEY], dtype=np.float64).reshape(-1)
        if gait.size != 3:
            raise DatasetError(f"{path}: 'gait ' must hold 3 values, got {gait.size}")
        for name, v in zip(GAIT_DIMS, gait):
            values[space.index(name)] = v
    else:
        raw = np.asarray(raw, dtype=np.float64).reshape(-1)
        if raw.size != NUM_DIMS:
            raise DatasetError(f"{path}: expected a dict or {NUM_DIMS} values, got {raw.size}")
        for value, name in zip(raw, QUART_ORDER):
            values[space.index(name)] = value
    if not np.all(np.isfinite(values)):
        raise DatasetError(f"{path}: non-finite command values")
    values[TERMINATE_INDEX] = 0.0
    return values


def _indexed(directory: Path, suffix: str) -> dict[int, Path]:
    files = {}
    for p in directory.glob(f"*{suffix}"):
        if p.stem.isdigit():
            files[int(p.stem)] = p
    return files


def scan(root: str | Path, space: ActionSpace, *, every: int = 10, min_frames: int = 50
         ) -> tuple[list[QuardEpisode], int]:
    """Find episodes and read their (subsampled) commands. Returns (kept, dropped count)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no QUARD directory at {root}")
    episodes, dropped = [], 0
    for task_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for ep_dir in sorted(p for p in task_dir.iterdir() if p.is_dir()):
            commands = _indexed(ep_dir / "command", ".npy")
            if len(commands) <= min_frames:
                dropped += 1
                continue
            images = _indexed(ep_dir / "image", ".png")
            steps = sorted(commands)[::every]
            missing = [s for s in steps if s not in images]
            if missing:
                raise DatasetError(f"{ep_dir}: no image for steps {missing[:5]}")
            values = np.stack([read_command(commands[s], space) for s in steps])
            values[-1, TERMINATE_INDEX] = 1.0
            episodes.append(QuardEpisode(task_dir.name, ep_dir, steps, values))
    if not episodes:
        raise DatasetError(f"{root}: no QUARD episodes with more than {min_frames} frames")
    return episodes, dropped


def ranges_from_data(episodes: list[QuardEpisode], space: ActionSpace) -> ActionSpace:
    """Per-dimension [min, max] of the data; fixed [0, 1] for gait and terminate."""
    allc = np.concatenate([e.commands for e in episodes])
    ranges = {}
    for i, name in enumerate(space.names):
        lo, hi = FIXED_RANGES.get(name, (float(allc[:, i].min()), float(allc[:, i].max())))
        if hi - lo < 1e-6:  # constant in the data: keep the default range
            lo, hi = space.dims[i].low, space.dims[i].high
        ranges[name] = (lo, hi)
    return space.with_ranges(ranges)


def instruction_for(task: str, commands: np.ndarray, space: ActionSpace, ep_dir: Path) -> str:
    """info.csv's instruction if present, else task text + speed word + gait (QUART style)."""
    info = ep_dir / "info.csv"
    if info.exists():
        with open(info, newline="") as f:
            row = next(csv.DictReader(f), None) or {}
        if row.get("instruction"):
            return row["instruction"].strip()
    speed = float(np.mean(commands[:, space.index("vel_x")]))
    word = "slowly" if speed < 0.6 else "fast" if speed > 1.4 else "at a normal speed"
    gait = tuple(np.round(np.median(commands[:, [space.index(n) for n in GAIT_DIMS]], 0), 1))
    gait_name = GAIT_NAMES.get(tuple(float(g) for g in gait), "custom")
    return f"{task.replace('_', ' ')} {word} with a {gait_name} gait"


def load_frame(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f"{path}: unreadable or corrupt image")
    if size is not None:
        img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img[:, :, ::-1])


def convert_quard(root: str | Path, out_dir: str | Path, *, source: str = "expert",
                  success: bool = True, image_size: tuple[int, int] | None = (240, 240),
                  every: int = 10, min_frames: int = 50, data_ranges: bool = True,
                  overwrite: bool = False, progress: bool = True) -> Path:
    """Convert a QUARD tree; any bad file aborts with its name and leaves no dataset."""
    space = ActionSpace()
    episodes, dropped = scan(root, space, every=every, min_frames=min_frames)
    if data_ranges:
        space = ranges_from_data(episodes, space)
    with EpisodeWriter(out_dir, space, rate_hz=RAW_RATE_HZ / every,
                       overwrite=overwrite) as writer:
        for ep in tqdm(episodes, desc="quard", disable=not progress):
            images = _indexed(ep.path / "image", ".png")
            frames = np.stack([load_frame(images[s], image_size) for s in ep.steps])
            writer.add_episode(frames, ep.commands, instruction_for(ep.task, ep.commands,
                                                                    space, ep.path),
                               task=ep.task, source=source, success=success,
                               meta={"origin": str(ep.path), "raw_steps": len(ep.steps) * every,
                                     "dropped_short_episodes": dropped})
    return Path(out_dir)
