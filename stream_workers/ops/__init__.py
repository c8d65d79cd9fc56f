"""Commands for the people who run outroute: topics, alerts, backfill, policy inspection,
overrides."""

from stream_workers.ops.topics import (
    TopicStatus,
    check_copartitioned,
    create_topics,
    describe_topics,
    verify_join_topics,
)

__all__ = [
    "TopicStatus",
    "check_copartitioned",
    "create_topics",
    "describe_topics",
    "verify_join_topics",
]
