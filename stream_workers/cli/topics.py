"""``outroute topics create`` and ``outroute topics describe``."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from stream_workers.cli._common import Commands, add_connection_flags, add_group, settings_from
from stream_workers.ops.topics import (
    TopicStatus,
    check_copartitioned,
    create_topics,
    describe_topics,
)

__all__ = ["add_commands"]


def add_commands(commands: Commands) -> None:
    topic_commands = add_group(commands, "topics", "create and inspect outroute's Kafka topics")
    create = topic_commands.add_parser(
        "create",
        help="create missing topics (idempotent)",
        description="Create every missing outroute topic with its partition count. Existing "
        "topics are left alone. Fails if decisions and outcomes differ in partition count.",
    )
    add_connection_flags(create, creating=True)
    create.add_argument("--json", action="store_true", help="one JSON object per topic")
    create.set_defaults(func=_create)
    describe = topic_commands.add_parser(
        "describe",
        help="show the topics and check that decisions and outcomes are co-partitioned",
    )
    add_connection_flags(describe)
    describe.add_argument("--json", action="store_true", help="one JSON object per topic")
    describe.set_defaults(func=_describe)


def _create(args: argparse.Namespace, console: Console) -> int:
    statuses = create_topics(settings_from(args), timeout=args.timeout)
    _print_topics(statuses, args.json, console)
    return 0


def _describe(args: argparse.Namespace, console: Console) -> int:
    settings = settings_from(args)
    statuses = describe_topics(settings, timeout=args.timeout)
    _print_topics(statuses, args.json, console)
    check_copartitioned({s.name: s.partitions for s in statuses}, settings.topics())
    return 0


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
