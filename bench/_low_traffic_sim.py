"""The simulation behind ``bench/low_traffic.py``: one goal's requests on an event-time clock
through the real SDK policy, the join and ``GoalState`` (pure, no broker, no Redis, no waiting).

Requests arrive as a seeded Poisson stream (``World``). Each is decided by the SDK's
``CompiledPolicy`` (compiled from the last snapshot the stage published, with the default
``SamplingParams``); its success is drawn from the scenario's true rate at that moment; its
DecisionEvent and OutcomeEvent (0.5-3 s later) go through a ``PartitionJoin``, the join's items
through ``build_deltas`` at the next 100 ms flush into a ``GoalState`` built from the
``PosteriorConfig`` given (``wall`` = the simulated time), whose detectors are released
``reorder_lag`` later (the stage's tick); a snapshot reaches the SDK ``delay`` seconds after it
is taken. The oracle always takes the truly best path, on the same draws.

The Thompson draws are exact Beta draws (``Policies``) rather than the SDK's quantile tables,
which cost 2.8 ms per changed posterior: at a few outcomes a day, every decision.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from producer_sdk import SamplingParams
from producer_sdk.policy import CompiledPolicy
from producer_sdk.sampling import QUANTILE_KNOTS, Arm, Tables
from schemas import DecisionEvent, DegradationAlert, OutcomeEvent, PolicySnapshot
from stream_workers.pipeline.join import JoinConfig, PartitionJoin, build_deltas
from stream_workers.pipeline.posterior import GoalState, PosteriorConfig
from stream_workers.pipeline.posterior.detectors import BetaDropDetector

__all__ = [
    "DAY",
    "PATHS",
    "T0",
    "WATCH",
    "Pipeline",
    "Policies",
    "Scenario",
    "Trace",
    "World",
    "degradation",
    "simulate",
    "stationary",
]

DAY: Final = 86400.0
T0: Final = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
PATHS: Final = ("model-a", "model-b", "model-c")
WATCH: Final = "model-a"
FLUSH: Final = 0.1  # the join's flush interval, seconds
LATENCY: Final = (0.5, 3.0)  # an outcome occurs this many seconds after its decision


# -- the worlds ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scenario:
    """True success rates per path as steps: (from day, rate), the first from day 0."""

    name: str
    description: str
    rates: Mapping[str, tuple[tuple[float, float], ...]]
    phases: tuple[tuple[str, float], ...]
    degrade_at: float | None = None
    recover_at: float | None = None

    def rate(self, path: str, day: float) -> float:
        current = 0.0
        for start, value in self.rates[path]:
            if day < start:
                break
            current = value
        return current

    def best_rate(self, day: float) -> float:
        return max(self.rate(path, day) for path in PATHS)


def stationary(days: float) -> Scenario:
    thirds = (("days 0-1/3", 0.0), ("1/3-2/3", days / 3), ("2/3-end", 2 * days / 3))
    rates = {"model-a": ((0.0, 0.9),), "model-b": ((0.0, 0.8),), "model-c": ((0.0, 0.7),)}
    return Scenario("stationary", "model-a 0.90, model-b 0.80, model-c 0.70", rates, thirds)


def degradation(days: float) -> Scenario:
    """model-a drops at a third of the run and recovers at two thirds."""
    drop, back = days / 3, 2 * days / 3
    rates = {
        "model-a": ((0.0, 0.9), (drop, 0.3), (back, 0.9)),
        "model-b": ((0.0, 0.8),),
        "model-c": ((0.0, 0.7),),
    }
    return Scenario(
        "degradation",
        f"model-a 0.90 -> 0.30 on day {drop:g}, back to 0.90 on day {back:g}",
        rates,
        (("before", 0.0), ("degraded", drop), ("recovered", back)),
        degrade_at=drop,
        recover_at=back,
    )


class World:
    """One seeded stream of requests: arrival times (days), success draws, outcome delays."""

    def __init__(self, scenario: Scenario, per_day: float, days: float, seed: int) -> None:
        self.scenario = scenario
        self.per_day = per_day
        self.days = days
        self.seed = seed
        rng = random.Random(f"{scenario.name}:{per_day}:{days}:{seed}")
        times, t = [], rng.expovariate(per_day)
        while t < days:
            times.append(t)
            t += rng.expovariate(per_day)
        self.times: tuple[float, ...] = tuple(times)
        self.draws = tuple(rng.random() for _ in times)
        self.delays = tuple(rng.uniform(*LATENCY) for _ in times)

    def index(self, day: float) -> int:
        """The first request at or after ``day``."""
        return next((i for i, t in enumerate(self.times) if t >= day), len(self.times))


# -- one run ------------------------------------------------------------------------------------


class Policies:
    """Compiles the SDK's policy for each decision from the snapshot it last read, as the
    Router's policy cache does: with, per alerted path, the router's count of decisions when
    it first saw the alert (the recovery probes' clock). The Router's own-outcome layer
    (``SamplingParams.local_outcomes``) is not simulated: at these rates every outcome is in
    the snapshot seconds later, long before the next decision.

    Every arm of the snapshot is handed to ``CompiledPolicy.compile`` (as ``previous``) with
    tables that hold one fresh Beta(alpha, beta) draw at every knot, so the SDK's lookup
    returns that draw whatever its uniform: the rules (cold start, exploration, probes, ties,
    staleness) are the SDK's, the Thompson draws exact. ``sdk_tables``: the SDK's own tables.
    """

    def __init__(self, seed: int, *, sdk_tables: bool = False) -> None:
        self.rng = random.Random(seed)
        self.sdk_tables = sdk_tables
        self.alerted_at: dict[str, int] = {}

    def _draw(self, alpha: float, beta: float) -> Tables:
        knots = (self.rng.betavariate(alpha, beta),) * (QUANTILE_KNOTS + 1)
        return knots, knots, knots

    def compile(
        self,
        snapshot: PolicySnapshot,
        params: SamplingParams,
        now: float,
        previous: CompiledPolicy,
        decisions: int,
    ) -> CompiledPolicy:
        alerted = {name for name, s in snapshot.paths.items() if s.status == "degrading"}
        for name in [name for name in self.alerted_at if name not in alerted]:
            del self.alerted_at[name]
        for name in alerted:
            self.alerted_at.setdefault(name, decisions)
        if not self.sdk_tables:
            arms = [
                Arm(name, alpha=s.alpha, beta=s.beta, tables=self._draw(s.alpha, s.beta))
                for name, s in snapshot.paths.items()
            ]
            previous = CompiledPolicy(
                arms or [Arm(PATHS[0])], tie_margin=params.tie_margin, snapshot=None, loaded=True
            )
        return CompiledPolicy.compile(
            snapshot, PATHS, params, previous=previous, now=_utc(now), alerted_at=self.alerted_at
        )


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class Pipeline:
    """The join and posterior stages of one goal on the simulated clock: each action is
    queued at its time (Unix seconds) and runs when ``run`` passes it. A decision is read at
    once, an outcome when it occurs; joined items are flushed to ``GoalState.apply`` at the
    next ``FLUSH`` tick, the detectors released ``reorder_lag`` later (the stage's tick).
    ``snapshot`` is what the stage published after its last action (None: nothing new)."""

    def __init__(self, state: GoalState) -> None:
        self.state = state
        self.join = PartitionJoin(0, JoinConfig())
        #: (day, path, "open" | "resolved") of every alert
        self.alerts: list[tuple[float, str, str]] = []
        self._queue: list[tuple[float, int, DecisionEvent | OutcomeEvent | str]] = []
        self._flushes: set[float] = set()
        self._seq = self._decisions = self._outcomes = 0
        self._changed_at: float | None = None

    def _push(self, at: float, action: DecisionEvent | OutcomeEvent | str) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, action))

    def decide(self, event: DecisionEvent) -> None:
        self._push(event.decided_at.timestamp(), event)

    def report(self, event: OutcomeEvent) -> None:
        at = event.occurred_at.timestamp()
        self._push(at, event)
        flush = (math.floor(at / FLUSH) + 1) * FLUSH
        if flush not in self._flushes:
            self._flushes.add(flush)
            self._push(flush, "flush")

    def run(self, until: float) -> None:
        queue, join, state = self._queue, self.join, self.state
        while queue and queue[0][0] <= until:
            at, _, action = heapq.heappop(queue)
            if isinstance(action, DecisionEvent):
                join.on_decision(self._decisions, action)
                self._decisions += 1
            elif isinstance(action, OutcomeEvent):
                join.on_outcome(self._outcomes, action)
                self._outcomes += 1
            elif action == "flush":
                self._flushes.discard(at)
                join.expire()
                for delta in build_deltas(0, join.position, join.drain()):
                    self._alerts(state.apply(delta, wall=at))
                self._push(at + state.reorder_lag + FLUSH, "tick")
                self._changed_at = at
            else:
                self._alerts(state.release(wall=at))
                self._changed_at = at

    def _alerts(self, alerts: list[DegradationAlert]) -> None:
        for alert in alerts:
            day = (alert.detected_at.timestamp() - T0) / DAY
            self.alerts.append((day, alert.path, alert.state))

    def snapshot(self) -> PolicySnapshot | None:
        if self._changed_at is None:
            return None
        snapshot, self._changed_at = self.state.snapshot(self._changed_at), None
        return snapshot


@dataclass
class Trace:
    """What happened to each request of one (config, world), and the alerts (day, path, state)."""

    world: World
    paths: list[str] = field(default_factory=list)
    ok: list[bool] = field(default_factory=list)
    oracle: list[bool] = field(default_factory=list)
    #: per path: effective outcomes (alpha + beta - 2) in the policy each request used
    held: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PATHS})
    #: effective outcomes of the watched path's detector baseline at each request
    baseline: list[float] = field(default_factory=list)
    alerts: list[tuple[float, str, str]] = field(default_factory=list)
    #: the snapshot after every outcome was applied
    final: PolicySnapshot | None = None


def simulate(
    config: PosteriorConfig, world: World, *, delay: float = 1.0, sdk_tables: bool = False
) -> Trace:
    """Drive ``world`` through the SDK's policy, the join and a posterior stage that builds the
    goal's ``GoalState`` from ``config``."""
    trace = Trace(world)
    goal = f"g{world.seed}"
    pipeline = Pipeline(GoalState(goal, config))
    params = SamplingParams()
    rng = random.Random(world.seed)  # the router's
    policies = Policies(world.seed + 1_000_003, sdk_tables=sdk_tables)
    # Redis answered, no snapshot yet: every path is cold.
    policy = CompiledPolicy.compile(None, PATHS, params, now=_utc(T0))
    snapshot: PolicySnapshot | None = None
    scenario = world.scenario
    for i, day in enumerate(world.times):
        now = T0 + day * DAY
        pipeline.run(now - delay)  # what the SDK can have read by now
        snapshot = pipeline.snapshot() or snapshot
        if snapshot is not None:
            policy = policies.compile(snapshot, params, now, policy, decisions=i)
        k, reason = policy.choose(None, rng, params, decisions=i + 1)
        path, draw = PATHS[k], world.draws[i]
        ok = draw < scenario.rate(path, day)
        pipeline.decide(
            DecisionEvent(
                event_id=f"d{i}",
                trace_id=f"t{i}",
                goal=goal,
                path=path,
                candidates=PATHS,
                reason=reason,
                policy_version=policy.version,
                decided_at=_utc(now),
            )
        )
        occurred = _utc(now + world.delays[i])
        pipeline.report(
            OutcomeEvent(event_id=f"o{i}", trace_id=f"t{i}", success=ok, occurred_at=occurred)
        )
        trace.paths.append(path)
        trace.ok.append(ok)
        trace.oracle.append(draw < scenario.best_rate(day))
        known = snapshot.paths if snapshot is not None else {}
        for name, held in trace.held.items():
            stats = known.get(name)
            held.append(stats.alpha + stats.beta - 2.0 if stats is not None else 0.0)
        watched = pipeline.state.paths.get(WATCH)
        detector = watched.detector if watched is not None else None
        base = detector.baseline if isinstance(detector, BetaDropDetector) else None
        trace.baseline.append(base.alpha + base.beta - 2.0 if base is not None else 0.0)
    pipeline.run(T0 + world.days * DAY + 60.0)  # the last outcomes and ticks
    trace.alerts = pipeline.alerts
    trace.final = pipeline.snapshot()
    return trace
