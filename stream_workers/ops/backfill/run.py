"""A backfill run: the file's batches validated, sent unless a run before finished them, each
finished batch recorded in Redis, and a summary."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO

from stream_workers.clients import sync_redis
from stream_workers.errors import WorkerError
from stream_workers.ops.backfill.rows import (
    BATCH_ROWS,
    Format,
    batch_digest,
    cut_batches,
    format_of,
    open_rows,
)
from stream_workers.ops.backfill.send import Job, Planned, run_batches
from stream_workers.settings import WorkerSettings

__all__ = ["BackfillSummary", "backfill"]


@dataclass
class BackfillSummary:
    """What a run did, row by row: counts, time, and the first ten rejects."""

    rows: int = 0
    valid: int = 0
    rejected: int = 0
    produced_rows: int = 0
    skipped_rows: int = 0  # in chunks an earlier run completed
    failed_rows: int = 0  # not acknowledged by the broker
    seconds: float = 0.0
    first_rejects: list[str] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "valid": self.valid,
            "rejected": self.rejected,
            "produced_rows": self.produced_rows,
            "skipped_rows": self.skipped_rows,
            "failed_rows": self.failed_rows,
            "seconds": round(self.seconds, 3),
            "rows_per_s": round(self.rows_per_s),
            "first_rejects": self.first_rejects,
        }


def backfill(
    settings: WorkerSettings,
    path: Path,
    *,
    fmt: Format | None = None,
    rejects: TextIO | None = None,
    dry_run: bool = False,
    rate: float | None = None,
    batch_rows: int = BATCH_ROWS,
    on_progress: Callable[[int], None] | None = None,
    flush_timeout: float = 60.0,
    workers: int = 1,
) -> BackfillSummary:
    """Validate every row of ``path`` and, unless ``dry_run``, produce the valid ones.

    Batches of ``batch_rows`` rows are validated, encoded and produced by one process each
    (``workers`` processes; 1: this one); a batch whose messages were all acknowledged is
    recorded in Redis and skipped when the same file is backfilled again. Worker processes are
    spawned: a script calling this with ``workers`` > 1 needs the ``if __name__ ==
    "__main__":`` guard.
    """
    fmt = fmt or format_of(path)
    if rate is not None and rate <= 0:
        raise ValueError(f"rate must be > 0 rows/s, got {rate!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers!r}")
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be >= 1, got {batch_rows!r}")
    redis = None if dry_run else sync_redis(settings, "backfill (it records finished batches)")
    marker_prefix = f"{settings.redis_key_prefix}:backfill:{settings.topic_prefix}"
    summary = BackfillSummary()
    started = time.monotonic()
    with ExitStack() as stack:
        source = stack.enter_context(open_rows(path, fmt))
        header, batches = cut_batches(source, fmt, batch_rows)
        job = Job(settings, header, None if rate is None else rate / workers, flush_timeout)

        def planned() -> Iterator[Planned]:
            for batch in batches:
                marker = f"{marker_prefix}:{batch_digest(batch)}"
                done = redis is not None and bool(redis.exists(marker))
                yield batch, not dry_run and not done, marker

        first_error = ""
        results = run_batches(job, planned(), workers, stack)
        for (valid, bad, acked, error), (_, send, marker) in results:
            summary.rows += valid + len(bad)
            summary.valid += valid
            summary.rejected += len(bad)
            for number, raw, reason in bad:
                if len(summary.first_rejects) < 10:
                    summary.first_rejects.append(f"line {number}: {reason}")
                if rejects is not None:
                    record = {"line": number, "reason": reason, "row": raw.rstrip("\n")}
                    rejects.write(json.dumps(record) + "\n")
            if dry_run:
                pass
            elif not send:
                summary.skipped_rows += valid
            elif acked:
                if redis is not None:
                    redis.set(marker, json.dumps({"rows": valid + len(bad), "file": path.name}))
                summary.produced_rows += valid
            else:
                summary.failed_rows += valid
                first_error = first_error or error
            if on_progress is not None:
                on_progress(_position(source))
    summary.seconds = time.monotonic() - started
    if summary.failed_rows:
        raise WorkerError(
            f"{summary.failed_rows} rows were not acknowledged by the broker "
            f"({first_error or 'flush timed out'}); run the same file again to send them"
        )
    return summary


def _position(source: IO[Any]) -> int:
    """Bytes read so far (for the progress bar)."""
    try:
        return source.buffer.tell() if isinstance(source, io.TextIOWrapper) else source.tell()
    except (OSError, ValueError):
        return 0
