"""Streaming reader: deterministic shuffle, rank sharding, exact resume, collation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from more_policy.actions import ActionSpace
from more_policy.data import BatchPrefetcher, EpisodeDataset, EpisodeWriter

SPACE = ActionSpace()


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("reader") / "d"
    rng = np.random.default_rng(0)
    with EpisodeWriter(root, SPACE, rows_per_row_group=8, rows_per_shard=24) as w:
        for e in range(30):
            n = int(rng.integers(1, 7))
            w.add_episode(np.zeros((n, 8, 8, 3), np.uint8),
                          rng.uniform(SPACE.low, SPACE.high, (n, 12)), "go", "go_to",
                          success=bool(e % 2))
    return root


def keys(samples):
    return [(s["episode_index"], s["step"]) for s in samples]


def test_shuffle_is_seeded_and_changes_per_epoch(dataset_dir):
    a = EpisodeDataset(dataset_dir, seed=3, decode_images=False)
    b = EpisodeDataset(dataset_dir, seed=3, decode_images=False)
    c = EpisodeDataset(dataset_dir, seed=4, decode_images=False)
    first = keys(a)
    assert first == keys(b)
    assert first != keys(c)
    assert sorted(first) == sorted(keys(EpisodeDataset(dataset_dir, shuffle=False)))
    a.set_epoch(1)
    assert keys(a) != first and sorted(keys(a)) == sorted(first)


@pytest.mark.parametrize("world_size", [2, 3])
def test_rank_shards_partition_the_data(dataset_dir, world_size):
    shards = [keys(EpisodeDataset(dataset_dir, seed=1, rank=r, world_size=world_size,
                                  decode_images=False)) for r in range(world_size)]
    everything = [k for s in shards for k in s]
    assert len(everything) == len(set(everything)) == EpisodeDataset(dataset_dir).num_steps
    assert all(shards)


def test_stream_resumes_exactly_across_epochs(dataset_dir):
    ds = EpisodeDataset(dataset_dir, seed=7, shuffle_block=2, decode_images=False)
    total = ds.num_steps
    reference = ds.stream()
    expected = keys([next(reference) for _ in range(2 * total + 5)])
    for cut in (0, 3, total - 1, total + 9):
        stream = ds.stream()
        head = keys([next(stream) for _ in range(cut)])
        state = stream.state_dict()
        resumed = EpisodeDataset(dataset_dir, seed=7, shuffle_block=2,
                                 decode_images=False).stream()
        resumed.load_state_dict(state)
        tail = keys([next(resumed) for _ in range(2 * total + 5 - cut)])
        assert head + tail == expected, cut


def test_batches_have_model_ready_shapes(dataset_dir):
    batch = EpisodeDataset(dataset_dir, seed=0).stream().next_batch(6)
    assert batch["action_bins"].shape == (6, 12) and batch["action_bins"].dtype.is_floating_point \
        is False
    assert batch["rewards"].shape == batch["dones"].shape == batch["mc_returns"].shape == (6,)
    assert len(batch["images"]) == len(batch["next_images"]) == len(batch["instructions"]) == 6
    assert batch["images"][0].shape == (8, 8, 3)
    assert bool(((batch["mc_returns"] >= 0) & (batch["mc_returns"] <= 1)).all())


def test_bad_rank_is_rejected(dataset_dir):
    with pytest.raises(ValueError, match="rank"):
        EpisodeDataset(dataset_dir, rank=2, world_size=2)


@pytest.mark.parametrize("world_size", [2, 3])
def test_tiny_dataset_is_sharded_by_rows(tmp_path, world_size):
    with EpisodeWriter(tmp_path / "d", SPACE) as w:  # one row group only
        for n in (4, 3):
            w.add_episode(np.zeros((n, 8, 8, 3), np.uint8), np.zeros((n, 12)), "go", "go_to")
    datasets = [EpisodeDataset(tmp_path / "d", seed=2, rank=r, world_size=world_size,
                               decode_images=False) for r in range(world_size)]
    assert all(d.row_sharding for d in datasets)
    shards = [keys(d) for d in datasets]
    assert [len(s) for s in shards] == [len(d) for d in datasets]
    everything = [k for s in shards for k in s]
    assert len(everything) == len(set(everything)) == 7
    stream = datasets[1].stream(epoch=0, offset=1)
    assert keys([next(stream)]) == shards[1][1:2]


def test_threaded_decoding_keeps_order_and_pixels(tmp_path):
    rng = np.random.default_rng(0)
    with EpisodeWriter(tmp_path / "d", SPACE, rows_per_row_group=4) as w:
        for _ in range(4):
            w.add_episode(rng.integers(0, 255, (5, 8, 8, 3), dtype=np.uint8),
                          np.zeros((5, 12)), "go", "go_to")
    ds = EpisodeDataset(tmp_path / "d", seed=5)
    one, two = ds.stream(decode_threads=1), ds.stream(decode_threads=3)
    for _ in range(3):
        a, b = one.next_batch(7), two.next_batch(7)
        assert all(np.array_equal(x, y) for x, y in zip(a["images"] + a["next_images"],
                                                        b["images"] + b["next_images"]))
        assert a["images"][0].shape == (8, 8, 3)
    assert one.state_dict() == two.state_dict() == {"epoch": 1, "offset": 1}


def test_prefetched_batches_equal_the_stream_and_resume_exactly(dataset_dir):
    ds = EpisodeDataset(dataset_dir, seed=3, shuffle_block=2)
    plain, ahead = ds.stream(), BatchPrefetcher(ds.stream(), 5)
    for _ in range(4):
        a, b = plain.next_batch(5), ahead.next_batch(5)
        assert torch.equal(a["transition_ids"], b["transition_ids"])
        assert all(np.array_equal(x, y) for x, y in zip(a["images"], b["images"]))
        assert ahead.state_dict() == plain.state_dict()  # not the batch read ahead
    resumed = BatchPrefetcher(EpisodeDataset(dataset_dir, seed=3, shuffle_block=2).stream(), 5)
    resumed.load_state_dict(ahead.state_dict())
    for _ in range(3):
        assert torch.equal(resumed.next_batch(5)["transition_ids"],
                           plain.next_batch(5)["transition_ids"])
    with pytest.raises(ValueError, match="batches of 5"):
        resumed.next_batch(4)
    ahead.close()
    resumed.close()
