"""The override rules (pure): what a change does to a goal's overrides, and what is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from schemas.overrides import GoalOverrides, OverrideEntry, OverrideRecord, PinnedEntry
from stream_workers.cli import main
from stream_workers.errors import OverrideRefused
from stream_workers.ops.overrides import next_overrides, parse_duration

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
KNOWN = ("a", "b", "c")


def record(
    action: str, path: str | None = None, *, at: datetime = T0, **fields: object
) -> OverrideRecord:
    return OverrideRecord(
        event_id=f"e-{action}-{path}",
        goal="g",
        action=action,
        path=path,
        by="ops",
        at=at,
        **fields,
    )


def chain(*records: OverrideRecord, known: tuple[str, ...] = KNOWN) -> GoalOverrides:
    state = None
    for r in records:
        state = next_overrides(state, r, known)
    assert state is not None
    return state


def test_disable_then_enable() -> None:
    disabled = chain(record("disable", "a", reason="5xx storm", until=T0 + timedelta(hours=1)))
    entry = disabled.disabled["a"]
    assert (entry.by, entry.reason, entry.at, entry.until) == (
        "ops",
        "5xx storm",
        T0,
        T0 + timedelta(hours=1),
    )
    assert disabled.pinned is None
    enabled = next_overrides(disabled, record("enable", "a", at=T0 + timedelta(minutes=1)), KNOWN)
    assert enabled.empty
    assert enabled.version > disabled.version


def test_disabling_every_known_path_is_refused_naming_them() -> None:
    two = chain(record("disable", "a"), record("disable", "b"))
    with pytest.raises(OverrideRefused, match=r"would disable every path of goal 'g' \(a, b, c\)"):
        next_overrides(two, record("disable", "c"), KNOWN)


def test_an_expired_disable_does_not_count_toward_every_path() -> None:
    short = chain(
        record("disable", "a", until=T0 + timedelta(seconds=2)),
        record("disable", "b"),
    )
    later = T0 + timedelta(seconds=2)  # a's disable ends exactly now
    after = next_overrides(short, record("disable", "c", at=later), KNOWN)
    assert set(after.disabled) == {"b", "c"}  # a's ended entry was dropped on the rewrite


@pytest.mark.parametrize(
    ("changes", "last", "message"),
    [
        ([], record("disable", "x"), r"path 'x' is not a path of goal 'g' \(its snapshot knows"),
        ([], record("pin", "x"), "path 'x' is not a path of goal 'g'"),
        ([], record("enable", "a"), "path 'a' of goal 'g' is not disabled"),
        ([], record("unpin"), "goal 'g' is not pinned"),
        ([record("disable", "a")], record("pin", "a"), "is disabled: enable it before pinning"),
        ([record("pin", "a")], record("disable", "a"), "is pinned to 'a': unpin it before"),
    ],
)
def test_refusals_name_the_rule(
    changes: list[OverrideRecord], last: OverrideRecord, message: str
) -> None:
    state = chain(*changes) if changes else None
    with pytest.raises(OverrideRefused, match=message):
        next_overrides(state, last, KNOWN)


def test_pin_replaces_a_pin_and_unpin_removes_it() -> None:
    pinned = chain(record("pin", "a"), record("pin", "b", reason="a is flaky"))
    assert pinned.pinned == PinnedEntry(path="b", reason="a is flaky", by="ops", at=T0)
    assert next_overrides(pinned, record("unpin"), KNOWN).pinned is None


def test_a_pin_and_disabled_paths_coexist_on_different_paths() -> None:
    both = chain(record("disable", "a"), record("pin", "b"))
    assert set(both.disabled) == {"a"}
    assert both.pinned is not None
    assert both.pinned.path == "b"


def test_disabling_again_replaces_the_entry() -> None:
    again = chain(record("disable", "a"), record("disable", "a", reason="still bad"))
    assert again.disabled["a"].reason == "still bad"


def test_entries_end_by_themselves_for_readers() -> None:
    until = T0 + timedelta(seconds=2)
    state = chain(record("disable", "a", until=until), record("pin", "b"))
    assert state.next_end() == until
    assert state.last_end() is None  # the pin lasts until undone
    assert state.active(until - timedelta(microseconds=1)).disabled.keys() == {"a"}
    later = state.active(until)
    assert later.disabled == {}
    assert later.pinned == state.pinned


def test_version_grows_even_when_the_clock_does_not() -> None:
    first = chain(record("disable", "a"))
    second = next_overrides(first, record("disable", "b"), KNOWN)  # the same instant
    assert second.version == first.version + 1
    assert first.version == int(T0.timestamp() * 1000)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"action": "unpin", "path": "a"}, "unpin takes no path"),
        ({"action": "disable", "path": None}, "disable needs the path"),
        ({"action": "enable", "path": "a", "until": T0 + timedelta(1)}, "enable takes no until"),
        ({"action": "pin", "path": "a", "until": T0}, "must be after at"),
        ({"action": "pin", "path": "a", "reason": "x" * 501}, "at most 500 characters"),
        ({"action": "pin", "path": "a", "reason": "two\nlines"}, "should match pattern"),
        ({"action": "pin", "path": "a", "by": "my token=1 2"}, "should match pattern"),
        ({"action": "drop", "path": "a"}, "'disable', 'enable', 'pin' or 'unpin'"),
    ],
)
def test_records_are_validated(fields: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"event_id": "e", "goal": "g", "by": "ops", "at": T0, **fields}
    with pytest.raises(ValidationError, match=message):
        OverrideRecord.model_validate(values)


def test_a_pinned_path_cannot_also_be_disabled() -> None:
    entry = OverrideEntry(by="ops", at=T0)
    with pytest.raises(ValidationError, match="path 'a' is also disabled"):
        GoalOverrides(
            goal="g",
            version=1,
            disabled={"a": entry},
            pinned=PinnedEntry(path="a", by="ops", at=T0),
        )


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("0.5h", 1800)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5", "5x", "-1m", "0s", "1 h", "h"])
def test_bad_durations_say_the_form(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration: expected a positive number and a unit"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["path", "disable", "g", "a", "--for", "soon"], "argument --for: expected a positive"),
        (["goal", "pin", "g", "a", "--for", "0m"], "argument --for: expected a positive"),
        (["path", "enable", "g", "a", "--for", "1h"], "unrecognized arguments: --for 1h"),
        (["goal", "unpin", "g", "a"], "unrecognized arguments: a"),
        (["overrides", "g", "--limit", "0"], "argument --limit: must be >= 1, got 0"),
    ],
)
def test_bad_flags_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bad_reason_is_one_line_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    # Refused before anything is contacted: no broker or Redis is needed for this.
    assert main(["path", "disable", "g", "a", "--reason", "x" * 501]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("outroute: error: --reason: String should have at most 500 characters")
