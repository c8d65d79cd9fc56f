"""The brokers and worker processes the pipeline benchmarks run (``bench/pipeline.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from stream_workers import KAFKA_VERSION, ApacheKafka, EmbeddedBroker, WorkerSettings, create_topics

__all__ = ["BROKERS", "WorkerProcess", "broker_of", "topics_on", "worker_env"]

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


def topics_on(
    broker: EmbeddedBroker | ApacheKafka, redis_url: str, prefix: str, partitions: int
) -> WorkerSettings:
    """Settings for fresh topics under ``prefix`` on ``broker``, with the topics created."""
    settings = WorkerSettings(
        bootstrap_servers=broker.bootstrap_servers,
        redis_url=redis_url,
        topic_prefix=prefix,
        partitions=partitions,
    )
    create_topics(settings)
    return settings


class WorkerProcess:
    """``outroute worker`` in a child process, its output in a log file named in errors."""

    def __init__(self, settings: WorkerSettings, key_prefix: str) -> None:
        self.log = tempfile.NamedTemporaryFile("w", suffix=".log", delete=False)  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "outroute"), "worker"],
            env=worker_env(settings, key_prefix),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def check(self, deadline: float, now: float) -> None:
        """Raise when the worker exited or ``deadline`` has passed."""
        if self.process.poll() is not None or now > deadline:
            raise RuntimeError(f"worker failed or timed out; log: {self.log.name}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)
