"""The ``outroute`` command line.

Settings come from ``OUTROUTE_*`` environment variables (see ``schemas.settings``); the flags of
a command override them. Failures exit non-zero with a one-line reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from schemas import OutrouteError, export_json_schemas
from stream_workers.errors import WorkerError
from stream_workers.local.apache_kafka import KAFKA_VERSION
from stream_workers.local.stack import BROKER_KINDS
from stream_workers.ops.topics import (
    TopicStatus,
    check_copartitioned,
    create_topics,
    describe_topics,
)
from stream_workers.settings import WorkerSettings

__all__ = ["build_parser", "main"]

EXIT_FAILURE = 1


def _number(
    kind: Callable[[str], float],
    *,
    above: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
) -> Callable[[str], Any]:
    """An argparse type: ``kind`` (int or float) within bounds, else a usage error that says
    the rule (argparse prints it after the flag's name)."""
    noun = "a whole number" if kind is int else "a number"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"must be > {above:g}, got {text}")
        if at_least is not None and value < at_least:
            raise argparse.ArgumentTypeError(f"must be >= {at_least:g}, got {text}")
        if at_most is not None and value > at_most:
            raise argparse.ArgumentTypeError(f"must be <= {at_most:g}, got {text}")
        return value

    return parse


_SECONDS = _number(float, above=0)
_COUNT = _number(int, at_least=1)
_PORT = _number(int, at_least=1, at_most=65535)


def _version() -> str:
    try:
        return version("outroute")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def _settings(args: argparse.Namespace) -> WorkerSettings:
    """Environment settings, overridden by whichever connection flags were given."""
    overrides: dict[str, Any] = {}
    flags = (
        "bootstrap_servers",
        "topic_prefix",
        "partitions",
        "replication_factor",
        "metrics_port",
        "redis_url",
        "redis_key_prefix",
    )
    for flag in flags:
        value = getattr(args, flag, None)
        if value is not None:
            overrides[flag] = value
    return WorkerSettings.from_env(**overrides)


def _add_connection_flags(parser: argparse.ArgumentParser, *, creating: bool = False) -> None:
    group = parser.add_argument_group("connection (default: OUTROUTE_* environment)")
    group.add_argument("--bootstrap-servers", metavar="HOST:PORT", help="Kafka bootstrap servers")
    group.add_argument("--topic-prefix", metavar="PREFIX", help="prefix of the topic names")
    group.add_argument(
        "--timeout",
        type=_SECONDS,
        default=10.0,
        metavar="SECONDS",
        help="give up on an unreachable broker after this long (default 10)",
    )
    if creating:
        group.add_argument(
            "--partitions",
            type=_COUNT,
            metavar="N",
            help="partitions of decisions, outcomes and path-deltas (default 12)",
        )
        group.add_argument(
            "--replication-factor", type=_COUNT, metavar="N", help="replication factor (default 1)"
        )


def _add_redis_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Redis (default: OUTROUTE_* environment)")
    group.add_argument("--redis-url", metavar="URL", help="Redis URL")
    group.add_argument("--redis-key-prefix", metavar="PREFIX", help="prefix of the Redis keys")


def _print_topics(statuses: list[TopicStatus], as_json: bool, console: Console) -> None:
    if as_json:
        for s in statuses:
            row = {"topic": s.name, "key": s.spec.key, "partitions": s.partitions}
            print(json.dumps({**row, "expected_partitions": s.spec.partitions, "status": s.action}))
        return
    table = Table("topic", "key", "partitions", "expected", "status")
    for s in statuses:
        partitions = "-" if s.partitions is None else str(s.partitions)
        table.add_row(s.name, s.spec.key, partitions, str(s.spec.partitions), s.action)
    console.print(table)


def _cmd_topics_create(args: argparse.Namespace, console: Console) -> int:
    statuses = create_topics(_settings(args), timeout=args.timeout)
    _print_topics(statuses, args.json, console)
    return 0


