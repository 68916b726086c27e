"""Episode dataset: writer validation, atomic finalise, append/merge, round trip, validate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from more_policy.actions import ActionSpace
from more_policy.data import DatasetError, EpisodeDataset, EpisodeWriter, merge_datasets
from more_policy.data.validate import validate_dataset

SPACE = ActionSpace()


def flat_frames(values: list[int], size: int = 16) -> np.ndarray:
    """Frames of one flat grey level each: survive JPEG almost exactly, so ids can be read."""
    return np.stack([np.full((size, size, 3), v, dtype=np.uint8) for v in values])


def commands(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(SPACE.low, SPACE.high, size=(n, 12))


def write_dataset(root: Path, lengths: list[int], **kw) -> list[np.ndarray]:
    cmds = []
    with EpisodeWriter(root, SPACE, rate_hz=5.0, **kw) as w:
        for e, n in enumerate(lengths):
            cmds.append(commands(n, seed=e))
            w.add_episode(flat_frames([10 * e + 5 * t for t in range(n)]), cmds[-1],
                          instruction=f"go to box {e}", task="go_to" if e % 2 else "crawl",
                          source="expert" if e % 3 else "suboptimal", success=e % 2 == 0,
                          meta={"seed": e})
    return cmds


def test_round_trip_transitions(tmp_path):
    cmds = write_dataset(tmp_path / "d", [3, 1, 4], rows_per_row_group=4)
    ds = EpisodeDataset(tmp_path / "d", shuffle=False, gamma=0.9)
    samples = list(ds)
    assert len(samples) == len(ds) == 8
    by_key = {(s["episode_index"], s["step"]): s for s in samples}
    for e, n in enumerate([3, 1, 4]):
        success = e % 2 == 0
        for t in range(n):
            s = by_key[(e, t)]
            last = t == n - 1
            np.testing.assert_array_equal(s["command"], cmds[e][t].astype(np.float32))
            np.testing.assert_array_equal(s["action_bins"], SPACE.encode(cmds[e][t]))
            assert s["done"] == last and s["reward"] == float(last and success)
            assert s["mc_return"] == pytest.approx(0.9 ** (n - 1 - t) * success)
            assert s["image"].shape == (16, 16, 3) and s["image"].dtype == np.uint8
            assert abs(int(s["image"].mean()) - (10 * e + 5 * t)) <= 1
            next_t = t if last else t + 1  # terminal: s' is unused, filled with s
            assert abs(int(s["next_image"].mean()) - (10 * e + 5 * next_t)) <= 1
            np.testing.assert_array_equal(s["next_action_bins"], SPACE.encode(cmds[e][next_t]))
            assert s["instruction"] == f"go to box {e}"
    assert ds.meta["num_episodes"] == 3 and ds.meta["tasks"]["crawl"]["successes"] == 2
    assert validate_dataset(tmp_path / "d") == []


@pytest.mark.parametrize("kwargs, message", [
    ({"frames": np.zeros((2, 8, 8, 3), np.float32)}, "uint8"),
    ({"frames": np.zeros((2, 8, 8), np.uint8)}, "(T, H, W, 3)"),
    ({"commands": np.zeros((3, 12))}, "to match 2 frames"),
    ({"commands": np.full((2, 12), np.nan)}, "NaN/inf"),
    ({"instruction": ""}, "instruction"),
    ({"source": "human"}, "source"),
    ({"success": 1}, "bool"),
    ({"meta": {"x": object()}}, "JSON"),
])
def test_add_episode_rejects_bad_input(tmp_path, kwargs, message):
    good = {"frames": np.zeros((2, 8, 8, 3), np.uint8), "commands": np.zeros((2, 12)),
            "instruction": "go", "task": "go_to", "source": "expert", "success": True}
    with EpisodeWriter(tmp_path / "d", SPACE) as w:
        with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
            w.add_episode(**{**good, **kwargs})
        w.add_episode(**good)
        with pytest.raises(DatasetError, match="differs"):
            w.add_episode(**{**good, "frames": np.zeros((2, 9, 8, 3), np.uint8)})


def test_exception_inside_writer_leaves_no_dataset(tmp_path):
    with pytest.raises(RuntimeError), EpisodeWriter(tmp_path / "d", SPACE,
                                                    rows_per_row_group=1) as w:
        w.add_episode(flat_frames([1, 2]), commands(2), "go", "go_to")
        raise RuntimeError("simulated crash")
    with pytest.raises(DatasetError, match="meta.json is missing"):
        EpisodeDataset(tmp_path / "d")
    assert not list((tmp_path / "d" / "data").iterdir())


def test_killed_writer_never_reads_as_complete(tmp_path):
    script = f"""
