"""EpisodeDataset: a streaming reader of transitions (s, a, r, s', done, Monte-Carlo return).

Nothing is loaded whole: the unit of reading is a parquet row group (whole episodes, a few
hundred steps). Each epoch the row groups are permuted from (seed, epoch), split across ranks
(rank r takes every world_size-th), read a block of ``shuffle_block`` row groups at a time,
and the block's transitions are permuted again: a deterministic block shuffle whose memory is
bounded by one block of JPEG bytes. Images are decoded only when a sample is yielded, so
skipping (for exact resume) costs no decoding.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset

from more_policy.actions import ActionSpace
from more_policy.data.format import DatasetError, decode_jpeg, read_meta


class EpisodeDataset(IterableDataset):
    """Transitions of an episode dataset, streamed; see the module docstring."""

    def __init__(self, root: str | Path, *, gamma: float = 0.995, shuffle: bool = True,
                 seed: int = 0, rank: int = 0, world_size: int = 1, shuffle_block: int = 8,
                 decode_images: bool = True) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, "
                             f"world_size {world_size}")
        self.root = Path(root)
        self.meta = read_meta(self.root)
        self.action_space = ActionSpace.load(self.root)
        self.gamma, self.shuffle, self.seed = float(gamma), shuffle, int(seed)
        self.rank, self.world_size = rank, world_size
        self.shuffle_block = max(1, int(shuffle_block))
        self.decode_images = decode_images
        self.epoch = 0
        # (shard index, row group index, rows) for every row group, in storage order.
        self.units = [(s, g, n) for s, shard in enumerate(self.meta["shards"])
                      for g, n in enumerate(shard["row_groups"])]
        missing = [sh["file"] for sh in self.meta["shards"]
                   if not (self.root / sh["file"]).exists()]
        if missing:
            raise DatasetError(f"{self.root}: shard files listed in meta.json are missing: "
                               f"{missing[:3]}{' ...' if len(missing) > 3 else ''}")
        self._open = lru_cache(maxsize=4)(self._open_shard)
        # The cached ParquetFile objects are shared by every stream of this dataset (a prefetch
        # thread and the main thread, say), and pyarrow's read cache is not thread-safe.
        self._read_lock = threading.Lock()
        # Fewer row groups than ranks (tiny datasets): every rank reads every row group and
        # keeps every world_size-th transition of each block instead.
        self.row_sharding = len(self.units) < world_size

    # -- metadata ------------------------------------------------------------------------
    @property
    def num_steps(self) -> int:
        return int(self.meta["num_steps"])

    def __len__(self) -> int:
        """Transitions per epoch on this rank (row groups differ in size, so ranks may differ)."""
        return sum(self._rank_block_size(block) for block in self._blocks(0))

    def episodes_table(self) -> pa.Table:
        return pq.read_table(self.root / self.meta["episodes_file"])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    # -- reading -------------------------------------------------------------------------
    def _open_shard(self, shard: int) -> pq.ParquetFile:
        path = self.root / self.meta["shards"][shard]["file"]
        try:
            return pq.ParquetFile(path)
        except (OSError, pa.ArrowInvalid) as e:
            raise DatasetError(f"{path}: unreadable shard: {e}") from e

    def read_unit(self, shard: int, group: int) -> pa.Table:
        path = self.meta["shards"][shard]["file"]
        try:
            with self._read_lock:
                table = self._open(shard).read_row_group(group)
        except (OSError, pa.ArrowInvalid) as e:
            raise DatasetError(f"{self.root / path}: unreadable row group {group}: {e}") from e
        expected = self.meta["shards"][shard]["row_groups"][group]
        if table.num_rows != expected:
            raise DatasetError(f"{self.root / path}: row group {group} has {table.num_rows} "
                               f"rows, meta.json says {expected}")
        return table

    def iter_row_groups(self) -> Iterator[pa.Table]:
        """Every row group in storage order (all ranks), for tools like validate/merge."""
        for s, g, _ in self.units:
            yield self.read_unit(s, g)

    def iter_episode_rows(self) -> Iterator[list[dict[str, Any]]]:
        """Each episode as a list of raw row dicts (JPEG bytes undecoded), storage order."""
        for table in self.iter_row_groups():
            rows = table.to_pylist()
            start = 0
            for i, row in enumerate(rows):
                if row["done"]:
                    yield rows[start:i + 1]
                    start = i + 1

    # -- transitions ---------------------------------------------------------------------
    def _rank_units(self, epoch: int) -> list[tuple[int, int, int]]:
        order = np.arange(len(self.units))
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(order)
        if self.row_sharding:
            return [self.units[i] for i in order]
        return [self.units[i] for i in order[self.rank::self.world_size]]

    def _rank_block_size(self, block) -> int:
        size = sum(n for _, _, n in block)
        if self.row_sharding:
            return len(range(self.rank, size, self.world_size))
        return size

    def _blocks(self, epoch: int) -> list[list[tuple[int, int, int]]]:
        units = self._rank_units(epoch)
        return [units[i:i + self.shuffle_block] for i in range(0, len(units), self.shuffle_block)]

    def _block_transitions(self, block, epoch: int, block_index: int) -> dict[str, Any]:
        """Columns of one block plus next-row index and MC return, in a permuted order."""
        table = pa.concat_tables([self.read_unit(s, g) for s, g, _ in block])
        cols = table.to_pydict()
        n = table.num_rows
        done = np.asarray(cols["done"], dtype=bool)
        reward = np.asarray(cols["reward"], dtype=np.float64)
        episode = np.asarray(cols["episode_index"])
        step = np.asarray(cols["step"])
        if n and not done[-1]:
            raise DatasetError(f"{self.root}: a row group ends inside an episode")
        next_row = np.where(done, np.arange(n), np.arange(n) + 1)
        inner = ~done
        if np.any(episode[next_row[inner]] != episode[inner]) or \
                np.any(step[next_row[inner]] != step[inner] + 1):
            raise DatasetError(f"{self.root}: steps of an episode are not consecutive")
        mc_return = np.zeros(n)
        running = 0.0
        for i in range(n - 1, -1, -1):  # discounted reward-to-go, reset at episode ends
            running = reward[i] + (0.0 if done[i] else self.gamma * running)
            mc_return[i] = running
        order = np.arange(n)
        if self.shuffle:  # row sharding needs the same permutation on every rank
            rank = 0 if self.row_sharding else self.rank
            order = np.random.default_rng([self.seed, epoch, rank, block_index]).permutation(n)
        return {"cols": cols, "next_row": next_row, "mc_return": mc_return, "order": order}

    def _sample(self, b: dict[str, Any], i: int, decode: bool) -> dict[str, Any]:
        cols, j = b["cols"], int(b["next_row"][i])
        image, next_image = cols["image"][i], cols["image"][j]
        if decode:
            image, next_image = decode_jpeg(image), decode_jpeg(next_image)
        return {
            "image": image, "next_image": next_image, "instruction": cols["instruction"][i],
            "action_bins": np.asarray(cols["action_bins"][i], dtype=np.int64),
            # the dataset action at s' (its own at a terminal step, where s' = s)
            "next_action_bins": np.asarray(cols["action_bins"][j], dtype=np.int64),
            "command": np.asarray(cols["command"][i], dtype=np.float32),
            "reward": float(cols["reward"][i]), "done": bool(cols["done"][i]),
            "mc_return": float(b["mc_return"][i]), "task": cols["task"][i],
            "source": cols["source"][i], "success": bool(cols["success"][i]),
            "episode_index": int(cols["episode_index"][i]), "step": int(cols["step"][i]),
        }

    def iter_epoch(self, epoch: int, skip: int = 0, decode: bool | None = None
                   ) -> Iterator[dict[str, Any]]:
        """This rank's transitions for one epoch, after skipping the first ``skip``.
        ``decode=False`` leaves the frames as JPEG bytes (default: ``decode_images``)."""
        decode = self.decode_images if decode is None else decode
        for k, block in enumerate(self._blocks(epoch)):
            size = self._rank_block_size(block)
            if skip >= size:  # whole block skipped without reading it
                skip -= size
                continue
            b = self._block_transitions(block, epoch, k)
            order = b["order"][self.rank::self.world_size] if self.row_sharding else b["order"]
            for i in order[skip:]:
                yield self._sample(b, int(i), decode)
            skip = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.iter_epoch(self.epoch)

    def stream(self, epoch: int = 0, offset: int = 0,
               decode_threads: int = 1) -> TransitionStream:
        """An endless iterator over epochs whose position can be saved and restored."""
        return TransitionStream(self, epoch, offset, decode_threads)


class TransitionStream:
    """Endless epoch-after-epoch iteration with a state_dict for exact resume.

    Samples are read in order with their frames still JPEG; ``next_batch`` decodes a batch's
    frames on ``decode_threads`` threads (OpenCV releases the GIL), which keeps the order, and
    so the resume position, exactly as in a single thread.
    """

    def __init__(self, dataset: EpisodeDataset, epoch: int = 0, offset: int = 0,
                 decode_threads: int = 1) -> None:
        if len(dataset) == 0:
            raise DatasetError(f"{dataset.root}: no transitions for rank {dataset.rank} of "
                               f"{dataset.world_size}")
        self.dataset, self.epoch, self.offset = dataset, epoch, offset
        self._pool = ThreadPoolExecutor(decode_threads) if decode_threads > 1 else None
        self._it = dataset.iter_epoch(epoch, offset, decode=False)

    def __iter__(self) -> TransitionStream:
        return self

    def _next_raw(self) -> dict[str, Any]:
        while True:
            try:
                sample = next(self._it)
            except StopIteration:
                self.epoch, self.offset = self.epoch + 1, 0
                self._it = self.dataset.iter_epoch(self.epoch, decode=False)
                continue
            self.offset += 1
            return sample

    def _decode(self, sample: dict[str, Any]) -> dict[str, Any]:
        if self.dataset.decode_images:
            sample["image"] = decode_jpeg(sample["image"])
            sample["next_image"] = decode_jpeg(sample["next_image"])
        return sample

    def __next__(self) -> dict[str, Any]:
        return self._decode(self._next_raw())

    def next_batch(self, batch_size: int) -> dict[str, Any]:
        raw = [self._next_raw() for _ in range(batch_size)]
        decoded = list(self._pool.map(self._decode, raw)) if self._pool else \
            [self._decode(s) for s in raw]
        return collate_transitions(decoded)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "offset": self.offset}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.offset = int(state["epoch"]), int(state["offset"])
        self._it = self.dataset.iter_epoch(self.epoch, self.offset, decode=False)


class BatchPrefetcher:
    """Reads and decodes the next batch of a stream on a background thread while the current
    one trains (JPEG decoding and parquet reads release the GIL).

    ``state_dict`` is the position after the last batch handed out, not after the one read
    ahead, so a checkpoint resumes exactly as with the bare stream.
    """

    def __init__(self, stream: TransitionStream, batch_size: int) -> None:
        self.stream, self.batch_size = stream, int(batch_size)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="prefetch")
        self._position = stream.state_dict()
        self._ahead = self._pool.submit(self._read)

    def _read(self) -> tuple[dict[str, Any], dict[str, int]]:
        batch = self.stream.next_batch(self.batch_size)
        return batch, self.stream.state_dict()

    def next_batch(self, batch_size: int) -> dict[str, Any]:
        if batch_size != self.batch_size:
            raise ValueError(f"this prefetcher reads batches of {self.batch_size}, "
                             f"asked for {batch_size}")
        batch, self._position = self._ahead.result()
        self._ahead = self._pool.submit(self._read)
        return batch

    def state_dict(self) -> dict[str, int]:
        return dict(self._position)

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._ahead.result()  # the read in flight finishes before the stream moves
        self.stream.load_state_dict(state)
        self._position = self.stream.state_dict()
        self._ahead = self._pool.submit(self._read)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def collate_transitions(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """A list of samples -> a batch: images/instructions as lists, the rest as tensors."""
    if not samples:
        raise ValueError("cannot collate an empty batch")
    return {
        "images": [s["image"] for s in samples],
        "next_images": [s["next_image"] for s in samples],
        "instructions": [s["instruction"] for s in samples],
        "tasks": [s["task"] for s in samples],
        "action_bins": torch.from_numpy(np.stack([s["action_bins"] for s in samples])),  # (B,12)
        "next_action_bins": torch.from_numpy(np.stack([s["next_action_bins"]
                                                       for s in samples])),  # (B, 12)
        "commands": torch.from_numpy(np.stack([s["command"] for s in samples])),  # (B, 12)
        "rewards": torch.tensor([s["reward"] for s in samples], dtype=torch.float32),  # (B,)
        "dones": torch.tensor([s["done"] for s in samples], dtype=torch.float32),  # (B,)
        "mc_returns": torch.tensor([s["mc_return"] for s in samples], dtype=torch.float32),
        "transition_ids": torch.tensor([[s["episode_index"], s["step"]] for s in samples]),  # (B,2)
    }


def describe(root: str | Path) -> str:
    """A human-readable summary of a dataset's meta.json."""
    meta = read_meta(root)
    lines = [f"dataset {root}", f"  schema v{meta['schema_version']}, {meta['rate_hz']} Hz, "
             f"frames {tuple(meta['image_shape'])}",
             f"  {meta['num_episodes']} episodes, {meta['num_steps']} steps, "
             f"{len(meta['shards'])} shards"]
    for title, key in (("task", "tasks"), ("source", "sources")):
        for name, c in sorted(meta[key].items()):
            rate = c["successes"] / max(c["episodes"], 1)
            lines.append(f"  {title + ' ' + name:<28} {c['episodes']:>7} episodes {c['steps']:>9} "
                         f"steps  success {rate:.2f}")
    if meta.get("clipped_values"):
        lines.append(f"  values clipped into range: {json.dumps(meta['clipped_values'])}")
    return "\n".join(lines)
