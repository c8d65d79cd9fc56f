"""Helpers for pipeline tests: scenario producers, worker processes, a frontier-applying reader."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import redis
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from schemas import PARTITIONER, DecisionEvent, OutcomeEvent, PathDelta, PolicySnapshot
from stream_workers import WorkerSettings
from stream_workers.local.stack import free_port
from stream_workers.pipeline.posterior.frontier import FrontierSet

GOALS = {"summarize": ["a", "b", "c"], "classify": ["x", "y"]}


@dataclass
class Expected:
    joined: Counter[tuple[str, str]] = field(default_factory=Counter)
    reward: Counter[tuple[str, str]] = field(default_factory=Counter)
    garbage: int = 0
    replays: int = 0
    duplicates: int = 0
    unreported: list[tuple[str, datetime]] = field(default_factory=list)  # (trace, decided_at)
    outcomes: list[tuple[str, datetime]] = field(default_factory=list)  # (trace, occurred_at)

    def expired(self, window: timedelta, partitions: int) -> int:
        """Unreported decisions whose window the outcome clock of their partition passed."""
        partitioner = DefaultPartitioner()
        every = list(range(partitions))

        def partition(trace: str) -> int:
            return int(partitioner(trace.encode(), every, every))

        clock: dict[int, datetime] = {}
        for trace, at in self.outcomes:
            p = partition(trace)
            clock[p] = max(clock.get(p, at), at)
        return sum(
            1
            for trace, decided in self.unreported
            if partition(trace) in clock and decided + window < clock[partition(trace)]
        )


def produce_scenario(
    settings: WorkerSettings,
    pairs: int,
    *,
    seed: int,
    garbage_rate: float = 0.0,
    rate: float | None = None,
) -> Expected:
    """Decisions and outcomes keyed by trace id, with early outcomes, unreported decisions,
    replays, second verdicts and (optionally) garbage. ``rate``: pairs per second."""
    rng = random.Random(seed)
    topics = settings.topics()
    producer = Producer(
        {**settings.kafka_client_config(), "partitioner": PARTITIONER, "linger.ms": 5}
    )
    expected = Expected()
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    started = time.monotonic()
    for i in range(pairs):
        goal = rng.choice(list(GOALS))
        path = rng.choice(GOALS[goal])
        trace = f"s{seed}-t{i}"
        decision = DecisionEvent(
            event_id=f"{trace}.d",
            trace_id=trace,
            goal=goal,
            path=path,
            candidates=tuple(GOALS[goal]),
            reason="exploit",
            decided_at=t0 + timedelta(milliseconds=i),
        ).model_dump_json()
        outcome = None
        decided_at = t0 + timedelta(milliseconds=i)
        if rng.random() >= 0.02:
            success = rng.random() < 0.8
            outcome = OutcomeEvent(
                event_id=f"{trace}.o",
                trace_id=trace,
                success=success,
                latency_ms=rng.uniform(10, 900),
                occurred_at=t0 + timedelta(milliseconds=i + 50),
            ).model_dump_json()
            expected.joined[goal, path] += 1
            expected.reward[goal, path] += 1.0 if success else 0.0
            expected.outcomes.append((trace, decided_at + timedelta(milliseconds=50)))
        else:
            expected.unreported.append((trace, decided_at))
        key = trace.encode()
        sends = [(topics.decisions.name, decision)]
        if outcome is not None:
            early = rng.random() < 0.1
            sends.insert(0 if early else 1, (topics.outcomes.name, outcome))
            if rng.random() < 0.02:
                sends.append((topics.outcomes.name, outcome))
                expected.replays += 1
            if rng.random() < 0.02:
                verdict = OutcomeEvent.model_validate_json(outcome)
                second = verdict.model_copy(update={"event_id": f"{trace}.o2"})
                sends.append((topics.outcomes.name, second.model_dump_json()))
                expected.duplicates += 1
        for topic, value in sends:
            producer.produce(topic, value.encode(), key)
        if rng.random() < garbage_rate:
            topic = rng.choice([topics.decisions.name, topics.outcomes.name])
            junk = rng.choice([b"{not json", b'{"schema_version": 9}', b"\xff\xfe", b"[]", b""])
            if not junk:  # valid, but dated a day after it is sent: it would move the join's
                # clock past every open window if it were read as it says
                future = datetime.now(UTC) + timedelta(days=1)
                if topic == topics.decisions.name:
                    junk = (
                        DecisionEvent(
                            event_id=f"{trace}-f.d",
                            trace_id=f"{trace}-f",
                            goal=goal,
                            path=path,
                            candidates=(path,),
                            reason="exploit",
                            decided_at=future,
                        )
                        .model_dump_json()
                        .encode()
                    )
                else:
                    event = OutcomeEvent(
                        event_id=f"{trace}-f.o",
                        trace_id=f"{trace}-f",
                        success=False,
                        occurred_at=future,
                    )
                    junk = event.model_dump_json().encode()
            producer.produce(topic, junk, key)
            expected.garbage += 1
        if i % 1000 == 0:
            producer.poll(0)
        if rate is not None:
            ahead = i / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    assert producer.flush(30) == 0
    return expected


class Worker:
    """An ``outroute worker`` process with its output in a log file."""

    def __init__(
        self,
        settings: WorkerSettings,
        log_dir: Path,
        *,
        metrics: bool = False,
        env: dict[str, str] | None = None,
    ):
        self.metrics_port = free_port() if metrics else None
        extra_env = env
        env = {
            **os.environ,
            "OUTROUTE_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "OUTROUTE_REDIS_URL": settings.redis_url.get_secret_value(),
            "OUTROUTE_TOPIC_PREFIX": settings.topic_prefix,
            "OUTROUTE_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        }
        env.update(extra_env or {})
        if self.metrics_port is not None:
            env["OUTROUTE_METRICS_PORT"] = str(self.metrics_port)
            env["OUTROUTE_METRICS_BIND"] = "127.0.0.1"
        self.log_path = log_dir / f"worker-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "outroute"), "worker", "-l", "info"],
            cwd=log_dir,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> dict[str, float]:
        assert self.metrics_port is not None
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._log.close()

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired as exc:
                self.process.kill()
                self.process.wait(10)
                message = f"worker did not stop on SIGTERM:\n{self.log()[-3000:]}"
                raise AssertionError(message) from exc
        self._log.close()
        return self.process.returncode


class DeltaReader:
    """Reads path-deltas like the posterior stage: frontier-filtered totals."""

    def __init__(self, settings: WorkerSettings) -> None:
        topic = settings.topics().path_deltas
        self.consumer = Consumer(
            {
                **settings.kafka_client_config(),
                "group.id": "unused",
                "enable.auto.commit": False,
            }
        )
        self.consumer.assign(
            [TopicPartition(topic.name, p, OFFSET_BEGINNING) for p in range(topic.partitions)]
        )
        self.frontier = FrontierSet()
        self.joined: Counter[tuple[str, str]] = Counter()
        self.reward: Counter[tuple[str, str]] = Counter()
        self.raw_items = 0
        self.first_delta_at: float | None = None

    def poll(self, timeout: float = 0.2) -> None:
        for message in self.consumer.consume(2000, timeout):
            if message.error() is not None:
                continue
            if self.first_delta_at is None:
                self.first_delta_at = time.monotonic()
            delta = PathDelta.model_validate_json(message.value())
            self.raw_items += delta.count
            for i in self.frontier.admit(delta):
                self.joined[delta.goal, delta.path] += 1
                self.reward[delta.goal, delta.path] += delta.rewards[i]

    def close(self) -> None:
        self.consumer.close()


def produce(
    settings: WorkerSettings,
    goal: str,
    plan: list[tuple[str, float]],
    *,
    seed: int,
    rate: float | None = None,
) -> list[tuple[str, float, float]]:
    """One decision and outcome per (path, success rate) in ``plan``, 1 ms apart in event
    time; returns (path, reward, occurred_at) of each."""
    rng = random.Random(seed)
    topics = settings.topics()
    producer = Producer({**settings.kafka_client_config(), "partitioner": PARTITIONER})
    t0 = datetime.now(UTC) - timedelta(minutes=30)
    paths = tuple(sorted({path for path, _ in plan}))
    produced = []
    started = time.monotonic()
    for i, (path, success_rate) in enumerate(plan):
        trace = f"{goal}-{seed}-{i}"
        at = t0 + timedelta(milliseconds=i)
        reward = 1.0 if rng.random() < success_rate else 0.0
        decision = DecisionEvent(
            event_id=f"{trace}.d",
            trace_id=trace,
            goal=goal,
            path=path,
            candidates=paths,
            reason="exploit",
            decided_at=at,
        )
        outcome = OutcomeEvent(
            event_id=f"{trace}.o", trace_id=trace, success=reward == 1.0, occurred_at=at
        )
        producer.produce(topics.decisions.name, decision.model_dump_json().encode(), trace.encode())
        producer.produce(topics.outcomes.name, outcome.model_dump_json().encode(), trace.encode())
        produced.append((path, reward, at.timestamp()))
        if i % 500 == 0:
            producer.poll(0)
        if rate is not None and (ahead := i / rate - (time.monotonic() - started)) > 0:
            time.sleep(ahead)
    assert producer.flush(30) == 0
    return produced


def snapshot(client: redis.Redis, settings: WorkerSettings, goal: str) -> PolicySnapshot | None:
    raw = client.get(settings.redis_keys().policy(goal))
    return PolicySnapshot.model_validate_json(raw) if raw else None
