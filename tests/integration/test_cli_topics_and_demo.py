"""`outroute topics ...` and `outroute demo`, run as a user runs them."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from stream_workers import TopicLayoutError, WorkerSettings, create_topics, verify_join_topics
from stream_workers.local.stack import _port_open, free_port

from _support import wait_until

OUTROUTE = str(Path(sys.executable).parent / "outroute")


def outroute(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OUTROUTE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.both_brokers
def test_topics_create_is_idempotent(settings: WorkerSettings, prefix: str) -> None:
    flags = ["--bootstrap-servers", settings.bootstrap_servers, "--topic-prefix", prefix]
    first = outroute("topics", "create", *flags, "--partitions", "3", "--json")
    assert first.returncode == 0, first.stderr
    rows = [json.loads(line) for line in first.stdout.splitlines()]
    assert {r["topic"]: (r["partitions"], r["status"]) for r in rows} == {
        f"{prefix}.decisions": (3, "created"),
        f"{prefix}.outcomes": (3, "created"),
        f"{prefix}.path-deltas": (3, "created"),
        f"{prefix}.alerts": (1, "created"),
        f"{prefix}.dead-letter": (1, "created"),
        f"{prefix}.posterior-state": (3, "created"),
        f"{prefix}.overrides": (1, "created"),
    }
    again = outroute("topics", "create", *flags, "--partitions", "3", "--json")
    assert again.returncode == 0, again.stderr
    assert {json.loads(line)["status"] for line in again.stdout.splitlines()} == {"exists"}

    described = outroute("topics", "describe", *flags, "--json")
    assert described.returncode == 0, described.stderr
    assert [json.loads(line)["partitions"] for line in described.stdout.splitlines()] == [
        3,
        3,
        3,
        1,
        1,
        3,
        1,
    ]
    table = outroute("topics", "describe", *flags)
    assert f"{prefix}.decisions" in table.stdout


@pytest.mark.kafka_only
def test_a_replication_factor_above_the_brokers_is_a_clear_error(
    kafka_bootstrap_servers: str, prefix: str
) -> None:
    # The embedded broker accepts any replication factor; Kafka refuses one it cannot reach.
    flags = ["--bootstrap-servers", kafka_bootstrap_servers, "--topic-prefix", prefix]
    result = outroute("topics", "create", *flags, "--replication-factor", "3")
    assert result.returncode == 1
    assert result.stderr.startswith(f"outroute: error: could not create topic {prefix}.")
    assert "replication factor of 3 cannot be reached because only 1 broker" in result.stderr


@pytest.mark.both_brokers
def test_worker_refuses_topics_that_are_not_copartitioned(
    settings: WorkerSettings, prefix: str
) -> None:
    admin = AdminClient(settings.kafka_client_config())
    new = [NewTopic(f"{prefix}.decisions", 4, 1), NewTopic(f"{prefix}.outcomes", 3, 1)]
    for future in admin.create_topics(new).values():
        future.result(10)
    expected = f"{prefix}.decisions has 4 partitions but {prefix}.outcomes has 3"
    with pytest.raises(TopicLayoutError, match=expected):
        verify_join_topics(settings)
    with pytest.raises(TopicLayoutError, match=expected):
        create_topics(settings)
    flags = ["--bootstrap-servers", settings.bootstrap_servers, "--topic-prefix", prefix]
    result = outroute("topics", "describe", *flags)
    assert result.returncode == 1
    assert expected in result.stderr
    assert result.stderr.startswith("outroute: error:")


@pytest.mark.both_brokers
def test_missing_topics_are_reported(settings: WorkerSettings) -> None:
    with pytest.raises(TopicLayoutError, match="do not exist; run `outroute topics create`"):
        verify_join_topics(settings)


def test_unreachable_broker_fails_fast_with_one_line() -> None:
    dead = f"127.0.0.1:{free_port()}"
    result = outroute("topics", "describe", "--bootstrap-servers", dead, "--timeout", "1")
    assert result.returncode == 1
    assert result.stderr == (
        f"outroute: error: could not read topic metadata from {dead}: "
        "Failed to get metadata: Local: Broker transport failure\n"
    )


def _start_demo(*args: str) -> subprocess.Popen[str]:
    """``outroute demo`` with its output (both streams) readable line by line."""
    return subprocess.Popen(
        [OUTROUTE, "demo", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_demo_runs_the_stack_and_stops_cleanly_on_ctrl_c(redis_url: str) -> None:
    demo = _start_demo("--stack-only", "--partitions", "2", "--redis-url", redis_url)
    lines: list[str] = []
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.append(line)
            if "local stack ready" in line:
                break
        output = "".join(lines)
        assert "local stack ready" in output, output
        match = re.search(r"OUTROUTE_BOOTSTRAP_SERVERS=(\S+)", output)
        assert match, output
        bootstrap = match.group(1)
        topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=5).topics
        assert len(topics["outroute.decisions"].partitions) == 2
        assert len(topics["outroute.outcomes"].partitions) == 2
        assert "already running" in output  # it found the test Redis instead of starting one
    finally:
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=30)
    assert demo.returncode == 0, rest
    assert "stopped cleanly" in rest
    host, port = bootstrap.rsplit(":", 1)
    wait_until(lambda: not _port_open(host, int(port)), timeout=5, what="the broker to stop")


def _children(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc, which lists each task's children)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = {int(k) for k in (task / "children").read_text().split()}
            except (OSError, ValueError):
                continue
            todo.extend(kids - found)
            found |= kids
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.both_brokers
def test_ctrl_c_during_the_traffic_stops_the_worker_and_the_broker(
    redis_url: str, broker_kind: str
) -> None:
    demo = _start_demo(
        "--no-live", "--requests", "20000", "--redis-url", redis_url, "--broker", broker_kind
    )
    lines: list[str] = []
    children: set[int] = set()
    try:
        assert demo.stdout is not None
        for line in demo.stdout:  # until requests are being routed
            lines.append(line)
            if line.startswith("request "):
                break
        children = _children(demo.pid)
        assert len(children) >= 2, "".join(lines)  # the broker and the worker, at least
    finally:
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, "".join(lines) + rest
    assert "interrupted" in rest
    assert "outroute vs a hard-coded fallback chain" in rest  # the summary of what ran
    assert "stopped cleanly" in rest
    wait_until(lambda: not any(_alive(pid) for pid in children), timeout=10, what="no children")


def test_demo_with_a_duration_exits_by_itself(redis_url: str) -> None:
    result = outroute(
        "demo", "--stack-only", "--duration", "0.5", "--redis-url", redis_url, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stopped cleanly" in result.stdout


@pytest.mark.both_brokers
def test_demo_routes_around_the_degradation_and_beats_the_fallback_chain(
    redis_url: str, broker_kind: str
) -> None:
    result = outroute(
        "demo",
        "--broker",
        broker_kind,
        "--no-live",
        "--requests",
        "1500",
        "--speed",
        "300",
        "--seed",
        "1",
        "--redis-url",
        redis_url,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "stopped cleanly" in out
    cell = r"\s+([\d.]+)% │"
    rows = {
        m.group(1): [float(x) for x in m.groups()[1:]]
        for m in re.finditer(r"│ (outroute|fallback chain)\s+│" + cell * 4, out)
    }
    assert set(rows) == {"outroute", "fallback chain"}, out
    _, degraded, _, overall = rows["outroute"]  # phases: normal, degraded, recovered
    chain_degraded, chain_overall = rows["fallback chain"][1], rows["fallback chain"][3]
    # The chain keeps sending everything to the degraded path (30 % success): outroute must do
    # far better in that phase and overall on the very same requests.
    assert chain_degraded < 40
    assert degraded > chain_degraded + 25, out
    assert overall > chain_overall, out
    match = re.search(r"outroute sent (\d+)% of requests to large-model", out)
    assert match, out
    assert int(match.group(1)) < 50
