"""``outroute backfill``: historical decisions with their outcomes, into the live topics.

Each row of a JSON-lines or CSV file is one decision and its outcome::

    trace_id, goal, path, decided_at, success            required
    score, cost_usd (or cost), latency_ms (or latency),  optional
    occurred_at, failure_category

A valid row becomes a DecisionEvent (candidates ``[path]``, reason ``forced``, service
``backfill``) and an OutcomeEvent (source ``backfill``) with the row's timestamps, so windows
and decay see them where they happened. The Kafka messages carry the time they are sent, not the
row's: Kafka's time-based retention deletes a segment whose newest message timestamp is older
than ``retention.ms`` at its next check (every 5 minutes by default), so history sent with its
own timestamps would vanish before a stopped or lagging worker read it. ``occurred_at``
defaults to ``decided_at`` plus ``latency_ms``. Bad rows, including rows whose bytes are not
UTF-8, go to the rejects file with their line number and reason; the run goes on.

Event ids are derived from the row (goal, path, trace id, decision time). Rows are sent in
batches of 5,000 lines, and a batch whose messages were all acknowledged is recorded in Redis
(``<key prefix>:backfill:<topic prefix>:<digest of its lines>``): running the same file again
skips its batches and changes nothing. A run cut short resends its unfinished batches; the join
drops the replayed events by id. With ``workers`` > 1, batches are validated, encoded and sent by
that many processes, and reported in file order.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import IO, Annotated, Any, Final, Literal, NotRequired, TextIO

from pydantic import (
    AliasChoices,
    AwareDatetime,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    with_config,
)
from pydantic_core import to_json
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from schemas import PARTITIONER
from schemas._types import Identifier, NonNegativeFinite, Probability
from schemas.events import FailureCategory
from stream_workers.clients import sync_redis
from stream_workers.errors import WorkerError
from stream_workers.settings import WorkerSettings

__all__ = [
    "ROW",
    "BackfillRow",
    "BackfillSummary",
    "Encoded",
    "Format",
    "backfill",
    "encode_row",
    "producer_config",
    "read_rows",
]

Format = Literal["jsonl", "csv"]
BATCH_ROWS: Final = 5_000  # rows validated, sent and recorded together
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


@with_config(ConfigDict(extra="forbid", hide_input_in_errors=True))
class BackfillRow(TypedDict):
    """One historical decision and its outcome, as validated. Strings from CSV are parsed (lax
    mode). A TypedDict, not a model: validating into a dict costs less than half as much per
    row, and a backfill validates millions of rows."""

    trace_id: Identifier
    goal: Identifier
    path: Identifier
    decided_at: AwareDatetime
    success: bool
    score: NotRequired[Probability | None]
    cost_usd: NotRequired[
        Annotated[
            NonNegativeFinite | None, Field(validation_alias=AliasChoices("cost_usd", "cost"))
        ]
    ]
    latency_ms: NotRequired[
        Annotated[
            NonNegativeFinite | None,
            Field(validation_alias=AliasChoices("latency_ms", "latency")),
        ]
    ]
    occurred_at: NotRequired[AwareDatetime | None]
    failure_category: NotRequired[FailureCategory | None]


ROW: Final[TypeAdapter[BackfillRow]] = TypeAdapter(BackfillRow)


#: (Kafka key, decision JSON, outcome JSON, decided ms, occurred ms, the row's digest)
Encoded = tuple[bytes, bytes, bytes, int, int, str]


def encode_row(row: BackfillRow, *, latest_ms: int | None = None) -> Encoded:
    """The row's two messages, keyed by trace id, and the digest their event ids derive from.

    The JSON is assembled from the row's validated fields (the events' own types): identifiers
    match IDENTIFIER_PATTERN and failure categories come from a fixed list, so neither needs
    escaping; timestamps and numbers are serialised by pydantic_core in one call. A unit test
    parses the result with the event models. Building event models instead costs twice as
    much per row.

    Raises ValueError, naming the field, for a time a Kafka timestamp cannot hold (before 1970)
    or later than ``latest_ms``: a row from the future would move the pipeline's event-time
    clocks past the live traffic, which would then look stale.
    """
    latency = row.get("latency_ms")
    occurred_at = row.get("occurred_at")
    field = "decided_at"
    try:  # OverflowError: within a day of the years 1 and 9999
        # Any offset becomes UTC ("...Z"), as the events' types do; datetime.UTC also makes
        # timestamp() three times cheaper than the tzinfo the validator attaches.
        decided_at = row["decided_at"].astimezone(UTC)
        field = "occurred_at"
        if occurred_at is None:
            occurred_at = decided_at + timedelta(milliseconds=latency or 0)
        else:
            occurred_at = occurred_at.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{field}: out of the range of dates (years 1 to 9999)") from None
    decided_ms = int(decided_at.timestamp() * 1000)
    occurred_ms = int(occurred_at.timestamp() * 1000)
    latest = _MAX_MS if latest_ms is None else latest_ms
    if not (0 <= decided_ms <= latest and 0 <= occurred_ms <= latest):
        raise ValueError(_out_of_range(decided_at, decided_ms, occurred_at, occurred_ms, latest))
    trace, goal, path = row["trace_id"], row["goal"], row["path"]
    digest = hashlib.blake2b(
        f"{goal}\0{path}\0{trace}\0{decided_ms}".encode(), digest_size=12
    ).hexdigest()
    # '["<decided>","<occurred>",<score>,<cost>,<latency>]': no value holds a comma
    decided, occurred, score, cost, latency_json = (
        to_json((decided_at, occurred_at, row.get("score"), row.get("cost_usd"), latency))[1:-1]
        .decode()
        .split(",")
    )
    failure = row.get("failure_category")
    category = "null" if failure is None else f'"{failure}"'
    decision = (
        f'{{"event_id":"bf-{digest}.d","trace_id":"{trace}","goal":"{goal}",'
        f'"path":"{path}","candidates":["{path}"],"reason":"forced","decided_at":{decided},'
        f'"service":"backfill"}}'
    )
    outcome = (
        f'{{"event_id":"bf-{digest}.o","trace_id":"{trace}",'
        f'"success":{"true" if row["success"] else "false"},"score":{score},"cost_usd":{cost},'
        f'"latency_ms":{latency_json},"failure_category":{category},"source":"backfill",'
        f'"occurred_at":{occurred}}}'
    )
    return trace.encode(), decision.encode(), outcome.encode(), decided_ms, occurred_ms, digest


_MAX_MS: Final = 2**63 - 1  # Kafka timestamps are 64-bit milliseconds


def _latest_ms(max_clock_skew: float) -> int:
    """The latest time a row may carry: now, and the clock skew the workers accept."""
    return int((time.time() + max_clock_skew) * 1000)


def _out_of_range(
    decided_at: datetime, decided_ms: int, occurred_at: datetime, occurred_ms: int, latest: int
) -> str:
    field, at, ms = (
        ("decided_at", decided_at, decided_ms)
        if not 0 <= decided_ms <= latest
        else ("occurred_at", occurred_at, occurred_ms)
    )
    if ms < 0:
        return f"{field}: {at.isoformat()} is before 1970, where Kafka timestamps start"
    return f"{field}: {at.isoformat()} is in the future; a backfill is history"


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}" for e in exc.errors()
        )
    return " ".join(str(exc).split()) or type(exc).__name__


#: (line number, the row or None, the raw text, the reason it was rejected or "")
RowResult = tuple[int, BackfillRow | None, str, str]
#: A batch as read. JSON lines: (number of its first line, the lines as they are in the file),
#: so a process gets one bytes object per batch and validates bytes, with no decoding on the
#: way. CSV: (line number, cells) per record.
_JsonChunk = tuple[int, bytes]
_CsvRecords = list[tuple[int, list[str]]]
_Batch = _JsonChunk | _CsvRecords


def _not_utf8(raw: bytes, exc: UnicodeDecodeError) -> str:
    return f"not UTF-8: byte 0x{raw[exc.start]:02x} at column {exc.start + 1}"


def _validate_line(number: int, line: bytes, latest_ms: int) -> RowResult:
    """One JSON line (without its newline) validated, or the reasons it was rejected."""
    try:
        text = line.decode().rstrip("\r")
    except UnicodeDecodeError as exc:
        return number, None, _clip(line.decode(errors="backslashreplace")), _not_utf8(line, exc)
    try:
        row = ROW.validate_json(line)
        encode_row(row, latest_ms=latest_ms)  # its times
    except (ValidationError, ValueError) as exc:
        return number, None, _clip(text), _reason(exc)
    return number, row, text, ""


#: A rejected row longer than this is cut in the rejects file (a whole JSON array on one line,
#: say, is one bad row, not a copy of the file).
MAX_REJECT_CHARS: Final = 10_000


def _clip(text: str) -> str:
    if len(text) <= MAX_REJECT_CHARS:
        return text
    return f"{text[:MAX_REJECT_CHARS]}... ({len(text) - MAX_REJECT_CHARS:,} more characters)"


def _validate_cells(header: list[str], number: int, cells: list[str], latest_ms: int) -> RowResult:
    """One CSV record validated (strings parsed in lax mode), or the reasons it was rejected."""
    text = ",".join(cells)
    if len(cells) != len(header):
        return number, None, _shown(text), f"{len(cells)} cells, the header has {len(header)}"
    try:
        row = ROW.validate_python(_cells_dict(header, cells))
        encode_row(row, latest_ms=latest_ms)  # its times
    except (ValidationError, ValueError) as exc:
        # no field accepts a byte that is not UTF-8, so that check waits for a failure
        return number, None, _shown(text), _undecodable(header, cells) or _reason(exc)
    return number, row, text, ""


def _cells_dict(header: list[str], cells: list[str]) -> dict[str, str]:
    """A CSV record as the row's fields; empty cells are absent fields."""
    return {k: v for k, v in zip(header, cells, strict=True) if v != ""}


