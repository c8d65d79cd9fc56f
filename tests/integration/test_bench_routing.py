"""bench/routing.py end to end on a short run: outroute through the real pipeline leaves a
silently degraded path, where the static chain does not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_routing_bench_moves_traffic_off_a_degraded_path(tmp_path: Path) -> None:
    figures = tmp_path / "routing.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "routing.py"),
            *("--seeds", "1", "--requests", "2000", "--speed", "200"),
            *("--scenarios", "sudden", "--plot", str(tmp_path / "routing.png")),
            *("--json", str(figures), "--markdown", str(tmp_path / "routing.md")),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "sudden: model-a drops" in proc.stdout
    (summary,) = json.loads(figures.read_text())
    rows = summary["policies"]
    # 1,600 degraded requests: model-a at 0.30 against model-b at 0.97, so a policy that
    # leaves within a few hundred requests beats the chain (which never leaves) by ~60
    # points; 40 leaves room for a slow machine, not for staying on model-a.
    (left,) = rows["outroute"]["leave"]
    assert left is not None, proc.stdout
    assert left < 400, proc.stdout
    (ours,) = rows["outroute"]["phases"]["degraded"]
    (chain,) = rows["chain (exceptions)"]["phases"]["degraded"]
    assert ours > chain + 0.40, proc.stdout
    assert rows["chain (exceptions)"]["leave"] == [None]
    table = (tmp_path / "routing.md").read_text()
    assert "| policy | before % | degraded % | overall % |" in table
    (before,), (degraded,) = rows["outroute"]["phases"].values()
    cells = f"{100 * before:.1f} ± 0.0 | {100 * degraded:.1f} ± 0.0"  # one seed: no interval
    assert f"| **outroute** | {cells} |" in table