def _cmd_topics_describe(args: argparse.Namespace, console: Console) -> int:
    settings = _settings(args)
    statuses = describe_topics(settings, timeout=args.timeout)
    _print_topics(statuses, args.json, console)
    check_copartitioned({s.name: s.partitions for s in statuses}, settings.topics())
    return 0


def _cmd_schemas_export(args: argparse.Namespace, console: Console) -> int:
    paths = export_json_schemas(args.directory)
    if args.json:
        for path in paths:
            print(json.dumps({"schema": str(path)}))
    else:
        for path in paths:
            console.print(f"wrote {path}")
    return 0


def _cmd_worker(args: argparse.Namespace, console: Console) -> int:
    from stream_workers.pipeline.worker import run_worker

    run_worker(_settings(args), loglevel=args.loglevel)


def _cmd_demo(args: argparse.Namespace, console: Console) -> int:
    from stream_workers.local.demo import run_demo

    return run_demo(
        console,
        broker=args.broker,
        broker_port=args.broker_port,
        redis_url=args.redis_url,
        partitions=args.partitions,
        duration=args.duration,
        stack_only=args.stack_only,
        requests=args.requests,
        seed=args.seed,
        speed=args.speed,
        live=not args.no_live and console.is_terminal,
    )


def _require_topics(settings: WorkerSettings, timeout: float, *names: str) -> None:
    """Fail fast, naming what is wrong, when the broker is unreachable or a topic is missing."""
    missing = [s.name for s in describe_topics(settings, timeout=timeout) if s.partitions is None]
    absent = sorted(set(missing) & set(names))
    if absent:
        raise WorkerError(
            f"topic(s) {absent} do not exist on {settings.bootstrap_servers}; "
            "create them with `outroute topics create`"
        )


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


def _cmd_alerts_tail(args: argparse.Namespace, console: Console) -> int:
    from stream_workers.ops.alerts import tail_alerts

    settings = _settings(args)
    _require_topics(settings, args.timeout, settings.topics().alerts.name)
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


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def _cmd_alerts_forward(args: argparse.Namespace, console: Console) -> int:
    from stream_workers.ops.alerts import WebhookOptions, forward_alerts

    settings = _settings(args)
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
    _require_topics(settings, args.timeout, settings.topics().alerts.name)
    print(
        f"forwarding alerts of {settings.topics().alerts.name} to "
        f"{_origin(url)}/... (path not shown: webhook URLs often hold a token)"
        f"{' (signed)' if secret else ''}; Ctrl-C stops",
        file=sys.stderr,
    )
    _until_interrupted(lambda stop: forward_alerts(settings, options, goal=args.goal, stop=stop))
    return 0


def _cmd_backfill(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from stream_workers.ops.backfill import backfill

    settings = _settings(args)
    path: Path = args.file
    if not path.is_file():
        raise WorkerError(f"{path}: no such file")
    if not args.dry_run:
        topics = settings.topics()
        _require_topics(settings, args.timeout, topics.decisions.name, topics.outcomes.name)
    rejects = args.rejects.open("w", encoding="utf-8") if args.rejects else None
    err = Console(stderr=True)
    show_progress = err.is_terminal and not args.json
    try:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=not show_progress,
        ) as progress:
            task = progress.add_task(f"backfill {path.name}", total=path.stat().st_size)
            summary = backfill(
                settings,
                path,
                fmt=args.format,
                rejects=rejects,
                dry_run=args.dry_run,
                rate=args.rate,
                workers=args.workers,
                on_progress=lambda done: progress.update(task, completed=done),
            )
    except KeyboardInterrupt:
        if not args.dry_run:
            err.print(
                "interrupted: finished batches are recorded; run the same command again to "
                "send the rest (rows sent twice are dropped by their event ids)",
                highlight=False,
            )
        return 130
    finally:
        if rejects is not None:
            rejects.close()
    if args.json:
        print(json.dumps({**summary.as_dict(), "dry_run": args.dry_run}))
    else:
        table = Table("rows", "valid", "rejected", "sent", "already sent", "seconds", "rows/s")
        table.title = f"backfill {path.name}{' (dry run: nothing sent)' if args.dry_run else ''}"
        table.add_row(
            f"{summary.rows:,}",
            f"{summary.valid:,}",
            f"{summary.rejected:,}",
            f"{summary.produced_rows:,}",
            f"{summary.skipped_rows:,}",
            f"{summary.seconds:.1f}",
            f"{summary.rows_per_s:,.0f}",
        )
        console.print(table)
        for line in summary.first_rejects:
            err.print(f"rejected {line}", markup=False, highlight=False)
        if summary.rejected > len(summary.first_rejects):
            where = f"all in {args.rejects}" if args.rejects else "use --rejects PATH for all"
            err.print(f"... {summary.rejected - len(summary.first_rejects):,} more ({where})")
    return 0