def _undecodable(header: list[str], cells: list[str]) -> str:
    """Why a CSV record read with surrogateescape is not UTF-8, or ""."""
    for column, cell in zip(header, cells, strict=True):
        try:
            cell.encode()
        except UnicodeEncodeError as exc:
            byte = ord(cell[exc.start]) - 0xDC00
            return f"not UTF-8: byte 0x{byte:02x} in column {column}"
    return ""


def _shown(text: str) -> str:
    """CSV text as the rejects file shows it: undecodable bytes as \\xNN, like JSON lines."""
    return _clip(text.encode(errors="surrogateescape").decode(errors="backslashreplace"))


def _json_lines(chunk: _JsonChunk) -> Iterator[tuple[int, bytes]]:
    """The non-blank lines of a chunk with their numbers."""
    first, blob = chunk
    lines = blob.split(b"\n")
    if not lines[-1]:
        lines.pop()  # after the last newline
    for number, line in enumerate(lines, start=first):
        if line.strip():
            yield number, line


def _csv_header(source: IO[str]) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    reader = csv.reader(source)
    header = [h.strip() for h in next(reader, [])]
    unknown = [h for h in header if h not in _FIELDS]
    if unknown:
        raise WorkerError(f"unknown CSV column(s) {unknown}; known columns: {list(_FIELDS)}")
    records = ((reader.line_num, row) for row in reader if any(c.strip() for c in row))
    return header, records


