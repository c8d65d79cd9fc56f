"""Test vectors for the TypeScript SDK, generated from the Python SDK's sampling.

    .venv/bin/python sdk-typescript/vectors/generate.py      # rewrites vectors.json

The TypeScript unit tests replay them (test/unit/vectors.test.ts); a Python test
(tests/unit/test_sdk_typescript_vectors.py) regenerates them and fails when the committed file
is no longer what the Python SDK produces, so the two SDKs cannot drift apart silently.

- ``quantiles``: the Beta quantile tables at sampled knots (numbers; compared to 1e-9).
- ``choices``: each case is a list of uniforms fed to ``choose`` by a scripted random source
  (``randrange(n)`` is ``int(u * n)`` of the next uniform, as in the TypeScript SDK); the
  expected index, reason and number of uniforms used are exact.
- ``frequencies``: counts of (index, reason) over many seeded decisions. The two SDKs use
  different generators, so they agree only statistically: the test compares proportions with a
  tolerance of a few standard errors of the difference of two binomial proportions.
- ``murmur2``: the partition of trace-id keys, as the Python producer's partitioner
  (murmur2, as the Java client's) puts them.
- ``policies``: snapshots (JSON, as the workers write them) compiled at a fixed time for a
  router's paths: which arms are cold, stale, degrading, and the status the policy view shows.
- ``overrides``: a snapshot and the goal's overrides (JSON) compiled at a fixed time; for each
  case (the paths offered, scripted uniforms) the exact choice, reason, uniforms used, and
  whether the overrides had to be ignored (every path offered disabled).
"""

from __future__ import annotations

import json
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka.partitioner import murmur2

from producer_sdk.policy import CompiledPolicy
from producer_sdk.sampling import (
    QUANTILE_KNOTS,
    Arm,
    ArmSet,
    SamplingParams,
    beta_quantiles,
    choose,
)
from schemas import PathStats, PolicySnapshot
from schemas.overrides import GoalOverrides, OverrideEntry, PinnedEntry

OUT = Path(__file__).with_name("vectors.json")
K = QUANTILE_KNOTS
KNOTS = sorted({*range(0, K + 1, 16), 1, 2, 3, K - 2, K - 1})
BETAS = [(2.0, 1.0), (1.0, 3.0), (5.0, 5.0), (20.5, 3.25), (3.0, 40.0), (951.0, 52.0), (1.5, 1.5)]
CASES_PER_SCENARIO = 200
DECISIONS = 40_000

SCENARIOS: list[dict[str, Any]] = [
    {
        "name": "all cold: uniform",
        "params": {},
        "arms": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
    },
    {
        "name": "one clear winner",
        "params": {},
        "arms": [
            {"name": "a", "alpha": 91.0, "beta": 11.0, "n": 100, "cold": False},
            {"name": "b", "alpha": 61.0, "beta": 41.0, "n": 100, "cold": False},
        ],
    },
    {
        "name": "close posteriors, cost breaks the tie",
        "params": {"exploration_rate": 0.05},
        "arms": [
            {
                "name": "pricey",
                "alpha": 93.0,
                "beta": 9.0,
                "n": 100,
                "cold": False,
                "mean_cost": 0.02,
                "mean_latency": 900.0,
            },
            {
                "name": "cheap",
                "alpha": 91.0,
                "beta": 11.0,
                "n": 100,
                "cold": False,
                "mean_cost": 0.001,
                "mean_latency": 400.0,
            },
            {
                "name": "poor",
                "alpha": 50.0,
                "beta": 52.0,
                "n": 100,
                "cold": False,
                "mean_cost": 0.0001,
                "mean_latency": 100.0,
            },
        ],
    },
    {
        "name": "exploration prefers cold and stale paths",
        "params": {"exploration_rate": 0.3},
        "arms": [
            {"name": "a", "alpha": 81.0, "beta": 21.0, "n": 100, "cold": False},
            {"name": "b", "alpha": 71.0, "beta": 31.0, "n": 100, "cold": False},
            {"name": "new", "n": 3, "cold": True},
            {"name": "old", "alpha": 40.0, "beta": 10.0, "n": 48, "cold": False, "stale": True},
        ],
    },
    {
        "name": "degrading path only probed",
        "params": {"exploration_rate": 0.1, "recovery_probe_rate": 0.05},
        "arms": [
            {"name": "a", "alpha": 41.0, "beta": 11.0, "n": 50, "cold": False},
            {
                "name": "broken",
                "alpha": 3.0,
                "beta": 30.0,
                "n": 200,
                "cold": False,
                "degrading": True,
            },
            {"name": "c", "alpha": 35.0, "beta": 17.0, "n": 50, "cold": False},
        ],
    },
    {
        "name": "every other path degrading",
        "params": {"exploration_rate": 0.2, "recovery_probe_rate": 0.02},
        "arms": [
            {"name": "a", "alpha": 41.0, "beta": 11.0, "n": 50, "cold": False},
            {"name": "b", "alpha": 4.0, "beta": 30.0, "n": 50, "cold": False, "degrading": True},
        ],
    },
    {
        "name": "latency breaks the tie when cost is unknown",
        "params": {"exploration_rate": 0.0, "tie_margin": 0.1},
        "arms": [
            {
                "name": "slow",
                "alpha": 30.0,
                "beta": 10.0,
                "n": 40,
                "cold": False,
                "mean_latency": 2000.0,
            },
            {
                "name": "fast",
                "alpha": 28.0,
                "beta": 12.0,
                "n": 40,
                "cold": False,
                "mean_latency": 300.0,
            },
        ],
    },
    {
        "name": "single path",
        "params": {},
        "arms": [{"name": "only", "alpha": 5.0, "beta": 2.0, "n": 30, "cold": False}],
    },
]