def _cmd_policy(args: argparse.Namespace, console: Console) -> int:
    from stream_workers.ops.policy_view import load_snapshots, print_policies

    snapshots, problems = load_snapshots(_settings(args), args.goal)
    print_policies(snapshots, console, as_json=args.json)
    for problem in problems:
        print(f"outroute: {problem}", file=sys.stderr)
    if not snapshots and not problems:
        print("outroute: no goals have a snapshot yet", file=sys.stderr)
    return EXIT_FAILURE if problems and args.goal else 0


def _cmd_goals(args: argparse.Namespace, console: Console) -> int:
    from stream_workers.ops.policy_view import list_goals

    for goal in list_goals(_settings(args)):
        print(json.dumps({"goal": goal}) if args.json else goal)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="outroute",
        description="Outcome-based routing: workers, topics, schemas and the local demo.",
    )
    parser.add_argument("--version", action="version", version=f"outroute {_version()}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        help="route simulated traffic through the whole pipeline on the local stack",
        description="Start a Kafka broker (the embedded one, or Apache Kafka with --broker "
        "kafka), find or start Redis, create the "
        "topics and run a worker; then route simulated requests with the SDK among three paths "
        "(large, medium and small models) while the best one silently degrades and recovers, "
        "with a live view of traffic, posteriors and alerts. At the end, the success rate per "
        "phase next to a hard-coded fallback chain on the same requests. Ctrl-C stops "
        "everything cleanly. With --stack-only, just the local stack until Ctrl-C.",
    )
    demo.add_argument(
        "--broker",
        choices=BROKER_KINDS,
        default="embedded",
        help="embedded: Tansu, in memory, no JVM (default); kafka: Apache Kafka "
        f"{KAFKA_VERSION} in KRaft mode, from jars Maven resolves once (needs a JDK 17+ and "
        "Maven)",
    )
    demo.add_argument("--broker-port", type=_PORT, metavar="PORT", help="default: a free port")
    demo.add_argument(
        "--redis-url",
        metavar="URL",
        help="Redis to use; if none answers there, a Redis-compatible server (redis-server "
        "from PATH, else the bundled valkey-server) is started on a free port "
        "(default: OUTROUTE_REDIS_URL or redis://127.0.0.1:6379/0)",
    )
    demo.add_argument("--partitions", type=_COUNT, default=4, metavar="N", help="default: 4")
    demo.add_argument(
        "--requests",
        type=_number(int, at_least=30),
        default=6000,
        metavar="N",
        help="simulated requests, at least 30 (6000)",
    )
    demo.add_argument("--seed", type=int, default=0, help="of the simulated world (0)")
    demo.add_argument(
        "--speed",
        type=_number(float, above=0),
        default=100.0,
        metavar="R",
        help="requests per second (100)",
    )
    demo.add_argument(
        "--no-live", action="store_true", help="plain log lines instead of the live view"
    )
    demo.add_argument(
        "--stack-only", action="store_true", help="only run the local stack, until Ctrl-C"
    )
    demo.add_argument(
        "--duration",
        type=_SECONDS,
        metavar="SECONDS",
        help="with --stack-only: stop by itself after this long (default: until Ctrl-C)",
    )
    demo.set_defaults(func=_cmd_demo)

    worker = commands.add_parser(
        "worker",
        help="run a pipeline worker (join stage) until SIGTERM or Ctrl-C",
        description="Run one worker process: it joins decisions with outcomes for the input "
        "partitions it is assigned and emits per-(goal, path) deltas. Start several to share "
        "the partitions. Refuses to start unless decisions and outcomes are co-partitioned. "
        "Join settings (OUTROUTE_OUTCOME_WINDOW, OUTROUTE_ORPHAN_GRACE, OUTROUTE_ON_TIMEOUT, "
        "...) come from the environment; see docs/deploy.md.",
    )
    _add_connection_flags(worker)
    worker.add_argument(
        "--metrics-port",
        type=_PORT,
        metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (default: off)",
    )
    worker.add_argument(
        "-l",
        "--loglevel",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="default: warning",
    )
    worker.set_defaults(func=_cmd_worker)

    topics = commands.add_parser("topics", help="create and inspect outroute's Kafka topics")
    topic_commands = topics.add_subparsers(title="commands", metavar="COMMAND", required=True)
    create = topic_commands.add_parser(
        "create",
        help="create missing topics (idempotent)",
        description="Create every missing outroute topic with its partition count. Existing "
        "topics are left alone. Fails if decisions and outcomes differ in partition count.",
    )
    _add_connection_flags(create, creating=True)
    create.add_argument("--json", action="store_true", help="one JSON object per topic")
    create.set_defaults(func=_cmd_topics_create)
    describe = topic_commands.add_parser(
        "describe",
        help="show the topics and check that decisions and outcomes are co-partitioned",
    )
    _add_connection_flags(describe)
    describe.add_argument("--json", action="store_true", help="one JSON object per topic")
    describe.set_defaults(func=_cmd_topics_describe)

    alerts = commands.add_parser("alerts", help="follow degradation alerts, forward them")
    alert_commands = alerts.add_subparsers(title="commands", metavar="COMMAND", required=True)
    tail = alert_commands.add_parser(
        "tail",
        help="print alerts as they arrive, until Ctrl-C",
        description="Follow the alerts topic and print each alert as a line (time, state, "
        "goal/path, recent vs baseline rate with n), or as JSON. Reads without a consumer "
        "group: several tails do not interfere.",
    )
    _add_connection_flags(tail)
    tail.add_argument("--goal", metavar="GOAL", help="only this goal's alerts")
    tail.add_argument(
        "--from-beginning", action="store_true", help="start at the oldest alert kept"
    )
    tail.add_argument("--json", action="store_true", help="one JSON alert per line")
    tail.set_defaults(func=_cmd_alerts_tail)
    forward = alert_commands.add_parser(
        "forward",
        help="post each alert to a webhook (Slack-compatible), until Ctrl-C",
        description="Post every alert as JSON ({'text': ..., 'alert': {...}}) to URL. The "
        "offset is committed only after a 2xx answer: 5xx, 408, 429 and connection errors are "
        "retried with exponential backoff (up to 30 s apart) for as long as it takes; a 4xx is "
        "logged and skipped after 3 attempts. With a secret, the body is signed: header "
        "X-Outroute-Signature: sha256=HMAC-SHA256(secret, body) in hex.",
    )
    _add_connection_flags(forward)
    forward.add_argument("--webhook", metavar="URL", help="default: OUTROUTE_ALERTS_WEBHOOK_URL")
    forward.add_argument("--goal", metavar="GOAL", help="only this goal's alerts")
    forward.add_argument(
        "--secret-env",
        metavar="NAME",
        help="sign with the secret in environment variable NAME "
        "(default: OUTROUTE_ALERTS_WEBHOOK_SECRET, if set)",
    )
    forward.add_argument(
        "--http-timeout", type=_SECONDS, default=10.0, metavar="SECONDS", help="default: 10"
    )
    forward.set_defaults(func=_cmd_alerts_forward)

    backfill = commands.add_parser(
        "backfill",
        help="send historical decisions with their outcomes (JSON lines or CSV)",
        description="Each row is one decision and its outcome: trace_id, goal, path, "
        "decided_at, success, and optionally score, cost_usd (or cost), latency_ms (or "
        "latency), occurred_at, failure_category. Valid rows are sent with their original "
        "timestamps and ids derived from the row; finished chunks are recorded in Redis, so "
        "running the same file again sends nothing twice. Bad rows are reported with their "
        "line number and the run goes on.",
    )
    backfill.add_argument("file", type=Path, metavar="FILE")
    backfill.add_argument(
        "--format", choices=["jsonl", "csv"], help="default: from the file name (.csv or not)"
    )
    backfill.add_argument(
        "--rejects", type=Path, metavar="PATH", help="write bad rows here (JSON lines)"
    )
    backfill.add_argument("--dry-run", action="store_true", help="validate only; send nothing")
    backfill.add_argument(
        "--rate", type=_number(float, above=0), metavar="N", help="send at most N rows/s"
    )
    backfill.add_argument(
        "--workers",
        type=_COUNT,
        default=min(8, (os.cpu_count() or 1) + 1),
        metavar="N",
        help="processes that validate, encode and send batches of rows; one more than the "
        "cores, as each waits for acknowledgements after a batch (default here: "
        f"{min(8, (os.cpu_count() or 1) + 1)})",
    )
    backfill.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_connection_flags(backfill)
    _add_redis_flags(backfill)
    backfill.set_defaults(func=_cmd_backfill)

    policy = commands.add_parser(
        "policy",
        help="show the published policy of one goal or of all",
        description="Per goal, a table of its paths: posterior mean and 90%% interval, "
        "outcomes, recent vs baseline success, status, mean cost and latency; with the "
        "snapshot's version and age.",
    )
    policy.add_argument("goal", nargs="?", metavar="GOAL", help="default: every goal")
    policy.add_argument("--json", action="store_true", help="one JSON object per path")
    _add_redis_flags(policy)
    policy.set_defaults(func=_cmd_policy)

    goals = commands.add_parser("goals", help="list the goals that have a published policy")
    goals.add_argument("--json", action="store_true", help="one JSON object per goal")
    _add_redis_flags(goals)
    goals.set_defaults(func=_cmd_goals)

    schemas_cmd = commands.add_parser("schemas", help="JSON Schemas of the public events")
    schema_commands = schemas_cmd.add_subparsers(title="commands", metavar="COMMAND", required=True)
    export = schema_commands.add_parser(
        "export",
        help="write one JSON Schema file per public event into DIR",
        description="Write DecisionEvent, OutcomeEvent, PolicySnapshot and DegradationAlert "
        "JSON Schemas (draft 2020-12) into DIR, for producers in other languages.",
    )
    export.add_argument("directory", type=Path, metavar="DIR")
    export.add_argument("--json", action="store_true", help="one JSON object per written file")
    export.set_defaults(func=_cmd_schemas_export)
    return parser


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"
            for err in exc.errors()
        )
        return f"invalid settings: {problems}"
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Piped output is not cut to 80 columns: tables stay whole for logs and grep.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    func: Callable[[argparse.Namespace, Console], int] = args.func
    if func is not _cmd_worker:  # the worker configures logging through Faust
        logging.basicConfig(level=logging.WARNING, format="outroute: %(message)s")
    try:
        return func(args, console)
    except (OutrouteError, ValidationError, OSError) as exc:
        print(f"outroute: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
