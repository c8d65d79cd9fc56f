"""The dashboard's pure parts: the token rules, the traffic share "now", request bodies."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import SecretStr

from stream_workers.dashboard.access import Access, check_bind, is_loopback
from stream_workers.dashboard.actions import BadRequest, change
from stream_workers.dashboard.live import LiveShare
from stream_workers.errors import WorkerError
from stream_workers.settings import WorkerSettings

TOKEN = "s3cret-token-of-the-dashboard"


def test_without_a_token_every_change_is_refused_as_read_only() -> None:
    refusal = Access().refusal(f"Bearer {TOKEN}")
    assert refusal is not None
    assert refusal.status == 403
    assert "read-only" in refusal.message
    assert "OUTROUTE_DASHBOARD_TOKEN" in refusal.message


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (None, 401),
        ("", 401),
        (TOKEN, 401),  # no scheme
        (f"Basic {TOKEN}", 401),
        ("Bearer ", 401),
        (f"Bearer {TOKEN}x", 401),
        (f"Bearer {TOKEN[:-1]}", 401),
    ],
)
def test_with_a_token_a_change_needs_exactly_it(header: str | None, status: int) -> None:
    refusal = Access(SecretStr(TOKEN)).refusal(header)
    assert refusal is not None
    assert refusal.status == status
    assert TOKEN not in refusal.message


@pytest.mark.parametrize("header", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"Bearer  {TOKEN} "])
def test_the_token_allows_changes(header: str) -> None:
    assert Access(SecretStr(TOKEN)).refusal(header) is None


def test_changes_are_recorded_by_the_tokens_fingerprint_never_the_token() -> None:
    access = Access(SecretStr(TOKEN))
    assert access.actor == f"dashboard:{hashlib.sha256(TOKEN.encode()).hexdigest()[:8]}"
    assert TOKEN not in repr(access)
    assert Access().actor == "dashboard"


def test_a_short_token_is_refused_naming_the_variable() -> None:
    with pytest.raises(WorkerError, match="OUTROUTE_DASHBOARD_TOKEN must be at least 16"):
        Access(SecretStr("short"))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_needs_no_token(host: str) -> None:
    assert is_loopback(host)
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.com"])
def test_another_address_needs_a_token(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(WorkerError, match=f"refusing to bind the dashboard to {host}"):
        check_bind(host, None)
    check_bind(host, SecretStr(TOKEN))


def test_live_share_splits_the_outcomes_of_the_last_seconds() -> None:
    live = LiveShare(span=10.0)
    assert live.observe("g", 0.0, 1, {"a": 100, "b": 100}) is None  # one sample: no rate yet
    assert live.observe("g", 1.0, 2, {"a": 130, "b": 110}) == {"a": 0.75, "b": 0.25}
    assert live.observe("g", 5.0, 3, {"a": 130, "b": 150}) == {"a": 0.375, "b": 0.625}
    # past the span, the oldest samples drop out: only the growth since t=5 remains
    assert live.observe("g", 16.0, 4, {"a": 130, "b": 190}) == {"a": 0.0, "b": 1.0}
    # the same snapshot read again adds nothing
    assert live.observe("g", 16.5, 4, {"a": 130, "b": 190}) == {"a": 0.0, "b": 1.0}


def test_live_share_without_traffic_is_none_and_goals_are_separate() -> None:
    live = LiveShare(span=10.0)
    live.observe("g", 0.0, 1, {"a": 5})
    assert live.observe("g", 1.0, 2, {"a": 5}) is None
    assert live.observe("h", 1.0, 1, {"x": 1}) is None


SETTINGS = WorkerSettings()


@pytest.mark.parametrize(
    ("action", "path", "body", "message"),
    [
        ("disable", "a", [], "body: expected a JSON object"),
        ("disable", "a", {"until": "1h"}, "until: unknown field"),
        ("disable", "a", {"for": "soon"}, "for: duration: expected a positive number"),
        ("disable", "a", {"for": "0m"}, "for: duration"),
        ("disable", "a", {"for": 30}, "for: expected a string, got int"),
        ("disable", "a", {"reason": "x" * 501}, "reason: at most 500 characters, got 501"),
        ("disable", "a", {"reason": "two\nlines"}, "reason: String should match pattern"),
        ("disable", "a", {"path": "b"}, "path: disable takes its path from the address"),
        ("enable", "a", {"for": "1h"}, "for: enable takes no duration"),
        ("pin", None, {}, "path: pinning needs the path"),
        ("disable", "bad path!", {}, "path: String should match pattern"),
    ],
)
def test_a_bad_request_names_its_field_before_anything_is_sent(
    action: str, path: str | None, body: object, message: str
) -> None:
    with pytest.raises(BadRequest) as info:
        change(SETTINGS, goal="g", action=action, path=path, body=body, by="dashboard:abcd1234")
    assert str(info.value).startswith(message), str(info.value)
