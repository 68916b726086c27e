"""The on-disk episode dataset format (schema version 1).

A dataset is a directory::

    meta.json                 the commit point: written last, atomically (tmp + rename)
    action_space.json         the ActionSpace the action bins were encoded with
    episodes-<session>.parquet  one row per episode (index, shard, length, task, success, ...)
    data/shard-<session>-NNNNN.parquet  one row per step, JPEG frames, whole episodes per
                              row group (so a row group alone yields complete transitions)

A directory without meta.json is an incomplete (crashed or in-progress) write and never reads
as a dataset. Files that meta.json does not list (left by a crashed append) are ignored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow as pa

SCHEMA_VERSION = 1
META_FILE = "meta.json"
DATA_DIR = "data"
SOURCES = ("expert", "suboptimal")

# One row per step. Episode-level fields (task, source, success) are repeated per step
# (dictionary-encoded, nearly free) so a row group is self-contained.
STEP_SCHEMA = pa.schema([
    ("episode_index", pa.int64()),
    ("step", pa.int32()),
    ("num_steps", pa.int32()),
    ("image", pa.binary()),                           # JPEG, RGB
    ("instruction", pa.string()),
    ("task", pa.dictionary(pa.int32(), pa.string())),
    ("source", pa.dictionary(pa.int8(), pa.string())),
    ("success", pa.bool_()),
    ("command", pa.list_(pa.float32(), 12)),          # SI units, paper dimension order
    ("action_bins", pa.list_(pa.uint8(), 12)),        # ActionSpace.encode(command)
    ("reward", pa.float32()),
    ("done", pa.bool_()),
])

EPISODE_SCHEMA = pa.schema([
    ("episode_index", pa.int64()),
    ("shard", pa.string()),
    ("num_steps", pa.int32()),
    ("task", pa.string()),
    ("instruction", pa.string()),
    ("source", pa.string()),
    ("success", pa.bool_()),
    ("meta", pa.string()),                            # JSON of the caller's meta dict
])


class DatasetError(ValueError):
    """A dataset (or data handed to a writer) is malformed, incomplete or inconsistent."""


def encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    """RGB uint8 (H, W, 3) -> JPEG bytes."""
    bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)  # SIMD; far cheaper than a [..., ::-1] copy
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise DatasetError(f"JPEG encoding failed for a frame of shape {frame.shape}")
    return buf.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG bytes -> RGB uint8 (H, W, 3)."""
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError("corrupt JPEG frame in dataset")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that readers see either the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_meta(root: str | Path) -> dict[str, Any]:
    """Load and check a dataset's meta.json; a missing one means an incomplete write."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no dataset directory at {root}")
    path = root / META_FILE
    if not path.exists():
        raise DatasetError(f"{root} is not a complete dataset: {META_FILE} is missing (the "
                           "write was interrupted or is still running)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not valid JSON: {e}") from e
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise DatasetError(f"{path}: unsupported dataset schema version {version!r} "
                           f"(this code reads {SCHEMA_VERSION})")
    for key in ("rate_hz", "shards", "episodes_file", "num_steps", "num_episodes"):
        if key not in meta:
            raise DatasetError(f"{path}: missing field {key!r}")
    return meta
