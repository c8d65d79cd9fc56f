"""The workers' side of outroute, by role:

- ``stream_workers.pipeline``: the worker process (Faust app) and its two stages, join and
  posterior;
- ``stream_workers.ops``: topics, alerts, backfill, policy inspection, overrides;
- ``stream_workers.cli``: the ``outroute`` command, a module per command group;
- ``stream_workers.dashboard``: the web page over the published policies, alerts and
  history, and the kill switch behind a token;
- ``stream_workers.local``: the local stack (embedded broker, Apache Kafka, Redis) and the demo.

This package exports what an operator's code needs: the settings, the errors, topic
administration and the local stack.
"""

from stream_workers.errors import LocalStackError, OverrideRefused, TopicLayoutError, WorkerError
from stream_workers.local.apache_kafka import KAFKA_VERSION, ApacheKafka
from stream_workers.local.stack import EmbeddedBroker, LocalRedis, LocalStack, find_or_start_redis
from stream_workers.ops.topics import (
    TopicStatus,
    check_copartitioned,
    create_topics,
    describe_topics,
    verify_join_topics,
)
from stream_workers.settings import WorkerSettings

__all__ = [
    "KAFKA_VERSION",
    "ApacheKafka",
    "EmbeddedBroker",
    "LocalRedis",
    "LocalStack",
    "LocalStackError",
    "OverrideRefused",
    "TopicLayoutError",
    "TopicStatus",
    "WorkerError",
    "WorkerSettings",
    "check_copartitioned",
    "create_topics",
    "describe_topics",
    "find_or_start_redis",
    "verify_join_topics",
]
