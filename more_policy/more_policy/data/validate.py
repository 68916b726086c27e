"""Full consistency check of an episode dataset (`more dataset validate DIR`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from more_policy.data.format import DATA_DIR, DatasetError, decode_jpeg
from more_policy.data.reader import EpisodeDataset


def validate_dataset(root: str | Path, *, decode_images: bool = True,
                     progress: bool = False) -> list[str]:
    """Read every row; return a list of problems (empty when the dataset is sound).

    Checks: meta.json and shard files readable, row-group sizes, episodes whole and
    consecutive, reward/done convention, bins == encode(command), finite commands, JPEGs
    decode to the recorded frame shape, episode table and counts agree; lists files that
    meta.json does not reference (debris of a crashed append; harmless to readers).
    """
    root = Path(root)
    try:
        ds = EpisodeDataset(root, shuffle=False, decode_images=False)
    except (DatasetError, FileNotFoundError) as e:
        return [str(e)]
    problems: list[str] = []
    space, meta = ds.action_space, ds.meta
    shape = tuple(meta["image_shape"])
    lengths: dict[int, int] = {}
    total = 0
    for s, g, _ in tqdm(ds.units, desc="validate", disable=not progress):
        where = f"{meta['shards'][s]['file']} row group {g}"
        try:
            cols = ds.read_unit(s, g).to_pydict()
        except DatasetError as e:
            problems.append(str(e))
            continue
        total += len(cols["step"])
        commands = np.asarray(cols["command"], dtype=np.float64)
        if not np.all(np.isfinite(commands)):
            problems.append(f"{where}: non-finite commands")
        elif not np.array_equal(space.encode(commands), np.asarray(cols["action_bins"])):
            problems.append(f"{where}: action_bins do not match the encoded commands")
        for i, (ep, step, n) in enumerate(zip(cols["episode_index"], cols["step"],
                                              cols["num_steps"])):
            last = step == n - 1
            if cols["done"][i] != last:
                problems.append(f"{where}: episode {ep} step {step}: done={cols['done'][i]}")
            if cols["reward"][i] != float(last and cols["success"][i]):
                problems.append(f"{where}: episode {ep} step {step}: reward "
                                f"{cols['reward'][i]} breaks the sparse-success convention")
            if step != lengths.get(ep, 0):
                problems.append(f"{where}: episode {ep} steps not consecutive at {step}")
            lengths[ep] = step + 1
            if decode_images:
                try:
                    if decode_jpeg(cols["image"][i]).shape != shape:
                        problems.append(f"{where}: episode {ep} step {step}: frame shape "
                                        f"differs from {shape}")
                except DatasetError:
                    problems.append(f"{where}: episode {ep} step {step}: corrupt JPEG")
    if total != meta["num_steps"]:
        problems.append(f"meta.json counts {meta['num_steps']} steps, shards hold {total}")
    episodes = ds.episodes_table().to_pydict()
    if len(episodes["episode_index"]) != meta["num_episodes"] or \
            len(lengths) != meta["num_episodes"]:
        problems.append(f"meta.json counts {meta['num_episodes']} episodes, episode table has "
                        f"{len(episodes['episode_index'])}, shards {len(lengths)}")
    for ep, n in zip(episodes["episode_index"], episodes["num_steps"]):
        if lengths.get(ep) != n:
            problems.append(f"episode {ep}: table says {n} steps, shards hold {lengths.get(ep)}")
    for m in episodes["meta"]:
        try:
            json.loads(m)
        except json.JSONDecodeError:
            problems.append(f"episode table: meta is not JSON: {m[:40]!r}")
    listed = {sh["file"] for sh in meta["shards"]}
    orphans = [p.name for p in (root / DATA_DIR).iterdir()
               if f"{DATA_DIR}/{p.name}" not in listed]
    if orphans:
        problems.append(f"files not referenced by meta.json (crashed write debris, ignored by "
                        f"readers; safe to delete): {sorted(orphans)[:5]}")
    return problems
