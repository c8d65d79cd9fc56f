"""``outroute backfill``: historical decisions with their outcomes, into the live topics.

Each row of a JSON-lines or CSV file is one decision and its outcome::

    trace_id, goal, path, decided_at, success            required
    score, cost_usd (or cost), latency_ms (or latency),  optional
    occurred_at, failure_category

A valid row becomes a DecisionEvent (candidates ``[path]``, reason ``forced``, service
``backfill``) and an OutcomeEvent (source ``backfill``) with the row's timestamps, also as the
Kafka message timestamps, so windows and decay see them where they happened. ``occurred_at``
defaults to ``decided_at`` plus ``latency_ms``. Bad rows go to the rejects file with their line
number and reason; the run goes on.

Event ids are derived from the row (goal, path, trace id, decision time), and rows are sent in
chunks whose completion is recorded in Redis (``<key prefix>:backfill:<digest>``) once every
message of the chunk was acknowledged: running the same file again skips its chunks and changes
nothing. A run cut short resends its unfinished chunk; the join drops the replayed events by id.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, Final, Literal, TextIO

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import to_json

from schemas import PARTITIONER
from schemas._types import Identifier, NonNegativeFinite, Probability, UtcDatetime
from schemas.events import FailureCategory

from .errors import WorkerError
from .settings import WorkerSettings

__all__ = [
    "BackfillRow",
    "BackfillSummary",
    "Encoded",
    "Format",
    "backfill",
    "encode_row",
    "read_rows",
]

Format = Literal["jsonl", "csv"]
CHUNK_ROWS: Final = 10_000
_BATCH_ROWS: Final = 2_000  # rows per task of a worker process
_FIELDS: Final = (
    "trace_id",
    "goal",
    "path",
    "decided_at",
    "success",
    "score",
    "cost_usd",
    "cost",
    "latency_ms",
    "latency",
    "occurred_at",
    "failure_category",
)


class BackfillRow(BaseModel):
    """One historical decision and its outcome. Strings from CSV are parsed (lax mode)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    trace_id: Identifier
    goal: Identifier
    path: Identifier
    decided_at: UtcDatetime
    success: bool
    score: Probability | None = None
    cost_usd: NonNegativeFinite | None = Field(
        default=None, validation_alias=AliasChoices("cost_usd", "cost")
    )
    latency_ms: NonNegativeFinite | None = Field(
        default=None, validation_alias=AliasChoices("latency_ms", "latency")
    )
    occurred_at: UtcDatetime | None = None
    failure_category: FailureCategory | None = None


#: (Kafka key, decision JSON, outcome JSON, decided ms, occurred ms, the row's digest)
Encoded = tuple[bytes, bytes, bytes, int, int, str]


def encode_row(row: BackfillRow) -> Encoded:
    """The row's two messages, keyed by trace id, and the digest their event ids derive from.

    The events are serialised by pydantic_core from the row's validated fields (the events' own
    types), without building event models: that halves the cost of a row.
    """
    decided_at = row.decided_at
    occurred_at = row.occurred_at
    if occurred_at is None:
        occurred_at = decided_at + timedelta(milliseconds=row.latency_ms or 0)
    decided_ms = int(decided_at.timestamp() * 1000)
    digest = hashlib.blake2b(
        f"{row.goal}\0{row.path}\0{row.trace_id}\0{decided_ms}".encode(), digest_size=12
    ).hexdigest()
    decision = to_json(
        {
            "event_id": f"bf-{digest}.d",
            "trace_id": row.trace_id,
            "goal": row.goal,
            "path": row.path,
            "candidates": [row.path],
            "reason": "forced",
            "decided_at": decided_at,
            "service": "backfill",
        }
    )
    outcome = to_json(
        {
            "event_id": f"bf-{digest}.o",
            "trace_id": row.trace_id,
            "success": row.success,
            "score": row.score,
            "cost_usd": row.cost_usd,
            "latency_ms": row.latency_ms,
            "failure_category": row.failure_category,
            "source": "backfill",
            "occurred_at": occurred_at,
        }
    )
    occurred_ms = int(occurred_at.timestamp() * 1000)
    return row.trace_id.encode(), decision, outcome, decided_ms, occurred_ms, digest


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}" for e in exc.errors()
        )
    return " ".join(str(exc).split()) or type(exc).__name__


