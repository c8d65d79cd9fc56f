"""A policy snapshot and the goal's overrides compiled for one router's paths, and the
read-only views of them.

Overrides (``schemas.overrides``) act on top of the sampling rules, with the entries in force
at compile time (the policy feed compiles again when the earliest one ends):

- a pinned path that the router offers is the choice of every decision (reason ``override``);
- disabled paths are left out of every other choice: the sampling rules run over the paths
  that are not disabled, so exploration, cold start and recovery probes never pick them;
- when that leaves no path (every path offered is disabled), the paths offered are used as if
  there were no override, and ``on_ignored`` is called (the router warns once).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from schemas import PathStatus, PolicySnapshot, Reason
from schemas.overrides import GoalOverrides

from ._impl.local import LocalArm
from .sampling import (
    Arm,
    ArmSet,
    SamplingParams,
    Tables,
    beta_quantiles,
    choose,
    cold_arm,
    shift,
)

__all__ = ["CompiledPolicy", "PathOverride", "PathView", "PolicyView"]

#: A compiled policy is compiled again after this long even if nothing changed, so that path
#: staleness (judged by this process's clock) stays true.
_RECOMPILE_AFTER = 60.0


@dataclass(frozen=True, slots=True)
class PathOverride:
    """An operator's override of one path: ``disabled`` or ``pinned``, by whom, since when,
    until when (None: until undone), why."""

    kind: Literal["disabled", "pinned"]
    by: str
    at: datetime
    until: datetime | None
    reason: str | None


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
    #: in force when the policy was compiled; None: the path is routed by the rules
    override: PathOverride | None = None


@dataclass(frozen=True, slots=True)
class PolicyView:
    """The policy a router decides with. ``loaded`` is False until a snapshot source answered
    at least once; ``stale`` is True when the source has not answered for ``max_staleness``.
    ``overrides_version`` is the version of the goal's overrides in force (None: none)."""

    goal: str
    loaded: bool
    version: int | None
    generated_at: datetime | None
    age_seconds: float | None
    stale: bool
    paths: tuple[PathView, ...]
    overrides_version: int | None = None

    def path(self, name: str) -> PathView:
        for view in self.paths:
            if view.name == name:
                return view
        raise KeyError(name)