import os, numpy as np
from more_policy.actions import ActionSpace
from more_policy.data import EpisodeWriter
w = EpisodeWriter({str(tmp_path / 'd')!r}, ActionSpace(), rows_per_row_group=2)
for e in range(5):
    w.add_episode(np.zeros((3, 8, 8, 3), np.uint8), np.zeros((3, 12)), "go", "go_to")
os._exit(9)  # killed mid-write: no close, no cleanup
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == 9, proc.stderr.decode()
    assert list((tmp_path / "d" / "data").iterdir())  # debris exists ...
    with pytest.raises(DatasetError, match="incomplete|missing"):
        EpisodeDataset(tmp_path / "d")  # ... but never reads as a dataset
    with pytest.raises(DatasetError, match="not empty"):
        EpisodeWriter(tmp_path / "d", SPACE)
    EpisodeWriter(tmp_path / "d", SPACE, overwrite=True).close()


def test_append_and_crashed_append_keep_the_dataset(tmp_path):
    root = tmp_path / "d"
    write_dataset(root, [2, 3])
    with EpisodeWriter(root, SPACE, append=True) as w:
        assert w.add_episode(flat_frames([7]), commands(1), "go", "unload", "suboptimal",
                             False) == 2
    with pytest.raises(RuntimeError), EpisodeWriter(root, SPACE, append=True,
                                                    rows_per_row_group=1) as w:
        w.add_episode(flat_frames([7, 8]), commands(2), "go", "unload")
        raise RuntimeError("crash during append")
    ds = EpisodeDataset(root, shuffle=False)
    assert ds.meta["num_episodes"] == 3 and len(list(ds)) == 6
    assert validate_dataset(root) == []
    with pytest.raises(DatasetError, match="already holds a dataset"):
        EpisodeWriter(root, SPACE)
    with pytest.raises(DatasetError, match="action space differs"):
        EpisodeWriter(root, SPACE.with_ranges({"vel_x": (0.0, 1.0)}), append=True)


def test_merge_renumbers_episodes(tmp_path):
    write_dataset(tmp_path / "a", [2, 3])
    write_dataset(tmp_path / "b", [4])
    merged = EpisodeDataset(merge_datasets([tmp_path / "a", tmp_path / "b"], tmp_path / "m"),
                            shuffle=False)
    assert merged.meta["num_episodes"] == 3 and merged.meta["num_steps"] == 9
    table = merged.episodes_table().to_pydict()
    assert table["episode_index"] == [0, 1, 2] and table["num_steps"] == [2, 3, 4]
    assert table["meta"][2] == '{"seed": 0}'
    assert validate_dataset(tmp_path / "m") == []
    with EpisodeWriter(tmp_path / "c", SPACE, rate_hz=2.0) as w:
        w.add_episode(flat_frames([1]), commands(1), "go", "go_to")
    with pytest.raises(DatasetError, match="rate"):
        merge_datasets([tmp_path / "a", tmp_path / "c"], tmp_path / "m2")


def test_validate_reports_corrupt_shard(tmp_path):
    write_dataset(tmp_path / "d", [3, 3])
    shard = next((tmp_path / "d" / "data").iterdir())
    shard.write_bytes(shard.read_bytes()[:100])
    problems = validate_dataset(tmp_path / "d")
    assert problems and shard.name in problems[0]