#: (line number, the row or None, the raw text, the reason it was rejected or "")
RowResult = tuple[int, BackfillRow | None, str, str]
#: A record as read: (line number, its text (JSON lines) or cells (CSV)).
_Raw = tuple[int, "str | list[str]"]
#: (line number, encoded row or None, raw text, reason): what a batch turns into.
_Encoded = tuple[int, "Encoded | None", str, str]


def _records(source: TextIO, fmt: Format) -> tuple[list[str] | None, Iterator[_Raw]]:
    """The CSV header (None for JSON lines) and the records with their line numbers."""
    if fmt == "jsonl":
        lines = ((n, line) for n, line in enumerate(source, start=1) if line.strip())
        return None, lines
    reader = csv.reader(source)
    header = next(reader, None)
    if header is None:
        return [], iter(())
    header = [h.strip() for h in header]
    unknown = [h for h in header if h not in _FIELDS]
    if unknown:
        raise WorkerError(f"unknown CSV column(s) {unknown}; known columns: {list(_FIELDS)}")
    cells = ((reader.line_num, row) for row in reader if any(c.strip() for c in row))
    return header, cells


def _validate(header: list[str] | None, record: _Raw) -> RowResult:
    number, raw = record
    if isinstance(raw, str):
        try:
            return number, BackfillRow.model_validate_json(raw), raw, ""
        except (ValidationError, ValueError) as exc:
            return number, None, raw, _reason(exc)
    text = ",".join(raw)
    if header is None or len(raw) != len(header):
        return number, None, text, f"{len(raw)} cells, the header has {len(header or ())}"
    data = {k: v for k, v in zip(header, raw, strict=True) if v != ""}
    try:
        return number, BackfillRow.model_validate(data), text, ""
    except (ValidationError, ValueError) as exc:
        return number, None, text, _reason(exc)


def read_rows(source: TextIO, fmt: Format) -> Iterator[RowResult]:
    """Every row of ``source``, validated, with its line number (1-based, as editors count)."""
    header, records = _records(source, fmt)
    for record in records:
        yield _validate(header, record)


def _encode_batch(header: list[str] | None, batch: list[_Raw]) -> list[_Encoded]:
    """Validate and encode a batch of records (run in a worker process when there are several)."""
    encoded: list[_Encoded] = []
    for record in batch:
        number, row, raw, reason = _validate(header, record)
        encoded.append((number, None if row is None else encode_row(row), raw, reason))
    return encoded


def _batches(records: Iterator[_Raw], size: int) -> Iterator[list[_Raw]]:
    batch: list[_Raw] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class BackfillSummary:
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


class _Sender:
    """Produces a chunk's messages and waits until the broker acknowledged all of them."""

    def __init__(self, settings: WorkerSettings, rate: float | None) -> None:
        from confluent_kafka import Producer

        self.rate = rate
        self.sent = 0
        self.started = time.monotonic()

        self.topics = settings.topics()
        self.producer = Producer(
            {
                **settings.kafka_client_config(),
                "partitioner": PARTITIONER,
                "linger.ms": 20,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 500_000,
                "batch.num.messages": 10_000,
                # the delivery callback runs for failures only: one Python call per message
                # less (successes are what flush() returning 0 already says)
                "delivery.report.only.error": True,
                "on_delivery": self._delivered,  # once here, not passed with each message
            }
        )
        self.failures = 0
        self.first_error = ""

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failures += 1
            self.first_error = self.first_error or str(err)

    def send(self, chunk: list[Encoded], timeout: float) -> bool:
        """True when every message of the chunk was acknowledged within ``timeout``."""
        failures = self.failures
        produce, poll = self.producer.produce, self.producer.poll
        decisions, outcomes = self.topics.decisions.name, self.topics.outcomes.name
        for key, decision, outcome, decided_ms, occurred_ms, _ in chunk:
            if self.rate is not None:  # --rate: rows leave at most this fast
                ahead = self.sent / self.rate - (time.monotonic() - self.started)
                if ahead > 0:
                    poll(ahead)  # serves delivery callbacks while waiting
            self.sent += 1
            pairs = ((decisions, decision, decided_ms), (outcomes, outcome, occurred_ms))
            for topic, value, at in pairs:
                while True:
                    try:
                        produce(topic, value, key, timestamp=at)
                        break
                    except BufferError:  # the local queue is full: let deliveries drain it
                        poll(0.05)
        remaining = self.producer.flush(timeout)
        return remaining == 0 and self.failures == failures


