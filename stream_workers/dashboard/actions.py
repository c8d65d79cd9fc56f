"""The dashboard's state changes: a request's body checked, then an override applied.

An override from the dashboard is the same record the CLI sends
(``schemas.overrides.OverrideRecord``), applied by ``stream_workers.ops.overrides.apply``: it
reaches the ops topic first, then Redis, and every router of the goal within its snapshot
bound. Its author is the dashboard's actor (``dashboard:<token fingerprint>``), never the token.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import ValidationError

from schemas.overrides import REASON_MAX, OverrideRecord
from stream_workers.ops import overrides
from stream_workers.settings import WorkerSettings

__all__ = ["BadRequest", "change"]

_FIELDS: Final = ("for", "reason", "path")


class BadRequest(ValueError):
    """A request the dashboard refuses (400), with the reason naming the field."""


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name}: expected a string, got {type(value).__name__}")
    return value


def change(
    settings: WorkerSettings,
    *,
    goal: str,
    action: str,
    path: str | None,
    body: Any,
    by: str,
    timeout: float = 10.0,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Apply ``action`` (disable, enable, pin, unpin) from a request; the record and the
    goal's overrides after it, as JSON. BadRequest for anything the request got wrong, naming
    it; ``OverrideRefused`` when a rule refuses the change, ``WorkerError`` when Kafka or Redis
    could not take it within ``timeout`` seconds (nothing changed in either case)."""
    if not isinstance(body, dict):
        raise BadRequest("body: expected a JSON object")
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise BadRequest(f"{unknown[0]}: unknown field; expected for, reason (and path to pin)")
    if action != "pin" and "path" in body:
        raise BadRequest(f"path: {action} takes its path from the address, not the body")
    at = now or datetime.now(UTC)
    duration = _text(body, "for")
    until = None
    if duration is not None:
        if action not in ("disable", "pin"):
            raise BadRequest(f"for: {action} takes no duration (it ends an override)")
        try:
            until = at + overrides.parse_duration(duration)
        except ValueError as exc:
            raise BadRequest(f"for: {exc}") from None
    reason = _text(body, "reason")
    if reason is not None and len(reason) > REASON_MAX:
        raise BadRequest(f"reason: at most {REASON_MAX} characters, got {len(reason)}")
    if action == "pin":
        path = _text(body, "path")
        if path is None:
            raise BadRequest("path: pinning needs the path to pin the goal to")
    try:
        record = OverrideRecord(
            event_id=uuid.uuid4().hex,
            goal=goal,
            action=action,  # type: ignore[arg-type]
            path=path if action != "unpin" else None,
            reason=reason,
            by=by,
            at=at,
            until=until,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"]) or "body"
        raise BadRequest(f"{field}: {error['msg']}") from None
    result = overrides.apply(settings, record, timeout=timeout)
    return {"applied": record.model_dump(mode="json"), "overrides": result.model_dump(mode="json")}