def _open(path: Path, fmt: Format) -> IO[Any]:
    """JSON lines as bytes; CSV as text, keeping undecodable bytes so their rows are rejected
    with the reason (and the rest of the file still read). A leading byte-order mark, as
    spreadsheet exports write, is skipped."""
    if fmt == "jsonl":
        source = path.open("rb")
        if source.peek(len(codecs.BOM_UTF8)).startswith(codecs.BOM_UTF8):
            source.read(len(codecs.BOM_UTF8))
        return source
    return path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")


def read_rows(
    path: Path, fmt: Format | None = None, *, max_clock_skew: float | None = None
) -> Iterator[RowResult]:
    """Every non-blank row of ``path`` validated, with its line number (1-based, as editors
    count), as the backfill reads it. Rows dated more than ``max_clock_skew`` seconds after now
    are rejected (default: the workers' setting)."""
    fmt = fmt or _format_of(path)
    default = WorkerSettings.model_fields["max_clock_skew"].default
    skew = default if max_clock_skew is None else max_clock_skew
    latest_ms = _latest_ms(skew)
    with _open(path, fmt) as source:
        header, batches = _batches(source, fmt, BATCH_ROWS)
        for batch in batches:
            if isinstance(batch, tuple):
                for number, line in _json_lines(batch):
                    yield _validate_line(number, line, latest_ms)
            else:
                for number, cells in batch:
                    yield _validate_cells(header, number, cells, latest_ms)


