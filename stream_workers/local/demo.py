"""``outroute demo``: the local stack and a simulated routing run through the real pipeline."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Final

from rich.console import Console
from rich.table import Table

from schemas import redact_url
from stream_workers.local.apache_kafka import KAFKA_VERSION
from stream_workers.local.stack import LocalStack
from stream_workers.ops.topics import TopicStatus, create_topics
from stream_workers.settings import WorkerSettings

__all__ = ["run_demo"]

_BROKER_NAMES: Final = {
    "embedded": "the embedded broker",
    "kafka": f"Apache Kafka {KAFKA_VERSION} (KRaft, one node)",
}


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` instead of raising, so shutdown runs in order."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_demo(
    console: Console,
    *,
    broker: str = "embedded",
    broker_port: int | None = None,
    redis_url: str | None = None,
    partitions: int = 4,
    duration: float | None = None,
    stack_only: bool = False,
    requests: int = 6000,
    seed: int = 0,
    speed: float = 100.0,
    live: bool = True,
    dashboard_port: int | None = None,
) -> int:
    """The local stack; then, unless ``stack_only``, the simulated routing run, with the
    dashboard on 127.0.0.1:``dashboard_port`` (None: no dashboard) while it runs."""
    if requests < 30:
        raise ValueError(f"--requests must be >= 30, got {requests}")
    if not speed > 0:
        raise ValueError(f"--speed must be > 0 requests/s, got {speed}")
    env = WorkerSettings.from_env()
    stop = threading.Event()
    with _stop_on_signals(stop):
        console.print(f"starting {_BROKER_NAMES[broker]} and Redis ...")
        stack = LocalStack(
            broker=broker,
            broker_port=broker_port,
            redis_url=redis_url or env.redis_url.get_secret_value(),
        )
        with stack:
            settings = WorkerSettings.from_env(
                bootstrap_servers=stack.bootstrap_servers,
                redis_url=stack.redis_url,
                partitions=partitions,
                redis_key_prefix=f"outroute-demo-{os.getpid()}",
            )
            statuses = create_topics(settings)
            if stack_only:
                _print_stack(console, stack, statuses)
                until = "" if duration is None else f" (or {duration:g} s)"
                console.print(f"local stack ready; press Ctrl-C to stop{until}", highlight=False)
                stop.wait(duration)
            else:
                from stream_workers.local.demo_run import simulate

                with _dashboard(console, settings, dashboard_port):
                    simulate(
                        console,
                        settings,
                        stop,
                        requests=requests,
                        seed=seed,
                        speed=speed,
                        live=live,
                    )
            console.print("stopping ...")
    console.print("stopped cleanly")
    return 0


@contextmanager
def _dashboard(console: Console, settings: WorkerSettings, port: int | None) -> Iterator[None]:
    """The dashboard while the block runs; a port in use is reported, and the demo goes on."""
    if port is None:
        yield
        return
    from pydantic import SecretStr

    from stream_workers.dashboard import TOKEN_ENV, Access, DashboardServer
    from stream_workers.errors import WorkerError

    token = os.environ.get(TOKEN_ENV) or None
    access = Access(SecretStr(token) if token is not None else None)
    server = DashboardServer(settings, port=port, access=access)
    try:
        server.start()
    except WorkerError as exc:
        console.print(f"no dashboard: {exc}; choose another with --dashboard-port", highlight=False)
        yield
        return
    mode = "changes need the token" if access.writable else f"read-only: {TOKEN_ENV} is unset"
    console.print(f"dashboard: {server.url} ({mode})", highlight=False)
    try:
        yield
    finally:
        server.close()


def _print_stack(console: Console, stack: LocalStack, statuses: list[TopicStatus]) -> None:
    table = Table("service", "address", "pid", "notes", title="outroute local stack")
    if stack.broker_kind == "kafka":
        name, note = f"Apache Kafka {KAFKA_VERSION}", "log in a temporary folder, removed on stop"
    else:
        name, note = "Kafka broker (Tansu, in memory)", "topics vanish when it stops"
    table.add_row(name, stack.bootstrap_servers, str(stack.broker.pid), note)
    redis = stack.redis
    table.add_row(
        "Redis",
        redact_url(stack.redis_url),
        str(redis.pid) if redis and redis.pid else "-",
        "started here" if redis and redis.started_here else "already running",
    )
    for status in statuses:
        table.add_row(
            "topic", status.name, "", f"{status.partitions} partitions, key {status.spec.key}"
        )
    console.print(table)
    console.print(
        "Point other processes at it with:\n"
        f"  export OUTROUTE_BOOTSTRAP_SERVERS={stack.bootstrap_servers}\n"
        f"  export OUTROUTE_REDIS_URL={redact_url(stack.redis_url)}"
    )
