"""Value objects for the Router's settings, one per concern: where Kafka and Redis are
(``ConnectionOptions``), how events leave the process (``EmitterOptions``), how the policy is
kept fresh (``CacheOptions``), and the model providers (``Provider``). The sampling knobs are
``producer_sdk.sampling.SamplingParams``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Self

from pydantic import SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from schemas.settings import OutrouteSettings

__all__ = ["OPENAI_BASE_URL", "CacheOptions", "ConnectionOptions", "EmitterOptions", "Provider"]

OPENAI_BASE_URL = "https://api.openai.com/v1"


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if isinstance(value, bool) or not isinstance(value, int | float) or not ok:
        rule = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a number {rule}, got {value!r}")


class ConnectionOptions(OutrouteSettings):
    """Where Kafka and Redis are, and how topics and keys are named: the fields, defaults and
    checks of ``schemas.OutrouteSettings`` (bootstrap_servers, kafka_config, redis_url,
    topic_prefix, redis_key_prefix). Frozen; secrets are ``SecretStr``.

    Building one reads no environment variable: ``ConnectionOptions.from_env()`` does. A
    router takes any ``OutrouteSettings`` as its connection, the workers' settings too.
    """

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # the arguments only: the environment is read by from_env()

    @classmethod
    def from_env(cls, **overrides: Any) -> Self:
        """``OUTROUTE_*`` variables (the table in ``schemas.settings``); keyword arguments win
        over them."""
        return cls(**dict(OutrouteSettings.from_env(**overrides)))


@dataclass(frozen=True, slots=True)
class EmitterOptions:
    """How events leave the process.

    ``max_queued_events`` bounds the local buffer (librdkafka's queue): while Kafka is away,
    events wait there and are delivered when it returns. When it is full, new events are
    dropped and counted, unless ``block_on_full`` (seconds, opt-in) allows a bounded wait.
    Events not delivered within ``delivery_timeout`` seconds are counted as failed.

    Delivery is at least once: a retried send can duplicate an event, which the pipeline
    drops by event_id. ``idempotent=True`` makes the broker drop such duplicates instead; it
    needs a broker that keeps producer state across restarts (the embedded broker does not:
    after its restart an idempotent producer retries forever and delivers nothing).
    """

    max_queued_events: int = 100_000
    block_on_full: float = 0.0
    linger_ms: float = 5.0
    compression: str = "lz4"
    delivery_timeout: float = 300.0
    exit_flush_timeout: float = 5.0
    idempotent: bool = False

    def __post_init__(self) -> None:
        _positive("max_queued_events", self.max_queued_events)
        _positive("block_on_full", self.block_on_full, allow_zero=True)
        _positive("linger_ms", self.linger_ms, allow_zero=True)
        _positive("delivery_timeout", self.delivery_timeout)
        _positive("exit_flush_timeout", self.exit_flush_timeout, allow_zero=True)
        if self.compression not in ("none", "gzip", "snappy", "lz4", "zstd"):
            raise ValueError(
                f"compression must be none, gzip, snappy, lz4 or zstd, got {self.compression!r}"
            )


@dataclass(frozen=True, slots=True)
class CacheOptions:
    """How the policy snapshot is kept fresh.

    The first ``decide()`` waits at most ``init_wait`` seconds for a first snapshot, then falls
    back to the first path. Updates arrive by pub/sub; ``poll_interval`` is the safety net.
    When Redis cannot be read for ``max_staleness`` seconds the policy is reported stale (it is
    still used).
    """

    init_wait: float = 0.5
    poll_interval: float = 1.0
    max_staleness: float = 60.0

    def __post_init__(self) -> None:
        _positive("init_wait", self.init_wait, allow_zero=True)
        _positive("poll_interval", self.poll_interval)
        _positive("max_staleness", self.max_staleness)


@dataclass(frozen=True, slots=True)
class Provider:
    """An OpenAI-compatible endpoint: ``{base_url}/chat/completions``."""

    base_url: str = OPENAI_BASE_URL
    api_key: SecretStr | str | None = field(default=None, repr=False)
    timeout: float = 60.0
    #: USD per 1,000 prompt and completion tokens; when set, reports carry cost_usd.
    price_per_1k_prompt: float | None = None
    price_per_1k_completion: float | None = None
    #: Sent with every request, e.g. ``{"api-key": ...}`` for Azure OpenAI's v1 endpoint.
    headers: tuple[tuple[str, str], ...] | dict[str, str] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.base_url, str) or not self.base_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError(f"base_url must be an http(s) URL, got {self.base_url!r}")
        _positive("timeout", self.timeout)
        headers = dict(self.headers)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise ValueError("headers must map header names (str) to values (str)")
        object.__setattr__(self, "headers", tuple(headers.items()))
        if isinstance(self.api_key, str):
            object.__setattr__(self, "api_key", SecretStr(self.api_key))

    @classmethod
    def from_openai_env(cls) -> Provider:
        """``OPENAI_BASE_URL`` (default api.openai.com) and ``OPENAI_API_KEY``."""
        key = os.environ.get("OPENAI_API_KEY")
        return cls(
            base_url=os.environ.get("OPENAI_BASE_URL", OPENAI_BASE_URL).rstrip("/"),
            api_key=SecretStr(key) if key else None,
        )

    def cost(self, prompt_tokens: int | None, completion_tokens: int | None) -> float | None:
        if self.price_per_1k_prompt is None or self.price_per_1k_completion is None:
            return None
        if prompt_tokens is None or completion_tokens is None:
            return None
        return (
            prompt_tokens * self.price_per_1k_prompt
            + completion_tokens * self.price_per_1k_completion
        ) / 1000.0
