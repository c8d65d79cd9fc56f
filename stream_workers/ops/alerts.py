"""Alert consumers for ops: ``outroute alerts tail`` and ``outroute alerts forward``.

Both read ``<prefix>.alerts`` (one partition, key goal, so alerts of a goal are in order).
``tail`` reads without a consumer group and commits nothing. ``forward`` is a consumer group
member that posts each alert to a webhook and commits its offset only after the endpoint
answered 2xx: while the endpoint is down or failing it retries with exponential backoff and
nothing is lost; a restart resumes at the first alert not yet delivered. Alerts the workers
re-emitted after a crash carry the same ``alert_id`` and are dropped.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

import httpx
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition
from pydantic import ValidationError

from schemas import DegradationAlert
from stream_workers.settings import WorkerSettings

__all__ = [
    "SIGNATURE_HEADER",
    "ForwardStats",
    "WebhookOptions",
    "format_alert",
    "forward_alerts",
    "sign",
    "tail_alerts",
]

log = logging.getLogger("outroute.alerts")

SIGNATURE_HEADER: Final = "X-Outroute-Signature"
#: Statuses worth retrying indefinitely, like a 5xx: the request may succeed later.
_RETRYABLE_4XX: Final = frozenset({408, 425, 429})
_SEEN_IDS: Final = 10_000  # alert ids remembered to drop re-emitted alerts


def format_alert(alert: DegradationAlert) -> str:
    """One readable line: time, state, goal/path, recent vs baseline."""
    at = alert.detected_at.strftime("%Y-%m-%d %H:%M:%SZ")
    return (
        f"{at}  {alert.state.upper():<8}  {alert.goal}/{alert.path}  "
        f"recent {alert.recent_rate:.2f} (n={alert.recent_n}) vs baseline "
        f"{alert.baseline_rate:.2f} (n={alert.baseline_n:.0f})"
    )


def sign(secret: bytes, body: bytes) -> str:
    """The signature header value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def _consumer(settings: WorkerSettings, group: str, **extra: Any) -> Consumer:
    return Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": int(settings.session_timeout * 1000),
            "heartbeat.interval.ms": min(1000, int(settings.session_timeout * 1000) // 3),
            **extra,
        }
    )


def _decode(message: Any) -> DegradationAlert | None:
    """The alert in ``message``, or None (logged, naming the offset) if it is not one."""
    try:
        return DegradationAlert.model_validate_json(message.value() or b"")
    except (ValidationError, ValueError) as exc:
        reason = str(exc).splitlines()[0]
        if isinstance(exc, ValidationError):
            reason = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'alert'}: {e['msg']}"
                for e in exc.errors()[:3]
            )
        log.error(
            "skipping a message that is not a DegradationAlert at %s[%d]@%d: %s",
            message.topic(),
            message.partition(),
            message.offset(),
            reason,
        )
        return None


def _messages(consumer: Consumer, stop: threading.Event) -> Iterator[Any]:
    while not stop.is_set():
        message = consumer.poll(0.2)
        if message is None:
            continue
        if message.error():
            log.warning("alerts topic: %s", message.error())
            continue
        yield message


def tail_alerts(
    settings: WorkerSettings,
    out: TextIO,
    *,
    goal: str | None = None,
    from_beginning: bool = False,
    as_json: bool = False,
    stop: threading.Event | None = None,
) -> int:
    """Print alerts as they arrive until ``stop`` is set; returns how many were printed."""
    stop = stop or threading.Event()
    topic = settings.topics().alerts
    consumer = _consumer(settings, f"{settings.topic_prefix}.alerts-tail.{uuid.uuid4().hex}")
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    consumer.assign([TopicPartition(topic.name, p, start) for p in range(topic.partitions)])
    printed = 0
    try:
        for message in _messages(consumer, stop):
            alert = _decode(message)
            if alert is None or (goal is not None and alert.goal != goal):
                continue
            out.write((alert.model_dump_json() if as_json else format_alert(alert)) + "\n")
            out.flush()
            printed += 1
    finally:
        consumer.close()
    return printed


@dataclass(frozen=True)
class WebhookOptions:
    """Where and how alerts are posted."""

    url: str
    secret: bytes | None = None
    timeout: float = 10.0
    #: Exponential backoff between attempts: first delay, factor, ceiling (seconds).
    backoff: tuple[float, float, float] = (0.5, 2.0, 30.0)
    #: Attempts for a request the endpoint rejects with a 4xx before it is skipped.
    client_error_attempts: int = 3

    def __post_init__(self) -> None:
        scheme, sep, rest = self.url.partition("://")
        if not sep:
            problem = "no scheme"
        elif scheme.lower() not in ("http", "https"):
            problem = f"scheme {scheme!r}"
        elif not rest.split("/", 1)[0]:
            problem = "no host"
        else:
            problem = ""
        if problem:  # not the URL itself: webhook URLs often hold a token
            raise ValueError(
                f"webhook URL must be http://HOST/... or https://HOST/..., got {problem}"
            )
        first, factor, ceiling = self.backoff
        if not (0 < first <= ceiling and factor >= 1):
            raise ValueError(
                f"backoff must be (first > 0, factor >= 1, ceiling >= first), got {self.backoff!r}"
            )
        if self.client_error_attempts < 1:
            raise ValueError("client_error_attempts must be >= 1")


