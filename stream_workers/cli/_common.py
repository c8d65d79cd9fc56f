"""What the command groups share: argparse types with bounds, the connection and Redis flags,
settings from the environment and the flags, the check that topics exist, and the way a
failure is reported."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, Final, TypeAlias

from pydantic import ValidationError
from rich.console import Console

from stream_workers.errors import WorkerError
from stream_workers.ops.topics import describe_topics
from stream_workers.settings import WorkerSettings

__all__ = [
    "COUNT",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "PORT",
    "SECONDS",
    "Command",
    "Commands",
    "add_connection_flags",
    "add_group",
    "add_redis_flags",
    "number",
    "one_line",
    "require_topics",
    "settings_from",
]

EXIT_FAILURE: Final = 1
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT, as shells report Ctrl-C

#: The subcommands of ``outroute`` or of a group, as ``add_subparsers`` returns them.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
#: What a command runs: the parsed flags and the console of stdout, to an exit code.
Command: TypeAlias = Callable[[argparse.Namespace, Console], int]


def number(
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


SECONDS: Final = number(float, above=0)
COUNT: Final = number(int, at_least=1)
PORT: Final = number(int, at_least=1, at_most=65535)


def add_group(commands: Commands, name: str, summary: str) -> Commands:
    """A command that only groups others (``outroute topics ...``): its subcommands."""
    group = commands.add_parser(name, help=summary)
    return group.add_subparsers(title="commands", metavar="COMMAND", required=True)


def settings_from(args: argparse.Namespace) -> WorkerSettings:
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


def add_connection_flags(parser: argparse.ArgumentParser, *, creating: bool = False) -> None:
    group = parser.add_argument_group("connection (default: OUTROUTE_* environment)")
    group.add_argument("--bootstrap-servers", metavar="HOST:PORT", help="Kafka bootstrap servers")
    group.add_argument("--topic-prefix", metavar="PREFIX", help="prefix of the topic names")
    group.add_argument(
        "--timeout",
        type=SECONDS,
        default=10.0,
        metavar="SECONDS",
        help="give up on an unreachable broker after this long (default 10)",
    )
    if creating:
        group.add_argument(
            "--partitions",
            type=COUNT,
            metavar="N",
            help="partitions of decisions, outcomes and path-deltas (default 12)",
        )
        group.add_argument(
            "--replication-factor", type=COUNT, metavar="N", help="replication factor (default 1)"
        )


def add_redis_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Redis (default: OUTROUTE_* environment)")
    group.add_argument("--redis-url", metavar="URL", help="Redis URL")
    group.add_argument("--redis-key-prefix", metavar="PREFIX", help="prefix of the Redis keys")


def require_topics(settings: WorkerSettings, timeout: float, *names: str) -> None:
    """Fail fast, naming what is wrong, when the broker is unreachable or a topic is missing."""
    missing = [s.name for s in describe_topics(settings, timeout=timeout) if s.partitions is None]
    absent = sorted(set(missing) & set(names))
    if absent:
        raise WorkerError(
            f"topic(s) {absent} do not exist on {settings.bootstrap_servers}; "
            "create them with `outroute topics create`"
        )


def one_line(exc: BaseException) -> str:
    """A failure as the one line after ``outroute: error:``."""
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"
            for err in exc.errors()
        )
        return f"invalid settings: {problems}"
    return " ".join(str(exc).split()) or type(exc).__name__
