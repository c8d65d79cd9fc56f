"""Overrides end to end: the CLI against a real broker, Redis and a running worker, and two
routers of the goal that follow each change within their snapshot bound."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka.admin import AdminClient

from producer_sdk import CacheOptions, ConnectionOptions, Router
from schemas import DecisionEvent, PathStats, PolicySnapshot, Topics
from schemas.overrides import GoalOverrides, OverrideRecord
from stream_workers import OverrideRefused, WorkerError, WorkerSettings
from stream_workers.cli import main
from stream_workers.ops.overrides import apply

from _pipeline import Worker
from _support import read_topic, wait_until

GOAL = "summarize"
PATHS = ("gpt-4o", "claude-sonnet-4", "small-model")
#: the SDK's default poll is the safety net; pub/sub brings a change at once. Waits below are
#: bounds on "until", never expectations of a duration.
BOUND = 10.0
DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


@pytest.fixture
def cli_env(settings: WorkerSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reads OUTROUTE_* as an operator's shell would have them."""
    monkeypatch.setenv("OUTROUTE_BOOTSTRAP_SERVERS", settings.bootstrap_servers)
    monkeypatch.setenv("OUTROUTE_REDIS_URL", settings.redis_url.get_secret_value())
    monkeypatch.setenv("OUTROUTE_TOPIC_PREFIX", settings.topic_prefix)
    monkeypatch.setenv("OUTROUTE_REDIS_KEY_PREFIX", settings.redis_key_prefix)


@pytest.fixture
def routers(
    settings: WorkerSettings,
    topics: Topics,
    redis_client: redis.Redis,
    workers: list[Worker],
    tmp_path: Path,
) -> Iterator[list[Router]]:
    """Two routers of the goal, reading Redis and sending to Kafka, after the worker has
    published a snapshot that knows every path."""
    connection = ConnectionOptions(
        bootstrap_servers=settings.bootstrap_servers,
        topic_prefix=settings.topic_prefix,
        redis_url=settings.redis_url,
        redis_key_prefix=settings.redis_key_prefix,
    )
    worker = Worker(settings, tmp_path)
    workers.append(worker)
    made = [
        Router(GOAL, PATHS, connection=connection, seed=seed, cache=CacheOptions(init_wait=5))
        for seed in (1, 2)
    ]
    key = settings.redis_keys().policy(GOAL)

    def every_path_known() -> bool:
        if worker.process.poll() is not None:
            pytest.fail(f"worker exited:\n{worker.log()[-4000:]}")
        for router in made:
            for _ in range(20):
                decision = router.decide()
                decision.report(decision.path != "small-model", latency_ms=100.0)
            router.flush(5)
        raw = redis_client.get(key)
        return raw is not None and set(PolicySnapshot.model_validate_json(raw).paths) == set(PATHS)

    try:
        wait_until(every_path_known, timeout=90, interval=0.2, what="a snapshot of every path")
        yield made
    finally:
        for router in made:
            router.close(timeout=1)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def chosen(router: Router, n: int = 300) -> set[tuple[str, str]]:
    return {(d.path, d.reason) for d in (router.decide() for _ in range(n))}


def following(routers: list[Router], version: int | None) -> bool:
    return all(router.get_policy().overrides_version == version for router in routers)


def records(settings: WorkerSettings, count: int) -> list[OverrideRecord]:
    messages = read_topic(
        settings.bootstrap_servers,
        settings.topics().overrides.name,
        until=lambda m: len(m) >= count,
    )
    for message in messages:
        assert message.key() == GOAL.encode()
    return [OverrideRecord.model_validate_json(m.value()) for m in messages]


