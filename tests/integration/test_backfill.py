"""``outroute backfill`` and ``outroute policy``/``goals`` against the real broker and Redis."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import Producer

from schemas import DecisionEvent, DegradationAlert, OutcomeEvent, Topics
from stream_workers import WorkerSettings

from _pipeline import Worker, produce, snapshot
from _support import default_sigint, read_topic, wait_until

OUTROUTE = str(Path(sys.executable).parent / "outroute")
T0 = datetime(2026, 9, 1, tzinfo=UTC)


def env(settings: WorkerSettings) -> dict[str, str]:
    return {
        **os.environ,
        "OUTROUTE_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "OUTROUTE_REDIS_URL": settings.redis_url.get_secret_value(),
        "OUTROUTE_TOPIC_PREFIX": settings.topic_prefix,
        "OUTROUTE_REDIS_KEY_PREFIX": settings.redis_key_prefix,
    }


def outroute(settings: WorkerSettings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OUTROUTE, *args], env=env(settings), capture_output=True, text=True, timeout=300
    )


def rows(n: int, *, goal: str = "hist", start: datetime = T0, step: float = 60.0) -> list[str]:
    rng = random.Random(n)
    out = []
    for i in range(n):
        at = start + timedelta(seconds=i * step)
        row: dict[str, Any] = {
            "trace_id": f"{goal}-row-{i}",
            "goal": goal,
            "path": f"p{i % 2}",
            "decided_at": at.isoformat(),
            "success": rng.random() < 0.9,
            "latency_ms": 250.0,
        }
        if i % 3 == 0:
            row["cost"] = 0.002  # the short alias
        out.append(json.dumps(row))
    return out


def read_through_sentinel(settings: WorkerSettings, topic: str) -> list[Any]:
    """Every message of ``topic``, known to be complete because a sentinel sent now is last."""
    producer = Producer(settings.kafka_client_config())
    sentinel = f"sentinel-{uuid.uuid4().hex}".encode()
    for partition in range(settings.partitions):
        producer.produce(topic, sentinel, b"s", partition=partition)
    assert producer.flush(10) == 0
    messages = read_topic(
        settings.bootstrap_servers,
        topic,
        until=lambda m: sum(x.value() == sentinel for x in m) == settings.partitions,
    )
    return [m for m in messages if not m.value().startswith(b"sentinel-")]


@pytest.mark.both_brokers
def test_backfill_sends_valid_rows_once_and_reports_bad_ones(
    settings: WorkerSettings, topics: Topics, tmp_path: Path
) -> None:
    good = rows(120)
    lines = [*good[:50], "{not json", "", *good[50:]]
    lines.insert(80, json.dumps({"trace_id": "bad id!", "goal": "hist", "path": "p0"}))
    lines.append(json.dumps({**json.loads(good[0]), "trace_id": "x", "extra": 1}))
    source = tmp_path / "history.jsonl"
    source.write_text("\n".join(lines) + "\n")
    rejects = tmp_path / "rejects.jsonl"

    sending = int(time.time() * 1000)
    first = outroute(settings, "backfill", str(source), "--rejects", str(rejects), "--json")
    sent = int(time.time() * 1000)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert (summary["rows"], summary["valid"], summary["rejected"]) == (123, 120, 3)
    assert (summary["produced_rows"], summary["skipped_rows"]) == (120, 0)
    rejected = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [r["line"] for r in rejected] == [51, 81, 124]  # as an editor numbers them
    assert rejected[0]["row"] == "{not json"
    assert "trace_id" in rejected[1]["reason"]
    assert "success" in rejected[1]["reason"]  # every problem of the row, not the first
    assert "extra" in rejected[2]["reason"]

    decisions = read_through_sentinel(settings, topics.decisions.name)
    outcomes = read_through_sentinel(settings, topics.outcomes.name)
    assert len(decisions) == len(outcomes) == 120
    by_trace = {}
    for message in decisions:
        event = DecisionEvent.model_validate_json(message.value())
        assert message.key() == event.trace_id.encode()
        # the time it was sent (retention counts from it), not the row's
        assert sending <= message.timestamp()[1] <= sent
        assert (event.reason, event.candidates, event.service) == (
            "forced",
            (event.path,),
            "backfill",
        )
        by_trace[event.trace_id] = event
    row0 = json.loads(good[0])
    assert by_trace[row0["trace_id"]].decided_at == datetime.fromisoformat(row0["decided_at"])
    for message in outcomes:
        event = OutcomeEvent.model_validate_json(message.value())
        decision = by_trace[event.trace_id]
        assert event.event_id == decision.event_id[:-2] + ".o"  # both derived from the row
        assert event.source == "backfill"
        assert event.occurred_at == decision.decided_at + timedelta(milliseconds=250)
        assert sending <= message.timestamp()[1] <= sent
    assert {OutcomeEvent.model_validate_json(m.value()).cost_usd for m in outcomes} == {None, 0.002}

    again = outroute(settings, "backfill", str(source), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["produced_rows"] == 0
    assert json.loads(again.stdout)["skipped_rows"] == 120
    assert len(read_through_sentinel(settings, topics.decisions.name)) == 120  # nothing new


def test_backfill_csv_dry_run_and_bad_files(
    settings: WorkerSettings, topics: Topics, tmp_path: Path
) -> None:
    source = tmp_path / "history.csv"
    source.write_text(
        "trace_id,goal,path,decided_at,success,score,latency\n"
        "t1,g,a,2026-09-01T00:00:00Z,true,,120\n"
        "t2,g,a,2026-09-01T00:01:00+02:00,false,0.25,\n"
        "t3,g,a,yesterday,true,,\n"
        "t4,g,a,2026-09-01T00:02:00Z,true\n"
    )
    dry = outroute(settings, "backfill", str(source), "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    summary = json.loads(dry.stdout)
    assert (summary["valid"], summary["rejected"], summary["produced_rows"]) == (2, 2, 0)
    assert summary["dry_run"] is True
    first, second = summary["first_rejects"]
    assert first.startswith("line 4: decided_at")
    assert second == "line 5: 5 cells, the header has 7"
    assert read_through_sentinel(settings, topics.decisions.name) == []

    sent = outroute(settings, "backfill", str(source))
    assert sent.returncode == 0, sent.stderr
    assert "2" in sent.stdout  # the summary table
    decided = sorted(
        DecisionEvent.model_validate_json(m.value()).decided_at
        for m in read_through_sentinel(settings, topics.decisions.name)
    )
    assert decided == [datetime(2026, 8, 31, 22, 1, tzinfo=UTC), datetime(2026, 9, 1, tzinfo=UTC)]

    unknown = tmp_path / "unknown.csv"
    unknown.write_text("trace_id,goal,path,decided_at,success,colour\n")
    failed = outroute(settings, "backfill", str(unknown), "--dry-run")
    assert failed.returncode == 1
    assert "unknown CSV column(s) ['colour']" in failed.stderr
    missing = outroute(settings, "backfill", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 1
    assert "no such file" in missing.stderr


@pytest.mark.both_brokers
def test_backfilled_history_is_the_baseline_of_live_traffic(
    settings: WorkerSettings,
    topics: Topics,
    redis_client: redis.Redis,
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    # 30 days of path "a" at 0.9, ending two hours ago; live traffic starts 30 minutes ago.
    rng = random.Random(30)
    start = datetime.now(UTC) - timedelta(days=30)
    history = [
        json.dumps(
            {
                "trace_id": f"warm-{i}",
                "goal": "warm",
                "path": "a",
                "decided_at": (start + timedelta(minutes=15 * i)).isoformat(),
                "success": rng.random() < 0.9,
            }
        )
        for i in range(30 * 24 * 4 - 8)
    ]
    source = tmp_path / "warm.jsonl"
    source.write_text("\n".join(history) + "\n")
    workers.append(Worker(settings, tmp_path))
    done = outroute(settings, "backfill", str(source), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["produced_rows"] == len(history)
    wait_until(
        lambda: (s := snapshot(redis_client, settings, "warm")) and s.paths["a"].n == len(history),
        timeout=120,
        what="the backfilled history in the snapshot",
    )

    produce(settings, "warm", [("a", 0.9)] * 300, seed=1)  # live, like the history
    wait_until(
        lambda: (
            (s := snapshot(redis_client, settings, "warm")) and s.paths["a"].n == len(history) + 300
        ),
        timeout=120,
        what="the live outcomes in the snapshot",
    )
    alerts_key = settings.redis_keys().alerts("warm")
    assert redis_client.lrange(alerts_key, 0, -1) == []
    assert snapshot(redis_client, settings, "warm").paths["a"].status == "healthy"  # type: ignore[union-attr]

    produce(settings, "warm", [("a", 0.4)] * 150, seed=2)  # live, degraded
    [raw] = wait_until(
        lambda: redis_client.lrange(alerts_key, 0, -1), timeout=120, what="an open alert"
    )
    opened = DegradationAlert.model_validate_json(raw)
    assert (opened.path, opened.state) == ("a", "open")
    assert opened.baseline_rate > 0.8  # the history's rate, not the live stream's
    assert opened.baseline_n > 50

    # policy and goals show what was published
    goals = outroute(settings, "goals", "--json")
    assert goals.returncode == 0, goals.stderr
    assert json.loads(goals.stdout) == {"goal": "warm"}
    shown = outroute(settings, "policy", "warm", "--json")
    assert shown.returncode == 0, shown.stderr
    [row] = [json.loads(line) for line in shown.stdout.splitlines()]
    assert (row["goal"], row["path"], row["status"]) == ("warm", "a", "degrading")
    low, high = row["interval_90"]
    assert low < row["mean"] < high
    table = outroute(settings, "policy")
    assert table.returncode == 0, table.stderr
    assert "warm: version" in table.stdout
    assert "degrading" in table.stdout


@pytest.mark.both_brokers
def test_backfill_in_several_processes_is_the_same_run(
    settings: WorkerSettings, topics: Topics, tmp_path: Path
) -> None:
    source = tmp_path / "big.jsonl"
    lines = rows(12_000, step=1.0)
    lines[7_000] = "{broken"
    source.write_text("\n".join(lines) + "\n")
    parallel = outroute(settings, "backfill", str(source), "--workers", "2", "--json")
    assert parallel.returncode == 0, parallel.stderr
    summary = json.loads(parallel.stdout)
    assert (summary["valid"], summary["produced_rows"], summary["rejected"]) == (11_999, 11_999, 1)
    assert summary["first_rejects"][0].startswith("line 7001:")
    # batches are named by their lines, not by the process count: nothing is sent again
    serial = outroute(settings, "backfill", str(source), "--json")
    assert serial.returncode == 0, serial.stderr
    assert json.loads(serial.stdout)["skipped_rows"] == 11_999
    decisions = read_through_sentinel(settings, topics.decisions.name)
    assert len({DecisionEvent.model_validate_json(m.value()).trace_id for m in decisions}) == 11_999
    assert len(decisions) == 11_999


@pytest.mark.both_brokers
def test_an_interrupted_backfill_is_finished_by_running_it_again(
    settings: WorkerSettings, topics: Topics, tmp_path: Path
) -> None:
    source = tmp_path / "long.jsonl"
    source.write_text("\n".join(rows(30_000, step=1.0)) + "\n")
    run = subprocess.Popen(
        [OUTROUTE, "backfill", str(source), "--workers", "2", "--rate", "6000"],
        env=env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    try:  # interrupted once some batches (5,000 rows each) are recorded: about 2 s in
        keys = redis.Redis.from_url(settings.redis_url.get_secret_value())
        pattern = f"{settings.redis_key_prefix}:backfill:*"
        wait_until(lambda: len(list(keys.scan_iter(pattern))) >= 2, timeout=60, what="batches")
    finally:
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    assert "interrupted: finished batches are recorded" in err
    again = outroute(settings, "backfill", str(source), "--json")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["skipped_rows"] >= 10_000
    assert summary["skipped_rows"] + summary["produced_rows"] == 30_000
    decisions = read_through_sentinel(settings, topics.decisions.name)
    traces = {DecisionEvent.model_validate_json(m.value()).trace_id for m in decisions}
    assert len(traces) == 30_000  # all sent; some perhaps twice, which the join drops by id
