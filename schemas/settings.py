"""Connection settings shared by the SDK and the workers (environment prefix ``OUTROUTE_``).

=============================  ===========================  ========================================
variable                       default                      meaning
=============================  ===========================  ========================================
OUTROUTE_BOOTSTRAP_SERVERS     127.0.0.1:9092               Kafka bootstrap servers, comma separated
OUTROUTE_KAFKA_CONFIG          {}                           JSON object of extra Kafka client
                                                            settings (librdkafka names), e.g. SASL
                                                            and TLS; values are kept secret
OUTROUTE_REDIS_URL             redis://127.0.0.1:6379/0     Redis URL (redis://, rediss://, unix://)
OUTROUTE_TOPIC_PREFIX          outroute                     prefix of every topic name
OUTROUTE_REDIS_KEY_PREFIX      outroute                     prefix of every Redis key
OUTROUTE_PARTITIONS            12                           partitions of decisions/outcomes/deltas
=============================  ===========================  ========================================

Secrets (the Redis URL, which may hold a password, and every Kafka passthrough value) are
``SecretStr``: they print as ``**********`` and are never logged.
"""

from __future__ import annotations

from typing import Any, Final, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .topics import PREFIX_PATTERN, RedisKeys, Topics

__all__ = ["DEFAULT_BOOTSTRAP_SERVERS", "DEFAULT_REDIS_URL", "OutrouteSettings", "redact_url"]

DEFAULT_BOOTSTRAP_SERVERS: Final = "127.0.0.1:9092"
DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"

#: Client settings that outroute owns; setting them through the passthrough would be ambiguous.
_RESERVED_KAFKA_KEYS: Final = frozenset({"bootstrap.servers", "partitioner"})


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class OutrouteSettings(BaseSettings):
    """Where Kafka and Redis are, and how topics and keys are named. Frozen."""

    model_config = SettingsConfigDict(
        env_prefix="OUTROUTE_",
        frozen=True,
        extra="forbid",
        validate_default=True,
        hide_input_in_errors=True,  # inputs may be secrets
    )

    bootstrap_servers: str = Field(
        default=DEFAULT_BOOTSTRAP_SERVERS, description="Kafka bootstrap servers, comma separated."
    )
    kafka_config: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Extra Kafka client settings (librdkafka names), e.g. security.protocol, "
        "sasl.mechanism, sasl.username, sasl.password, ssl.ca.location.",
    )
    redis_url: SecretStr = Field(default=SecretStr(DEFAULT_REDIS_URL), description="Redis URL.")
    topic_prefix: str = Field(default="outroute", pattern=PREFIX_PATTERN)
    redis_key_prefix: str = Field(default="outroute", pattern=PREFIX_PATTERN)
    partitions: int = Field(default=12, ge=1, le=10_000)

    @field_validator("bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",")]
        for server in servers:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected host:port[,host:port...], got {value!r}")
        return ",".join(servers)

    @field_validator("kafka_config")
    @classmethod
    def _check_kafka_config(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        reserved = sorted(_RESERVED_KAFKA_KEYS.intersection(value))
        if reserved:
            raise ValueError(
                f"{reserved} cannot be set here; use bootstrap_servers "
                "(OUTROUTE_BOOTSTRAP_SERVERS) instead of bootstrap.servers"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        scheme = urlsplit(url).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                f"expected a redis://, rediss:// or unix:// URL, got {redact_url(url)!r}"
            )
        return value

    @classmethod
    def from_env(cls, **overrides: Any) -> Self:
        """Read ``OUTROUTE_*`` variables; keyword arguments win over the environment."""
        return cls(**overrides)

    def kafka_client_config(self) -> dict[str, str]:
        """librdkafka configuration: bootstrap servers plus the passthrough settings."""
        config = {k: v.get_secret_value() for k, v in self.kafka_config.items()}
        config["bootstrap.servers"] = self.bootstrap_servers
        return config

    def topics(self) -> Topics:
        return Topics(self.topic_prefix, self.partitions)

    def redis_keys(self) -> RedisKeys:
        return RedisKeys(self.redis_key_prefix)

    @property
    def redis_url_redacted(self) -> str:
        return redact_url(self.redis_url.get_secret_value())
