"""The ``outroute`` command line.

Settings come from ``OUTROUTE_*`` environment variables (see ``schemas.settings``); the flags of
a command override them. Failures exit non-zero with a one-line reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from schemas import OutrouteError, export_json_schemas

from .admin import TopicStatus, check_copartitioned, create_topics, describe_topics
from .settings import WorkerSettings

__all__ = ["build_parser", "main"]

EXIT_FAILURE = 1


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
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="give up on an unreachable broker after this long (default 10)",
    )
    if creating:
        group.add_argument(
            "--partitions",
            type=int,
            metavar="N",
            help="partitions of decisions, outcomes and path-deltas (default 12)",
        )
        group.add_argument(
            "--replication-factor", type=int, metavar="N", help="replication factor (default 1)"
        )


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
    from .worker import run_worker

    run_worker(_settings(args), loglevel=args.loglevel)


def _cmd_demo(args: argparse.Namespace, console: Console) -> int:
    from .demo import run_demo

    return run_demo(
        console,
        broker_port=args.broker_port,
        redis_url=args.redis_url,
        partitions=args.partitions,
        duration=args.duration,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="outroute",
        description="Outcome-based routing: workers, topics, schemas and the local demo.",
    )
    parser.add_argument("--version", action="version", version=f"outroute {_version()}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        help="run the local stack (embedded broker + Redis) until Ctrl-C",
        description="Start the embedded Kafka-protocol broker, find or start Redis, create the "
        "topics, print what runs where, and stop everything cleanly on Ctrl-C.",
    )
    demo.add_argument("--broker-port", type=int, metavar="PORT", help="default: a free port")
    demo.add_argument(
        "--redis-url",
        metavar="URL",
        help="Redis to use; if none answers there, redis-server is started on a free port "
        "(default: OUTROUTE_REDIS_URL or redis://127.0.0.1:6379/0)",
    )
    demo.add_argument("--partitions", type=int, default=4, metavar="N", help="default: 4")
    demo.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="stop by itself after this long (default: run until Ctrl-C)",
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
        type=int,
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
    console = Console()
    func: Callable[[argparse.Namespace, Console], int] = args.func
    try:
        return func(args, console)
    except (OutrouteError, ValidationError, OSError) as exc:
        print(f"outroute: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
