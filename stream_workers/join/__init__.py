"""The join stage: decisions meet their outcomes, per input partition."""

from .deltas import build_deltas
from .state import COUNTERS, Item, JoinConfig, PartitionJoin

__all__ = ["COUNTERS", "Item", "JoinConfig", "PartitionJoin", "build_deltas"]