class Scripted:
    """A random source that plays back given uniforms."""

    def __init__(self, uniforms: list[float]) -> None:
        self.uniforms = uniforms
        self.used = 0

    def random(self) -> float:
        u = self.uniforms[self.used]
        self.used += 1
        return u

    def randrange(self, n: int) -> int:
        return int(self.random() * n)


def arm_set(scenario: dict[str, Any]) -> tuple[ArmSet, SamplingParams]:
    params = SamplingParams(**scenario["params"])
    arms = []
    for spec in scenario["arms"]:
        alpha, beta = spec.get("alpha", 1.0), spec.get("beta", 1.0)
        arms.append(Arm(**spec, tables=beta_quantiles(alpha, beta)))
    return ArmSet(arms, params.tie_margin), params


def generate() -> dict[str, Any]:
    quantiles = []
    for alpha, beta in BETAS:
        main, lower, upper = beta_quantiles(alpha, beta)
        quantiles.append(
            {
                "alpha": alpha,
                "beta": beta,
                "knots": KNOTS,
                "main": [main[k] for k in KNOTS],
                "lower": [lower[k] for k in KNOTS],
                "upper": [upper[k] for k in KNOTS],
            }
        )
    choices, frequencies = [], []
    for number, scenario in enumerate(SCENARIOS):
        arms, params = arm_set(scenario)
        rng = random.Random(1000 + number)
        cases = []
        for _ in range(CASES_PER_SCENARIO):
            uniforms = [rng.random() for _ in range(2 * len(scenario["arms"]) + 3)]
            scripted = Scripted(uniforms)
            index, reason = choose(arms, scripted, params)
            cases.append(
                {"uniforms": uniforms, "index": index, "reason": reason, "used": scripted.used}
            )
        choices.append({**scenario, "cases": cases})
        seeded = random.Random(2000 + number)
        counts: dict[str, int] = {}
        for _ in range(DECISIONS):
            index, reason = choose(arms, seeded, params)
            key = f"{index}:{reason}"
            counts[key] = counts.get(key, 0) + 1
        counts = dict(sorted(counts.items()))
        frequencies.append({**scenario, "decisions": DECISIONS, "counts": counts})
    keys = [f"{random.Random(7).getrandbits(48):012x}-{i:x}" for i in range(1, 40)]
    keys += ["a", "summarize-1-0", "0123456789abcdef-ff", "x" * 128]
    partitions = {
        str(n): [(murmur2(key.encode()) & 0x7FFFFFFF) % n for key in keys] for n in (1, 4, 12, 64)
    }
    return {
        "generated_by": "sdk-typescript/vectors/generate.py from producer_sdk.sampling",
        "quantile_knots": K,
        "quantiles": quantiles,
        "choices": choices,
        "frequencies": frequencies,
        "murmur2": {"keys": keys, "partitions": partitions},
        "policies": policies(),
        "overrides": overrides(),
    }


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
POLICIES: list[dict[str, Any]] = [
    {
        "name": "cold by outcomes, stale by time or by status, degrading by status",
        "params": {"min_samples": 20, "staleness": 7 * 24 * 3600.0},
        "paths": ["fresh", "few", "old", "marked-stale", "alert", "unknown"],
        "snapshot": {
            "fresh": {"n": 500, "status": "healthy", "last": NOW - timedelta(hours=1)},
            "few": {"n": 19, "status": "cold", "last": NOW - timedelta(minutes=5)},
            "old": {"n": 300, "status": "healthy", "last": NOW - timedelta(days=8)},
            "marked-stale": {"n": 300, "status": "stale", "last": NOW - timedelta(days=1)},
            "alert": {"n": 300, "status": "degrading", "last": NOW - timedelta(days=9)},
        },
    },
    {
        "name": "a router's own thresholds",
        "params": {"min_samples": 5, "staleness": 3600.0},
        "paths": ["a", "b", "c"],
        "snapshot": {
            "a": {"n": 5, "status": "healthy", "last": NOW - timedelta(minutes=59)},
            "b": {"n": 4, "status": "healthy", "last": NOW - timedelta(minutes=61)},
            "c": {"n": 100, "status": "healthy", "last": None},
        },
    },
]


