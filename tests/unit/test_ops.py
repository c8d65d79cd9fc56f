"""Pure parts of the ops commands: alert formatting and signing, backfill rows, intervals."""

from __future__ import annotations

import codecs
import hashlib
import hmac
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas import DecisionEvent, DegradationAlert, OutcomeEvent, PathStats, PolicySnapshot
from schemas.beta import beta_cdf
from stream_workers import WorkerSettings
from stream_workers.errors import WorkerError
from stream_workers.ops.alerts import WebhookOptions, format_alert, payload, sign
from stream_workers.ops.backfill import MAX_REJECT_CHARS, ROW, backfill, encode_row, read_rows
from stream_workers.ops.policy_view import beta_interval, snapshot_rows

ALERT = DegradationAlert(
    alert_id="g:p:open:0.1.2",
    goal="g",
    path="p",
    state="open",
    recent_rate=0.3,
    recent_n=50,
    baseline_rate=0.95,
    baseline_n=412.4,
    detector="beta-drop",
    evidence=0.99995,
    detected_at=datetime(2026, 11, 22, 8, 0, 1, tzinfo=UTC),
)


def test_format_alert_is_one_readable_line() -> None:
    assert format_alert(ALERT) == (
        "2026-11-22 08:00:01Z  OPEN      g/p  recent 0.30 (n=50) vs baseline 0.95 (n=412)"
    )


def test_payload_is_slack_compatible_and_carries_the_whole_alert() -> None:
    body = json.loads(payload(ALERT))
    assert set(body) == {"text", "alert"}
    assert "g/p" in body["text"]
    assert DegradationAlert.model_validate_json(json.dumps(body["alert"])) == ALERT


def test_signature_is_hmac_sha256_of_the_body() -> None:
    body = payload(ALERT)
    expected = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert sign(b"k", body) == f"sha256={expected}"
    assert sign(b"other", body) != sign(b"k", body)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"url": "ftp://x/T0KEN"},
            "must be http://HOST/... or https://HOST/..., got scheme 'ftp'$",
        ),
        ({"url": "localhost:8080"}, "got no scheme$"),
        ({"url": "https:///hooks/T0KEN"}, "got no host$"),
        ({"url": "http://x", "backoff": (0.0, 2.0, 1.0)}, "backoff"),
        ({"url": "http://x", "backoff": (2.0, 2.0, 1.0)}, "backoff"),
        ({"url": "http://x", "client_error_attempts": 0}, "client_error_attempts"),
    ],
)
def test_webhook_options_reject_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WebhookOptions(**kwargs)


def test_encode_row_gives_valid_events_with_ids_derived_from_the_row() -> None:
    row = ROW.validate_json(
        '{"trace_id": "t-1", "goal": "g", "path": "a", "decided_at": "2026-09-01T02:00:00+02:00",'
        ' "success": false, "score": 0.25, "cost": 0.01, "latency": 500}'
    )
    key, decision, outcome, decided_ms, occurred_ms, digest = encode_row(row)
    d = DecisionEvent.model_validate_json(decision)
    o = OutcomeEvent.model_validate_json(outcome)
    assert key == b"t-1"
    assert d.decided_at == datetime(2026, 9, 1, tzinfo=UTC)
    assert decided_ms == int(d.decided_at.timestamp() * 1000)
    assert occurred_ms == decided_ms + 500  # occurred_at defaults to decided_at + latency
    assert (o.score, o.cost_usd, o.latency_ms, o.source) == (0.25, 0.01, 500.0, "backfill")
    assert d.event_id == f"bf-{digest}.d"
    assert o.event_id == f"bf-{digest}.o"
    assert encode_row(row) == encode_row(ROW.validate_python(dict(row)))
    other = ROW.validate_python({**row, "trace_id": "t-2"})
    assert encode_row(other)[5] != digest


GOOD = (
    b'{"trace_id": "%s", "goal": "g", "path": "p", "decided_at": "2026-09-01T00:00:00Z",'
    b' "success": true}'
)


