"""The TypeScript SDK (sdk-typescript/) against the real servers: its integration scripts run
with node, configured through the OUTROUTE_* variables, and what they send is read and
validated here with the Python schemas.

- Its events reach both brokers, valid, keyed by trace id, in the partition the Python
  producer would pick (murmur2), every one delivered.
- Events made while the broker is down wait in its queue and are delivered when it is back.
- Its policy cache follows a real Redis: pub/sub updates, Redis away (stale, last snapshot
  kept, decide() goes on), Redis back.
- Cross-language: it emits, the Python worker joins and publishes, its next decisions follow
  the snapshots, and a path that degrades loses its traffic.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from aiokafka.partitioner import murmur2

from schemas import DecisionEvent, OutcomeEvent, PolicySnapshot, Topics
from stream_workers import EmbeddedBroker, WorkerSettings, create_topics
from stream_workers.local.stack import free_port, start_redis_server

from _pipeline import Worker, snapshot
from _support import read_topic, wait_until

PACKAGE = Path(__file__).resolve().parents[2] / "sdk-typescript"
SCRIPTS = PACKAGE / "build" / "test" / "integration"


def _newest(paths: list[Path]) -> float:
    return max((p.stat().st_mtime for p in paths), default=0.0)


@pytest.fixture(scope="module")
def node() -> str:
    """node, with the package installed and its tests compiled (as `make test` leaves them)."""
    binary = shutil.which("node")
    npm = shutil.which("npm")
    if binary is None or npm is None:
        pytest.fail("node and npm are needed for the TypeScript SDK's tests (Node.js 20+)")
    if not (PACKAGE / "node_modules" / ".package-lock.json").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=PACKAGE, check=True)
    sources = [
        *PACKAGE.glob("src/*.ts"),
        *PACKAGE.glob("test/**/*.ts"),
        *PACKAGE.glob("bench/*.ts"),
    ]
    if _newest(sources) > _newest(list(SCRIPTS.glob("*.js"))):
        subprocess.run([npm, "run", "--silent", "build:test"], cwd=PACKAGE, check=True)
    return binary


class Script:
    """A node script: its JSON lines on stdout, steps answered on stdin."""

    def __init__(self, node: str, name: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [node, str(SCRIPTS / f"{name}.js")],
            cwd=PACKAGE,
            env={**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_errors, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _read_errors(self) -> None:
        assert self.process.stderr is not None
        self.stderr.extend(self.process.stderr)

    def next(self, timeout: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.process.kill()
            raise AssertionError(f"no output within {timeout:.0f} s") from None
        if line is None:
            self.process.wait(10)
            raise AssertionError(
                f"script exited {self.process.returncode}:\n{''.join(self.stderr)[-3000:]}"
            )
        parsed: dict[str, Any] = json.loads(line)
        return parsed

    def expect_step(self, name: str, timeout: float) -> dict[str, Any]:
        message = self.next(timeout)
        assert message.get("step") == name, message
        return message

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def result(self, timeout: float) -> dict[str, Any]:
        message = self.next(timeout)
        assert "result" in message, message
        self.process.wait(30)
        assert self.process.returncode == 0, "".join(self.stderr)[-3000:]
        result: dict[str, Any] = message["result"]
        return result

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def scripts() -> Iterator[list[Script]]:
    started: list[Script] = []
    yield started
    for script in started:
        script.kill()


def _env(settings: WorkerSettings, **extra: Any) -> dict[str, str]:
    return {
        "OUTROUTE_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "OUTROUTE_REDIS_URL": settings.redis_url.get_secret_value(),
        "OUTROUTE_TOPIC_PREFIX": settings.topic_prefix,
        "OUTROUTE_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        **{k: str(v) for k, v in extra.items()},
    }


def _check_events(settings: WorkerSettings, topics: Topics, traces: list[str]) -> None:
    """Every trace's decision and outcome, valid, keyed by trace id, where murmur2 puts it."""
    expected = set(traces)
    partitions = topics.decisions.partitions
    for topic, model in ((topics.decisions, DecisionEvent), (topics.outcomes, OutcomeEvent)):
        messages = read_topic(
            settings.bootstrap_servers,
            topic.name,
            until=lambda got: len(got) >= len(expected),
            timeout=60,
        )
        seen = set()
        for message in messages:
            event = model.model_validate_json(message.value())
            key = message.key()
            assert key == event.trace_id.encode()
            assert message.partition() == (murmur2(key) & 0x7FFFFFFF) % partitions
            seen.add(event.trace_id)
            if isinstance(event, DecisionEvent):
                assert event.goal == "ts-emit"
                assert event.service == "ts-integration"
                assert event.candidates == ("alpha", "beta", "gamma")
        assert seen == expected, f"{topic.name}: {len(seen)} traces, {len(messages)} messages"


@pytest.mark.both_brokers
def test_typescript_events_are_valid_and_partitioned_like_pythons(
    node: str, settings: WorkerSettings, topics: Topics, scripts: list[Script]
) -> None:
    script = Script(node, "emit", _env(settings, DECISIONS=2000))
    scripts.append(script)
    result = script.result(timeout=120)
    stats = result["stats"]
    assert stats["emitted"] == stats["delivered"] == 4000
    assert (stats["pending"], stats["dropped"], stats["failed"]) == (0, 0, 0)
    _check_events(settings, topics, result["traces"])


