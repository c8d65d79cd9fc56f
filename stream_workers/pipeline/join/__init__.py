"""The join stage: decisions meet their outcomes, per input partition.

Its logic is pure and exported here: ``PartitionJoin`` (``state``) joins one partition as
``JoinConfig`` says, and ``build_deltas`` (``deltas``) coalesces what it joined into
per-(goal, path) deltas. Its I/O is ``service.JoinService`` (Kafka in and out, checkpoints in
Redis); import it from its module: it needs aiokafka and Redis.
"""

from stream_workers.pipeline.join.deltas import build_deltas
from stream_workers.pipeline.join.state import COUNTERS, Item, JoinConfig, PartitionJoin

__all__ = ["COUNTERS", "Item", "JoinConfig", "PartitionJoin", "build_deltas"]
