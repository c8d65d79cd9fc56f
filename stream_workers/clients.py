"""Kafka client options for the workers' aiokafka/Faust clients.

Settings carry librdkafka names (``OUTROUTE_KAFKA_CONFIG``) because the SDK uses librdkafka; the
workers translate the security settings to aiokafka's. A setting they cannot translate is an
error at start-up, naming it, rather than a silently insecure connection.
"""

from __future__ import annotations

import ssl
from typing import Any, Final

from stream_workers.errors import WorkerError
from stream_workers.settings import WorkerSettings

__all__ = [
    "aiokafka_options",
    "close_clients",
    "faust_broker_credentials",
    "group_consumer",
    "redis_client",
    "start_producer",
    "sync_redis",
]

_SUPPORTED: Final = frozenset(
    {
        "security.protocol",
        "sasl.mechanism",
        "sasl.mechanisms",
        "sasl.username",
        "sasl.password",
        "ssl.ca.location",
        "ssl.certificate.location",
        "ssl.key.location",
        "ssl.key.password",
        "client.id",
        # producer-side knobs the SDK uses; meaningless to the workers, accepted and ignored
        "linger.ms",
        "compression.type",
        "acks",
    }
)


def _config(settings: WorkerSettings) -> dict[str, str]:
    config = {k: v.get_secret_value() for k, v in settings.kafka_config.items()}
    unsupported = sorted(set(config) - _SUPPORTED)
    if unsupported:
        raise WorkerError(
            f"OUTROUTE_KAFKA_CONFIG settings not supported by the workers: {unsupported}; "
            f"supported: {sorted(_SUPPORTED)}"
        )
    return config


def _ssl_context(config: dict[str, str]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=config.get("ssl.ca.location"))
    if "ssl.certificate.location" in config:
        context.load_cert_chain(
            config["ssl.certificate.location"],
            config.get("ssl.key.location"),
            config.get("ssl.key.password"),
        )
    return context


def aiokafka_options(settings: WorkerSettings) -> dict[str, Any]:
    """Keyword arguments shared by AIOKafkaConsumer and AIOKafkaProducer."""
    config = _config(settings)
    protocol = config.get("security.protocol", "PLAINTEXT").upper()
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "security_protocol": protocol,
    }
    if "client.id" in config:
        options["client_id"] = config["client.id"]
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = _ssl_context(config)
    if protocol.startswith("SASL"):
        options["sasl_mechanism"] = config.get(
            "sasl.mechanism", config.get("sasl.mechanisms", "PLAIN")
        ).upper()
        options["sasl_plain_username"] = config.get("sasl.username")
        options["sasl_plain_password"] = config.get("sasl.password")
    return options


def faust_broker_credentials(settings: WorkerSettings) -> Any:
    """Faust's ``broker_credentials`` for the same settings (None for plaintext)."""
    import faust

    config = _config(settings)
    protocol = config.get("security.protocol", "PLAINTEXT").upper()
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(_ssl_context(config))
    return faust.SASLCredentials(
        username=config.get("sasl.username"),
        password=config.get("sasl.password"),
        mechanism=config.get("sasl.mechanism", config.get("sasl.mechanisms", "PLAIN")).upper(),
        ssl_context=_ssl_context(config) if protocol == "SASL_SSL" else None,
    )


def redis_client(settings: WorkerSettings) -> Any:
    """An asyncio Redis client for the workers' checkpoints and snapshots."""
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(
        settings.redis_url.get_secret_value(), socket_timeout=5, socket_connect_timeout=5
    )


def sync_redis(settings: WorkerSettings, purpose: str) -> Any:
    """A connected synchronous Redis client for the CLI commands; a WorkerError naming
    ``purpose`` and the (redacted) URL when Redis does not answer."""
    import redis

    client = redis.Redis.from_url(
        settings.redis_url.get_secret_value(), socket_timeout=10, socket_connect_timeout=10
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        raise WorkerError(
            f"{purpose} needs Redis at {settings.redis_url_redacted}, which did not answer: {exc}"
        ) from exc
    return client


async def start_producer(settings: WorkerSettings) -> Any:
    """A started aiokafka producer that waits for all in-sync replicas."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**aiokafka_options(settings), linger_ms=5, acks="all")
    await producer.start()
    return producer


def group_consumer(settings: WorkerSettings, group: str, **extra: Any) -> Any:
    """A consumer in ``group`` that commits nothing by itself, with session timeouts short
    enough for the embedded broker (it waits half the session timeout on a join) and a 10 ms
    fetch wait (it does not answer a long poll early)."""
    from aiokafka import AIOKafkaConsumer

    session_ms = int(settings.session_timeout * 1000)
    return AIOKafkaConsumer(
        **aiokafka_options(settings),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=session_ms,
        rebalance_timeout_ms=session_ms,
        heartbeat_interval_ms=min(1000, session_ms // 3),
        fetch_max_wait_ms=10,
        **extra,
    )


async def close_clients(consumer: Any, producer: Any, redis: Any) -> None:
    """Stop what ``group_consumer``/``start_producer``/``redis_client`` made (None: skipped)."""
    try:
        if consumer is not None:
            await consumer.stop()
    finally:
        try:
            if producer is not None:
                await producer.stop()
        finally:
            if redis is not None:
                await redis.aclose()
