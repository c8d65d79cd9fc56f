"""bench/pipeline.py on a short run on both brokers: the worker joins every preloaded pair and
follows a steady stream, and the figures come out for each broker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.kafka_only  # it compares the brokers, so it needs both


def bench(tmp_path: Path, *args: str) -> tuple[str, object]:
    figures = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "pipeline.py"), *args, "--json", str(figures)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout, json.loads(figures.read_text())


def test_throughput_has_a_column_per_broker(tmp_path: Path) -> None:
    out, figures = bench(
        tmp_path, "--broker", "embedded,kafka", "--pairs", "3000", "--baseline-pairs", "0"
    )
    assert isinstance(figures, dict)
    assert set(figures) == {"embedded", "kafka"}
    for result in figures.values():
        assert result["raw"] > 0
        assert result["events_per_s"] > 0
    assert "Apache Kafka 4.4.0" in out
    assert "outroute / raw consume" in out


def test_freshness_follows_a_steady_stream_on_kafka(tmp_path: Path) -> None:
    out, figures = bench(
        tmp_path, "--freshness", "--broker", "kafka", "--rates", "2000", "--seconds", "3"
    )
    assert isinstance(figures, dict)
    (result,) = figures["kafka"].values()
    # Every outcome produced was counted by a snapshot: the latencies are of all 3,000.
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert "Freshness" in out
