"""The dashboard's history, written by a real worker and read back with exact counts.

Outcomes of one goal are produced with known event times (live ones over the last minutes, a
backfill three hours back), with second verdicts and unreadable messages; a worker joins and
learns them; the per-path series (``path_series``) and the pipeline's health
(``health_series``) must hold exactly what was produced, in the buckets of its event times.
The worker is then stopped and another one started: it re-reads the input from the join's
checkpoint, and the history must not count any of it twice; then that one is killed while
outcomes flow, and the next may lose some of the history but count nothing twice.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from confluent_kafka import Producer

from schemas import PARTITIONER, DecisionEvent, OutcomeEvent, Topics
from stream_workers import WorkerSettings
from stream_workers.ops.history import health_series, path_series
from stream_workers.pipeline.posterior.history import expires_at

from _pipeline import Worker, snapshot
from _support import wait_until

GOAL = "hist"
PATHS = ("a", "b", "c")
RATES = {"a": 0.9, "b": 0.6, "c": 0.2}


class Produced:
    """What was produced, per (minute, path) and per (hour, path) of event time."""

    def __init__(self) -> None:
        self.n: Counter[tuple[str, int, str]] = Counter()  # (resolution, bucket, path)
        self.s: Counter[tuple[str, int, str]] = Counter()
        self.lat: defaultdict[tuple[str, int, str], float] = defaultdict(float)
        self.outcomes = 0
        self.duplicates = 0
        self.garbage = 0

    def add(self, path: str, success: bool, at: datetime, latency: float) -> None:
        seconds = at.timestamp()
        for resolution, size in (("m", 60), ("h", 3600)):
            key = (resolution, int(seconds // size), path)
            self.n[key] += 1
            self.s[key] += int(success)
            self.lat[key] += latency
        self.outcomes += 1


def produce(
    settings: WorkerSettings,
    produced: Produced,
    *,
    seed: int,
    pairs: int,
    start: datetime,
    step_ms: int = 500,
    rate: float | None = None,
) -> None:
    """``pairs`` decisions and outcomes of GOAL, ``step_ms`` apart in event time from
    ``start``, ``rate`` pairs per second (at once by default); every 25th outcome is followed
    by a second verdict, every 40th pair by a message that does not parse."""
    rng = random.Random(seed)
    topics = settings.topics()
    producer = Producer({**settings.kafka_client_config(), "partitioner": PARTITIONER})
    started = time.monotonic()
    for i in range(pairs):
        if rate is not None and (ahead := i / rate - (time.monotonic() - started)) > 0:
            time.sleep(ahead)
        trace = f"h{seed}-{i}"
        path = PATHS[i % len(PATHS)]
        decided = start + timedelta(milliseconds=step_ms * i)
        occurred = decided + timedelta(milliseconds=20)
        success = rng.random() < RATES[path]
        latency = float(rng.randrange(10, 900))
        decision = DecisionEvent(
            event_id=f"{trace}.d",
            trace_id=trace,
            goal=GOAL,
            path=path,
            candidates=PATHS,
            reason="exploit",
            decided_at=decided,
        )
        outcome = OutcomeEvent(
            event_id=f"{trace}.o",
            trace_id=trace,
            success=success,
            latency_ms=latency,
            occurred_at=occurred,
        )
        key = trace.encode()
        producer.produce(topics.decisions.name, decision.model_dump_json().encode(), key)
        producer.produce(topics.outcomes.name, outcome.model_dump_json().encode(), key)
        produced.add(path, success, occurred, latency)
        if i % 25 == 0:
            second = outcome.model_copy(update={"event_id": f"{trace}.o2", "success": False})
            producer.produce(topics.outcomes.name, second.model_dump_json().encode(), key)
            produced.duplicates += 1
        if i % 40 == 0:
            producer.produce(topics.outcomes.name, b"{not json", key)
            produced.garbage += 1
    assert producer.flush(30) == 0


def learned(client: redis.Redis, settings: WorkerSettings) -> int:
    snap = snapshot(client, settings, GOAL)
    return 0 if snap is None else sum(stats.n for stats in snap.paths.values())


def check_series(
    client: redis.Redis, settings: WorkerSettings, produced: Produced, *, exact: bool = True
) -> None:
    """Every point of the hour (minutes) and week (hours) windows holds exactly what was
    produced in it; the day window's 10-minute points their sums. Not ``exact``: at most
    that (what a killed worker had not written yet is lost), never more."""
    keys = settings.redis_keys()
    now = time.time()
    for window, resolution, size in (("hour", "m", 60), ("day", "m", 600), ("week", "h", 3600)):
        series = path_series(keys, client, GOAL, window, now=now)
        assert sorted(series.paths) == list(PATHS)
        for path in PATHS:
            points = series.paths[path]
            want_n: Counter[int] = Counter()
            want_s: Counter[int] = Counter()
            want_lat: defaultdict[int, float] = defaultdict(float)
            for (res, bucket, p), n in produced.n.items():
                bucket_size = 60 if res == "m" else 3600
                start = bucket * bucket_size // size * size
                if res == resolution and p == path and start >= series.times[0]:
                    want_n[start] += n
                    want_s[start] += produced.s[res, bucket, p]
                    want_lat[start] += produced.lat[res, bucket, p]
            got = {t: n for t, n in zip(series.times, points.n, strict=True) if n}
            if not exact:
                over = {t: (n, want_n[t]) for t, n in got.items() if n > want_n[t]}
                assert not over, (window, path, over)
                continue
            assert got == dict(want_n), (window, path)
            for k, t in enumerate(series.times):
                if t in want_n:
                    assert points.success_rate[k] == want_s[t] / want_n[t]
                    assert points.mean_latency_ms[k] == pytest.approx(want_lat[t] / want_n[t])
                    assert points.mean_cost_usd[k] is None  # no outcome had a cost
                    assert points.share[k] == want_n[t] / series.total_n[k]


def health_totals(client: redis.Redis, settings: WorkerSettings, goal: str) -> dict[str, int]:
    """The goal's health counts over the last hour, from the minute hashes; the same from
    the hour hashes (the week window) too, or an empty dict."""
    totals = []
    for window in ("hour", "week"):
        health = health_series(settings.redis_keys(), client, goal, window)
        totals.append({name: sum(c) for name, c in health.counts.items() if sum(c)})
    return totals[0] if totals[0] == totals[1] else {}


def check_expiry(client: redis.Redis, settings: WorkerSettings) -> None:
    """Every hash written expires ``RETENTION`` after its bucket's end: history and health,
    minutes and hours."""
    prefix = settings.redis_key_prefix
    now = time.time()
    found: Counter[str] = Counter()
    for raw in client.scan_iter(match=f"{prefix}:history:{GOAL}:*", count=1000):
        key = raw.decode()
        resolution, bucket = key.rsplit(":", 2)[1:]
        assert resolution in ("m", "h"), key
        expected = expires_at(int(bucket), resolution) - now  # type: ignore[arg-type]
        assert expected - 5 <= client.ttl(key) <= expected + 1, key
        found[resolution] += 1
    assert found["m"] > 1
    assert found["h"] > 1
    found.clear()
    for raw in client.scan_iter(match=f"{prefix}:health:*", count=1000):
        key = raw.decode()
        head, bucket = key.rsplit(":", 1)
        resolution = "h" if head.endswith(":h") else "m"
        expected = expires_at(int(bucket), resolution) - now  # type: ignore[arg-type]
        assert expected - 5 <= client.ttl(key) <= expected + 1, key
        found[resolution] += 1
    assert found["m"] >= 2  # GOAL's and the unknown goal's
    assert found["h"] >= 2


@pytest.mark.both_brokers
def test_history_and_health_hold_exactly_what_was_produced(
    settings: WorkerSettings,
    topics: Topics,
    redis_client: redis.Redis,
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    produced = Produced()
    now = datetime.now(UTC)
    # a backfill first (three hours back: only the day and week windows show it), then live
    # outcomes over the last two and a half minutes
    produce(settings, produced, seed=1, pairs=90, start=now - timedelta(hours=3))
    produce(settings, produced, seed=2, pairs=300, start=now - timedelta(seconds=150))
    workers.append(Worker(settings, tmp_path))
    wait_until(
        lambda: learned(redis_client, settings) >= produced.outcomes,
        timeout=90,
        what=f"a snapshot counting {produced.outcomes} outcomes",
    )
    assert learned(redis_client, settings) == produced.outcomes
    check_series(redis_client, settings, produced)
    unknown = {"duplicates": produced.duplicates, "dead_lettered": produced.garbage}
    wait_until(  # the join's counts of its last flushes land in its next checkpoint
        lambda: health_totals(redis_client, settings, "") == unknown,
        timeout=10,
        what="the dead letters and duplicates in the health of the unknown goal",
    )
    joined = {"decisions": produced.outcomes, "outcomes": produced.outcomes}
    joined["joined"] = produced.outcomes
    wait_until(
        lambda: health_totals(redis_client, settings, GOAL) == joined,
        timeout=10,
        what=f"{produced.outcomes} decisions and outcomes in the goal's health",
    )
    check_expiry(redis_client, settings)

    # A second worker re-reads the input from the join's checkpoint: nothing is counted twice.
    assert workers[0].stop() == 0
    produce(settings, produced, seed=3, pairs=60, start=now - timedelta(seconds=30))
    workers.append(Worker(settings, tmp_path))
    wait_until(
        lambda: learned(redis_client, settings) >= produced.outcomes,
        timeout=90,
        what=f"a snapshot counting {produced.outcomes} outcomes",
    )
    assert learned(redis_client, settings) == produced.outcomes
    check_series(redis_client, settings, produced)
    unknown = {"duplicates": produced.duplicates, "dead_lettered": produced.garbage}
    wait_until(
        lambda: health_totals(redis_client, settings, "") == unknown,
        timeout=10,
        what="the dead letters and duplicates of both runs, once each",
    )
    joined = {"decisions": produced.outcomes, "outcomes": produced.outcomes}
    joined["joined"] = produced.outcomes
    wait_until(
        lambda: health_totals(redis_client, settings, GOAL) == joined,
        timeout=10,
        what=f"{produced.outcomes} decisions and outcomes of both runs, once each",
    )

    # Killed while outcomes flow: the next worker applies again what the killed one had not
    # saved (its frontier drops the rest); what it had saved but not written to Redis is
    # lost from the history, and no bucket may count an outcome twice.
    before = produced.outcomes
    feeder = threading.Thread(
        target=produce,
        args=(settings, produced),
        kwargs={"seed": 4, "pairs": 1500, "start": now, "step_ms": 10, "rate": 300.0},
        name="history-feeder",
    )
    feeder.start()
    try:
        wait_until(
            lambda: learned(redis_client, settings) >= before + 300,
            timeout=60,
            what="the worker learning while outcomes flow",
        )
        workers[1].kill()
        workers.append(Worker(settings, tmp_path))
    finally:
        feeder.join()
    wait_until(
        lambda: learned(redis_client, settings) >= produced.outcomes,
        timeout=90,
        what=f"a snapshot counting {produced.outcomes} outcomes after the kill",
    )
    assert learned(redis_client, settings) == produced.outcomes
    check_series(redis_client, settings, produced, exact=False)


def test_bench_measures_what_the_history_costs(tmp_path: Path) -> None:
    """``bench/pipeline.py --history`` as BENCHMARKS.md runs it, on a short run: a worker
    with the history off and one with it on, and the in-process figures."""
    figures_path = tmp_path / "figures.json"
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, str(root / "bench" / "pipeline.py"), "--history"]
    command += ["--pairs", "2000", "--rounds", "1", "--json", str(figures_path)]
    proc = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures = json.loads(figures_path.read_text())
    applied = figures["in_process_s_per_outcome"]
    assert applied["off"] > 0
    assert applied["on"] > 0
    worker = figures["worker"]["embedded"]
    assert worker["off"]["cpu_us_per_event"] > 0
    assert worker["on"]["cpu_us_per_event"] > 0
    assert [len(worker["off_runs"]), len(worker["on_runs"])] == [1, 1]
    assert "What the history adds" in proc.stdout
