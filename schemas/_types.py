"""Field types shared by every event: identifiers, timestamps, bounded numbers, context.

Constraints that can be checked by pydantic-core (length, pattern, ranges, NaN/inf) are declared
as constraints so they run in Rust; only the checks that need Python (UTC normalisation, the
schema version message, context size) are validators.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Final

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints

__all__ = [
    "CONTEXT_KEY_MAX",
    "CONTEXT_MAX_KEYS",
    "CONTEXT_VALUE_MAX",
    "IDENTIFIER_MAX",
    "IDENTIFIER_PATTERN",
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "Context",
    "ContextValue",
    "Identifier",
    "NonNegativeFinite",
    "Probability",
    "SchemaVersion",
    "UtcDatetime",
]

#: Version written by this code. Readers accept every version in SUPPORTED_SCHEMA_VERSIONS.
SCHEMA_VERSION: Final = 1
SUPPORTED_SCHEMA_VERSIONS: Final = frozenset({1})

IDENTIFIER_MAX: Final = 128
#: Letters, digits and ``_ . : / @ + = -``; the first character is a letter or digit. Safe in
#: Kafka keys, Redis keys, URLs and log lines; excludes whitespace and control characters.
IDENTIFIER_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:/@+=-]*$"

CONTEXT_MAX_KEYS: Final = 32
CONTEXT_KEY_MAX: Final = 64
CONTEXT_VALUE_MAX: Final = 256

Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=IDENTIFIER_MAX, pattern=IDENTIFIER_PATTERN),
]
"""A goal, path, trace or event id: 1-128 safe characters (see IDENTIFIER_PATTERN)."""


def _check_schema_version(value: int) -> int:
    if value not in SUPPORTED_SCHEMA_VERSIONS:
        supported = ", ".join(str(v) for v in sorted(SUPPORTED_SCHEMA_VERSIONS))
        raise ValueError(f"unsupported schema_version {value}; supported versions: {supported}")
    return value


SchemaVersion = Annotated[int, AfterValidator(_check_schema_version)]

_ZERO = timedelta(0)


def _to_utc(value: datetime) -> datetime:
    # AwareDatetime has already rejected naive values; normalise any offset to UTC so that every
    # event carries the same representation ("...Z") whatever the producer's local zone was.
    if value.utcoffset() == _ZERO and value.tzinfo is UTC:
        return value
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware timestamp, normalised to UTC. Naive timestamps are rejected."""

NonNegativeFinite = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]

_ContextKey = Annotated[
    str,
    StringConstraints(min_length=1, max_length=CONTEXT_KEY_MAX, pattern=IDENTIFIER_PATTERN),
]
ContextValue = (
    Annotated[str, StringConstraints(max_length=CONTEXT_VALUE_MAX)]
    | bool
    | Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
    | Annotated[float, Field(allow_inf_nan=False)]
)

Context = Annotated[dict[_ContextKey, ContextValue], Field(max_length=CONTEXT_MAX_KEYS)]
"""A small flat dict of labels: at most 32 keys, scalar values, strings up to 256 characters."""
