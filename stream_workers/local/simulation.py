"""The demo's simulated world: three paths whose quality changes by phase. Pure, seeded.

Every request draws one uniform number; a path succeeds on it when the number is below the
path's success rate in that request's phase. Both policies compared in the demo (outroute and a
hard-coded fallback chain) see the same numbers, so their difference is the policy's alone.
A degradation is silent: the best path returns bad outputs, not exceptions.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

__all__ = ["PHASES", "SimPath", "Tally", "World", "bernoulli_stream", "fallback_chain"]


@dataclass(frozen=True)
class SimPath:
    name: str
    success: float  # outside the degradation
    cost_usd: float
    latency_ms: float


#: (name, the fraction of the run where it starts)
PHASES: Final = (("normal", 0.0), ("degraded", 0.35), ("recovered", 0.7))

PATHS: Final = (
    SimPath("large-model", 0.95, 0.0060, 1200.0),
    SimPath("medium-model", 0.88, 0.0020, 700.0),
    SimPath("small-model", 0.75, 0.0004, 300.0),
)


@dataclass
class World:
    """``requests`` requests; the first path falls to ``degraded_success`` in the middle phase."""

    requests: int
    seed: int = 0
    paths: tuple[SimPath, ...] = PATHS
    degraded_success: float = 0.30

    def __post_init__(self) -> None:
        if self.requests < 1:
            raise ValueError(f"requests must be >= 1, got {self.requests!r}")
        if not 0.0 <= self.degraded_success <= 1.0:
            raise ValueError(f"degraded_success must be in [0, 1], got {self.degraded_success!r}")
        rng = random.Random(self.seed)
        self._draws = [rng.random() for _ in range(self.requests)]
        self._by_name = {p.name: p for p in self.paths}

    def phase(self, i: int) -> str:
        fraction = i / self.requests
        current = PHASES[0][0]
        for name, start in PHASES:
            if fraction >= start:
                current = name
        return current

    def success_rate(self, path: str, i: int) -> float:
        spec = self._by_name[path]
        if path == self.paths[0].name and self.phase(i) == "degraded":
            return self.degraded_success
        return spec.success

    def outcome(self, path: str, i: int) -> bool:
        """Whether request ``i`` went well on ``path`` (the same draw for every path)."""
        return self._draws[i] < self.success_rate(path, i)

    def spec(self, path: str) -> SimPath:
        return self._by_name[path]


def fallback_chain(world: World, i: int) -> str:
    """A static chain tries the next path only on an exception; bad outputs are not
    exceptions, so it always answers with its first path."""
    return world.paths[0].name


@dataclass
class Tally:
    """Successes and requests per phase, and traffic per path."""

    requests: Counter[str] = field(default_factory=Counter)
    successes: Counter[str] = field(default_factory=Counter)
    traffic: Counter[tuple[str, str]] = field(default_factory=Counter)  # (phase, path)
    cost_usd: float = 0.0

    def add(self, phase: str, path: str, success: bool, cost_usd: float) -> None:
        self.requests[phase] += 1
        self.successes[phase] += success
        self.traffic[phase, path] += 1
        self.cost_usd += cost_usd

    def rate(self, phase: str | None = None) -> float | None:
        if phase is None:
            total = sum(self.requests.values())
            return sum(self.successes.values()) / total if total else None
        n = self.requests[phase]
        return self.successes[phase] / n if n else None


def bernoulli_stream(rates: list[float], counts: list[int], seed: int) -> list[float]:
    """Rewards (1.0 or 0.0): ``counts[k]`` outcomes at success rate ``rates[k]``, in order."""
    rng = random.Random(seed)
    return [
        1.0 if rng.random() < rate else 0.0
        for rate, count in zip(rates, counts, strict=True)
        for _ in range(count)
    ]
