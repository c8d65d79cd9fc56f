"""``outroute path disable|enable``, ``outroute goal pin|unpin`` and ``outroute overrides``."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from stream_workers.cli._common import (
    COUNT,
    Commands,
    add_connection_flags,
    add_group,
    add_redis_flags,
    settings_from,
)
from stream_workers.errors import WorkerError

if TYPE_CHECKING:
    from schemas.overrides import GoalOverrides, OverrideRecord

__all__ = ["add_commands"]

_WITHIN = "every router of the goal follows it within its snapshot bound (under a second)"
#: The command-line name of each field of a record, for error messages.
_ARGUMENT = {"goal": "GOAL", "path": "PATH", "reason": "--reason", "by": "--by"}
_FOR_HELP = "end by itself after DURATION: 90s, 30m, 2h, 1d (default: until undone)"


def _duration(text: str) -> timedelta:
    from stream_workers.ops.overrides import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("duration: ")) from None


def _change_flags(parser: argparse.ArgumentParser, *, lasting: bool) -> None:
    if lasting:
        parser.add_argument(
            "--for", dest="duration", type=_duration, metavar="DURATION", help=_FOR_HELP
        )
    parser.add_argument("--reason", metavar="TEXT", help="why, for the record (<= 500 chars)")
    parser.add_argument(
        "--by", metavar="NAME", help="who, for the record (default: the OS user name)"
    )
    parser.add_argument("--json", action="store_true", help="print the record and the result")
    add_connection_flags(parser)
    add_redis_flags(parser)


def add_commands(commands: Commands) -> None:
    paths = add_group(commands, "path", "take a path out of rotation for every router, or back")
    disable = paths.add_parser(
        "disable",
        help="stop every router of GOAL from choosing PATH",
        description=f"Disable PATH of GOAL: {_WITHIN}, and never chooses it (exploration "
        "included) until it is enabled or DURATION has passed. Refused when it would disable "
        "every path of the goal, when PATH is not in the goal's snapshot, or when the goal is "
        "pinned to PATH. The change is recorded on the overrides topic first (who, when, why, "
        "until when), then applied in Redis.",
    )
    disable.add_argument("goal", metavar="GOAL")
    disable.add_argument("path", metavar="PATH")
    _change_flags(disable, lasting=True)
    disable.set_defaults(func=_change, action="disable")
    enable = paths.add_parser(
        "enable",
        help="put a disabled PATH of GOAL back into rotation",
        description=f"Enable PATH of GOAL again: {_WITHIN}.",
    )
    enable.add_argument("goal", metavar="GOAL")
    enable.add_argument("path", metavar="PATH")
    _change_flags(enable, lasting=False)
    enable.set_defaults(func=_change, action="enable")

    goals = add_group(commands, "goal", "pin a goal to one path for every router, or unpin it")
    pin = goals.add_parser(
        "pin",
        help="make every decision of GOAL take PATH",
        description=f"Pin GOAL to PATH: {_WITHIN}, and every decision takes PATH (reason "
        "'override') until the goal is unpinned or DURATION has passed; a caller's force_path "
        "still wins. Replaces an earlier pin. Refused when PATH is disabled or not in the "
        "goal's snapshot.",
    )
    pin.add_argument("goal", metavar="GOAL")
    pin.add_argument("path", metavar="PATH")
    _change_flags(pin, lasting=True)
    pin.set_defaults(func=_change, action="pin")
    unpin = goals.add_parser(
        "unpin",
        help="let the routers of GOAL choose again",
        description=f"Remove the pin of GOAL: {_WITHIN}.",
    )
    unpin.add_argument("goal", metavar="GOAL")
    _change_flags(unpin, lasting=False)
    unpin.set_defaults(func=_change, action="unpin", path=None)

    show = commands.add_parser(
        "overrides",
        help="show the overrides in force for GOAL and its recent changes",
        description="The disabled paths and the pin of GOAL in force now (who, when, why, "
        "until when), then its most recent changes, newest first.",
    )
    show.add_argument("goal", metavar="GOAL")
    show.add_argument(
        "--limit", type=COUNT, default=20, metavar="N", help="changes shown (default 20)"
    )
    show.add_argument("--json", action="store_true", help="one JSON object: active and log")
    add_redis_flags(show)
    show.set_defaults(func=_show)


def _os_user() -> str:
    """The OS user's name as an identifier (characters outside the identifier set become _)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, as in some containers
        name = f"uid-{os.getuid()}"
    name = re.sub(r"[^A-Za-z0-9_.:/@+=-]", "_", name)[:128]
    return name if name[:1].isalnum() else f"u{name}"[:128]


