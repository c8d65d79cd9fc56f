"""Reading a backfill file: JSON lines or CSV, cut into batches; each row validated, or
rejected with its line number and the reason."""

from __future__ import annotations

import codecs
import csv
import hashlib
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import IO, Any, Final, Literal

from pydantic import ValidationError

from stream_workers.errors import WorkerError
from stream_workers.ops.backfill.encode import ROW, BackfillRow, encode_row, latest_allowed_ms
from stream_workers.settings import WorkerSettings

__all__ = [
    "BATCH_ROWS",
    "MAX_REJECT_CHARS",
    "Batch",
    "CsvRecords",
    "Format",
    "JsonChunk",
    "RowResult",
    "batch_digest",
    "cells_dict",
    "cut_batches",
    "format_of",
    "json_lines",
    "open_rows",
    "read_rows",
    "validate_cells",
    "validate_line",
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
JsonChunk = tuple[int, bytes]
CsvRecords = list[tuple[int, list[str]]]
Batch = JsonChunk | CsvRecords


def _not_utf8(raw: bytes, exc: UnicodeDecodeError) -> str:
    return f"not UTF-8: byte 0x{raw[exc.start]:02x} at column {exc.start + 1}"


def validate_line(number: int, line: bytes, latest_ms: int) -> RowResult:
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


def validate_cells(header: list[str], number: int, cells: list[str], latest_ms: int) -> RowResult:
    """One CSV record validated (strings parsed in lax mode), or the reasons it was rejected."""
    text = ",".join(cells)
    if len(cells) != len(header):
        return number, None, _shown(text), f"{len(cells)} cells, the header has {len(header)}"
    try:
        row = ROW.validate_python(cells_dict(header, cells))
        encode_row(row, latest_ms=latest_ms)  # its times
    except (ValidationError, ValueError) as exc:
        # no field accepts a byte that is not UTF-8, so that check waits for a failure
        return number, None, _shown(text), _undecodable(header, cells) or _reason(exc)
    return number, row, text, ""


def cells_dict(header: list[str], cells: list[str]) -> dict[str, str]:
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


def json_lines(chunk: JsonChunk) -> Iterator[tuple[int, bytes]]:
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


def open_rows(path: Path, fmt: Format) -> IO[Any]:
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
    fmt = fmt or format_of(path)
    default = WorkerSettings.model_fields["max_clock_skew"].default
    skew = default if max_clock_skew is None else max_clock_skew
    latest_ms = latest_allowed_ms(skew)
    with open_rows(path, fmt) as source:
        header, batches = cut_batches(source, fmt, BATCH_ROWS)
        for batch in batches:
            if isinstance(batch, tuple):
                for number, line in json_lines(batch):
                    yield validate_line(number, line, latest_ms)
            else:
                for number, cells in batch:
                    yield validate_cells(header, number, cells, latest_ms)


def format_of(path: Path) -> Format:
    return "csv" if path.suffix.lower() == ".csv" else "jsonl"


def cut_batches(source: IO[Any], fmt: Format, size: int) -> tuple[list[str], Iterator[Batch]]:
    """The CSV header ([] for JSON lines) and the file cut into batches of ``size`` lines
    (JSON lines) or records (CSV)."""
    if fmt == "jsonl":

        def chunks() -> Iterator[JsonChunk]:
            first = 1
            while lines := list(islice(source, size)):
                yield first, b"".join(lines)
                first += len(lines)

        return [], chunks()
    header, records = _csv_header(source)

    def groups() -> Iterator[CsvRecords]:
        while batch := list(islice(records, size)):
            yield batch

    return header, groups()


def batch_digest(batch: Batch) -> str:
    """Identifies a batch by its content: the same file cut the same way gives the same
    digests, whatever the number of processes."""
    if isinstance(batch, tuple):
        data = batch[1]
    else:
        data = "\n".join("\x1f".join(cells) for _, cells in batch).encode(errors="surrogateescape")
    return hashlib.blake2b(data, digest_size=16).hexdigest()