def _format_of(path: Path) -> Format:
    return "csv" if path.suffix.lower() == ".csv" else "jsonl"


def _batches(source: IO[Any], fmt: Format, size: int) -> tuple[list[str], Iterator[_Batch]]:
    """The CSV header ([] for JSON lines) and the file cut into batches of ``size`` lines
    (JSON lines) or records (CSV)."""
    if fmt == "jsonl":

        def chunks() -> Iterator[_JsonChunk]:
            first = 1
            while lines := list(islice(source, size)):
                yield first, b"".join(lines)
                first += len(lines)

        return [], chunks()
    header, records = _csv_header(source)

    def groups() -> Iterator[_CsvRecords]:
        while batch := list(islice(records, size)):
            yield batch

    return header, groups()


def _batch_digest(batch: _Batch) -> str:
    """Identifies a batch by its content: the same file cut the same way gives the same
    digests, whatever the number of processes."""
    if isinstance(batch, tuple):
        data = batch[1]
    else:
        data = "\n".join("\x1f".join(cells) for _, cells in batch).encode(errors="surrogateescape")
    return hashlib.blake2b(data, digest_size=16).hexdigest()


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


def producer_config(settings: WorkerSettings) -> dict[str, Any]:
    """librdkafka settings for bulk sends: large lz4 batches, a deep local queue."""
    return {
        **settings.kafka_client_config(),
        "partitioner": PARTITIONER,
        "linger.ms": 20,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
        "batch.num.messages": 10_000,
    }


