"""``outroute alerts tail`` and ``outroute alerts forward``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

from rich.console import Console

from stream_workers.cli._common import (
    SECONDS,
    Commands,
    add_connection_flags,
    add_group,
    require_topics,
    settings_from,
)
from stream_workers.errors import WorkerError

__all__ = ["add_commands"]


def add_commands(commands: Commands) -> None:
    alert_commands = add_group(commands, "alerts", "follow degradation alerts, forward them")
    tail = alert_commands.add_parser(
        "tail",
        help="print alerts as they arrive, until Ctrl-C",
        description="Follow the alerts topic and print each alert as a line (time, state, "
        "goal/path, recent vs baseline rate with n), or as JSON. Reads without a consumer "
        "group: several tails do not interfere.",
    )
    add_connection_flags(tail)
    tail.add_argument("--goal", metavar="GOAL", help="only this goal's alerts")
    tail.add_argument(
        "--from-beginning", action="store_true", help="start at the oldest alert kept"
    )
    tail.add_argument("--json", action="store_true", help="one JSON alert per line")
    tail.set_defaults(func=_tail)
    forward = alert_commands.add_parser(
        "forward",
        help="post each alert to a webhook (Slack-compatible), until Ctrl-C",
        description="Post every alert as JSON ({'text': ..., 'alert': {...}}) to URL. The "
        "offset is committed only after a 2xx answer: 5xx, 408, 429 and connection errors are "
        "retried with exponential backoff (up to 30 s apart) for as long as it takes; a 4xx is "
        "logged and skipped after 3 attempts. With a secret, the body is signed: header "
        "X-Outroute-Signature: sha256=HMAC-SHA256(secret, body) in hex.",
    )
    add_connection_flags(forward)
    forward.add_argument("--webhook", metavar="URL", help="default: OUTROUTE_ALERTS_WEBHOOK_URL")
    forward.add_argument("--goal", metavar="GOAL", help="only this goal's alerts")
    forward.add_argument(
        "--secret-env",
        metavar="NAME",
        help="sign with the secret in environment variable NAME "
        "(default: OUTROUTE_ALERTS_WEBHOOK_SECRET, if set)",
    )
    forward.add_argument(
        "--http-timeout", type=SECONDS, default=10.0, metavar="SECONDS", help="default: 10"
    )
    forward.set_defaults(func=_forward)


def _tail(args: argparse.Namespace, console: Console) -> int:
    from stream_workers.ops.alerts import tail_alerts

    settings = settings_from(args)
    require_topics(settings, args.timeout, settings.topics().alerts.name)
    _until_interrupted(
        lambda stop: tail_alerts(
            settings,
            sys.stdout,
            goal=args.goal,
            from_beginning=args.from_beginning,
            as_json=args.json,
            stop=stop,
        )
    )
    return 0


def _forward(args: argparse.Namespace, console: Console) -> int:
    from stream_workers.ops.alerts import WebhookOptions, forward_alerts

    settings = settings_from(args)
    url = args.webhook or settings.alerts_webhook_url  # compose passes "" when unset
    if not url:
        raise WorkerError("no webhook: give --webhook URL or set OUTROUTE_ALERTS_WEBHOOK_URL")
    secret: bytes | None = None
    if args.secret_env:
        value = os.environ.get(args.secret_env)
        if not value:
            raise WorkerError(f"--secret-env {args.secret_env}: that variable is not set")
        secret = value.encode()
    elif settings.alerts_webhook_secret and settings.alerts_webhook_secret.get_secret_value():
        secret = settings.alerts_webhook_secret.get_secret_value().encode()
    try:
        options = WebhookOptions(url=url, secret=secret, timeout=args.http_timeout)
    except ValueError as exc:
        raise WorkerError(str(exc)) from None  # from --webhook or OUTROUTE_ALERTS_WEBHOOK_URL
    require_topics(settings, args.timeout, settings.topics().alerts.name)
    print(
        f"forwarding alerts of {settings.topics().alerts.name} to "
        f"{_origin(url)}/... (path not shown: webhook URLs often hold a token)"
        f"{' (signed)' if secret else ''}; Ctrl-C stops",
        file=sys.stderr,
    )
    _until_interrupted(lambda stop: forward_alerts(settings, options, goal=args.goal, stop=stop))
    return 0


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def _until_interrupted(run: Callable[[threading.Event], object]) -> None:
    """Run ``run(stop)`` in a thread; Ctrl-C or SIGTERM sets ``stop`` and waits for it."""
    stop = threading.Event()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            run(stop)
        except BaseException as exc:  # reported by the caller's thread
            failure.append(exc)
            stop.set()

    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    thread = threading.Thread(target=target, name="outroute-command", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.2)
    except KeyboardInterrupt:
        stop.set()
        thread.join(30)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if failure:
        raise failure[0]
