"""``outroute policy`` and ``outroute goals``: what the workers published to Redis."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from schemas import PolicySnapshot
from schemas.beta import beta_ppf
from stream_workers.clients import sync_redis
from stream_workers.settings import WorkerSettings

__all__ = ["beta_interval", "list_goals", "load_snapshots", "print_policies", "snapshot_rows"]


def beta_interval(a: float, b: float, mass: float = 0.9) -> tuple[float, float]:
    """The central ``mass`` interval of Beta(a, b), its ends to 1e-12."""
    tail = (1.0 - mass) / 2
    low, high = beta_ppf(a, b, (tail, 1.0 - tail), exact=True)
    return low, high


def _redis(settings: WorkerSettings) -> Any:
    return sync_redis(settings, "reading policies")


def list_goals(settings: WorkerSettings) -> list[str]:
    keys = settings.redis_keys()
    return sorted(g.decode() for g in _redis(settings).smembers(keys.goals))


def load_snapshots(
    settings: WorkerSettings, goal: str | None = None
) -> tuple[list[PolicySnapshot], list[str]]:
    """The snapshots of ``goal`` (or of every goal), and a problem line per one unreadable."""
    client = _redis(settings)
    keys = settings.redis_keys()
    goals = [goal] if goal is not None else sorted(g.decode() for g in client.smembers(keys.goals))
    snapshots, problems = [], []
    for name in goals:
        raw = client.get(keys.policy(name))
        if raw is None:
            problems.append(f"no snapshot of goal {name!r} at {keys.policy(name)}")
            continue
        try:
            snapshots.append(PolicySnapshot.model_validate_json(raw))
        except ValidationError as exc:
            problems.append(f"snapshot of goal {name!r} is invalid: {exc.errors()[0]['msg']}")
    return snapshots, problems


def snapshot_rows(snapshot: PolicySnapshot, now: datetime) -> list[dict[str, Any]]:
    """One dict per path, best posterior mean first: what the table and ``--json`` show."""
    rows: list[dict[str, Any]] = []
    for name, stats in snapshot.paths.items():
        low, high = beta_interval(stats.alpha, stats.beta)
        rows.append(
            {
                "goal": snapshot.goal,
                "path": name,
                "mean": stats.mean,
                "interval_90": [low, high],
                "n": stats.n,
                "recent_rate": stats.recent_rate,
                "recent_n": stats.recent_n,
                "baseline_rate": stats.baseline_rate,
                "status": stats.status,
                "mean_cost_usd": stats.mean_cost_usd,
                "mean_latency_ms": stats.mean_latency_ms,
                "version": snapshot.version,
                "age_s": (now - snapshot.generated_at).total_seconds(),
            }
        )
    rows.sort(key=lambda r: -r["mean"])
    return rows


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


_STATUS_STYLE = {"healthy": "green", "degrading": "bold red", "cold": "cyan", "stale": "yellow"}


def print_policies(
    snapshots: list[PolicySnapshot],
    console: Console,
    *,
    as_json: bool,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    at = now()
    for snapshot in snapshots:
        rows = snapshot_rows(snapshot, at)
        if as_json:
            for row in rows:
                print(json.dumps(row))
            continue
        table = Table(
            title=f"{snapshot.goal}: version {snapshot.version}, "
            f"{(at - snapshot.generated_at).total_seconds():.1f}s old",
            title_justify="left",
        )
        for column in ("path", "mean", "90% interval", "n", "recent", "baseline", "status"):
            table.add_column(column, justify="left" if column in ("path", "status") else "right")
        table.add_column("cost $", justify="right")
        table.add_column("latency ms", justify="right")
        for row in rows:
            low, high = row["interval_90"]
            recent = (
                "-"
                if row["recent_rate"] is None
                else f"{row['recent_rate']:.1%} ({row['recent_n']})"
            )
            style = _STATUS_STYLE.get(row["status"], "")
            table.add_row(
                row["path"],
                _pct(row["mean"]),
                f"{low:.1%}-{high:.1%}",
                str(row["n"]),
                recent,
                _pct(row["baseline_rate"]),
                f"[{style}]{row['status']}[/]" if style else row["status"],
                "-" if row["mean_cost_usd"] is None else f"{row['mean_cost_usd']:.5f}",
                "-" if row["mean_latency_ms"] is None else f"{row['mean_latency_ms']:.0f}",
            )
        console.print(table)
