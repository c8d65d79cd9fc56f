"""The local stack: the embedded broker, Apache Kafka from Maven Central, a Redis-compatible
server, and the demo that runs the whole loop on them."""

from stream_workers.local.apache_kafka import KAFKA_VERSION, ApacheKafka
from stream_workers.local.stack import (
    BROKER_KINDS,
    EmbeddedBroker,
    LocalRedis,
    LocalStack,
    find_or_start_redis,
)

__all__ = [
    "BROKER_KINDS",
    "KAFKA_VERSION",
    "ApacheKafka",
    "EmbeddedBroker",
    "LocalRedis",
    "LocalStack",
    "find_or_start_redis",
]