def test_read_rows_numbers_lines_and_names_every_problem(tmp_path: Path) -> None:
    source = tmp_path / "rows.jsonl"
    source.write_bytes(
        GOOD % b"a"
        + b"\n\n"
        + b'{"trace_id": "b", "goal": "g", "path": "p", "decided_at": "2026-09-01T00:00:00",'
        b' "success": "maybe", "score": 2}\r\n'
        + GOOD % b"c\xff"
        + b"\n"
        + GOOD % b"d"  # no newline at the end
    )
    results = list(read_rows(source))
    assert [(n, row is not None) for n, row, _, _ in results] == [
        (1, True),
        (3, False),
        (4, False),
        (5, True),
    ]
    reason = results[1][3]
    for field in ("decided_at", "success", "score"):
        assert field in reason
    assert results[2][2:] == (
        (GOOD % b"c\\xff").decode(),  # the bytes as written, escaped
        "not UTF-8: byte 0xff at column 16",
    )


def test_read_rows_rejects_undecodable_csv_cells_and_keeps_the_rest(tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    source.write_bytes(
        b"trace_id,goal,path,decided_at,success\n"
        b"a,g,p,2026-09-01T00:00:00Z,true\n"
        b"b\xfe,g,p,2026-09-01T00:00:00Z,true\n"
        b"c,g,p,2026-09-01T00:00:00Z,1,extra\n"
        b"d,g,p,2026-09-01T00:00:00Z,false\n"
    )
    results = list(read_rows(source))
    assert [(n, row is not None, reason) for n, row, _, reason in results] == [
        (2, True, ""),
        (3, False, "not UTF-8: byte 0xfe in column trace_id"),
        (4, False, "6 cells, the header has 5"),
        (5, True, ""),
    ]
    assert results[1][2] == "b\\xfe,g,p,2026-09-01T00:00:00Z,true"  # as the bytes were


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_byte_order_mark_is_skipped(tmp_path: Path, fmt: str) -> None:
    source = tmp_path / f"rows.{fmt}"
    if fmt == "jsonl":
        body = GOOD % b"a" + b"\n"
    else:
        body = b"trace_id,goal,path,decided_at,success\r\na,g,p,2026-09-01T00:00:00Z,true\r\n"
    source.write_bytes(codecs.BOM_UTF8 + body)
    ((number, row, _, reason),) = read_rows(source)
    assert (number, reason) == (1 if fmt == "jsonl" else 2, "")
    assert row is not None
    assert row["trace_id"] == "a"


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_rows_outside_kafka_time_or_in_the_future_are_rejected(tmp_path: Path, fmt: str) -> None:
    """Before 1970 a Kafka timestamp cannot hold the time; a row from the future would move the
    pipeline's event-time clocks past the live traffic; year 9999 + latency overflows."""
    soon = datetime.now(UTC) + timedelta(minutes=1)  # within the clock-skew slack
    later = datetime.now(UTC) + timedelta(days=1)
    rows = [
        ("ok", "2026-09-01T00:00:00Z", "", ""),
        ("soon", soon.isoformat(), "", ""),
        ("old", "1960-01-01T00:00:00Z", "", "decided_at: 1960-01-01T00:00:00+00:00 is before"),
        ("late", "2026-09-01T00:00:00Z", later.isoformat(), "occurred_at: 20"),
        ("edge", "9999-12-31T23:59:59Z", "", "occurred_at: out of the range of dates"),
    ]
    source = tmp_path / f"rows.{fmt}"
    if fmt == "jsonl":
        lines = []
        for trace, decided, occurred, _ in rows:
            row = {"trace_id": trace, "goal": "g", "path": "p", "decided_at": decided}
            row |= {"success": True, "latency_ms": 5000}
            lines.append(json.dumps(row | ({"occurred_at": occurred} if occurred else {})))
        source.write_text("\n".join(lines))
    else:
        head = "trace_id,goal,path,decided_at,occurred_at,success,latency_ms\n"
        body = "".join(f"{t},g,p,{d},{o},true,5000\n" for t, d, o, _ in rows)
        source.write_text(head + body)
    checked = list(read_rows(source))
    for (_, row, _, reason), (trace, *_, want) in zip(checked, rows, strict=True):
        assert (row is None, reason[: len(want)]) == (bool(want), want), trace
    assert checked[3][3].endswith("is in the future; a backfill is history")
    rejects = io.StringIO()
    summary = backfill(WorkerSettings(), source, rejects=rejects, dry_run=True)
    assert (summary.valid, summary.rejected) == (2, 3)
    reasons = [json.loads(line)["reason"] for line in rejects.getvalue().splitlines()]
    assert reasons == [reason for *_, reason in checked if reason]


def test_a_huge_bad_line_is_cut_in_the_rejects(tmp_path: Path) -> None:
    """A JSON array of rows on one line is one bad row, and the rejects file gets its start."""
    array = b"[" + b",".join([GOOD % b"a"] * 1000) + b"]"
    source = tmp_path / "rows.jsonl"
    source.write_bytes(array + b"\n" + GOOD % b"b")
    (bad, good) = read_rows(source)
    assert bad[3] == "row: Input should be an object"
    more = len(array) - MAX_REJECT_CHARS
    assert bad[2] == f"{array[:MAX_REJECT_CHARS].decode()}... ({more:,} more characters)"
    assert good[1] is not None


def test_read_rows_refuses_unknown_csv_columns(tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    source.write_text("trace_id,colour\n1,red\n")
    with pytest.raises(WorkerError, match=r"unknown CSV column\(s\) \['colour'\]"):
        list(read_rows(source))


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_dry_run_in_small_batches_reads_every_row_where_it_is(tmp_path: Path, fmt: str) -> None:
    """Rows and line numbers do not depend on where the batches are cut."""
    lines = [f"t{i}" for i in range(7)]
    if fmt == "jsonl":
        body = b"\n".join(GOOD % t.encode() for t in lines).replace(b'"t3"', b'"t 3"')
        source = tmp_path / "rows.jsonl"
        source.write_bytes(body + b"\n\n")
        bad_line = 4
    else:
        body = b"\n".join(f"{t},g,p,2026-09-01T00:00:00Z,true".encode() for t in lines)
        source = tmp_path / "rows.csv"
        source.write_bytes(b"trace_id,goal,path,decided_at,success\n" + body.replace(b"t3", b"t 3"))
        bad_line = 5
    rejects = io.StringIO()
    summary = backfill(WorkerSettings(), source, rejects=rejects, dry_run=True, batch_rows=2)
    assert (summary.rows, summary.valid, summary.rejected) == (7, 6, 1)
    (reject,) = [json.loads(line) for line in rejects.getvalue().splitlines()]
    assert reject["line"] == bad_line
    assert "trace_id" in reject["reason"]
    assert "t 3" in reject["row"]


@pytest.mark.parametrize(("a", "b"), [(1.0, 1.0), (91.0, 11.0), (2.5, 40.0)])
def test_beta_interval_holds_90_percent(a: float, b: float) -> None:
    low, high = beta_interval(a, b)
    assert beta_cdf(low, a, b) == pytest.approx(0.05, abs=1e-6)
    assert beta_cdf(high, a, b) == pytest.approx(0.95, abs=1e-6)
    if (a, b) == (1.0, 1.0):
        assert (low, high) == pytest.approx((0.05, 0.95), abs=1e-6)


def test_snapshot_rows_order_paths_by_posterior_mean() -> None:
    at = datetime(2026, 11, 22, tzinfo=UTC)
    snapshot = PolicySnapshot(
        goal="g",
        version=3,
        generated_at=at,
        paths={
            "worse": PathStats(alpha=2.0, beta=8.0, n=8, recent_n=0, recent_successes=0.0),
            "better": PathStats(alpha=9.0, beta=1.0, n=8, recent_n=4, recent_successes=3.0),
        },
    )
    rows = snapshot_rows(snapshot, at.replace(second=2))
    assert [r["path"] for r in rows] == ["better", "worse"]
    assert rows[0]["mean"] == pytest.approx(0.9)
    assert rows[0]["recent_rate"] == pytest.approx(0.75)
    assert rows[0]["age_s"] == pytest.approx(2.0)
    assert rows[1]["recent_rate"] is None
