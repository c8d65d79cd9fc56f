"""The join stage: decisions meet their outcomes, per input partition."""

from stream_workers.pipeline.join.deltas import build_deltas
from stream_workers.pipeline.join.state import COUNTERS, Item, JoinConfig, PartitionJoin

__all__ = ["COUNTERS", "Item", "JoinConfig", "PartitionJoin", "build_deltas"]
