"""bench/sdk.py end to end on a quick run: it measures every row, and exits non-zero when an
event was lost (not delivered after flush, or dropped while Kafka was down) or a snapshot
written to Redis did not reach the router."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_sdk_bench_runs_every_row_and_loses_no_event() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "sdk.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for row in (
        "HTTP round trip per decision (loopback)",
        "decide(), 50 paths, events discarded",
        "decide() + report(), 10 paths, to Kafka",
        "decide() + report(), 10 paths, Kafka down",
        "decide(), 10 paths, Redis down (fallback)",
        "announced on the update channel",
        "not announced: the 1 s poll",
    ):
        assert row in proc.stdout, proc.stdout
    assert "with Kafka down: dropped 0 " in proc.stdout
    assert "pending after flush 0" in proc.stdout
