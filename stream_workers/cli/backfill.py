"""``outroute backfill``: historical decisions with their outcomes, from a file."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Final

from rich.console import Console
from rich.table import Table

from stream_workers.cli._common import (
    COUNT,
    EXIT_INTERRUPTED,
    Commands,
    add_connection_flags,
    add_redis_flags,
    number,
    require_topics,
    settings_from,
)
from stream_workers.errors import WorkerError

__all__ = ["add_commands"]

#: One process more than the cores, as each waits for acknowledgements after a batch.
_WORKERS: Final = min(8, (os.cpu_count() or 1) + 1)


def add_commands(commands: Commands) -> None:
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
        "--rate", type=number(float, above=0), metavar="N", help="send at most N rows/s"
    )
    backfill.add_argument(
        "--workers",
        type=COUNT,
        default=_WORKERS,
        metavar="N",
        help="processes that validate, encode and send batches of rows; one more than the "
        f"cores, as each waits for acknowledgements after a batch (default here: {_WORKERS})",
    )
    backfill.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_connection_flags(backfill)
    add_redis_flags(backfill)
    backfill.set_defaults(func=_backfill)


def _backfill(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from stream_workers.ops.backfill import backfill

    settings = settings_from(args)
    path: Path = args.file
    if not path.is_file():
        raise WorkerError(f"{path}: no such file")
    if not args.dry_run:
        topics = settings.topics()
        require_topics(settings, args.timeout, topics.decisions.name, topics.outcomes.name)
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
        return EXIT_INTERRUPTED
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
