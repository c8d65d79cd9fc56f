"""A policy snapshot compiled for one router's paths, and the read-only views of it."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas import PathStatus, PolicySnapshot, Reason

from .sampling import Arm, ArmSet, SamplingParams, Tables, beta_quantiles, choose, cold_arm

__all__ = ["CompiledPolicy", "PathView", "PolicyView"]


@dataclass(frozen=True, slots=True)
class PathView:
    """What the router knows about one path."""

    name: str
    mean: float
    alpha: float
    beta: float
    n: int
    status: PathStatus
    last_outcome_at: datetime | None
    mean_cost_usd: float | None
    mean_latency_ms: float | None


@dataclass(frozen=True, slots=True)
class PolicyView:
    """The policy a router decides with. ``loaded`` is False until a snapshot source answered
    at least once; ``stale`` is True when the source has not answered for ``max_staleness``."""

    goal: str
    loaded: bool
    version: int | None
    generated_at: datetime | None
    age_seconds: float | None
    stale: bool
    paths: tuple[PathView, ...]

    def path(self, name: str) -> PathView:
        for view in self.paths:
            if view.name == name:
                return view
        raise KeyError(name)


class CompiledPolicy:
    """Immutable: arms for every path of the router, ready for the sampling rules."""

    __slots__ = ("arm_set", "fetched_at", "loaded", "raw", "snapshot")

    def __init__(
        self,
        arms: Sequence[Arm],
        *,
        tie_margin: float,
        snapshot: PolicySnapshot | None,
        loaded: bool,
        raw: bytes | None = None,
    ) -> None:
        self.arm_set = ArmSet(arms, tie_margin)
        self.snapshot = snapshot
        self.loaded = loaded
        self.raw = raw
        self.fetched_at = time.monotonic()

    @property
    def version(self) -> int | None:
        return self.snapshot.version if self.snapshot is not None else None

    def choose(
        self, among: tuple[int, ...] | None, rng: random.Random, params: SamplingParams
    ) -> tuple[int, Reason]:
        """Which of the paths offered (indexes ``among``; None: all) to take, by the sampling
        rules, and why; the first one (``fallback``) while no snapshot could ever be loaded."""
        if not self.loaded:
            return 0, "fallback"
        arm_set = self.arm_set
        if among is not None:
            arm_set = ArmSet([arm_set.arms[i] for i in among], params.tie_margin)
        return choose(arm_set, rng, params)

    @classmethod
    def never_loaded(cls, paths: Sequence[str], tie_margin: float) -> CompiledPolicy:
        return cls([cold_arm(p) for p in paths], tie_margin=tie_margin, snapshot=None, loaded=False)

    @classmethod
    def compile(
        cls,
        snapshot: PolicySnapshot | None,
        paths: Sequence[str],
        params: SamplingParams,
        *,
        previous: CompiledPolicy | None = None,
        raw: bytes | None = None,
        now: datetime | None = None,
    ) -> CompiledPolicy:
        """Arms for ``paths`` from ``snapshot`` (None: Redis answered but has no snapshot for
        the goal yet, so every path is cold). Quantile tables of unchanged posteriors are taken
        from ``previous`` instead of being recomputed."""
        now = now or datetime.now(UTC)
        reuse: Mapping[tuple[float, float], Tables] = {}
        if previous is not None:
            reuse = {(a.alpha, a.beta): a.tables for a in previous.arm_set.arms}
        arms = []
        known = snapshot.paths if snapshot is not None else {}
        for name in paths:
            stats = known.get(name)
            if stats is None:
                arms.append(cold_arm(name))
                continue
            last = stats.last_outcome_at
            stale = stats.status == "stale" or (
                last is not None and (now - last).total_seconds() > params.staleness
            )
            tables = reuse.get((stats.alpha, stats.beta)) or beta_quantiles(stats.alpha, stats.beta)
            arms.append(
                Arm(
                    name,
                    alpha=stats.alpha,
                    beta=stats.beta,
                    n=stats.n,
                    cold=stats.n < params.min_samples,
                    stale=stale,
                    degrading=stats.status == "degrading",
                    mean_cost=stats.mean_cost_usd,
                    mean_latency=stats.mean_latency_ms,
                    tables=tables,
                )
            )
        return cls(arms, tie_margin=params.tie_margin, snapshot=snapshot, loaded=True, raw=raw)

    def view(self, goal: str, *, stale: bool) -> PolicyView:
        snapshot = self.snapshot
        known = snapshot.paths if snapshot is not None else {}
        paths = []
        for arm in self.arm_set.arms:
            stats = known.get(arm.name)
            status: PathStatus
            if stats is not None:
                status = "stale" if arm.stale and stats.status != "degrading" else stats.status
            else:
                status = "cold"
            paths.append(
                PathView(
                    name=arm.name,
                    mean=arm.mean,
                    alpha=arm.alpha,
                    beta=arm.beta,
                    n=arm.n,
                    status=status,
                    last_outcome_at=stats.last_outcome_at if stats else None,
                    mean_cost_usd=arm.mean_cost,
                    mean_latency_ms=arm.mean_latency,
                )
            )
        generated = snapshot.generated_at if snapshot is not None else None
        age = (datetime.now(UTC) - generated).total_seconds() if generated else None
        return PolicyView(
            goal=goal,
            loaded=self.loaded,
            version=self.version,
            generated_at=generated,
            age_seconds=age,
            stale=stale,
            paths=tuple(paths),
        )
