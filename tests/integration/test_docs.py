"""Every Python snippet of docs/sdk.md and docs/migrating.md runs, against an OpenAI-compatible
server on loopback, and emits what the page says it emits; the page's way to report an outcome
from another service is the outcome the pipeline learns."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from _openai_server import OpenAIServer, openai_server

import producer_sdk
from producer_sdk import Provider, Router
from producer_sdk.testing import InMemorySink, StaticSnapshotSource
from schemas import Topics
from stream_workers import WorkerSettings

from _pipeline import DeltaReader, Worker
from _support import wait_until

DOCS = Path(__file__).resolve().parents[2] / "docs"
BLOCK = re.compile(
    r"(?:<!-- snippet: (?P<name>[^;>]+?)(?:; the server answers (?P<model>\S+) with "
    r"(?P<status>\d+))? -->\n)?```python\n(?P<code>.*?)```\n(?:<!-- emits: (?P<emits>[^>]*) -->)?",
    re.DOTALL,
)
BEHAVIOUR = {"429": "ratelimited", "500": "broken"}


@dataclass
class Snippet:
    page: str
    line: int
    name: str | None
    code: str
    behaviours: dict[str, str]
    emits: dict[str, int] | None


def snippets(page: str) -> list[Snippet]:
    text = (DOCS / page).read_text()
    found = []
    for match in BLOCK.finditer(text):
        emits = None
        if match["emits"] is not None:
            emits = {k: int(v) for k, v in (kv.split("=") for kv in match["emits"].split())}
        behaviours = {match["model"]: BEHAVIOUR[match["status"]]} if match["model"] else {}
        line = text.count("\n", 0, match.start("code")) + 1
        found.append(Snippet(page, line, match["name"], match["code"], behaviours, emits))
    return found


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with openai_server() as server:
        yield server


def run_page(page: str, server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> list[Snippet]:
    sink = InMemorySink()
    made: list[Router] = []

    class LocalRouter(Router):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("event_sink", sink)
            kwargs.setdefault("snapshot_source", StaticSnapshotSource(None))
            kwargs.setdefault("default_provider", Provider(base_url=server.base_url))
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(producer_sdk, "Router", LocalRouter)
    namespace: dict[str, Any] = {
        "Router": LocalRouter,
        "InMemorySink": InMemorySink,
        "StaticSnapshotSource": StaticSnapshotSource,
        "call_model": lambda model, prompt: f"{model} read it. It says: {prompt[:40]}.",
        "issue_resolved": False,
        "messages": [{"role": "user", "content": "hello"}],
        "looks_right": lambda text: bool(text),
        "GOALS": {"summarize": ["a", "b"], "translate": ["c", "d"]},
    }
    found = snippets(page)
    assert found, f"no python snippet in {page}"
    try:
        for snippet in found:
            server.behaviours = snippet.behaviours
            before = (
                len(sink.decisions),
                len(sink.outcomes),
                sum(o.success for o in sink.outcomes),
            )
            exec(compile(snippet.code, f"{page}:{snippet.line}", "exec"), namespace)
            after = (len(sink.decisions), len(sink.outcomes), sum(o.success for o in sink.outcomes))
            emitted = dict(
                zip(
                    ("decisions", "outcomes", "successes"),
                    map(int.__sub__, after, before),
                    strict=True,
                )
            )
            if snippet.emits is not None:
                got = {k: emitted[k] for k in snippet.emits}
                assert got == snippet.emits, f"{page}:{snippet.line} ({snippet.name})"
    finally:
        for router in made:
            router.close()
    return found


def test_sdk_page_snippets_run(server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    found = run_page("sdk.md", server, monkeypatch)
    assert "external-outcome" in [s.name for s in found]
    streamed = [q["body"] for q in server.requests if q["body"].get("stream")]
    assert len(streamed) == 1


def test_migrating_page_snippets_run_and_emit_what_they_say(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = run_page("migrating.md", server, monkeypatch)
    missing = [s.line for s in found if s.emits is None or s.name is None]
    assert not missing, f"snippets on lines {missing} say neither their name nor what they emit"
    assert {"callables", "completion", "multi-turn", "errors", "threads", "frameworks"} <= {
        s.name for s in found
    }


@pytest.mark.both_brokers
def test_an_outcome_sent_by_another_service_is_the_outcome_learned(
    settings: WorkerSettings,
    topics: Topics,
    redis_client: redis.Redis,
    workers: list[Worker],
    server: OpenAIServer,
    prefix: str,
    tmp_path: Path,
) -> None:
    [snippet] = [s for s in snippets("sdk.md") if s.name == "external-outcome"]
    namespace: dict[str, Any] = {}
    exec(compile(snippet.code, "sdk.md", "exec"), namespace)
    send_verdict = namespace["send_verdict"]
    worker = Worker(settings, tmp_path)
    workers.append(worker)
    reader = DeltaReader(settings)
    router = Router(
        "graded",
        ["gpt-a"],
        connection=settings,
        default_provider=Provider(base_url=server.base_url),
    )
    try:
        graded = router.completion([{"role": "user", "content": "grade me later"}])
        reported = router.completion([{"role": "user", "content": "judged here"}])
        assert router.report(True)
        assert router.flush(30) == 0
        # A grader's verdict on the open decision is learned; on the reported one it is not.
        send_verdict(settings.bootstrap_servers, graded.decision.trace_id, False, prefix)
        send_verdict(settings.bootstrap_servers, reported.decision.trace_id, False, prefix)

        def joined() -> int:
            if worker.process.poll() is not None:
                pytest.fail(f"worker exited:\n{worker.log()[-4000:]}")
            reader.poll()
            return sum(reader.joined.values()) >= 2

        wait_until(joined, timeout=60, interval=0, what="two joined outcomes")
        reader.poll(1.0)  # and nothing more
    finally:
        router.close()
        reader.close()
    assert reader.joined == {("graded", "gpt-a"): 2}
    assert reader.reward == {("graded", "gpt-a"): 1.0}
