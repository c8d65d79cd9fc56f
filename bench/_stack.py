"""The brokers and worker processes the pipeline benchmarks run (``bench/pipeline.py``)."""

from __future__ import annotations

import os

from stream_workers import KAFKA_VERSION, ApacheKafka, EmbeddedBroker, WorkerSettings

__all__ = ["BROKERS", "broker_of", "worker_env"]

BROKERS = {"embedded": "embedded broker", "kafka": f"Apache Kafka {KAFKA_VERSION}"}


def broker_of(kind: str) -> EmbeddedBroker | ApacheKafka:
    return ApacheKafka() if kind == "kafka" else EmbeddedBroker()


def worker_env(settings: WorkerSettings, key_prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "OUTROUTE_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "OUTROUTE_REDIS_URL": settings.redis_url.get_secret_value(),
        "OUTROUTE_TOPIC_PREFIX": settings.topic_prefix,
        "OUTROUTE_REDIS_KEY_PREFIX": key_prefix,
    }