def backfill(
    settings: WorkerSettings,
    path: Path,
    *,
    fmt: Format | None = None,
    rejects: TextIO | None = None,
    dry_run: bool = False,
    rate: float | None = None,
    chunk_rows: int = CHUNK_ROWS,
    on_progress: Callable[[int], None] | None = None,
    flush_timeout: float = 60.0,
    workers: int = 1,
) -> BackfillSummary:
    """Validate every row of ``path`` and, unless ``dry_run``, produce the valid ones."""
    fmt = fmt or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    if rate is not None and rate <= 0:
        raise ValueError(f"rate must be > 0 rows/s, got {rate!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers!r}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows!r}")
    summary = BackfillSummary()
    sender = None if dry_run else _Sender(settings, rate)
    redis = None
    if not dry_run:
        import redis as redis_lib

        redis = redis_lib.Redis.from_url(
            settings.redis_url.get_secret_value(), socket_timeout=10, socket_connect_timeout=10
        )
        try:
            redis.ping()
        except redis_lib.RedisError as exc:
            raise WorkerError(
                f"backfill records finished chunks in Redis at {settings.redis_url_redacted}, "
                f"which did not answer: {exc}"
            ) from exc
    marker_prefix = f"{settings.redis_key_prefix}:backfill:{settings.topic_prefix}"
    started = time.monotonic()
    chunk: list[Encoded] = []
    chunk_hash = hashlib.blake2b(digest_size=16)

    def finish_chunk() -> None:
        nonlocal chunk, chunk_hash
        if not chunk:
            return
        rows = len(chunk)
        marker = f"{marker_prefix}:{chunk_hash.hexdigest()}"
        if redis is not None and sender is not None:
            if redis.exists(marker):
                summary.skipped_rows += rows
            elif sender.send(chunk, flush_timeout):
                redis.set(marker, json.dumps({"rows": rows, "file": path.name}))
                summary.produced_rows += rows
            else:
                summary.failed_rows += rows
        chunk, chunk_hash = [], hashlib.blake2b(digest_size=16)

    with ExitStack() as stack:
        source = stack.enter_context(
            path.open(encoding="utf-8", newline="" if fmt == "csv" else None)
        )
        header, records = _records(source, fmt)
        batches = _batches(records, _BATCH_ROWS)
        if workers > 1:  # validation and encoding in parallel, results in file order
            pool = stack.enter_context(
                ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            )
            results = pool.map(partial(_encode_batch, header), batches, chunksize=1)
        else:
            results = (_encode_batch(header, batch) for batch in batches)
        for encoded_batch in results:
            for number, encoded, raw, reason in encoded_batch:
                summary.rows += 1
                if encoded is None:
                    summary.rejected += 1
                    if len(summary.first_rejects) < 10:
                        summary.first_rejects.append(f"line {number}: {reason}")
                    if rejects is not None:
                        record = {"line": number, "reason": reason, "row": raw.rstrip("\n")}
                        rejects.write(json.dumps(record) + "\n")
                    continue
                summary.valid += 1
                chunk.append(encoded)
                chunk_hash.update(encoded[5].encode())
                if len(chunk) >= chunk_rows:  # boundaries depend on the file only: markers
                    finish_chunk()
            if on_progress is not None:
                on_progress(_position(source))
        finish_chunk()
    summary.seconds = time.monotonic() - started
    if sender is not None and summary.failed_rows:
        raise WorkerError(
            f"{summary.failed_rows} rows were not acknowledged by the broker "
            f"({sender.first_error or 'flush timed out'}); run the same file again to send them"
        )
    return summary


def _position(source: TextIO) -> int:
    try:
        return source.buffer.tell() if isinstance(source, io.TextIOWrapper) else 0
    except (OSError, ValueError):
        return 0