class _Sender:
    """Produces messages and waits until the broker acknowledged them."""

    def __init__(self, settings: WorkerSettings, rate: float | None) -> None:
        from confluent_kafka import Producer

        self.rate = rate
        self.sent = 0
        self.started = time.monotonic()
        self.topics = settings.topics()
        self.producer = Producer(
            {
                **producer_config(settings),
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

    def send(self, rows: list[Encoded], timeout: float) -> bool:
        """True when every message of ``rows`` was acknowledged within ``timeout``."""
        failures = self.failures
        produce, poll = self.producer.produce, self.producer.poll
        decisions, outcomes = self.topics.decisions.name, self.topics.outcomes.name
        for key, decision, outcome, _, _, _ in rows:
            if self.rate is not None:  # --rate: rows leave at most this fast
                ahead = self.sent / self.rate - (time.monotonic() - self.started)
                if ahead > 0:
                    poll(ahead)  # serves delivery callbacks while waiting
            self.sent += 1
            for topic, value in ((decisions, decision), (outcomes, outcome)):
                while True:
                    try:
                        produce(topic, value, key)
                        break
                    except BufferError:  # the local queue is full: let deliveries drain it
                        poll(0.05)
        remaining = self.producer.flush(timeout)
        return remaining == 0 and self.failures == failures


@dataclass
class _Job:
    """What every batch of one run shares (sent to worker processes once)."""

    settings: WorkerSettings
    header: list[str]  # CSV; [] for JSON lines
    rate: float | None  # rows/s of this process
    flush_timeout: float


#: (valid rows, rejects as (line, raw, reason), acknowledged, first delivery error)
_BatchResult = tuple[int, list[tuple[int, str, str]], bool, str]


class _BatchRunner:
    """Validates, encodes and (when asked) sends batches; one per process."""

    def __init__(self, job: _Job) -> None:
        self.job = job
        self.sender: _Sender | None = None

    def __call__(self, batch: _Batch, send: bool) -> _BatchResult:
        encoded: list[Encoded] = []
        rejects: list[tuple[int, str, str]] = []
        latest_ms = _latest_ms(self.job.settings.max_clock_skew)
        if isinstance(batch, tuple):  # JSON lines: the common case, validated inline
            validate_json = ROW.validate_json
            for number, line in _json_lines(batch):
                try:
                    encoded.append(encode_row(validate_json(line), latest_ms=latest_ms))
                except (ValidationError, ValueError):
                    _, _, text, reason = _validate_line(number, line, latest_ms)  # says why
                    rejects.append((number, text, reason))
        else:
            header, validate = self.job.header, ROW.validate_python
            for number, cells in batch:
                try:
                    if len(cells) == len(header):
                        row = validate(_cells_dict(header, cells))
                        encoded.append(encode_row(row, latest_ms=latest_ms))
                        continue
                except (ValidationError, ValueError):
                    pass
                _, _, text, reason = _validate_cells(header, number, cells, latest_ms)  # says why
                rejects.append((number, text, reason))
        if not send or not encoded:
            return len(encoded), rejects, True, ""
        if self.sender is None:
            self.sender = _Sender(self.job.settings, self.job.rate)
        acked = self.sender.send(encoded, self.job.flush_timeout)
        return len(encoded), rejects, acked, self.sender.first_error


_runner: _BatchRunner | None = None  # the runner of a worker process (set by its initializer)


def _start_worker(job: _Job) -> None:
    global _runner
    _runner = _BatchRunner(job)


def _run_in_worker(batch: _Batch, send: bool) -> _BatchResult:
    if _runner is None:
        raise RuntimeError("backfill worker process was not initialised")
    return _runner(batch, send)


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
    fmt = fmt or _format_of(path)
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
        source = stack.enter_context(_open(path, fmt))
        header, batches = _batches(source, fmt, batch_rows)
        job = _Job(settings, header, None if rate is None else rate / workers, flush_timeout)

        def planned() -> Iterator[tuple[_Batch, str, bool]]:
            for batch in batches:
                marker = f"{marker_prefix}:{_batch_digest(batch)}"
                done = redis is not None and bool(redis.exists(marker))
                yield batch, marker, not dry_run and not done

        def run() -> Iterator[tuple[_BatchResult, tuple[_Batch, str, bool]]]:
            if workers == 1:
                runner = _BatchRunner(job)
                for item in planned():
                    yield runner(item[0], item[2]), item
                return
            pool = stack.enter_context(
                ProcessPoolExecutor(
                    workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_worker,
                    initargs=(job,),
                )
            )
            # A bounded window of batches in flight (memory stays bounded whatever the file
            # size); results are taken in file order.
            in_flight: deque[tuple[Future[_BatchResult], tuple[_Batch, str, bool]]] = deque()
            for item in planned():
                in_flight.append((pool.submit(_run_in_worker, item[0], item[2]), item))
                if len(in_flight) >= 2 * workers:
                    future, done = in_flight.popleft()
                    yield future.result(), done
            while in_flight:
                future, done = in_flight.popleft()
                yield future.result(), done

        first_error = ""
        for (valid, bad, acked, error), (_, marker, send) in run():
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