@dataclass
class ForwardStats:
    delivered: int = 0
    skipped_rejected: int = 0  # 4xx after every attempt
    skipped_invalid: int = 0  # not a DegradationAlert
    duplicates: int = 0  # re-emitted alert ids
    filtered: int = 0  # other goals
    failed_attempts: int = 0
    delivered_ids: list[str] = field(default_factory=list)


def payload(alert: DegradationAlert) -> bytes:
    """The webhook body: a Slack-compatible ``text`` plus the full alert."""
    icon = ":rotating_light:" if alert.state == "open" else ":white_check_mark:"
    body = {
        "text": f"{icon} outroute {format_alert(alert)}",
        "alert": alert.model_dump(mode="json"),
    }
    return json.dumps(body, separators=(",", ":")).encode()


def _post(
    client: httpx.Client,
    options: WebhookOptions,
    alert: DegradationAlert,
    stats: ForwardStats,
    stop: threading.Event,
) -> bool | None:
    """Post until a 2xx (True) or a 4xx on every attempt (False); None if stopped first."""
    body = payload(alert)
    headers = {"Content-Type": "application/json", "Idempotency-Key": alert.alert_id}
    if options.secret is not None:
        headers[SIGNATURE_HEADER] = sign(options.secret, body)
    delay, factor, ceiling = options.backoff
    rejections = 0
    while not stop.is_set():
        try:
            response = client.post(options.url, content=body, headers=headers)
            status = response.status_code
            if 200 <= status < 300:
                return True
            problem = f"HTTP {status}"
            if 400 <= status < 500 and status not in _RETRYABLE_4XX:
                rejections += 1
                if rejections >= options.client_error_attempts:
                    log.error(
                        "webhook rejected alert %s with HTTP %d %d times; skipping it: %s",
                        alert.alert_id,
                        status,
                        rejections,
                        response.text[:200],
                    )
                    return False
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        stats.failed_attempts += 1
        log.warning(
            "posting alert %s failed (%s); retrying in %.1fs", alert.alert_id, problem, delay
        )
        stop.wait(delay)
        delay = min(ceiling, delay * factor)
    return None


def forward_alerts(
    settings: WorkerSettings,
    options: WebhookOptions,
    *,
    goal: str | None = None,
    stop: threading.Event | None = None,
    on_delivered: Callable[[DegradationAlert], None] | None = None,
) -> ForwardStats:
    """Post every alert to the webhook, in order, until ``stop`` is set."""
    stop = stop or threading.Event()
    stats = ForwardStats()
    seen: OrderedDict[str, None] = OrderedDict()
    consumer = _consumer(settings, settings.alerts_group)
    consumer.subscribe([settings.topics().alerts.name])
    try:
        with httpx.Client(timeout=options.timeout) as client:
            for message in _messages(consumer, stop):
                alert = _decode(message)
                if alert is None:
                    stats.skipped_invalid += 1
                elif goal is not None and alert.goal != goal:
                    stats.filtered += 1
                elif alert.alert_id in seen:
                    stats.duplicates += 1
                else:
                    outcome = _post(client, options, alert, stats, stop)
                    if outcome is None:
                        break  # stopped while the endpoint was failing: not committed
                    if outcome:
                        stats.delivered += 1
                        stats.delivered_ids.append(alert.alert_id)
                        if on_delivered is not None:
                            on_delivered(alert)
                    else:
                        stats.skipped_rejected += 1
                    seen[alert.alert_id] = None
                    if len(seen) > _SEEN_IDS:
                        seen.popitem(last=False)
                _commit(consumer, message)
    finally:
        consumer.close()
    return stats


def _commit(consumer: Consumer, message: Any) -> None:
    position = TopicPartition(message.topic(), message.partition(), message.offset() + 1)
    for attempt in range(5):
        try:
            consumer.commit(offsets=[position], asynchronous=False)
            return
        except KafkaException as exc:  # a rebalance or a broker hiccup
            log.warning("committing alerts offset failed (%s); attempt %d", exc, attempt + 1)
            time.sleep(0.2 * (attempt + 1))
    log.error("could not commit the alerts offset; the alert may be posted again on restart")
