"""The TypeScript SDK's shared test vectors are what the Python SDK produces today.

sdk-typescript/test/unit/vectors.test.ts replays them against the TypeScript sampling; if the
Python rules change, this test fails until the vectors are regenerated (and the TypeScript SDK
follows)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "sdk-typescript" / "vectors" / "generate.py"


def test_committed_vectors_are_what_the_python_sdk_produces() -> None:
    spec = importlib.util.spec_from_file_location("outroute_ts_vectors", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = json.loads(module.OUT.read_text(encoding="utf-8"))
    assert committed == json.loads(module.render()), (
        "sdk-typescript/vectors/vectors.json is stale: run "
        ".venv/bin/python sdk-typescript/vectors/generate.py and update the TypeScript SDK"
    )
