"""EpisodeWriter: validated, sharded, atomically finalised episode datasets.

    with EpisodeWriter(out_dir, action_space, rate_hz=5.0) as w:
        w.add_episode(frames, commands, instruction="go to the red ball", task="go_to",
                      source="expert", success=True)

Reward is 1 on the last step of a successful episode, else 0; done is set on the last step.
Nothing reads as a dataset until the ``with`` block exits cleanly (meta.json is written last,
atomically); an exception inside the block removes what this writer wrote.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from more_policy.actions import NUM_DIMS, ActionSpace
from more_policy.data.format import (
    DATA_DIR,
    EPISODE_SCHEMA,
    META_FILE,
    SCHEMA_VERSION,
    SOURCES,
    STEP_SCHEMA,
    DatasetError,
    atomic_write_text,
    encode_jpeg,
    read_meta,
)


class EpisodeWriter:
    """Writes (or appends to) an episode dataset; see the module docstring."""

    def __init__(self, out_dir: str | Path, action_space: ActionSpace, rate_hz: float = 5.0, *,
                 append: bool = False, overwrite: bool = False, jpeg_quality: int = 95,
                 rows_per_row_group: int = 256, rows_per_shard: int = 8192) -> None:
        if not rate_hz > 0:
            raise DatasetError(f"rate_hz must be > 0, got {rate_hz}")
        self.root = Path(out_dir)
        self.action_space = action_space
        self.rate_hz = float(rate_hz)
        self.jpeg_quality = int(jpeg_quality)
        self.rows_per_row_group = int(rows_per_row_group)
        self.rows_per_shard = int(rows_per_shard)
        self._session = uuid.uuid4().hex[:8]
        self._prepare_directory(append, overwrite)
        self._rows: list[dict[str, Any]] = []      # steps not yet in a row group
        self._episodes: list[dict[str, Any]] = []  # episode rows written by this session
        self._shard_writer: pq.ParquetWriter | None = None
        self._shard_info: dict[str, Any] | None = None
        self._shards: list[dict[str, Any]] = []      # shards closed by this session
        self._written: list[Path] = []             # files this session created
        self._closed = False

    # -- setup ---------------------------------------------------------------------------
    def _prepare_directory(self, append: bool, overwrite: bool) -> None:
        meta_path = self.root / META_FILE
        self._previous: dict[str, Any] | None = None
        if append and meta_path.exists():
            self._previous = read_meta(self.root)
            existing = ActionSpace.load(self.root)
            if existing.to_dict() != self.action_space.to_dict():
                raise DatasetError(f"cannot append to {self.root}: its action space differs "
                                   "from the writer's")
            if abs(self._previous["rate_hz"] - self.rate_hz) > 1e-9:
                raise DatasetError(f"cannot append to {self.root}: rate {self.rate_hz} Hz != "
                                   f"the dataset's {self._previous['rate_hz']} Hz")
        elif self.root.exists() and any(self.root.iterdir()):
            looks_like_dataset = meta_path.exists() or (self.root / DATA_DIR).exists()
            if overwrite and looks_like_dataset:
                shutil.rmtree(self.root)
            elif meta_path.exists():
                raise DatasetError(f"{self.root} already holds a dataset; pass append=True to "
                                   "add episodes or overwrite=True to replace it")
            else:
                raise DatasetError(f"{self.root} is not empty and holds no complete dataset "
                                   "(a crashed write?); delete it or pass overwrite=True")
        (self.root / DATA_DIR).mkdir(parents=True, exist_ok=True)
        prev = self._previous
        self._next_episode = prev["num_episodes"] if prev else 0
        self._image_shape = tuple(prev["image_shape"]) if prev and prev.get("image_shape") \
            else None
        self._clipped = Counter(prev.get("clipped_values", {})) if prev else Counter()

    # -- context manager -----------------------------------------------------------------
    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- validation ----------------------------------------------------------------------
    def _validate(self, frames, commands, instruction, task, source, success, meta):
        if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
            shape = getattr(frames, "shape", type(frames).__name__)
            raise DatasetError(f"frames must be a (T, H, W, 3) array, got {shape}")
        if frames.dtype != np.uint8:
            raise DatasetError(f"frames must be uint8 RGB, got dtype {frames.dtype}")
        if frames.shape[0] < 1:
            raise DatasetError("an episode needs at least one step")
        if self._image_shape is not None and tuple(frames.shape[1:]) != self._image_shape:
            raise DatasetError(f"frame shape {tuple(frames.shape[1:])} differs from the "
                               f"dataset's {self._image_shape}")
        commands = np.asarray(commands)
        if commands.shape != (frames.shape[0], NUM_DIMS):
            raise DatasetError(f"commands must be ({frames.shape[0]}, {NUM_DIMS}) to match "
                               f"{frames.shape[0]} frames, got {commands.shape}")
        if not np.issubdtype(commands.dtype, np.number):
            raise DatasetError(f"commands must be numeric, got dtype {commands.dtype}")
        if not np.all(np.isfinite(commands)):
            bad = sorted({self.action_space.names[j]
                          for j in np.nonzero(~np.isfinite(commands))[1]})
            raise DatasetError(f"commands contain NaN/inf in {bad}")
        for name, value in (("instruction", instruction), ("task", task)):
            if not isinstance(value, str) or not value.strip():
                raise DatasetError(f"{name} must be a non-empty string, got {value!r}")
        if source not in SOURCES:
            raise DatasetError(f"source must be one of {SOURCES}, got {source!r}")
        if not isinstance(success, (bool, np.bool_)):
            raise DatasetError(f"success must be a bool, got {type(success).__name__}")
        try:
            meta_json = json.dumps(meta or {})
        except TypeError as e:
            raise DatasetError(f"meta must be JSON-serialisable: {e}") from e
        return commands.astype(np.float64), meta_json

    # -- writing -------------------------------------------------------------------------
    def add_episode(self, frames: np.ndarray, commands: np.ndarray, instruction: str, task: str,
                    source: str = "expert", success: bool = True,
                    meta: dict[str, Any] | None = None) -> int:
        """Validate and buffer one episode; returns its episode index."""
        if self._closed:
            raise DatasetError("this EpisodeWriter is closed")
        commands, meta_json = self._validate(frames, commands, instruction, task, source,
                                             success, meta)
        num_steps = frames.shape[0]
        self._image_shape = tuple(frames.shape[1:])
        outside = (commands < self.action_space.low) | (commands > self.action_space.high)
        for j in np.nonzero(outside.any(axis=0))[0]:
            self._clipped[self.action_space.names[j]] += int(outside[:, j].sum())
        bins = self.action_space.encode(commands).astype(np.uint8)
        rows = [{"image": encode_jpeg(frames[t], self.jpeg_quality),
                 "command": commands[t].astype(np.float32), "action_bins": bins[t]}
                for t in range(num_steps)]
        return self._buffer_episode(rows, {"task": task, "instruction": instruction,
                                           "source": source, "success": bool(success),
                                           "meta": meta_json})

    def _buffer_episode(self, rows: list[dict[str, Any]], episode: dict[str, Any]) -> int:
        """Fill in the per-step bookkeeping (index, reward, done) and buffer the episode."""
        index = self._next_episode
        self._next_episode += 1
        num_steps = len(rows)
        for t, row in enumerate(rows):
            last = t == num_steps - 1
            row.update(episode_index=index, step=t, num_steps=num_steps,
                       instruction=episode["instruction"], task=episode["task"],
                       source=episode["source"], success=episode["success"],
                       reward=float(last and episode["success"]), done=last)
            self._rows.append(row)
        self._episodes.append({**episode, "episode_index": index, "num_steps": num_steps})
        if len(self._rows) >= self.rows_per_row_group:
            self._flush_row_group()
        return index

    def _flush_row_group(self) -> None:
        if not self._rows:
            return
        if self._shard_writer is None:
            self._open_shard()
        columns = {name: [r[name] for r in self._rows] for name in STEP_SCHEMA.names}
        table = pa.table({k: pa.array(v, type=STEP_SCHEMA.field(k).type)
                          for k, v in columns.items()}, schema=STEP_SCHEMA)
        self._shard_writer.write_table(table, row_group_size=len(self._rows))
        info = self._shard_info
        episodes = sorted({r["episode_index"] for r in self._rows})
        for e in self._episodes[-len(episodes):]:
            e["shard"] = info["file"]
        info["row_groups"].append(len(self._rows))
        info["num_steps"] += len(self._rows)
        info["num_episodes"] += len(episodes)
        self._rows = []
        if info["num_steps"] >= self.rows_per_shard:
            self._close_shard()

    def _open_shard(self) -> None:
        n = len(self._written)
        name = f"{DATA_DIR}/shard-{self._session}-{n:05d}.parquet"
        tmp = self.root / f"{name}.tmp"
        self._written.append(tmp)
        self._shard_writer = pq.ParquetWriter(tmp, STEP_SCHEMA, compression="zstd")
        self._shard_info = {"file": name, "num_steps": 0, "num_episodes": 0, "row_groups": []}

    def _close_shard(self) -> None:
        self._shard_writer.close()
        tmp = self._written[-1]
        final = self.root / self._shard_info["file"]
        tmp.rename(final)
        self._written[-1] = final
        self._shards.append(self._shard_info)
        self._shard_writer = self._shard_info = None

    def close(self) -> Path:
        """Flush, write the episode table, then commit meta.json (the completion marker)."""
        if self._closed:
            return self.root
        self._flush_row_group()
        if self._shard_writer is not None:
            self._close_shard()
        shards = list(self._previous["shards"]) if self._previous else []
        shards += self._shards
        old_episodes_file = self._previous["episodes_file"] if self._previous else None
        episodes = pa.Table.from_pylist(self._episodes, schema=EPISODE_SCHEMA)
        if old_episodes_file:
            episodes = pa.concat_tables([pq.read_table(self.root / old_episodes_file),
                                         episodes])
        episodes_file = f"episodes-{self._session}.parquet"
        pq.write_table(episodes, self.root / episodes_file)
        self._written.append(self.root / episodes_file)
        self.action_space.save(self.root)
        atomic_write_text(self.root / META_FILE, json.dumps(
            self._meta(shards, episodes, episodes_file), indent=1))
        if old_episodes_file and old_episodes_file != episodes_file:
            (self.root / old_episodes_file).unlink(missing_ok=True)
        self._closed = True
        return self.root

    def _meta(self, shards, episodes: pa.Table, episodes_file: str) -> dict[str, Any]:
        ep = episodes.to_pydict()
        tasks: dict[str, dict[str, int]] = {}
        sources: dict[str, dict[str, int]] = {}
        for task, source, n, ok in zip(ep["task"], ep["source"], ep["num_steps"],
                                       ep["success"]):
            for table, key in ((tasks, task), (sources, source)):
                c = table.setdefault(key, {"episodes": 0, "steps": 0, "successes": 0})
                c["episodes"] += 1
                c["steps"] += n
                c["successes"] += int(ok)
        return {
            "schema_version": SCHEMA_VERSION, "format": "more-episodes",
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "rate_hz": self.rate_hz, "image_shape": list(self._image_shape or []),
            "jpeg_quality": self.jpeg_quality,
            "num_episodes": episodes.num_rows, "num_steps": int(sum(ep["num_steps"])),
            "tasks": tasks, "sources": sources, "clipped_values": dict(self._clipped),
            "episodes_file": episodes_file, "shards": shards,
        }

    def abort(self) -> None:
        """Drop everything this writer wrote; a previous dataset (append mode) stays intact."""
        if self._shard_writer is not None:
            self._shard_writer.close()
            self._shard_writer = None
        for path in self._written:
            path.unlink(missing_ok=True)
        self._rows, self._closed = [], True


def merge_datasets(sources: list[str | Path], out_dir: str | Path, *,
                   overwrite: bool = False) -> Path:
    """Concatenate datasets (same action space and rate) into a new one, renumbering episodes.

    JPEG frames are copied as bytes, not re-encoded.
    """
    from more_policy.data.reader import EpisodeDataset

    if not sources:
        raise DatasetError("merge needs at least one source dataset")
    first = EpisodeDataset(sources[0], shuffle=False)
    with EpisodeWriter(out_dir, first.action_space, first.meta["rate_hz"],
                       overwrite=overwrite) as writer:
        for src in sources:
            ds = EpisodeDataset(src, shuffle=False)
            if ds.action_space.to_dict() != first.action_space.to_dict():
                raise DatasetError(f"{src}: action space differs from {sources[0]}'s")
            if ds.meta["rate_hz"] != first.meta["rate_hz"]:
                raise DatasetError(f"{src}: rate {ds.meta['rate_hz']} Hz differs from "
                                   f"{first.meta['rate_hz']} Hz")
            episode_meta = dict(zip(*ds.episodes_table().select(
                ["episode_index", "meta"]).to_pydict().values()))
            shape = tuple(ds.meta["image_shape"])
            if writer._image_shape not in (None, shape):
                raise DatasetError(f"{src}: frame shape {shape} differs from "
                                   f"{writer._image_shape}")
            writer._image_shape = shape
            for rows in ds.iter_episode_rows():
                first_row = rows[0]
                writer._buffer_episode(
                    [{k: r[k] for k in ("image", "command", "action_bins")} for r in rows],
                    {"task": first_row["task"], "instruction": first_row["instruction"],
                     "source": first_row["source"], "success": first_row["success"],
                     "meta": episode_meta.get(first_row["episode_index"], "{}")})
            for name, n in ds.meta.get("clipped_values", {}).items():
                writer._clipped[name] += n
    return Path(out_dir)
