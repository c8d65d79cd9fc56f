"""The demo's routing run: a worker process, the SDK, simulated traffic, a live view.

Traffic goes through the real pipeline: ``Router.decide()`` reads the policy the worker
publishes to Redis, ``report()`` emits to the embedded broker, the worker joins, learns and
alerts. The same simulated requests are scored for a hard-coded fallback chain for comparison.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from schemas import DegradationAlert
from stream_workers.clients import sync_redis
from stream_workers.errors import WorkerError
from stream_workers.local.simulation import DEMO, StaticChain, Tally, World
from stream_workers.local.stack import _Child, start_worker
from stream_workers.settings import WorkerSettings

__all__ = ["simulate"]

GOAL = "answer"
_RECENT = 200  # requests in the live view's traffic window


def _alerts(redis: Any, settings: WorkerSettings, seen: set[str]) -> list[DegradationAlert]:
    """Alerts of the demo goal not shown yet, oldest first."""
    new = []
    for raw in reversed(redis.lrange(settings.redis_keys().alerts(GOAL), 0, -1)):
        alert = DegradationAlert.model_validate_json(raw)
        if alert.alert_id not in seen:
            seen.add(alert.alert_id)
            new.append(alert)
    return new


def _view(world: World, router: Any, recent: deque[tuple[str, bool]], i: int) -> Table:
    policy = router.get_policy()
    shares = Counter(path for path, _ in recent)
    table = Table(
        title=f"request {i:,}/{world.requests:,}, phase {world.phase(max(0, i - 1))}, "
        f"policy version {policy.version or '-'}",
        title_justify="left",
    )
    for column in ("path", "traffic", "success (observed)", "posterior mean", "n", "status"):
        table.add_column(column, justify="left" if column in ("path", "status") else "right")
    for spec in world.paths:
        seen = [ok for path, ok in recent if path == spec.name]
        try:
            view = policy.path(spec.name)
            mean, n, status = f"{view.mean:.1%}", str(view.n), view.status
        except KeyError:
            mean, n, status = "-", "0", "cold"
        style = {"degrading": "bold red", "healthy": "green", "cold": "cyan"}.get(status, "")
        table.add_row(
            spec.name,
            f"{shares[spec.name] / max(1, len(recent)):.0%}",
            f"{sum(seen) / len(seen):.0%}" if seen else "-",
            mean,
            n,
            Text(status, style=style),
        )
    return table


def _alert_line(alert: DegradationAlert) -> str:
    word = "ALERT OPEN" if alert.state == "open" else "alert resolved"
    return (
        f"{word}: {alert.path} recent {alert.recent_rate:.0%} (n={alert.recent_n}) "
        f"vs baseline {alert.baseline_rate:.0%}"
    )


def simulate(
    console: Console,
    settings: WorkerSettings,
    stop: threading.Event,
    *,
    requests: int,
    seed: int,
    speed: float,
    live: bool,
) -> dict[str, Tally]:
    """Run the simulated traffic; print the summary; return the tallies per policy."""
    from producer_sdk import CacheOptions, Router, SamplingParams

    world = World(DEMO, requests, seed=seed)
    redis = sync_redis(settings, "the demo")
    console.print("starting a worker (join, posteriors, detector, snapshots) ...")
    worker = start_worker(settings, stopping=stop.is_set)
    tallies = {"outroute": Tally(), "fallback chain": Tally()}
    try:
        router = Router(
            goal=GOAL,
            paths=[p.name for p in world.paths],
            connection=settings,
            service="outroute-demo",
            cache=CacheOptions(poll_interval=0.5),
            # The demo squeezes an outage and its recovery into a minute: probe the alerted path
            # on 5% of requests (default 1%) so that its recovery shows within the run.
            sampling=SamplingParams(recovery_probe_rate=0.05),
            seed=seed,
        )
        with router:
            _drive(console, world, router, redis, settings, stop, tallies, speed, live, worker)
    finally:
        worker.stop()
        for key in redis.scan_iter(f"{settings.redis_key_prefix}:*"):
            redis.delete(key)
    _summary(console, world, tallies)
    return tallies


def _drive(
    console: Console,
    world: World,
    router: Any,
    redis: Any,
    settings: WorkerSettings,
    stop: threading.Event,
    tallies: dict[str, Tally],
    speed: float,
    live: bool,
    worker: _Child,
) -> None:
    recent: deque[tuple[str, bool]] = deque(maxlen=_RECENT)
    chain_policy = StaticChain(check=False)
    seen: set[str] = set()
    log_every = max(1, world.requests // 20)
    alert_lines: list[str] = []
    started = time.monotonic()
    next_refresh = 0.0
    display = Live(console=console, auto_refresh=False) if live else None
    if display is not None:
        display.start()
    try:
        for i in range(world.requests):
            if stop.is_set():
                console.print("interrupted")
                break
            if not worker.alive():
                raise WorkerError(f"the demo's worker exited; log:\n{worker.log_tail()}")
            ahead = i / speed - (time.monotonic() - started)
            if ahead > 0:
                stop.wait(ahead)
            phase = world.phase(i)
            decision = router.decide()
            attempt = world.attempt(decision.path, i)
            decision.report(
                success=attempt.ok, cost_usd=attempt.cost_usd, latency_ms=attempt.latency_ms
            )
            tallies["outroute"].add(phase, decision.path, attempt.ok, attempt.cost_usd)
            recent.append((decision.path, attempt.ok))
            # The degradation gives bad outputs, not exceptions: the chain never moves on.
            (chain,) = chain_policy.answer(world, i)
            tallies["fallback chain"].add(phase, chain.path, chain.ok, chain.cost_usd)
            now = time.monotonic()
            if now >= next_refresh:
                next_refresh = now + 0.25
                for alert in _alerts(redis, settings, seen):
                    line = f"request {i:,}: {_alert_line(alert)}"
                    alert_lines.append(line)
                    if display is None:
                        console.print(line, highlight=False)
                if display is not None:
                    parts: list[Any] = [_view(world, router, recent, i + 1)]
                    parts.extend(Text(line) for line in alert_lines[-6:])
                    display.update(Group(*parts), refresh=True)
            if display is None and (i + 1) % log_every == 0:
                shares = Counter(path for path, _ in recent)
                share_text = ", ".join(
                    f"{p.name} {shares[p.name] / len(recent):.0%}" for p in world.paths
                )
                rate = sum(ok for _, ok in recent) / len(recent)
                console.print(
                    f"request {i + 1:,} ({phase}): last {len(recent)} requests {rate:.0%} "
                    f"successful; traffic {share_text}",
                    highlight=False,
                )
    finally:
        if display is not None:
            display.stop()


def _summary(console: Console, world: World, tallies: dict[str, Tally]) -> None:
    table = Table(title="success rate: outroute vs a hard-coded fallback chain, same requests")
    table.add_column("policy")
    for name in world.scenario.phase_names:
        table.add_column(name, justify="right")
    table.add_column("overall", justify="right")
    table.add_column("cost $", justify="right")
    for policy, tally in tallies.items():
        cells = []
        for name in world.scenario.phase_names:
            rate = tally.rate(name)
            cells.append("-" if rate is None else f"{rate:.1%}")
        overall = tally.rate()
        table.add_row(
            policy,
            *cells,
            "-" if overall is None else f"{overall:.1%}",
            f"{tally.cost_usd:.2f}",
        )
    console.print(table)
    degraded = tallies["outroute"].traffic
    first = world.paths[0].name
    n = tallies["outroute"].requests["degraded"]
    if n:
        console.print(
            f"during the degradation outroute sent {degraded['degraded', first] / n:.0%} of "
            f"requests to {first}; the fallback chain sent all of them",
            highlight=False,
        )
