"""JSON Schema export of the public events, for producers written in other languages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

from pydantic import BaseModel

from .alerts import DegradationAlert
from .events import DecisionEvent, OutcomeEvent
from .overrides import GoalOverrides, OverrideRecord
from .policy import PolicySnapshot

__all__ = ["PUBLIC_EVENTS", "export_json_schemas"]

PUBLIC_EVENTS: Final[tuple[type[BaseModel], ...]] = (
    DecisionEvent,
    OutcomeEvent,
    PolicySnapshot,
    DegradationAlert,
    GoalOverrides,
    OverrideRecord,
)


def export_json_schemas(directory: str | Path) -> list[Path]:
    """Write ``<EventName>.schema.json`` per public event into ``directory``; return the paths.

    The schemas describe the JSON on the wire (``mode="serialization"``), with a ``$schema`` and
    ``$id`` so that they can be used by any JSON Schema validator.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for model in PUBLIC_EVENTS:
        schema = model.model_json_schema(mode="validation")
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://outroute.dev/schemas/{model.__name__}.schema.json",
            **schema,
        }
        path = out / f"{model.__name__}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written
