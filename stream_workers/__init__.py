"""The workers (join, posteriors, alerts), the local stack, topic administration and the CLI."""

from .admin import (
    TopicStatus,
    check_copartitioned,
    create_topics,
    describe_topics,
    verify_join_topics,
)
from .apache_kafka import KAFKA_VERSION, ApacheKafka
from .errors import LocalStackError, TopicLayoutError, WorkerError
from .localstack import EmbeddedBroker, LocalRedis, LocalStack, find_or_start_redis
from .settings import WorkerSettings

__all__ = [
    "KAFKA_VERSION",
    "ApacheKafka",
    "EmbeddedBroker",
    "LocalRedis",
    "LocalStack",
    "LocalStackError",
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
