"""The dashboard in a real browser (Debian's headless Chromium driven by Playwright) while
demo-like traffic runs through a real worker, broker, Redis and SDK routers.

The page finds the goal, marks a path degrading within a few seconds of its alert, disables a
path with the token and shows the traffic on it fall to zero; the read-only page refuses the
same action. Neither page logs an error to the console. ``make test`` installs Chromium; this
never downloads a browser.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from playwright.sync_api import ConsoleMessage, Page, expect, sync_playwright
from pydantic import SecretStr

from schemas import DegradationAlert, Topics
from schemas.overrides import GoalOverrides
from stream_workers import WorkerSettings
from stream_workers.dashboard import Access, DashboardServer

from _pipeline import Worker
from _support import wait_until
from _traffic import Traffic

CHROMIUM = os.environ.get("OUTROUTE_TEST_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
GOAL = "answer"
TOKEN = "browser-test-token-0123456789"
#: how soon after its alert reaches Redis the page must mark the path (the feed relays the
#: snapshot at once; the page re-reads a changed goal at most once a second)
MARKED_WITHIN_MS = 5_000


@pytest.fixture
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: install Debian's package (`apt-get install -y "
            "chromium`, which `make test` does) or set OUTROUTE_TEST_CHROMIUM"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, chromium_sandbox=False, args=FLAGS
        )
        try:
            yield launched
        finally:
            launched.close()


def _watch(page: Page, errors: list[str]) -> Page:
    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(f"{page.url}: console: {message.text}")

    page.on("console", console)
    page.on("pageerror", lambda exc: errors.append(f"{page.url}: page error: {exc}"))
    return page


def _open_alert(client: redis.Redis, settings: WorkerSettings, path: str) -> bool:
    for raw in client.lrange(settings.redis_keys().alerts(GOAL), 0, -1):
        alert = DegradationAlert.model_validate_json(raw)
        if alert.path == path:
            return alert.state == "open"
    return False


def test_the_page_follows_the_pipeline_and_disables_a_path_with_the_token(
    settings: WorkerSettings,
    topics: Topics,
    redis_client: redis.Redis,
    workers: list[Worker],
    tmp_path: Path,
    browser: Any,
) -> None:
    workers.append(Worker(settings, tmp_path))
    rates = {"large-model": 0.95, "medium-model": 0.85, "small-model": 0.7}
    traffic = Traffic(settings, GOAL, rates, rate=200.0).start()
    writable = DashboardServer(settings, port=0, access=Access(SecretStr(TOKEN))).start()
    read_only = DashboardServer(settings, port=0).start()
    errors: list[str] = []
    try:
        page = _watch(browser.new_page(), errors)
        page.goto(writable.url)
        # the goal list finds the goal and the page opens it
        expect(page.locator(f'#goal-list li[data-goal="{GOAL}"]')).to_be_visible(timeout=60_000)
        expect(page.locator("#goal-name")).to_have_text(GOAL)
        large = page.locator('#paths tr[data-path="large-model"]')
        expect(large.locator(".status")).to_have_text("healthy", timeout=60_000)

        # the best path degrades; its alert reaches Redis; the page marks it within seconds
        traffic.rates["large-model"] = 0.2
        wait_until(
            lambda: _open_alert(redis_client, settings, "large-model"),
            timeout=60,
            interval=0.02,
            what="an open alert for large-model",
        )
        expect(large.locator(".status")).to_have_text("degrading", timeout=MARKED_WITHIN_MS)
        expect(large.locator(".alert-flag")).to_be_visible(timeout=MARKED_WITHIN_MS)
        expect(page.locator("#share-chart g.marker-alert").first).to_be_attached(
            timeout=MARKED_WITHIN_MS
        )
        expect(page.locator("#timeline li.event-alert").first).to_contain_text("large-model")

        # with the token, disable a path that carries traffic: its traffic falls to zero
        medium = page.locator('#paths tr[data-path="medium-model"]')
        wait_until(
            lambda: medium.locator(".share-now").inner_text() not in ("-", "0%"),
            timeout=30,
            what="medium-model carrying traffic",
        )
        page.fill("#token", TOKEN)
        page.click("#token-form button[type=submit]")
        expect(page.locator("#mode")).to_have_text("changes allowed")
        page.fill("#change-for", "10m")
        page.fill("#change-reason", "checking the kill switch")
        medium.locator('button[data-action="disable"]').click()
        expect(page.locator("#notice")).to_contain_text("disable medium-model: done")
        expect(medium.locator(".status")).to_have_text("disabled", timeout=10_000)
        expect(medium.locator(".share-now")).to_have_text("0%", timeout=30_000)
        assert traffic.since(2.0)["medium-model"] == 0
        expect(page.locator("#timeline li.event-override").first).to_contain_text(
            "disable medium-model"
        )
        expect(page.locator("#share-chart g.marker-override").first).to_be_attached()

        # the read-only page shows the same state and refuses the same action
        other = _watch(browser.new_page(), errors)
        posts: list[str] = []
        other.on("request", lambda r: posts.append(r.url) if r.method != "GET" else None)
        other.goto(read_only.url)
        small = other.locator('#paths tr[data-path="small-model"]')
        expect(small).to_be_visible(timeout=30_000)
        expect(other.locator("#mode")).to_have_text("read-only")
        expect(other.locator('#paths tr[data-path="medium-model"] .status')).to_have_text(
            "disabled"
        )
        small.locator('button[data-action="disable"]').click()
        expect(other.locator("#notice")).to_contain_text("read-only")
        assert posts == []  # refused by the page itself (the server refuses too: 403)
        stored = GoalOverrides.model_validate_json(
            redis_client.get(settings.redis_keys().overrides(GOAL)) or b""
        )
        assert set(stored.disabled) == {"medium-model"}
        other.close()
        page.close()
    finally:
        traffic.close()
        writable.close()
        read_only.close()
    assert errors == []
