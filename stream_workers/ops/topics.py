"""Topic administration: create outroute's topics and check the layout the join relies on."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import KafkaError, NewTopic

from schemas import Topics, TopicSpec
from stream_workers.errors import TopicLayoutError
from stream_workers.settings import WorkerSettings

__all__ = [
    "TopicStatus",
    "check_copartitioned",
    "create_topics",
    "describe_topics",
    "verify_join_topics",
]

_TOPIC_ALREADY_EXISTS: Final = 36  # Kafka error code TOPIC_ALREADY_EXISTS


@dataclass(frozen=True, slots=True)
class TopicStatus:
    """The state of one topic after ``create_topics`` or ``describe_topics``."""

    spec: TopicSpec
    partitions: int | None  # None: the topic does not exist
    action: Literal["created", "exists", "missing"]

    @property
    def name(self) -> str:
        return self.spec.name


def check_copartitioned(partition_counts: Mapping[str, int | None], topics: Topics) -> int:
    """Return the shared partition count of decisions and outcomes, or raise TopicLayoutError.

    The join is local to a partition only when a trace's decision and outcome land in the same
    partition number, which needs equal partition counts (both are keyed by trace_id).
    """
    decisions = partition_counts.get(topics.decisions.name)
    outcomes = partition_counts.get(topics.outcomes.name)
    if decisions is None or outcomes is None:
        missing = [
            spec.name
            for spec, count in ((topics.decisions, decisions), (topics.outcomes, outcomes))
            if count is None
        ]
        raise TopicLayoutError(
            f"topic(s) {', '.join(missing)} do not exist; run `outroute topics create`"
        )
    if decisions != outcomes:
        raise TopicLayoutError(
            f"{topics.decisions.name} has {decisions} partitions but {topics.outcomes.name} has "
            f"{outcomes}: they must be equal so that a trace's decision and outcome meet in the "
            "same partition. Recreate them with the same count (see docs/deploy.md)."
        )
    return decisions


def _reason(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    return error.str() if isinstance(error, KafkaError) else str(exc)


#: librdkafka's own log lines (connection refused, retries) go to this logger, not to stderr.
KAFKA_LOGGER: Final = logging.getLogger("outroute.kafka")


def _admin(settings: WorkerSettings) -> AdminClient:
    config: dict[str, Any] = {**settings.kafka_client_config(), "logger": KAFKA_LOGGER}
    return AdminClient(config)


def _partition_counts(
    admin: AdminClient, names: Iterable[str], timeout: float, where: str
) -> dict[str, int | None]:
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise TopicLayoutError(
            f"could not read topic metadata from {where}: {_reason(exc)}"
        ) from exc
    counts: dict[str, int | None] = {}
    for name in names:
        topic = metadata.topics.get(name)
        counts[name] = None if topic is None or topic.error is not None else len(topic.partitions)
    return counts


def describe_topics(settings: WorkerSettings, *, timeout: float = 10.0) -> list[TopicStatus]:
    """The partition count of every outroute topic (None where it does not exist)."""
    topics = settings.topics()
    counts = _partition_counts(
        _admin(settings), [t.name for t in topics], timeout, settings.bootstrap_servers
    )
    return [
        TopicStatus(spec, counts[spec.name], "missing" if counts[spec.name] is None else "exists")
        for spec in topics
    ]


def create_topics(settings: WorkerSettings, *, timeout: float = 30.0) -> list[TopicStatus]:
    """Create every missing topic with its partition count; leave existing ones as they are.

    Idempotent. Raises TopicLayoutError if creation fails or if decisions and outcomes end up
    with different partition counts (for instance because they existed before).
    """
    topics = settings.topics()
    admin = _admin(settings)
    where = settings.bootstrap_servers
    existing = _partition_counts(admin, [t.name for t in topics], timeout, where)
    to_create = [t for t in topics if existing[t.name] is None]
    created: set[str] = set()
    if to_create:
        futures = admin.create_topics(
            [
                NewTopic(
                    t.name,
                    num_partitions=t.partitions,
                    replication_factor=settings.replication_factor,
                    config=dict(t.config),
                )
                for t in to_create
            ],
            request_timeout=timeout,
        )
        for name, future in futures.items():
            try:
                future.result(timeout)
                created.add(name)
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if isinstance(error, KafkaError) and error.code() == _TOPIC_ALREADY_EXISTS:
                    continue  # created concurrently by another process: fine
                raise TopicLayoutError(f"could not create topic {name}: {_reason(exc)}") from exc
    # A new topic can take a moment to appear in the metadata of every broker.
    deadline = time.monotonic() + timeout
    while True:
        counts = _partition_counts(admin, [t.name for t in topics], timeout, where)
        if all(counts[name] is not None for name in created) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    check_copartitioned(counts, topics)
    return [
        TopicStatus(spec, counts[spec.name], "created" if spec.name in created else "exists")
        for spec in topics
    ]


def verify_join_topics(settings: WorkerSettings, *, timeout: float = 10.0) -> int:
    """Check the live topics before a worker starts; return their shared partition count."""
    topics = settings.topics()
    counts = _partition_counts(
        _admin(settings),
        [t.name for t in (topics.decisions, topics.outcomes)]
        + [t.name for t in (topics.path_deltas, topics.posterior_state)],
        timeout,
        settings.bootstrap_servers,
    )
    partitions = check_copartitioned(counts, topics)
    deltas, state = counts[topics.path_deltas.name], counts[topics.posterior_state.name]
    stages = (topics.path_deltas.name, topics.posterior_state.name)
    missing = [name for name in stages if counts[name] is None]
    if missing:
        raise TopicLayoutError(
            f"topic(s) {', '.join(missing)} do not exist; run `outroute topics create` "
            "(it creates the missing ones and leaves the others as they are)"
        )
    if deltas != state:
        raise TopicLayoutError(
            f"{topics.path_deltas.name} has {deltas} partitions but "
            f"{topics.posterior_state.name} has {state}: the posterior stage writes a goal's "
            "state to the partition its deltas travel in, so they must be equal (see "
            "docs/deploy.md)."
        )
    return partitions
