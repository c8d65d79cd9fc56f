"""The dashboard's API against a real broker, Redis, a running worker and SDK routers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from pydantic import SecretStr

from schemas import PathStats, PolicySnapshot, Topics
from schemas.overrides import OverrideRecord
from stream_workers import WorkerSettings
from stream_workers.dashboard import Access, DashboardServer
from stream_workers.dashboard.server import SECURITY_HEADERS
from stream_workers.local.stack import free_port

from _pipeline import Worker
from _support import read_topic, wait_until
from _traffic import Traffic

GOAL = "answer"
RATES = {"large-model": 0.95, "medium-model": 0.85, "small-model": 0.7}
TOKEN = "a-test-token-0123456789"
OUTROUTE = str(Path(sys.executable).parent / "outroute")


@pytest.fixture
def traffic(
    settings: WorkerSettings,
    topics: Topics,
    redis_client: redis.Redis,
    workers: list[Worker],
    tmp_path: Path,
) -> Iterator[Traffic]:
    """A worker and two routers of GOAL deciding 150 times a second, until the test ends."""
    worker = Worker(settings, tmp_path)
    workers.append(worker)
    running = Traffic(settings, GOAL, RATES, rate=150.0).start()
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def dashboards(settings: WorkerSettings) -> Iterator[dict[str, DashboardServer]]:
    """A dashboard with the token and a read-only one, on free ports."""
    servers = {
        "token": DashboardServer(settings, port=0, access=Access(SecretStr(TOKEN))).start(),
        "read-only": DashboardServer(settings, port=0).start(),
    }
    try:
        yield servers
    finally:
        for server in servers.values():
            server.close()


def get(server: DashboardServer, path: str) -> httpx.Response:
    return httpx.get(server.url + path.lstrip("/"), timeout=10)


def post(
    server: DashboardServer, path: str, body: Any = None, token: str | None = TOKEN
) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.post(server.url + path.lstrip("/"), json=body or {}, headers=headers, timeout=30)


def goal_view(server: DashboardServer, window: str = "hour") -> dict[str, Any] | None:
    response = get(server, f"/api/goals/{GOAL}?window={window}")
    return response.json() if response.status_code == 200 else None


def paths_of(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["path"]: p for p in view["paths"]}


@pytest.mark.both_brokers
def test_the_api_shows_what_the_pipeline_learned(
    traffic: Traffic, dashboards: dict[str, DashboardServer]
) -> None:
    server = dashboards["read-only"]
    goals = wait_until(
        lambda: [g for g in get(server, "/api/goals").json() if g["goal"] == GOAL],
        timeout=60,
        what="the goal in the goal list",
    )
    assert goals[0]["version"] >= 1

    def learned() -> dict[str, Any] | None:
        view = goal_view(server)
        if view is None or set(paths_of(view)) != set(RATES):
            return None
        outcomes = sum(view["health"]["counts"]["outcomes"])
        shares = [p["share_now"] for p in view["paths"]]
        enough = sum(view["series"]["total_n"]) >= 300 and outcomes >= 300
        return view if enough and None not in shares else None

    view = wait_until(learned, timeout=60, what="300 outcomes in the history and health")
    for row in view["paths"]:
        low, high = row["interval_95"]
        assert low <= row["mean"] <= high
        assert row["status"] in ("cold", "healthy", "degrading")
        assert row["n"] >= 1
        assert row["disabled"] is None
    assert set(view["series"]["paths"]) == set(RATES)
    assert abs(sum(p["share_now"] for p in view["paths"]) - 1.0) < 1e-9
    # the history counts what the snapshot counts: written in the same transaction, and read
    # after it (so it may hold the outcomes of a few more ticks, never fewer)
    per_path = {p: sum(v["n"]) for p, v in view["series"]["paths"].items()}
    for name, row in paths_of(view).items():
        assert row["n"] <= per_path[name] <= row["n"] + 200, name
    for window in ("day", "week"):
        other = goal_view(server, window)
        assert other is not None
        assert sum(other["series"]["total_n"]) >= 300, window

    # the live feed names the goal whenever its snapshot changes
    with httpx.stream("GET", server.url + "api/events", timeout=30) as feed:
        assert feed.headers["content-type"] == "text/event-stream"
        lines = feed.iter_lines()
        seen: list[str] = []
        for line in lines:
            seen.append(line)
            if line == f"data: {json.dumps(GOAL)}":
                break
        assert "event: ready" in seen
        assert "event: goal" in seen


@pytest.mark.both_brokers
def test_a_path_disabled_with_the_token_leaves_every_router_and_is_recorded(
    traffic: Traffic, dashboards: dict[str, DashboardServer], settings: WorkerSettings
) -> None:
    server, read_only = dashboards["token"], dashboards["read-only"]
    wait_until(
        lambda: (view := goal_view(server)) and set(paths_of(view)) == set(RATES),
        timeout=60,
        what="a snapshot that knows every path",
    )
    target = "large-model"
    url = f"/api/goals/{GOAL}/paths/{target}/disable"

    refused = post(read_only, url, {"for": "10m"})
    assert refused.status_code == 403
    assert "read-only" in refused.json()["error"]
    assert post(server, url, {"for": "10m"}, token=None).status_code == 401
    assert post(server, url, {"for": "10m"}, token=TOKEN + "x").status_code == 401
    assert get(server, f"/api/goals/{GOAL}").json()["overrides"]["active"] is None

    done = post(server, url, {"for": "10m", "reason": "bad answers since the deploy"})
    assert done.status_code == 200, done.text
    assert set(done.json()["overrides"]["disabled"]) == {target}
    actor = Access(SecretStr(TOKEN)).actor

    # every router stops choosing it (decisions already made may still report)
    wait_until(
        lambda: traffic.since(2.0)[target] == 0 and sum(traffic.since(2.0).values()) > 100,
        timeout=10,
        what=f"no decision for {target} in the last 2 s",
    )
    view = wait_until(
        lambda: (v := goal_view(server)) and paths_of(v)[target]["share_now"] == 0.0 and v,
        timeout=30,
        what=f"{target}'s traffic now at 0%",
    )
    row = paths_of(view)[target]
    assert row["status"] == "disabled"
    assert row["disabled"]["reason"] == "bad answers since the deploy"
    assert row["disabled"]["by"] == actor
    (record,) = view["overrides"]["log"]
    assert (record["action"], record["path"], record["by"]) == ("disable", target, actor)
    summary = next(g for g in get(server, "/api/goals").json() if g["goal"] == GOAL)
    assert summary["paths"][target] == "disabled"

    # on the ops topic too, and never with the token
    messages = read_topic(
        settings.bootstrap_servers, settings.topics().overrides.name, until=lambda m: len(m) >= 1
    )
    on_topic = OverrideRecord.model_validate_json(messages[0].value())
    assert (on_topic.action, on_topic.path, on_topic.by) == ("disable", target, actor)
    assert TOKEN.encode() not in messages[0].value()

    # the rules of the overrides hold through the dashboard: not every path
    assert post(server, f"/api/goals/{GOAL}/paths/medium-model/disable").status_code == 200
    last = post(server, f"/api/goals/{GOAL}/paths/small-model/disable")
    assert last.status_code == 409, last.text
    assert "every" in last.json()["error"]

    assert post(server, f"/api/goals/{GOAL}/paths/{target}/enable").status_code == 200
    wait_until(lambda: traffic.since(2.0)[target] > 0, timeout=10, what=f"{target} chosen again")

    # a pin sends every decision to its path, until unpinned
    pinned = post(server, f"/api/goals/{GOAL}/pin", {"path": "small-model", "for": "5m"})
    assert pinned.status_code == 200, pinned.text
    assert pinned.json()["overrides"]["pinned"]["path"] == "small-model"
    wait_until(
        lambda: set(traffic.since(2.0)) == {"small-model"} and traffic.since(2.0).total() > 100,
        timeout=10,
        what="every decision on the pinned path",
    )
    view = goal_view(server)
    assert view is not None
    assert [p["path"] for p in view["paths"] if p["pinned"]] == ["small-model"]
    assert post(server, f"/api/goals/{GOAL}/unpin").status_code == 200
    wait_until(lambda: traffic.since(2.0)[target] > 0, timeout=10, what="traffic after unpin")


def test_requests_it_refuses_name_what_was_wrong(
    dashboards: dict[str, DashboardServer],
    settings: WorkerSettings,
    topics: Topics,
    redis_client: redis.Redis,
) -> None:
    keys = settings.redis_keys()
    stats = PathStats(alpha=30.0, beta=4.0, n=40, recent_n=20, recent_successes=17.0)
    snapshot = PolicySnapshot(
        goal=GOAL, version=1, generated_at=datetime.now(UTC), paths={"a": stats, "b": stats}
    )
    redis_client.set(keys.policy(GOAL), snapshot.model_dump_json())
    redis_client.sadd(keys.goals, GOAL)
    server = dashboards["token"]
    cases = [
        (get(server, f"/api/goals/{GOAL}?window=year"), 400, "window: must be one of"),
        (get(server, "/api/goals/nothing-here"), 404, "goal 'nothing-here' has no snapshot"),
        (get(server, "/api/nowhere"), 404, "Not Found"),
        (post(server, f"/api/goals/{GOAL}/paths/a/disable", {"for": "ever"}), 400, "for: "),
        (post(server, f"/api/goals/{GOAL}/paths/a/disable", {"x": 1}), 400, "x: unknown field"),
        (post(server, f"/api/goals/{GOAL}/pin", {}), 400, "path: pinning needs the path"),
        (post(server, f"/api/goals/{GOAL}/paths/zz/disable"), 409, "'zz'"),
        (post(server, f"/api/goals/{GOAL}/unpin"), 409, "is not pinned"),
        (post(server, f"/api/goals/{GOAL}/paths/a/enable"), 409, "is not disabled"),
    ]
    for response, status, message in cases:
        assert response.status_code == status, response.text
        assert message in response.json()["error"], response.text
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value
    bad_json = httpx.post(
        server.url + f"api/goals/{GOAL}/paths/a/disable",
        content=b"{nope",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    assert bad_json.status_code == 400
    assert bad_json.json() == {"error": "body: expected a JSON object"}

    # the page and its assets: the page's own files only, and no secret anywhere
    for path in ("/", "/static/app.js", "/static/style.css", "/api/config", f"/api/goals/{GOAL}"):
        response = get(server, path)
        assert response.status_code == 200, path
        assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert TOKEN not in response.text
        assert "https://" not in response.text  # nothing from another origin: works offline
    page = get(server, "/").text
    assert sorted(re.findall(r'(?:src|href)="([^"]*)"', page)) == [
        "/static/app.js",
        "/static/style.css",
        "data:,",
    ]
    config = get(server, "/api/config").json()
    assert config == {
        "writable": True,
        "windows": ["hour", "day", "week"],
        "redis": settings.redis_url_redacted,
        "redis_key_prefix": settings.redis_key_prefix,
        "topic_prefix": settings.topic_prefix,
    }
    assert get(dashboards["read-only"], "/api/config").json()["writable"] is False


def _env(settings: WorkerSettings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OUTROUTE_DASHBOARD_TOKEN"}
    env.update(
        OUTROUTE_REDIS_URL=settings.redis_url.get_secret_value(),
        OUTROUTE_REDIS_KEY_PREFIX=settings.redis_key_prefix,
        **extra,
    )
    return env


def test_outroute_dashboard_refuses_another_address_without_a_token(
    settings: WorkerSettings,
) -> None:
    result = subprocess.run(
        [OUTROUTE, "dashboard", "--bind", "0.0.0.0", "--port", str(free_port())],
        env=_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr == (
        "outroute: error: refusing to bind the dashboard to 0.0.0.0, which is not a loopback "
        "address, without a token: set OUTROUTE_DASHBOARD_TOKEN (state changes will need it) "
        "or bind 127.0.0.1\n"
    )


def test_outroute_dashboard_serves_until_ctrl_c(settings: WorkerSettings) -> None:
    port = free_port()
    process = subprocess.Popen(  # as docs/deploy.md shows it: on every address, with a token
        [OUTROUTE, "dashboard", "--bind", "0.0.0.0", "--port", str(port)],
        env=_env(settings, OUTROUTE_DASHBOARD_TOKEN=TOKEN),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first == f"dashboard: http://0.0.0.0:{port}/ (changes need the token); " + (
            "Ctrl-C to stop\n"
        )
        config = httpx.get(f"http://127.0.0.1:{port}/api/config", timeout=10).json()
        assert config["writable"] is True
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    assert process.returncode == 0, rest
    assert rest == "dashboard stopped\n"


def test_outroute_demo_prints_the_dashboard_and_serves_it_while_it_runs(redis_url: str) -> None:
    port = free_port()
    flags = ["--no-live", "--requests", "20000", "--redis-url", redis_url]
    demo = subprocess.Popen(
        [OUTROUTE, "demo", *flags, "--dashboard-port", str(port)],
        env={k: v for k, v in os.environ.items() if k != "OUTROUTE_DASHBOARD_TOKEN"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("request "):
                break
        expected = (
            f"dashboard: http://127.0.0.1:{port}/ (read-only: OUTROUTE_DASHBOARD_TOKEN is unset)\n"
        )
        assert expected in lines, "".join(lines)
        goals = wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/api/goals", timeout=10).json(),
            timeout=30,
            what="the demo's goal on its dashboard",
        )
        assert [g["goal"] for g in goals] == ["answer"]
        refused = httpx.post(
            f"http://127.0.0.1:{port}/api/goals/answer/paths/small-model/disable", timeout=10
        )
        assert refused.status_code == 403
    finally:
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, "".join(lines) + rest
    assert "stopped cleanly" in rest
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/api/config", timeout=5)


def test_closing_the_dashboard_ends_its_open_feeds(
    settings: WorkerSettings, redis_client: redis.Redis
) -> None:
    server = DashboardServer(settings, port=0).start()
    closed = False
    try:
        with httpx.stream("GET", server.url + "api/events", timeout=30) as feed:
            lines = feed.iter_lines()
            assert [next(lines), next(lines), next(lines)] == [
                "retry: 2000",
                "event: ready",
                "data: {}",
            ]
            server.close()  # with the feed open: returns, and the feed's stream ends
            closed = True
            assert [line for line in lines if line] == []
    finally:
        if not closed:
            server.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "api/config", timeout=5)
