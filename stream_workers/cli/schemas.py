"""``outroute schemas export``: the JSON Schemas of the public events."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console

from schemas import export_json_schemas
from stream_workers.cli._common import Commands, add_group

__all__ = ["add_commands"]


def add_commands(commands: Commands) -> None:
    schema_commands = add_group(commands, "schemas", "JSON Schemas of the public events")
    export = schema_commands.add_parser(
        "export",
        help="write one JSON Schema file per public event into DIR",
        description="Write DecisionEvent, OutcomeEvent, PolicySnapshot and DegradationAlert "
        "JSON Schemas (draft 2020-12) into DIR, for producers in other languages.",
    )
    export.add_argument("directory", type=Path, metavar="DIR")
    export.add_argument("--json", action="store_true", help="one JSON object per written file")
    export.set_defaults(func=_export)


def _export(args: argparse.Namespace, console: Console) -> int:
    paths = export_json_schemas(args.directory)
    if args.json:
        for path in paths:
            print(json.dumps({"schema": str(path)}))
    else:
        for path in paths:
            console.print(f"wrote {path}")
    return 0