class CompiledPolicy:
    """Immutable: arms for every path of the router, ready for the sampling rules, and the
    overrides in force (see the module docstring)."""

    __slots__ = (
        "arm_set",
        "disabled",
        "enabled",
        "enabled_set",
        "fetched_at",
        "loaded",
        "overrides",
        "overrides_raw",
        "pinned",
        "raw",
        "recompile_at",
        "snapshot",
        "stored_overrides",
        "unroutable",
    )

    def __init__(
        self,
        arms: Sequence[Arm],
        *,
        tie_margin: float,
        snapshot: PolicySnapshot | None,
        loaded: bool,
        raw: bytes | None = None,
        overrides: GoalOverrides | None = None,
        overrides_raw: bytes | None = None,
        now: datetime | None = None,
    ) -> None:
        self.arm_set = ArmSet(arms, tie_margin)
        self.snapshot = snapshot
        self.loaded = loaded
        self.raw = raw
        self.fetched_at = time.monotonic()
        self.recompile_at = self.fetched_at + _RECOMPILE_AFTER
        #: the goal's overrides as read, and the part of them in force at compile time
        self.overrides_raw = overrides_raw
        self.stored_overrides = overrides
        self.overrides = None
        if overrides is not None:
            wall = now or datetime.now(UTC)
            active = overrides.active(wall)
            ends = active.next_end()
            if ends is not None:
                until_end = (ends - wall).total_seconds()
                self.recompile_at = min(self.recompile_at, self.fetched_at + until_end)
            self.overrides = None if active.empty else active
        names = [arm.name for arm in self.arm_set.arms]
        off = set(self.overrides.disabled) if self.overrides is not None else set()
        pin = self.overrides.pinned if self.overrides is not None else None
        #: index of the pinned path among the router's paths (None: no pin this router offers)
        self.pinned = names.index(pin.path) if pin is not None and pin.path in names else None
        self.disabled = frozenset(i for i, name in enumerate(names) if name in off)
        enabled = tuple(i for i in range(len(names)) if i not in self.disabled)
        #: every path of the router is disabled: the overrides are ignored (module docstring)
        self.unroutable = not enabled
        #: the paths not disabled, and their arms (None: no path of the router is disabled)
        self.enabled: tuple[int, ...] | None = None
        self.enabled_set: ArmSet | None = None
        if enabled and self.disabled:
            self.enabled = enabled
            self.enabled_set = ArmSet([self.arm_set.arms[i] for i in enabled], tie_margin)

    @property
    def version(self) -> int | None:
        return self.snapshot.version if self.snapshot is not None else None

    def choose(
        self,
        among: tuple[int, ...] | None,
        rng: random.Random,
        params: SamplingParams,
        on_ignored: Callable[[], None] | None = None,
        decisions: int = 0,
    ) -> tuple[int, Reason]:
        """Which of the paths offered (indexes ``among``, ascending; None: all) to take, as an
        index into them, and why: the pinned path (``override``), else by the sampling rules
        over the paths not disabled; the first one (``fallback``) while no snapshot could ever
        be loaded. ``on_ignored`` is called when every path offered is disabled;
        ``decisions`` is the router's count of decisions (the recovery probes' clock)."""
        if not self.loaded:
            return 0, "fallback"
        pinned = self.pinned
        if among is None:
            if pinned is not None:
                return pinned, "override"
            enabled = self.enabled
            if enabled is None:
                if self.unroutable and on_ignored is not None:
                    on_ignored()
                return choose(self.arm_set, rng, params, decisions)
            i, reason = choose(self.enabled_set or self.arm_set, rng, params, decisions)
            return enabled[i], reason
        if pinned is not None and pinned in among:
            return among.index(pinned), "override"
        offered = range(len(among))
        allowed = [k for k in offered if among[k] not in self.disabled]
        if not allowed:  # every path offered is disabled
            allowed = list(offered)
            if on_ignored is not None:
                on_ignored()
        arms = self.arm_set.arms
        j, reason = choose(
            ArmSet([arms[among[k]] for k in allowed], params.tie_margin), rng, params, decisions
        )
        return allowed[j], reason

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
        overrides: GoalOverrides | None = None,
        overrides_raw: bytes | None = None,
        now: datetime | None = None,
        local: Sequence[LocalArm] | None = None,
        alerted_at: Mapping[str, int] | None = None,
    ) -> CompiledPolicy:
        """Arms for ``paths`` from ``snapshot`` (None: Redis answered but has no snapshot for
        the goal yet, so every path is cold), with the ``overrides`` in force at ``now``, and
        what the router's own outcomes add (``local``, one per path:
        ``producer_sdk._impl.local``). ``alerted_at`` gives, per alerted path, the router's
        count of decisions when it first saw the alert. Quantile tables of unchanged
        posteriors are taken from ``previous``, and shifted from it for small changes."""
        now = now or datetime.now(UTC)
        exact: Mapping[tuple[float, float], Tables] = {}
        before: Mapping[str, Arm] = {}
        if previous is not None:
            exact = {a.tables_of or (a.alpha, a.beta): a.tables for a in previous.arm_set.arms}
            before = {a.name: a for a in previous.arm_set.arms}
        arms = []
        known = snapshot.paths if snapshot is not None else {}
        for k, name in enumerate(paths):
            stats = known.get(name)
            extra = local[k] if local is not None else None
            if stats is None and (extra is None or not extra.count):
                arms.append(cold_arm(name))
                continue
            alpha, beta, n = (stats.alpha, stats.beta, stats.n) if stats else (1.0, 1.0, 0)
            degrading = stats is not None and stats.status == "degrading"
            if extra is not None:
                n += extra.count
                if extra.alarm is not None:
                    alpha, beta = 1.0 + extra.alarm[0], 1.0 + extra.alarm[1]
                    degrading = True
                else:
                    alpha, beta = alpha + extra.successes, beta + extra.failures
            last = stats.last_outcome_at if stats else None
            stale = (stats is not None and stats.status == "stale") or (
                last is not None and (now - last).total_seconds() > params.staleness
            )
            tables, tables_of, affine = _tables(alpha, beta, exact, before.get(name))
            arms.append(
                Arm(
                    name,
                    alpha=alpha,
                    beta=beta,
                    n=n,
                    cold=n < params.min_samples,
                    stale=stale,
                    degrading=degrading,
                    alerted_at=(alerted_at or {}).get(name, 0),
                    mean_cost=stats.mean_cost_usd if stats else None,
                    mean_latency=stats.mean_latency_ms if stats else None,
                    tables=tables,
                    tables_of=tables_of,
                    affine=affine,
                )
            )
        return cls(
            arms,
            tie_margin=params.tie_margin,
            snapshot=snapshot,
            loaded=True,
            raw=raw,
            overrides=overrides,
            overrides_raw=overrides_raw,
            now=now,
        )

    def view(self, goal: str, *, stale: bool) -> PolicyView:
        snapshot = self.snapshot
        known = snapshot.paths if snapshot is not None else {}
        paths = []
        for arm in self.arm_set.arms:
            stats = known.get(arm.name)
            status: PathStatus
            if arm.degrading:  # the workers' alert, or this router's own alarm
                status = "degrading"
            elif stats is not None:
                status = "stale" if arm.stale else stats.status
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
                    override=self._override(arm.name),
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
            overrides_version=self.overrides.version if self.overrides is not None else None,
        )

    def _override(self, path: str) -> PathOverride | None:
        overrides = self.overrides
        if overrides is None:
            return None
        pinned = overrides.pinned
        if pinned is not None and pinned.path == path:
            return PathOverride("pinned", pinned.by, pinned.at, pinned.until, pinned.reason)
        entry = overrides.disabled.get(path)
        if entry is None:
            return None
        return PathOverride("disabled", entry.by, entry.at, entry.until, entry.reason)


def _tables(
    alpha: float,
    beta: float,
    exact: Mapping[tuple[float, float], Tables],
    before: Arm | None,
) -> tuple[Tables, tuple[float, float] | None, tuple[float, float] | None]:
    """The quantile tables for Beta(alpha, beta), the parameters they were computed for (None:
    these) and the affine map of their draws (``producer_sdk.sampling``): the previous
    policy's tables for the same parameters, or the path's previous tables moved when its
    posterior moved little, or tables computed now."""
    tables = exact.get((alpha, beta))
    if tables is not None:
        return tables, None, None
    if before is not None:
        # Always from the parameters the tables were computed for: errors do not pile up.
        source = before.tables_of or (before.alpha, before.beta)
        affine = shift(source, alpha, beta)
        if affine is not None:
            return before.tables, source, affine
    return beta_quantiles(alpha, beta), None, None