@pytest.mark.both_brokers
@pytest.mark.usefixtures("cli_env")
def test_disable_and_pin_reach_every_router_and_are_recorded(
    settings: WorkerSettings,
    routers: list[Router],
    redis_client: redis.Redis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = datetime.now(UTC)
    code, out, err = run(
        ["path", "disable", GOAL, "gpt-4o", "--reason", "provider incident", "--by", "oncall"],
        capsys,
    )
    assert (code, err) == (0, "")
    assert out.startswith("disabled path gpt-4o of goal summarize until undone;")
    stored = GoalOverrides.model_validate_json(
        redis_client.get(settings.redis_keys().overrides(GOAL)) or b""
    )
    assert set(stored.disabled) == {"gpt-4o"}
    wait_until(lambda: following(routers, stored.version), timeout=BOUND, what="both routers")
    for router in routers:
        # gpt-4o gets nothing; small-model, which always failed, only while it is cold
        # (exploration skips a path known to be worse than the tie set)
        paths = {path for path, _ in chosen(router)}
        assert "claude-sonnet-4" in paths
        assert paths <= {"claude-sonnet-4", "small-model"}
        assert router.get_policy().path("gpt-4o").override is not None

    code, out, _ = run(["goal", "pin", GOAL, "small-model", "--for", "1h", "--json"], capsys)
    assert code == 0
    pinned = GoalOverrides.model_validate_json(json.dumps(json.loads(out)["overrides"]))
    wait_until(lambda: following(routers, pinned.version), timeout=BOUND, what="the pin")
    for router in routers:
        assert chosen(router) == {("small-model", "override")}
    # The decision events say so too, as the pipeline reads them.
    decisions = read_topic(
        settings.bootstrap_servers,
        settings.topics().decisions.name,
        until=lambda m: any(b'"override"' in (x.value() or b"") for x in m),
    )
    events = [DecisionEvent.model_validate_json(m.value()) for m in decisions]
    assert {e.path for e in events if e.reason == "override"} == {"small-model"}

    # Disabling the last path not disabled yet is refused, and nothing is written.
    code, _, _ = run(["goal", "unpin", GOAL], capsys)
    assert code == 0
    assert run(["path", "disable", GOAL, "small-model"], capsys)[0] == 0
    log_before = redis_client.lrange(settings.redis_keys().override_log(GOAL), 0, -1)
    stored_before = redis_client.get(settings.redis_keys().overrides(GOAL))
    code, out, err = run(["path", "disable", GOAL, "claude-sonnet-4"], capsys)
    assert (code, out) == (1, "")
    assert err == (
        "outroute: error: disabling 'claude-sonnet-4' would disable every path of goal "
        "'summarize' (claude-sonnet-4, gpt-4o, small-model): enable another path first, or "
        "pin the goal instead\n"
    )
    assert redis_client.lrange(settings.redis_keys().override_log(GOAL), 0, -1) == log_before
    assert redis_client.get(settings.redis_keys().overrides(GOAL)) == stored_before

    # Every accepted change is on the ops topic, in order, with who, when, why, until when.
    got = records(settings, 4)
    assert [(r.action, r.path) for r in got] == [
        ("disable", "gpt-4o"),
        ("pin", "small-model"),
        ("unpin", None),
        ("disable", "small-model"),
    ]
    first = got[0]
    assert (first.by, first.reason, first.until) == ("oncall", "provider incident", None)
    assert before <= first.at <= datetime.now(UTC)
    pin = got[1]
    assert pin.until == pin.at + timedelta(hours=1)
    assert [r.event_id for r in got] == [
        OverrideRecord.model_validate_json(raw).event_id
        for raw in reversed(redis_client.lrange(settings.redis_keys().override_log(GOAL), 0, -1))
    ]


@pytest.mark.both_brokers
@pytest.mark.usefixtures("cli_env")
def test_an_override_for_two_seconds_ends_by_itself(
    settings: WorkerSettings,
    routers: list[Router],
    redis_client: redis.Redis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(["path", "disable", GOAL, "claude-sonnet-4", "--for", "2s"], capsys)
    assert code == 0
    assert "until 20" in out
    # Redis drops the value when its last entry ends; readers do not wait for that.
    assert 0 < redis_client.pttl(settings.redis_keys().overrides(GOAL)) <= 2000
    wait_until(lambda: not following(routers, None), timeout=BOUND, what="the disable")
    # That routers avoid a disabled path is the test above; here its two seconds may be over
    # by the time they have read it. Nothing is written again: each router drops the entry
    # when its end passes.
    wait_until(lambda: following(routers, None), timeout=BOUND, what="the end of the disable")
    for router in routers:
        assert "claude-sonnet-4" in {path for path, _ in chosen(router, 2000)}
    code, out, _ = run(["overrides", GOAL, "--json"], capsys)
    shown = json.loads(out)
    assert shown["active"] is None
    assert [r["action"] for r in shown["log"]] == ["disable"]


def pinned_to(router: Router, path: str) -> bool:
    return chosen(router, 50) == {(path, "override")}


def deploy_commands() -> list[str]:
    section = DEPLOY.read_text().split("## Overrides", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.startswith("outroute ")]


@pytest.mark.usefixtures("cli_env")
def test_the_commands_of_docs_deploy_md_do_what_it_says(
    settings: WorkerSettings, routers: list[Router], capsys: pytest.CaptureFixture[str]
) -> None:
    commands = deploy_commands()
    assert len(commands) == 5
    outputs: dict[str, Any] = {}
    for command in commands:
        argv = shlex.split(command)[1:]
        code, out, err = run(argv, capsys)
        assert (code, err) == (0, ""), command
        outputs[" ".join(argv[:2])] = out
        if argv[:2] == ["goal", "pin"]:
            wait_until(lambda: all(pinned_to(r, "claude-sonnet-4") for r in routers), timeout=BOUND)
    shown = outputs["overrides summarize"]
    assert "gpt-4o" in shown
    assert "disabled" in shown
    assert "pinned" in shown
    assert "provider incident 4711" in shown
    wait_until(lambda: following(routers, None), timeout=BOUND, what="everything undone")
    code, out, _ = run(["overrides", GOAL], capsys)
    assert out.startswith("goal summarize: no override in force\n")

    # The README's line is one of these commands.
    readme = (DEPLOY.parents[1] / "README.md").read_text()
    [line] = [line for line in readme.splitlines() if line.startswith("outroute path ")]
    code, out, err = run(shlex.split(line, comments=True)[1:], capsys)
    assert (code, err) == (0, "")
    assert out.startswith("disabled path gpt-4o of goal summarize until 20")


def test_one_change_at_a_time_per_goal(settings: WorkerSettings, redis_client: redis.Redis) -> None:
    """While another change holds the goal's lock, a change waits for it, then gives up
    without writing anything: two people cannot both disable the last two paths."""
    keys = settings.redis_keys()
    snapshot = PolicySnapshot(goal=GOAL, version=1, generated_at=datetime.now(UTC), paths={})
    redis_client.set(keys.policy(GOAL), snapshot.model_dump_json())
    record = OverrideRecord(
        event_id="e1", goal=GOAL, action="unpin", by="ops", at=datetime.now(UTC)
    )
    lock = redis_client.lock(keys.override_lock(GOAL), timeout=60)
    assert lock.acquire(blocking=False)
    try:
        with pytest.raises(WorkerError, match="another change to the overrides of goal"):
            apply(settings, record, timeout=0.5)
    finally:
        lock.release()
    with pytest.raises(OverrideRefused, match="goal 'summarize' is not pinned"):
        apply(settings, record, timeout=5)
    assert redis_client.llen(keys.override_log(GOAL)) == 0


@pytest.mark.usefixtures("cli_env")
def test_without_the_ops_topic_nothing_changes(
    settings: WorkerSettings, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    """A change that cannot be recorded is not made (the broker may auto-create topics: the
    command must not create this one with the wrong layout either)."""
    keys = settings.redis_keys()
    paths = {
        name: PathStats(alpha=2, beta=2, n=2, recent_n=0, recent_successes=0.0) for name in PATHS
    }
    snapshot = PolicySnapshot(goal=GOAL, version=1, generated_at=datetime.now(UTC), paths=paths)
    redis_client.set(keys.policy(GOAL), snapshot.model_dump_json())
    code, out, err = run(["path", "disable", GOAL, "gpt-4o"], capsys)
    assert (code, out) == (1, "")
    topic = settings.topics().overrides.name
    assert err == (
        f"outroute: error: topic {topic} does not exist on {settings.bootstrap_servers}; "
        "create it with `outroute topics create`; nothing changed\n"
    )
    assert redis_client.get(keys.overrides(GOAL)) is None
    assert redis_client.llen(keys.override_log(GOAL)) == 0
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    assert topic not in admin.list_topics(timeout=10).topics
