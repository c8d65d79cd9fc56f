"""Overrides: a path taken out of rotation, or a goal pinned to one path, by a person.

Two shapes cross process boundaries:

- ``OverrideRecord``: one change (disable, enable, pin, unpin), who made it, when, why and
  until when. Topic ``<prefix>.overrides`` (key goal) and the capped Redis list
  ``<prefix>:override-log:<goal>``.
- ``GoalOverrides``: what is in force for a goal, Redis key ``<prefix>:overrides:<goal>``. The
  SDKs read it with the goal's snapshot. An entry whose ``until`` has passed is not in force:
  readers ignore it by their own clock (``GoalOverrides.active``), so an override expires by
  itself with no writer running; writers drop such entries when they rewrite the value.

A pinned path is never also disabled (``GoalOverrides`` refuses it), so a reader never has to
choose between the two.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal, Self, get_args

from pydantic import Field, StringConstraints, model_validator

from ._base import Event
from ._types import IDENTIFIER_PATTERN, Identifier, UtcDatetime
from .policy import MAX_PATHS

__all__ = [
    "ACTOR_MAX",
    "OVERRIDE_ACTIONS",
    "REASON_MAX",
    "Actor",
    "GoalOverrides",
    "OverrideAction",
    "OverrideEntry",
    "OverrideReason",
    "OverrideRecord",
    "PinnedEntry",
]

OverrideAction = Literal["disable", "enable", "pin", "unpin"]
OVERRIDE_ACTIONS: Final[tuple[str, ...]] = get_args(OverrideAction)

REASON_MAX: Final = 500
ACTOR_MAX: Final = 128

OverrideReason = Annotated[
    str, StringConstraints(min_length=1, max_length=REASON_MAX, pattern=r"^[^\x00-\x1f\x7f]*$")
]
"""Why: 1-500 characters on one line (no control characters)."""

Actor = Annotated[
    str, StringConstraints(min_length=1, max_length=ACTOR_MAX, pattern=IDENTIFIER_PATTERN)
]
"""Who: a short identifier such as an OS user name or ``dashboard:<token fingerprint>``; never
a secret."""

#: The actions that name a path and may carry an ``until``.
_TAKES_UNTIL: Final = frozenset({"disable", "pin"})


class OverrideRecord(Event):
    """One change to a goal's overrides, as sent to ``<prefix>.overrides`` (key goal)."""

    event_id: Identifier = Field(description="Unique id of this change.")
    goal: Identifier
    action: OverrideAction
    path: Identifier | None = Field(
        default=None, description="The path disabled, enabled or pinned; None to unpin."
    )
    reason: OverrideReason | None = None
    by: Actor = Field(description="Who made the change.")
    at: UtcDatetime = Field(description="When the change was made.")
    until: UtcDatetime | None = Field(
        default=None, description="When a disable or pin ends by itself; None: until undone."
    )

    @model_validator(mode="after")
    def _fits_the_action(self) -> Self:
        if self.action == "unpin":
            if self.path is not None:
                raise ValueError("path: unpin takes no path (a goal has at most one pin)")
        elif self.path is None:
            raise ValueError(f"path: {self.action} needs the path it applies to")
        if self.until is not None:
            if self.action not in _TAKES_UNTIL:
                raise ValueError(f"until: {self.action} takes no until (it ends an override)")
            if self.until <= self.at:
                raise ValueError(f"until ({self.until.isoformat()}) must be after at")
        return self


class OverrideEntry(Event):
    """One override in force: who set it, when, why, until when (None: until undone)."""

    reason: OverrideReason | None = None
    by: Actor
    at: UtcDatetime
    until: UtcDatetime | None = None

    def in_force(self, now: datetime) -> bool:
        """True until ``until`` (exclusive): at ``until`` the override has ended."""
        return self.until is None or now < self.until


class PinnedEntry(OverrideEntry):
    """The pin of a goal: every decision of the goal takes ``path``."""

    path: Identifier


class GoalOverrides(Event):
    """Redis key ``<prefix>:overrides:<goal>``: the goal's overrides. ``version`` only grows."""

    goal: Identifier
    version: int = Field(ge=1, description="Grows with every change, across a key's expiry.")
    disabled: dict[Identifier, OverrideEntry] = Field(
        default_factory=dict, max_length=MAX_PATHS, description="Paths out of rotation."
    )
    pinned: PinnedEntry | None = Field(
        default=None, description="The path every decision takes, if the goal is pinned."
    )

    @model_validator(mode="after")
    def _pin_is_not_disabled(self) -> Self:
        if self.pinned is not None and self.pinned.path in self.disabled:
            raise ValueError(f"pinned: path {self.pinned.path!r} is also disabled")
        return self

    def active(self, now: datetime) -> GoalOverrides:
        """The same overrides without the entries that ended at or before ``now``."""
        disabled = {path: e for path, e in self.disabled.items() if e.in_force(now)}
        pinned = self.pinned if self.pinned is not None and self.pinned.in_force(now) else None
        if len(disabled) == len(self.disabled) and pinned is self.pinned:
            return self
        return self.model_copy(update={"disabled": disabled, "pinned": pinned})

    @property
    def empty(self) -> bool:
        """No path disabled and no pin."""
        return not self.disabled and self.pinned is None

    def next_end(self) -> datetime | None:
        """The earliest ``until`` among the entries (None: nothing ends by itself)."""
        ends = [e.until for e in self._entries() if e.until is not None]
        return min(ends) if ends else None

    def last_end(self) -> datetime | None:
        """When every entry has ended (None if one lasts until undone, or there are none)."""
        entries = self._entries()
        if not entries or any(e.until is None for e in entries):
            return None
        return max(e.until for e in entries if e.until is not None)

    def _entries(self) -> list[OverrideEntry]:
        entries = list(self.disabled.values())
        if self.pinned is not None:
            entries.append(self.pinned)
        return entries