def test_typescript_events_made_while_the_broker_is_down_are_delivered_when_it_is_back(
    node: str, redis_url: str, prefix: str, scripts: list[Script], tmp_path: Path
) -> None:
    """The embedded broker restarts in a second on the same port (its memory storage starts
    empty, so the topics are created again); the router's connection breaks and comes back.
    The batches are gzip-compressed here (the other tests send them uncompressed)."""
    port = free_port()
    settings = WorkerSettings(
        bootstrap_servers=f"127.0.0.1:{port}",
        redis_url=redis_url,
        topic_prefix=prefix,
        redis_key_prefix=prefix,
        partitions=4,
    )
    broker = EmbeddedBroker(port=port, log_path=tmp_path / "broker.log").start()
    try:
        create_topics(settings)
        env = _env(settings, DECISIONS=1000, RESTART=1, COMPRESSION="gzip")
        script = Script(node, "emit", env)
        scripts.append(script)
        assert script.expect_step("delivered", timeout=60)["delivered"] == 1000
        broker.stop()
        script.go()
        queued = script.expect_step("queued", timeout=60)
        assert queued["pending"] == 1000  # the second half: nothing could leave
        broker = EmbeddedBroker(port=port, log_path=tmp_path / "broker-2.log").start()
        create_topics(settings)
        script.go()
        result = script.result(timeout=120)
        assert result["stats"]["delivered"] == result["stats"]["emitted"] == 2000
        _check_events(settings, settings.topics(), result["traces"])
    finally:
        broker.stop()


def test_typescript_policy_cache_follows_a_real_redis_that_goes_away_and_comes_back(
    node: str, prefix: str, scripts: list[Script]
) -> None:
    private = start_redis_server()
    port = int(private.url.rsplit(":", 1)[1].split("/")[0])
    try:
        env = {"OUTROUTE_REDIS_URL": private.url, "OUTROUTE_REDIS_KEY_PREFIX": prefix}
        script = Script(node, "cache", env)
        scripts.append(script)
        script.expect_step("subscribed", timeout=60)
        private.stop()
        script.go()
        stale = script.expect_step("stale", timeout=60)
        assert stale["decided"] >= 10
        private = start_redis_server(port=port)
        script.go()
        result = script.result(timeout=60)
        assert result["away"]["policyStale"] is True
        assert result["away"]["policyVersion"] == 2
        assert result["back"]["policyVersion"] == 3
        assert result["back"]["policyStale"] is False
    finally:
        private.stop()


@pytest.mark.both_brokers
def test_typescript_router_follows_the_python_workers_snapshots(
    node: str,
    settings: WorkerSettings,
    topics: Topics,
    redis_client: redis.Redis,
    workers: list[Worker],
    scripts: list[Script],
    tmp_path: Path,
) -> None:
    workers.append(Worker(settings, tmp_path))
    # The router's own outcomes off: what moves its traffic is the workers' snapshots.
    env = _env(settings, WARMUP=400, WINDOW=300, MAX_SHARE=0.15, LOCAL_OUTCOMES=0)
    script = Script(node, "e2e", env)
    scripts.append(script)
    result = script.result(timeout=180)
    # Before the degradation both paths served; at the end the degraded one is left.
    assert result["fadingShareDuringWarmup"] > 0.3, result
    assert result["fadingShareAtEnd"] < 0.15, result
    assert result["reasons"].get("exploit", 0) > 0, result
    assert result["policyVersions"] >= 2, result
    decisions = result["decisions"]
    assert result["stats"]["delivered"] == 2 * decisions

    def learned_everything() -> PolicySnapshot | None:
        snap = snapshot(redis_client, settings, "ts-e2e")
        if snap is None or sum(p.n for p in snap.paths.values()) < decisions:
            return None
        return snap

    snap = wait_until(learned_everything, timeout=60, what="every TypeScript outcome learned")
    assert sum(p.n for p in snap.paths.values()) == decisions
    # What the TypeScript router decided with is what the worker learned from its outcomes.
    assert snap.paths["fading"].mean < snap.paths["steady"].mean - 0.1, snap
    assert result["policy"]["version"] <= snap.version


def test_typescript_benchmark_runs_and_delivers_what_it_produces(
    node: str, settings: WorkerSettings, topics: Topics, scripts: list[Script]
) -> None:
    """A short run of sdk-typescript/bench/decide.js (its figures are not checked here)."""
    env = _env(settings, BENCH_ITERATIONS=2000, BENCH_LOOP=2000)
    process = subprocess.run(
        [node, str(PACKAGE / "build" / "bench" / "decide.js")],
        cwd=PACKAGE,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout)
    assert [row["paths"] for row in result["decide"]] == [2, 10, 50]
    emission = result["emission"]
    assert emission["produced"] == emission["delivered"] == 4000
    assert (emission["pending"], emission["dropped"], emission["failed"]) == (0, 0, 0)