def policies() -> list[dict[str, Any]]:
    out = []
    for case in POLICIES:
        stats = {
            name: PathStats(
                alpha=1.0 + spec["n"] * 0.8,
                beta=1.0 + spec["n"] * 0.2,
                n=spec["n"],
                recent_n=0,
                recent_successes=0.0,
                last_outcome_at=spec["last"],
                status=spec["status"],
            )
            for name, spec in case["snapshot"].items()
        }
        snapshot = PolicySnapshot(goal="vectors", version=3, generated_at=NOW, paths=stats)
        params = SamplingParams(**case["params"])
        compiled = CompiledPolicy.compile(snapshot, case["paths"], params, now=NOW)
        view = compiled.view("vectors", stale=False)
        out.append(
            {
                "name": case["name"],
                "params": case["params"],
                "paths": case["paths"],
                "now": NOW.isoformat(),
                "snapshot": snapshot.model_dump_json(),
                "arms": [
                    {"name": a.name, "cold": a.cold, "stale": a.stale, "degrading": a.degrading}
                    for a in compiled.arm_set.arms
                ],
                "statuses": [p.status for p in view.paths],
            }
        )
    return out


def _entry(until: timedelta | None, reason: str | None = "incident") -> dict[str, Any]:
    return {
        "by": "oncall",
        "at": NOW - timedelta(hours=1),
        "until": None if until is None else NOW + until,
        "reason": reason,
    }


OVERRIDE_CASES: list[dict[str, Any]] = [
    {
        "name": "a disabled path is left out of every rule",
        "disabled": {"b": _entry(timedelta(minutes=30))},
        "pinned": None,
    },
    {
        "name": "a pin wins where the pinned path is offered; an ended disable is ignored",
        "disabled": {"a": _entry(timedelta(seconds=-1))},
        "pinned": {"path": "c", **_entry(None, None)},
    },
    {
        "name": "two disabled, one ended pin",
        "disabled": {"a": _entry(None), "c": _entry(timedelta(days=1))},
        "pinned": {"path": "b", **_entry(timedelta(minutes=-5))},
    },
]
OFFERED = [None, ["a", "b"], ["b", "c"], ["a"], ["c"]]


def overrides() -> list[dict[str, Any]]:
    paths = ["a", "b", "c"]
    stats = {
        "a": PathStats(alpha=80.0, beta=20.0, n=100, recent_n=0, recent_successes=0.0),
        "b": PathStats(alpha=60.0, beta=40.0, n=100, recent_n=0, recent_successes=0.0),
        "c": PathStats(
            alpha=3.0, beta=30.0, n=100, recent_n=0, recent_successes=0.0, status="degrading"
        ),
    }
    snapshot = PolicySnapshot(goal="vectors", version=5, generated_at=NOW, paths=stats)
    params = SamplingParams(exploration_rate=0.3, recovery_probe_rate=0.1)
    rng = random.Random(3000)
    out = []
    for case in OVERRIDE_CASES:
        goal_overrides = GoalOverrides(
            goal="vectors",
            version=2,
            disabled={p: OverrideEntry(**e) for p, e in case["disabled"].items()},
            pinned=None if case["pinned"] is None else PinnedEntry(**case["pinned"]),
        )
        compiled = CompiledPolicy.compile(
            snapshot, paths, params, overrides=goal_overrides, now=NOW
        )
        cases = []
        for offered in OFFERED:
            among = None if offered is None else tuple(paths.index(p) for p in offered)
            for _ in range(40):
                uniforms = [rng.random() for _ in range(9)]
                scripted = Scripted(uniforms)
                ignored: list[bool] = []
                index, reason = compiled.choose(
                    among, scripted, params, lambda got=ignored: got.append(True)
                )
                cases.append(
                    {
                        "among": offered,
                        "uniforms": uniforms,
                        "index": index,
                        "reason": reason,
                        "used": scripted.used,
                        "ignored": bool(ignored),
                    }
                )
        out.append(
            {
                "name": case["name"],
                "now": NOW.isoformat(),
                "params": {"exploration_rate": 0.3, "recovery_probe_rate": 0.1},
                "paths": paths,
                "snapshot": snapshot.model_dump_json(),
                "overrides": goal_overrides.model_dump_json(),
                "overrides_version": compiled.view("vectors", stale=False).overrides_version,
                "path_overrides": [
                    None if v.override is None else v.override.kind
                    for v in compiled.view("vectors", stale=False).paths
                ],
                "cases": cases,
            }
        )
    return out


def render() -> str:
    return json.dumps(generate(), indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {OUT}\n")
