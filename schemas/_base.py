"""The base class of every event and snapshot."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from ._types import SCHEMA_VERSION, SchemaVersion

__all__ = ["Event"]


class Event(BaseModel):
    """Immutable, strictly validated, JSON on the wire.

    Strict mode: no silent coercion (``"true"`` is not a bool, a number is not a timestamp).
    Extra fields are rejected, so a typo in a producer in another language fails loudly.
    """

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        ser_json_timedelta="float",
    )

    schema_version: SchemaVersion = SCHEMA_VERSION
