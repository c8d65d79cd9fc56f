"""Alert consumers against the real broker and a real HTTP server on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from schemas import DegradationAlert
from stream_workers import WorkerSettings
from stream_workers.ops.alerts import SIGNATURE_HEADER, WebhookOptions, forward_alerts

from _support import default_sigint, wait_until

OUTROUTE = str(Path(sys.executable).parent / "outroute")
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def alert(goal: str, path: str, state: str, i: int) -> DegradationAlert:
    return DegradationAlert(
        alert_id=f"{goal}:{path}:{state}:0.{i}.{i}",
        goal=goal,
        path=path,
        state=state,  # type: ignore[arg-type]
        recent_rate=0.3 if state == "open" else 0.9,
        recent_n=50,
        baseline_rate=0.95,
        baseline_n=400.0,
        detector="beta-drop",
        evidence=0.9999,
        detected_at=T0 + timedelta(minutes=i),
    )


def send(settings: WorkerSettings, values: list[bytes | DegradationAlert]) -> None:
    producer = Producer(settings.kafka_client_config())
    for value in values:
        if isinstance(value, DegradationAlert):
            producer.produce(
                settings.topics().alerts.name, value.model_dump_json().encode(), value.goal.encode()
            )
        else:
            producer.produce(settings.topics().alerts.name, value, b"junk")
    assert producer.flush(10) == 0


class Endpoint:
    """A webhook receiver that answers from a script of statuses, then 200."""

    def __init__(self, failures: int = 0, reject: set[str] | None = None) -> None:
        self.failures = failures  # the first N requests get a 503
        self.reject = reject or set()  # alert ids answered with 400
        self.received: list[dict[str, Any]] = []  # 2xx only
        self.requests = 0
        self.signatures: list[tuple[bytes, str | None]] = []
        self.lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with endpoint.lock:
                    endpoint.requests += 1
                    doc = json.loads(body)
                    if endpoint.failures > 0:
                        endpoint.failures -= 1
                        status = 503
                    elif doc["alert"]["alert_id"] in endpoint.reject:
                        status = 400
                    else:
                        status = 200
                        endpoint.received.append(doc)
                        endpoint.signatures.append((body, self.headers.get(SIGNATURE_HEADER)))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def ids(self) -> list[str]:
        with self.lock:
            return [doc["alert"]["alert_id"] for doc in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = Endpoint(failures=3)
    yield server
    server.close()


class Forwarder:
    def __init__(self, settings: WorkerSettings, options: WebhookOptions, **kw: Any) -> None:
        self.stop = threading.Event()
        self.result: list[Any] = []
        self.thread = threading.Thread(
            target=lambda: self.result.append(
                forward_alerts(settings, options, stop=self.stop, **kw)
            ),
            daemon=True,
        )
        self.thread.start()

    def close(self) -> Any:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()
        return self.result[0]


FAST = (0.05, 2.0, 0.4)  # backoff for tests: the same code path, shorter waits


@pytest.mark.both_brokers
def test_forward_delivers_every_alert_once_in_order_through_failures(
    settings: WorkerSettings, topics: Any, endpoint: Endpoint
) -> None:
    states = ("open", "resolved")
    alerts = [alert(g, "a", states[i % 2], i) for i in range(6) for g in ("summarize", "classify")]
    re_emitted = alerts[4]  # a worker restart sends the same alert again
    send(settings, [*alerts[:6], re_emitted, b"{not an alert", *alerts[6:]])
    secret = b"s3cret"
    forwarder = Forwarder(settings, WebhookOptions(endpoint.url, secret=secret, backoff=FAST))
    expected = [a.alert_id for a in alerts]
    wait_until(lambda: len(endpoint.ids()) >= len(expected), timeout=60, what="all alerts")
    stats = forwarder.close()
    assert endpoint.ids() == expected  # none twice, the topic's order (so per goal too)
    assert stats.delivered == len(expected)
    assert (stats.duplicates, stats.skipped_invalid, stats.failed_attempts) == (1, 1, 3)
    for body, signature in endpoint.signatures:
        assert signature == "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    first = endpoint.received[0]
    assert first["alert"] == json.loads(alerts[0].model_dump_json())
    assert "summarize/a" in first["text"]
    assert "OPEN" in first["text"]


@pytest.mark.both_brokers
def test_forward_commits_only_after_2xx_and_skips_a_rejected_alert(
    settings: WorkerSettings, topics: Any
) -> None:
    alerts = [alert("summarize", "b", "open", i) for i in range(4)]
    down = Endpoint(failures=10**6)  # answers 503 to everything
    try:
        send(settings, alerts[:2])
        forwarder = Forwarder(settings, WebhookOptions(down.url, backoff=FAST))
        wait_until(lambda: down.requests >= 3, timeout=60, what="retries against a 503")
        stats = forwarder.close()  # stopped while the endpoint is down: nothing committed
        assert stats.delivered == 0
    finally:
        down.close()
    up = Endpoint(reject={alerts[1].alert_id})
    try:
        send(settings, alerts[2:])
        forwarder = Forwarder(settings, WebhookOptions(up.url, backoff=FAST))
        wait_until(lambda: len(up.ids()) >= 3, timeout=60, what="the restarted forwarder")
        stats = forwarder.close()
        assert up.ids() == [alerts[0].alert_id, alerts[2].alert_id, alerts[3].alert_id]
        assert stats.skipped_rejected == 1  # the 400, after 3 attempts
        assert up.requests == 3 + 3
        # a third run starts after the last committed offset: nothing is posted again
        forwarder = Forwarder(settings, WebhookOptions(up.url, backoff=FAST))
        send(settings, [alert("summarize", "b", "resolved", 9)])
        wait_until(lambda: len(up.ids()) >= 4, timeout=60, what="the next alert")
        forwarder.close()
        assert up.ids()[3:] == ["summarize:b:resolved:0.9.9"]
    finally:
        up.close()


@pytest.mark.both_brokers
def test_forward_filters_by_goal(settings: WorkerSettings, topics: Any) -> None:
    server = Endpoint()
    try:
        send(settings, [alert("summarize", "a", "open", 1), alert("classify", "x", "open", 2)])
        forwarder = Forwarder(settings, WebhookOptions(server.url), goal="classify")
        wait_until(lambda: server.ids(), timeout=60, what="the classify alert")
        stats = forwarder.close()
        assert server.ids() == ["classify:x:open:0.2.2"]
        assert stats.filtered == 1
    finally:
        server.close()


def _cli_env(settings: WorkerSettings) -> dict[str, str]:
    return {
        **os.environ,
        "OUTROUTE_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "OUTROUTE_TOPIC_PREFIX": settings.topic_prefix,
        "OUTROUTE_REDIS_KEY_PREFIX": settings.redis_key_prefix,
    }


@pytest.mark.both_brokers
def test_tail_prints_alerts_and_exits_0_on_ctrl_c(settings: WorkerSettings, topics: Any) -> None:
    alerts = [alert("summarize", "a", "open", 1), alert("classify", "x", "open", 2)]
    send(settings, [alerts[0], b"junk", alerts[1]])
    process = subprocess.Popen(
        [OUTROUTE, "alerts", "tail", "--from-beginning", "--json"],
        env=_cli_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in alerts]
    assert [DegradationAlert.model_validate_json(line) for line in lines] == alerts
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "not a DegradationAlert" in err  # the junk message is named, not fatal

    readable = subprocess.Popen(
        [OUTROUTE, "alerts", "tail", "--from-beginning", "--goal", "classify"],
        env=_cli_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert readable.stdout is not None
    line = readable.stdout.readline()
    readable.send_signal(signal.SIGTERM)
    readable.communicate(timeout=30)
    assert readable.returncode == 0
    assert "OPEN" in line
    assert "classify/x" in line
    assert "recent 0.30 (n=50)" in line


def test_forward_without_a_webhook_fails_with_a_clear_reason(settings: WorkerSettings) -> None:
    done = subprocess.run(
        [OUTROUTE, "alerts", "forward"],
        env={k: v for k, v in _cli_env(settings).items() if k != "OUTROUTE_ALERTS_WEBHOOK_URL"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "no webhook" in done.stderr