def _change(args: argparse.Namespace, console: Console) -> int:
    from schemas.overrides import OverrideRecord
    from stream_workers.ops.overrides import apply

    at = datetime.now(UTC)
    duration: timedelta | None = getattr(args, "duration", None)
    try:
        record = OverrideRecord(
            event_id=uuid.uuid4().hex,
            goal=args.goal,
            action=args.action,
            path=args.path,
            reason=args.reason or None,
            by=args.by or _os_user(),
            at=at,
            until=None if duration is None else at + duration,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else ""
        raise WorkerError(f"{_ARGUMENT.get(name, name)}: {error['msg']}") from None
    result = apply(settings_from(args), record, timeout=args.timeout)
    if args.json:
        applied = record.model_dump(mode="json")
        print(json.dumps({"applied": applied, "overrides": result.model_dump(mode="json")}))
    else:
        print(_sentence(record))
    return 0


def _when(moment: datetime | None) -> str:
    return "until undone" if moment is None else f"until {moment:%Y-%m-%d %H:%M:%SZ}"


def _sentence(record: OverrideRecord) -> str:
    goal, path = record.goal, record.path
    done = {
        "disable": f"disabled path {path} of goal {goal} {_when(record.until)}",
        "enable": f"enabled path {path} of goal {goal}",
        "pin": f"pinned goal {goal} to path {path} {_when(record.until)}",
        "unpin": f"unpinned goal {goal}",
    }[record.action]
    return f"{done}; {_WITHIN}"


def _show(args: argparse.Namespace, console: Console) -> int:
    from stream_workers.clients import sync_redis
    from stream_workers.ops.overrides import current, log

    settings = settings_from(args)
    redis = sync_redis(settings, "reading overrides")
    active = current(settings, args.goal, redis=redis)
    records = log(settings, args.goal, args.limit, redis=redis)
    if args.json:
        print(
            json.dumps(
                {
                    "goal": args.goal,
                    "active": None if active is None else active.model_dump(mode="json"),
                    "log": [r.model_dump(mode="json") for r in records],
                }
            )
        )
        return 0
    _print_active(console, args.goal, active)
    _print_log(console, args.goal, records)
    return 0


def _print_active(console: Console, goal: str, active: GoalOverrides | None) -> None:
    if active is None:
        console.print(f"goal {goal}: no override in force")
        return
    table = Table(title=f"{goal}: overrides in force", title_justify="left")
    for column in ("path", "override", "by", "since", "until", "reason"):
        table.add_column(column)
    rows: list[tuple[str, str, Any]] = [(p, "disabled", e) for p, e in active.disabled.items()]
    if active.pinned is not None:
        rows.insert(0, (active.pinned.path, "pinned", active.pinned))
    for path, kind, entry in rows:
        table.add_row(
            path,
            kind,
            entry.by,
            f"{entry.at:%Y-%m-%d %H:%M:%SZ}",
            "-" if entry.until is None else f"{entry.until:%Y-%m-%d %H:%M:%SZ}",
            entry.reason or "",
        )
    console.print(table)


def _print_log(console: Console, goal: str, records: list[OverrideRecord]) -> None:
    if not records:
        console.print(f"goal {goal}: no recorded change")
        return
    table = Table(title=f"{goal}: recent changes, newest first", title_justify="left")
    for column in ("at", "action", "path", "by", "until", "reason"):
        table.add_column(column)
    for record in records:
        table.add_row(
            f"{record.at:%Y-%m-%d %H:%M:%SZ}",
            record.action,
            record.path or "-",
            record.by,
            "-" if record.until is None else f"{record.until:%Y-%m-%d %H:%M:%SZ}",
            record.reason or "",
        )
    console.print(table)
