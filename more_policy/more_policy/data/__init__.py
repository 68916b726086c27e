"""Episode datasets: format, writer, streaming reader, converters (QUARD, rosbag2)."""

from more_policy.data.format import SCHEMA_VERSION, DatasetError
from more_policy.data.reader import (
    BatchPrefetcher,
    EpisodeDataset,
    TransitionStream,
    collate_transitions,
)
from more_policy.data.writer import EpisodeWriter, merge_datasets

__all__ = ["SCHEMA_VERSION", "BatchPrefetcher", "DatasetError", "EpisodeDataset", "EpisodeWriter",
           "TransitionStream", "collate_transitions", "merge_datasets"]
