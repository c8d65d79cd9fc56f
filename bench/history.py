"""What the dashboard's history costs the worker (``bench/pipeline.py --history``).

Two measurements, each with the history on and off (``OUTROUTE_HISTORY``) in the same run,
alternating so that the machine's drift falls on both:

- in this process: ``GoalState.apply`` of the benchmark's outcomes, plus what each tick does
  with the history (take the sums, merge them into the pending hashes, queue and send the
  commands to Redis): CPU seconds per outcome, the least of the rounds;
- an ``outroute worker`` process on a fresh broker per run: started and warmed up, then given
  the benchmark's pairs; its CPU seconds (``/proc/<pid>/stat``) from then until its
  snapshots count every pair, per input event (a decision or an outcome); and Redis's, when
  it was started for the run. The median of the rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import Producer
from rich.console import Console
from rich.table import Table

from bench._stack import BROKERS, WorkerProcess, broker_of, topics_on
from schemas import PARTITIONER, DecisionEvent, JoinPosition, OutcomeEvent, PathDelta
from stream_workers import WorkerSettings
from stream_workers.pipeline.join import Item, build_deltas
from stream_workers.pipeline.posterior import GoalState, PosteriorConfig
from stream_workers.pipeline.posterior.history import PendingHistory, queue_writes

__all__ = ["apply_cost", "measure_history", "print_history", "worker_cost"]

#: Outcomes per delta in the in-process measurement (a flush of a busy partition).
_PER_DELTA = 2000
#: Deltas per tick in the in-process measurement: 10,000 outcomes per 0.2 s tick, the rate
#: one worker sustains (BENCHMARKS.md, "Join stage").
_DELTAS_PER_TICK = 5


def _deltas(goals: dict[str, list[str]], pairs: int) -> list[PathDelta]:
    """The outcomes ``bench/pipeline.py`` preloads, as the join would send them."""
    names = list(goals)
    t0 = time.time() - 600
    items = []
    for i in range(pairs):
        goal = names[i % 2]
        paths = goals[goal]
        reward = 0.0 if i % 5 == 0 else 1.0
        items.append(
            Item(
                goal,
                paths[i % len(paths)],
                i,
                i,
                reward,
                t0 + i / 1000 + 0.04,
                None,
                100.0 + i % 700,
            )
        )
    deltas = []
    for start in range(0, pairs, _PER_DELTA):
        end = min(pairs, start + _PER_DELTA)
        position = JoinPosition(decisions=end, outcomes=end, expired=end)
        deltas.extend(build_deltas(0, position, items[start:end]))
    return deltas


def _key(base: str, resolution: str, bucket: int) -> str:
    return f"{base}:{resolution}:{bucket}"


def _apply_once(deltas: list[PathDelta], history: bool, client: redis.Redis, prefix: str) -> float:
    config = PosteriorConfig(history=history)
    states: dict[str, GoalState] = {}
    pending = PendingHistory()
    started = time.process_time()
    for k, delta in enumerate(deltas, start=1):
        state = states.get(delta.goal)
        if state is None:
            state = states[delta.goal] = GoalState(delta.goal, config)
        state.apply(delta)
        if history and (k % _DELTAS_PER_TICK == 0 or k == len(deltas)):
            now = time.time()
            for goal, goal_state in states.items():
                if goal_state.history:
                    pending.add(goal, goal_state.history.take(), now)
            for goal in pending.goals():
                hashes = pending.of(goal, 200)
                pipe = client.pipeline(transaction=True)
                queue_writes(pipe, partial(_key, f"{prefix}:history:{goal}"), hashes, now)
                pipe.execute()
                pending.written(goal, hashes)
    return time.process_time() - started


def apply_cost(
    goals: dict[str, list[str]], pairs: int, rounds: int, redis_url: str
) -> dict[str, float]:
    """CPU seconds per outcome of applying deltas (and writing the history), off and on:
    the least of ``rounds`` alternating rounds."""
    deltas = _deltas(goals, pairs)
    client = redis.Redis.from_url(redis_url)
    prefix = f"bench-history-{os.getpid()}"
    times: dict[bool, list[float]] = {False: [], True: []}
    try:
        for r in range(rounds):
            for history in (False, True) if r % 2 == 0 else (True, False):
                times[history].append(_apply_once(deltas, history, client, prefix) / pairs)
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    return {"off": min(times[False]), "on": min(times[True])}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """``name=value`` in this process's environment (what child processes inherit)."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before


def _warm_up(settings: WorkerSettings, goals: dict[str, list[str]]) -> None:
    """One decision and outcome per goal, dated before the preloaded ones."""
    topics = settings.topics()
    producer = Producer({**settings.kafka_client_config(), "partitioner": PARTITIONER})
    at = datetime.now(UTC) - timedelta(minutes=20)
    for goal, paths in goals.items():
        trace = f"warm-{goal}"
        decision = DecisionEvent(
            event_id=f"{trace}.d",
            trace_id=trace,
            goal=goal,
            path=paths[0],
            candidates=tuple(paths),
            reason="exploit",
            decided_at=at,
        )
        outcome = OutcomeEvent(event_id=f"{trace}.o", trace_id=trace, success=True, occurred_at=at)
        producer.produce(topics.decisions.name, decision.model_dump_json().encode(), trace.encode())
        producer.produce(topics.outcomes.name, outcome.model_dump_json().encode(), trace.encode())
    if producer.flush(30):
        raise RuntimeError("the warm-up events were not sent")


