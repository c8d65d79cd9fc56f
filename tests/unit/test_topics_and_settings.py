"""Topic/key naming, the co-partitioning rule, and the settings objects."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas import OutrouteSettings, RedisKeys, Topics, redact_url
from stream_workers import TopicLayoutError, WorkerSettings, check_copartitioned
from stream_workers.pipeline.posterior import PosteriorConfig


def test_topic_names_keys_and_partitions() -> None:
    topics = Topics("acme", partitions=6)
    table = {t.name: (t.key, t.partitions) for t in topics}
    assert table == {
        "acme.decisions": ("trace_id", 6),
        "acme.outcomes": ("trace_id", 6),
        "acme.path-deltas": ("goal", 6),
        "acme.alerts": ("goal", 1),
        "acme.dead-letter": ("source key", 1),
        "acme.posterior-state": ("goal", 6),
        "acme.overrides": ("goal", 1),
    }
    assert topics.posterior_state.config["cleanup.policy"] == "compact"


@pytest.mark.parametrize("prefix", ["", "has space", "-x", "a" * 101, "é"])
def test_bad_topic_prefix_named(prefix: str) -> None:
    with pytest.raises(ValueError, match="topic prefix"):
        Topics(prefix)


@pytest.mark.parametrize("partitions", [0, -1, True, 1.5])
def test_bad_partition_count(partitions: object) -> None:
    with pytest.raises(ValueError, match="partitions must be a positive integer"):
        Topics("ok", partitions=partitions)  # type: ignore[arg-type]


def test_redis_keys_of_overrides_history_and_health() -> None:
    keys = RedisKeys("k")
    assert keys.overrides("g") == "k:overrides:g"
    assert keys.override_log("g") == "k:override-log:g"
    assert keys.history("g", "m", 29_000_000) == "k:history:g:m:29000000"
    assert keys.health("g", 29_000_000) == "k:health:g:29000000"


def test_redis_keys() -> None:
    keys = RedisKeys("t1")
    assert keys.policy("summarize") == "t1:policy:summarize"
    assert keys.goals == "t1:goals"
    assert keys.policy_updates == "t1:policy-updates"
    assert keys.alerts("summarize") == "t1:alerts:summarize"
    with pytest.raises(ValueError, match="redis key prefix"):
        RedisKeys("a b")


def test_copartitioned_returns_shared_count() -> None:
    topics = Topics("p", 4)
    counts = {"p.decisions": 4, "p.outcomes": 4}
    assert check_copartitioned(counts, topics) == 4


def test_copartition_mismatch_is_explained() -> None:
    topics = Topics("p", 4)
    with pytest.raises(TopicLayoutError) as info:
        check_copartitioned({"p.decisions": 4, "p.outcomes": 3}, topics)
    message = str(info.value)
    assert "p.decisions has 4 partitions but p.outcomes has 3" in message
    assert "must be equal" in message


def test_copartition_missing_topic_is_explained() -> None:
    topics = Topics("p", 4)
    with pytest.raises(TopicLayoutError, match=r"p\.outcomes do not exist.*topics create"):
        check_copartitioned({"p.decisions": 4, "p.outcomes": None}, topics)
    with pytest.raises(TopicLayoutError, match=r"p\.decisions, p\.outcomes do not exist"):
        check_copartitioned({}, topics)


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BOOTSTRAP_SERVERS", "REDIS_URL", "TOPIC_PREFIX", "PARTITIONS", "KAFKA_CONFIG"):
        monkeypatch.delenv(f"OUTROUTE_{name}", raising=False)
    settings = WorkerSettings.from_env()
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.redis_url.get_secret_value() == "redis://127.0.0.1:6379/0"
    assert settings.topic_prefix == "outroute"
    assert settings.redis_key_prefix == "outroute"
    assert settings.partitions == 12
    assert settings.kafka_config == {}
    assert settings.replication_factor == 1
    assert settings.kafka_client_config() == {"bootstrap.servers": "127.0.0.1:9092"}


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTROUTE_BOOTSTRAP_SERVERS", "k1:9093, k2:9093")
    monkeypatch.setenv(
        "OUTROUTE_KAFKA_CONFIG",
        '{"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", "sasl.password": "hunter2"}',
    )
    monkeypatch.setenv("OUTROUTE_REDIS_URL", "rediss://:s3cret@cache:6380/2")
    monkeypatch.setenv("OUTROUTE_TOPIC_PREFIX", "prod")
    monkeypatch.setenv("OUTROUTE_PARTITIONS", "24")
    settings = WorkerSettings.from_env()
    assert settings.bootstrap_servers == "k1:9093,k2:9093"
    assert settings.partitions == 24
    assert settings.topics().decisions.name == "prod.decisions"
    assert settings.kafka_client_config() == {
        "bootstrap.servers": "k1:9093,k2:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.password": "hunter2",
    }
    # Keyword overrides win over the environment.
    assert WorkerSettings.from_env(partitions=3).partitions == 3


def test_secrets_never_printed() -> None:
    settings = OutrouteSettings(
        kafka_config={"sasl.password": "hunter2"}, redis_url="redis://:s3cret@cache:6379/0"
    )
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert "hunter2" not in shown
    assert "s3cret" not in shown
    assert settings.redis_url_redacted == "redis://:***@cache:6379/0"


def test_settings_are_frozen() -> None:
    settings = OutrouteSettings()
    with pytest.raises(ValidationError, match="frozen"):
        settings.partitions = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("bootstrap_servers", "localhost", "expected host:port"),
        ("bootstrap_servers", "h:0", "expected host:port"),
        ("bootstrap_servers", "h:1,", "expected host:port"),
        ("redis_url", "http://x", "expected a redis://"),
        ("topic_prefix", "a b", "should match pattern"),
        ("partitions", 0, "greater than or equal to 1"),
        ("kafka_config", {"bootstrap.servers": "x:1"}, "cannot be set here"),
    ],
)
def test_bad_settings_name_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        OutrouteSettings(**{field: value})
    error = info.value.errors()[0]
    assert error["loc"][0] == field
    assert message in error["msg"]


def test_bad_redis_url_error_does_not_leak_password() -> None:
    with pytest.raises(ValidationError) as info:
        OutrouteSettings(redis_url="http://:pw@host:1")
    assert "pw" not in str(info.value)
    assert "redis_url" in str(info.value)


def test_redact_url() -> None:
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_url("redis://user:pw@h:1/0") == "redis://user:***@h:1/0"


def test_a_detector_window_too_small_for_an_alert_is_refused_at_start() -> None:
    # An alert needs 20 recent outcomes: a smaller window could never open one, and the
    # detector would refuse it only when the worker first saw a path.
    with pytest.raises(ValidationError) as info:
        WorkerSettings(detector_window=19)
    error = info.value.errors()[0]
    assert error["loc"][0] == "detector_window"
    assert "greater than or equal to 20" in error["msg"]
    assert WorkerSettings(detector_window=20).detector_window == 20


def test_the_half_lives_come_from_the_environment_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HALF_LIFE", "HALF_LIFE_OUTCOMES", "MAX_HALF_LIFE"):
        monkeypatch.delenv(f"OUTROUTE_{name}", raising=False)
    defaults = WorkerSettings.from_env()
    assert (defaults.half_life, defaults.half_life_outcomes, defaults.max_half_life) == (
        86400.0,
        100.0,
        604800.0,
    )
    monkeypatch.setenv("OUTROUTE_HALF_LIFE_OUTCOMES", "0")  # by time alone
    monkeypatch.setenv("OUTROUTE_MAX_HALF_LIFE", "172800")
    settings = WorkerSettings.from_env()
    assert (settings.half_life_outcomes, settings.max_half_life) == (0.0, 172800.0)
    config = PosteriorConfig.from_settings(settings)
    assert (config.half_life_outcomes, config.max_half_life) == (0.0, 172800.0)
    # The longest half-life bounds how slowly counted outcomes decay: never under half_life.
    assert WorkerSettings(half_life=172800, max_half_life=172800).max_half_life == 172800
    with pytest.raises(ValidationError) as info:
        WorkerSettings.from_env(half_life=259200)
    assert "max_half_life (172800 s) must be at least half_life (259200 s)" in str(info.value)
    with pytest.raises(ValidationError) as info:
        WorkerSettings(half_life_outcomes=-1)
    error = info.value.errors()[0]
    assert error["loc"][0] == "half_life_outcomes"
    assert "greater than or equal to 0" in error["msg"]
