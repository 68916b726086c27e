"""Episode datasets: format, writer, streaming reader, converters (QUARD, rosbag2).

The exports load on first use: the reader needs torch, and light modules of this package
(topic names and message conversions for the ROS nodes, the bag tools) must not pull it in.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from more_policy.data.format import SCHEMA_VERSION, DatasetError
    from more_policy.data.reader import (
        BatchPrefetcher,
        EpisodeDataset,
        TransitionStream,
        collate_transitions,
    )
    from more_policy.data.writer import EpisodeWriter, merge_datasets

_EXPORTS = {"SCHEMA_VERSION": "format", "DatasetError": "format", "BatchPrefetcher": "reader",
            "EpisodeDataset": "reader", "TransitionStream": "reader",
            "collate_transitions": "reader", "EpisodeWriter": "writer", "merge_datasets": "writer"}
__all__ = ["SCHEMA_VERSION", "BatchPrefetcher", "DatasetError", "EpisodeDataset", "EpisodeWriter",
           "TransitionStream", "collate_transitions", "merge_datasets"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