def worker_cost(
    settings: WorkerSettings,
    goals: dict[str, list[str]],
    pairs: int,
    history: bool,
    redis_pid: int | None,
) -> dict[str, float]:
    """CPU per input event of an ``outroute worker`` learning ``pairs`` pairs: started on
    empty topics and warmed up (a pair per goal learned), then given the pairs; its CPU is
    read when warm and when its snapshots count every pair."""
    from bench.pipeline import preload

    key_prefix = f"bench-history-{os.getpid()}-{time.time_ns()}"
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    policy = [f"{key_prefix}:policy:{goal}" for goal in goals]

    def learned() -> int:
        raw = client.mget(policy)
        return sum(sum(p["n"] for p in json.loads(r)["paths"].values()) for r in raw if r)

    with _environment("OUTROUTE_HISTORY", "true" if history else "false"):
        worker = WorkerProcess(settings, key_prefix)
    pid = worker.process.pid
    deadline = time.monotonic() + 300
    try:
        _warm_up(settings, goals)
        while learned() < len(goals):
            worker.check(deadline, time.monotonic())
            time.sleep(0.05)
        cpu0, redis0 = _cpu_seconds(pid), _redis_cpu(redis_pid)
        # Paths in equal shares: a join flush of more than MAX_ITEMS outcomes of one path
        # from one partition loses the items past the first delta to the posterior's
        # frontier (the split deltas share one position), and the run would never end.
        preload(settings, pairs, spread=True)
        last, moved = -1, time.monotonic()
        while (n := learned()) < len(goals) + pairs:
            worker.check(deadline, time.monotonic())
            if n != last:
                last, moved = n, time.monotonic()
            elif time.monotonic() - moved > 30:
                raise RuntimeError(
                    f"the worker learned {n} of {len(goals) + pairs} outcomes and nothing "
                    f"more for 30 s; log: {worker.log.name}"
                )
            time.sleep(0.01)
        cpu1, redis1 = _cpu_seconds(pid), _redis_cpu(redis_pid)
    finally:
        worker.stop()
        keys = list(client.scan_iter(match=f"{key_prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    events = 2 * pairs
    return {
        "cpu_us_per_event": 1e6 * (cpu1 - cpu0) / events,
        "redis_us_per_event": 1e6 * (redis1 - redis0) / events,
    }


def _redis_cpu(pid: int | None) -> float:
    return _cpu_seconds(pid) if pid is not None else float("nan")


def measure_history(
    kind: str,
    redis_url: str,
    redis_pid: int | None,
    goals: dict[str, list[str]],
    partitions: int,
    pairs: int,
    rounds: int,
    console: Console,
) -> dict[str, Any]:
    """Worker runs, off and on alternating, each on a fresh broker (the embedded broker's
    fetches grow slower with what it stores)."""
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    for r in range(rounds):
        for history in (False, True) if r % 2 == 0 else (True, False):
            label = "on" if history else "off"
            console.print(f"{BROKERS[kind]}: round {r + 1}, history {label}: {pairs:,} pairs")
            with broker_of(kind) as broker:
                broker.start()
                settings = topics_on(broker, redis_url, "hist", partitions)
                runs[label].append(worker_cost(settings, goals, pairs, history, redis_pid))
    figures: dict[str, Any] = {}
    for label, results in runs.items():
        figures[label] = {
            name: statistics.median(run[name] for run in results)
            for name in ("cpu_us_per_event", "redis_us_per_event")
        }
        figures[f"{label}_runs"] = results
    return figures


def print_history(
    args: argparse.Namespace,
    redis_url: str,
    redis_pid: int | None,
    goals: dict[str, list[str]],
    console: Console,
) -> dict[str, object]:
    """The table of --history; returns the figures."""
    console.print(f"in process: applying {args.pairs:,} outcomes, {args.rounds} rounds each ...")
    applied = apply_cost(goals, args.pairs, max(3, args.rounds), redis_url)
    workers = {
        kind: measure_history(
            kind, redis_url, redis_pid, goals, args.partitions, args.pairs, args.rounds, console
        )
        for kind in args.broker
    }
    table = Table(title="What the history adds (same run, off and on alternating)")
    for column in ("what", "history off", "history on", "added"):
        table.add_column(column, justify="left" if column == "what" else "right")
    off, on = 1e6 * applied["off"], 1e6 * applied["on"]
    table.add_row(
        "in process: apply + tick writes, us per outcome (least of rounds)",
        f"{off:.2f}",
        f"{on:.2f}",
        f"{on - off:+.2f} ({(on - off) / off:+.1%})",
    )
    for kind, figures in workers.items():
        w_off, w_on = figures["off"], figures["on"]
        for name, what in (
            ("cpu_us_per_event", "worker CPU, us per input event"),
            ("redis_us_per_event", "Redis CPU, us per input event"),
        ):
            a, b = w_off[name], w_on[name]
            if a != a:  # NaN: a Redis that was not started here
                continue
            table.add_row(
                f"{BROKERS[kind]}: {what} (median of {args.rounds})",
                f"{a:,.2f}",
                f"{b:,.2f}",
                f"{b - a:+,.2f} ({(b - a) / a:+.1%})" if a else "-",
            )
    console.print(table)
    return {"in_process_s_per_outcome": applied, "worker": workers}
