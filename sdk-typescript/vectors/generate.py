"""Test vectors for the TypeScript SDK, generated from the Python SDK's sampling.

    .venv/bin/python sdk-typescript/vectors/generate.py      # rewrites vectors.json

The TypeScript unit tests replay them (test/unit/vectors.test.ts); a Python test
(tests/unit/test_sdk_typescript_vectors.py) regenerates them and fails when the committed file
is no longer what the Python SDK produces, so the two SDKs cannot drift apart silently.

- ``quantiles``: the Beta quantile tables at sampled knots (numbers; compared to 1e-9).
- ``choices``: each case is a list of uniforms fed to ``choose`` by a scripted random source
  (``randrange(n)`` is ``int(u * n)`` of the next uniform, as in the TypeScript SDK), and the
  router's count of decisions (``decisions``: the recovery probes' clock, cycling through the
  scenario's ``clock``, default 0); the expected index, reason and number of uniforms used are
  exact. A scenario's ``extra`` cases are hand-written uniforms (equal draws, say).
- ``frequencies``: counts of (index, reason) over many seeded decisions, the i-th (from 1) made
  at a router count of i decisions. The two SDKs use different generators, so they agree only
  statistically: the test compares proportions with a tolerance of a few standard errors of the
  difference of two binomial proportions.
- ``probe_rates``: ``probe_rate`` of an alerted arm for some parameters, alert times and router
  counts (numbers; compared to 1e-12).
- ``murmur2``: the partition of trace-id keys, as the Python producer's partitioner
  (murmur2, as the Java client's) puts them.
- ``policies``: snapshots (JSON, as the workers write them) compiled at a fixed time for a
  router's paths, with when the router first saw each alert (``alerted_at``): which arms are
  cold, stale, degrading, their ``alerted_at``, and the status the policy view shows.
- ``overrides``: a snapshot and the goal's overrides (JSON) compiled at a fixed time, the
  alerted path first seen at ``alerted_at``; for each case (the paths offered, scripted
  uniforms, the router's count of decisions) the exact choice, reason, uniforms used, and
  whether the overrides had to be ignored (every path offered disabled).
- ``local``: a router's own outcomes (``producer_sdk._impl.local``). ``streams``: seeded (or
  scripted) reward streams (a string of 0s and 1s, or a list of graded rewards) fed one by one to
  ``LocalEvidence.add`` over a baseline snapshot of one path, the i-th (from 1) at
  ``t0 + i * step`` seconds; ``changes`` are snapshots given to ``arms()`` after the ``after``-th
  outcome. Exact: the 1-based indexes at which ``add`` returned True, ``arms()`` at each change
  and at the end (``now``). ``folding``: outcomes of three paths, then snapshots whose
  ``last_outcome_at`` cut them off (and times that age them out), with ``arms()`` and the
  policy compiled with them (alpha, beta, n, cold, degrading, the status shown) at each step.
"""

from __future__ import annotations

import json
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka.partitioner import murmur2

from producer_sdk._impl.local import LocalArm, LocalEvidence
from producer_sdk.policy import CompiledPolicy
from producer_sdk.sampling import (
    QUANTILE_KNOTS,
    Arm,
    ArmSet,
    SamplingParams,
    beta_quantiles,
    choose,
    probe_rate,
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
        "name": "an alerted path is probed less as its alert ages",
        "params": {
            "exploration_rate": 0.1,
            "recovery_probe_rate": 0.02,
            "probe_start": 0.4,
            "probe_half_life": 50,
        },
        "clock": [900, 1000, 1001, 1050, 1100, 1300, 5000],
        "arms": [
            {"name": "a", "alpha": 61.0, "beta": 21.0, "n": 80, "cold": False},
            {
                "name": "broken",
                "alpha": 5.0,
                "beta": 40.0,
                "n": 43,
                "cold": False,
                "degrading": True,
                "alerted_at": 1000,
            },
            {"name": "c", "alpha": 50.0, "beta": 32.0, "n": 80, "cold": False},
        ],
    },
    {
        "name": "two alerts of different ages: probes scaled to what exploration leaves",
        "params": {"exploration_rate": 0.5, "recovery_probe_rate": 0.1, "probe_start": 0.45},
        "clock": [0, 10, 200, 400, 1000],
        "arms": [
            {
                "name": "old-alert",
                "alpha": 4.0,
                "beta": 30.0,
                "n": 32,
                "cold": False,
                "degrading": True,
                "alerted_at": 0,
            },
            {"name": "a", "alpha": 70.0, "beta": 30.0, "n": 98, "cold": False},
            {
                "name": "new-alert",
                "alpha": 6.0,
                "beta": 30.0,
                "n": 34,
                "cold": False,
                "degrading": True,
                "alerted_at": 200,
            },
        ],
    },
    {
        "name": "exploration takes the largest draw of the others, the first on equal draws",
        "params": {"exploration_rate": 0.5},
        "arms": [
            {"name": "best", "alpha": 90.0, "beta": 10.0, "n": 98, "cold": False},
            {"name": "twin-1", "alpha": 60.0, "beta": 40.0, "n": 98, "cold": False},
            {"name": "twin-2", "alpha": 60.0, "beta": 40.0, "n": 98, "cold": False},
            {"name": "poor", "alpha": 30.0, "beta": 70.0, "n": 98, "cold": False},
        ],
        "extra": [
            # best wins; the twins draw the same: the first of them (twin-1)
            [0.2, 0.5, 0.3, 0.3, 0.1],
            # best wins; poor's lucky draw beats the twins': poor
            [0.2, 0.5, 0.001, 0.001, 0.99999],
            # best draws low, twin-1 wins; twin-2 drew as much as the winner: twin-2
            [0.2, 1e-6, 0.99999, 0.99999, 0.5],
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
        clock = scenario.get("clock", [0])
        scripts = [
            [rng.random() for _ in range(2 * len(scenario["arms"]) + 3)]
            for _ in range(CASES_PER_SCENARIO)
        ]
        cases = []
        for k, uniforms in enumerate(scripts + scenario.get("extra", [])):
            scripted = Scripted(uniforms)
            decisions = clock[k % len(clock)]
            index, reason = choose(arms, scripted, params, decisions)
            cases.append(
                {
                    "uniforms": uniforms,
                    "decisions": decisions,
                    "index": index,
                    "reason": reason,
                    "used": scripted.used,
                }
            )
        choices.append({**scenario, "cases": cases})
        seeded = random.Random(2000 + number)
        counts: dict[str, int] = {}
        for i in range(1, DECISIONS + 1):
            index, reason = choose(arms, seeded, params, i)
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
        "probe_rates": probe_rates(),
        "policies": policies(),
        "overrides": overrides(),
        "local": local(),
    }


PROBE_PARAMS: list[dict[str, Any]] = [
    {},
    {"recovery_probe_rate": 0.0, "probe_start": 1.0, "probe_half_life": 1},
    {"recovery_probe_rate": 0.05, "probe_start": 0.02, "probe_half_life": 7},
    {"recovery_probe_rate": 0.001, "probe_start": 0.3, "probe_half_life": 333},
]
PROBE_AGES = [-5, 0, 1, 2, 3, 7, 50, 199, 200, 201, 333, 1000, 4567, 100_000]


def probe_rates() -> list[dict[str, Any]]:
    out = []
    for given in PROBE_PARAMS:
        params = SamplingParams(**given)
        for alerted_at in (0, 12_345):
            arm = Arm("alerted", degrading=True, alerted_at=alerted_at)
            clock = [alerted_at + age for age in PROBE_AGES if alerted_at + age >= 0]
            out.append(
                {
                    "params": given,
                    "alerted_at": alerted_at,
                    "decisions": clock,
                    "rates": [probe_rate(arm, decisions, params) for decisions in clock],
                }
            )
    return out


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
POLICIES: list[dict[str, Any]] = [
    {
        "name": "cold by outcomes, stale by time or by status, degrading by status",
        "params": {"min_samples": 20, "staleness": 7 * 24 * 3600.0},
        "paths": ["fresh", "few", "old", "marked-stale", "alert", "unknown"],
        "alerted_at": {"alert": 7},
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
        "alerted_at": {},
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
        compiled = CompiledPolicy.compile(
            snapshot, case["paths"], params, now=NOW, alerted_at=case["alerted_at"]
        )
        view = compiled.view("vectors", stale=False)
        out.append(
            {
                "name": case["name"],
                "params": case["params"],
                "paths": case["paths"],
                "now": NOW.isoformat(),
                "alerted_at": case["alerted_at"],
                "snapshot": snapshot.model_dump_json(),
                "arms": [
                    {
                        "name": a.name,
                        "cold": a.cold,
                        "stale": a.stale,
                        "degrading": a.degrading,
                        "alerted_at": a.alerted_at,
                    }
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
OVERRIDES_PARAMS: dict[str, Any] = {
    "exploration_rate": 0.3,
    "recovery_probe_rate": 0.1,
    "probe_start": 0.4,
    "probe_half_life": 100,
}
OVERRIDES_ALERTED_AT = {"c": 50}
OVERRIDES_CLOCK = [0, 50, 120, 400, 3000]


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
    params = SamplingParams(**OVERRIDES_PARAMS)
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
            snapshot,
            paths,
            params,
            overrides=goal_overrides,
            now=NOW,
            alerted_at=OVERRIDES_ALERTED_AT,
        )
        cases = []
        for offered in OFFERED:
            among = None if offered is None else tuple(paths.index(p) for p in offered)
            for k in range(40):
                uniforms = [rng.random() for _ in range(9)]
                scripted = Scripted(uniforms)
                ignored: list[bool] = []
                decisions = OVERRIDES_CLOCK[k % len(OVERRIDES_CLOCK)]
                index, reason = compiled.choose(
                    among, scripted, params, lambda got=ignored: got.append(True), decisions
                )
                cases.append(
                    {
                        "among": offered,
                        "uniforms": uniforms,
                        "decisions": decisions,
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
                "params": OVERRIDES_PARAMS,
                "alerted_at": OVERRIDES_ALERTED_AT,
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


LOCAL_T0 = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp())
#: Times are multiples of 1/8 s after LOCAL_T0: exact in seconds and in milliseconds.
LOCAL_STREAMS: list[dict[str, Any]] = [
    {
        "name": "0.95, a drop to 0.30, back to 0.95",
        "snapshot": {"alpha": 951.0, "beta": 51.0},
        "phases": [[0.95, 200], [0.3, 40], [0.95, 300]],
        "seed": 11,
        "step": 0.125,
    },
    {
        "name": "0.80 flapping down to 0.35 and back",
        "snapshot": {"alpha": 801.0, "beta": 201.0},
        "phases": [
            [0.8, 150],
            [0.35, 30],
            [0.8, 150],
            [0.35, 30],
            [0.8, 150],
            [0.4, 60],
            [0.8, 200],
        ],
        "seed": 12,
        "step": 0.25,
    },
    {
        "name": "graded rewards around 0.9, then around 0.3, then back",
        "snapshot": {"alpha": 181.0, "beta": 21.0},
        "phases": [[0.9, 200], [0.3, 40], [0.9, 250]],
        "graded": True,
        "seed": 13,
        "step": 0.5,
    },
    {
        "name": "a low baseline (0.30), a slight drop: runs longer than the 200 kept",
        "snapshot": {"alpha": 301.0, "beta": 701.0},
        "phases": [[0.2, 1200]],
        "changes": [[570, {"alpha": 301.0, "beta": 701.0}]],  # while the alarm holds
        "seed": 22,
        "step": 0.125,
    },
    {
        "name": "a baseline capped at 0.999",
        "snapshot": {"alpha": 5001.0, "beta": 2.0},
        "phases": [[0.999, 300], [0.5, 20], [0.999, 300]],
        "seed": 14,
        "step": 0.125,
    },
    {
        # 0.9996 capped at 0.999: a failure adds log(0.5005 / 0.001) = 6.22, six successes
        # take 4.16 off, the second failure stays under log(1e4); uncapped, it would alarm.
        "name": "a baseline capped at 0.999: two failures six successes apart",
        "snapshot": {"alpha": 5001.0, "beta": 2.0},
        "script": [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0],
        "step": 0.125,
    },
    {
        "name": "no baseline: fewer than min_samples outcomes",
        "snapshot": {"alpha": 10.0, "beta": 3.0},
        "phases": [[0.1, 100]],
        "seed": 15,
        "step": 0.125,
    },
    {
        "name": "no baseline: under 0.2",
        "snapshot": {"alpha": 31.0, "beta": 171.0},
        "phases": [[0.01, 100]],
        "seed": 16,
        "step": 0.125,
    },
    {
        "name": "no baseline: the workers' alert",
        "snapshot": {"alpha": 951.0, "beta": 51.0, "status": "degrading"},
        "phases": [[0.1, 100]],
        "seed": 17,
        "step": 0.125,
    },
    {
        "name": "the snapshot changes: a new baseline, the workers' alert ends the alarm",
        "snapshot": {"alpha": 951.0, "beta": 51.0},
        "phases": [[0.95, 100], [0.25, 60], [0.95, 140]],
        "changes": [
            [50, {"alpha": 701.0, "beta": 301.0}],
            [125, {"alpha": 951.0, "beta": 51.0, "status": "degrading"}],
            [140, {"alpha": 951.0, "beta": 51.0}],
        ],
        "seed": 18,
        "step": 0.125,
    },
]


def _local_stats(spec: dict[str, Any], last: float | None = None) -> PathStats:
    alpha, beta = spec["alpha"], spec["beta"]
    n = int(alpha + beta - 2)
    return PathStats(
        alpha=alpha,
        beta=beta,
        n=n,
        recent_n=min(20, n),
        recent_successes=min(18.0, alpha - 1),
        status=spec.get("status", "healthy"),
        last_outcome_at=None if last is None else datetime.fromtimestamp(last, UTC),
    )


def _local_arms(arms: list[LocalArm]) -> list[dict[str, Any]]:
    return [
        {
            "successes": a.successes,
            "failures": a.failures,
            "count": a.count,
            "alarm": None if a.alarm is None else list(a.alarm),
        }
        for a in arms
    ]


def _rewards(spec: dict[str, Any]) -> list[float]:
    if "script" in spec:
        return list(spec["script"])
    rng = random.Random(spec["seed"])
    out: list[float] = []
    for p, count in spec["phases"]:
        for _ in range(count):
            if spec.get("graded"):
                out.append(round(min(1.0, max(0.0, p + (rng.random() - 0.5) * 0.5)), 3))
            else:
                out.append(1.0 if rng.random() < p else 0.0)
    return out


def local_streams() -> list[dict[str, Any]]:
    out = []
    for spec in LOCAL_STREAMS:
        rewards = _rewards(spec)
        evidence = LocalEvidence(["x"], min_samples=20)
        known = {"x": _local_stats(spec["snapshot"])}
        evidence.arms(known, now=float(LOCAL_T0))
        changes = dict(spec.get("changes", []))
        returned, seen = [], []
        for i, reward in enumerate(rewards, start=1):
            at = LOCAL_T0 + i * spec["step"]
            if evidence.add(0, reward, at=at):
                returned.append(i)
            if i in changes:
                known = {"x": _local_stats(changes[i])}
                seen.append({"after": i, "arms": _local_arms(evidence.arms(known, now=at))})
        now = LOCAL_T0 + len(rewards) * spec["step"] + 1.0
        graded = bool(spec.get("graded"))
        out.append(
            {
                "name": spec["name"],
                "min_samples": 20,
                "snapshot": _local_stats(spec["snapshot"]).model_dump(mode="json"),
                "changes": [
                    {
                        "after": i,
                        "snapshot": _local_stats(c).model_dump(mode="json"),
                        "arms": s["arms"],
                    }
                    for (i, c), s in zip(spec.get("changes", []), seen, strict=True)
                ],
                "t0": LOCAL_T0,
                "step": spec["step"],
                "rewards": rewards if graded else "".join(str(int(r)) for r in rewards),
                "returned": returned,
                "alarmed": evidence.alarmed(),
                "now": now,
                "arms": _local_arms(evidence.arms(known, now=now)),
            }
        )
    return out


#: The folding case, in order: outcomes added (path index, reward, seconds after LOCAL_T0;
#: ``bulk``: ``count`` of them one every ``step`` seconds from ``start``), and steps: a
#: snapshot (None: none yet) of each path's ``last`` outcome time, given to ``arms()`` at
#: ``now`` and compiled with what it returns.
LOCAL_SPECS: dict[str, dict[str, Any]] = {
    "x": {"alpha": 41.0, "beta": 11.0},
    "y": {"alpha": 9.0, "beta": 4.0},
    "z": {"alpha": 901.0, "beta": 101.0},
}
LOCAL_EVENTS: list[dict[str, Any]] = [
    {"add": [[0, 1.0, 0.5], [0, 0.0, 1.0], [1, 1.0, 1.0], [0, 1.0, 1.125], [0, 0.25, 2.0]]},
    {"add": [[1, 0.0, 3.5], [1, 0.75, 4.0]]},
    {"bulk": {"path": 2, "count": 1_010, "reward": 1.0, "start": 10.0, "step": 0.125}},
    {"step": "no snapshot yet: every outcome folded, at most 1,000 per path", "now": 200.0},
    {
        "step": "x counted up to 1 s (the outcome at 1 s too), y up to 3.5 s",
        "now": 200.0,
        "last": {"x": 1.0, "y": 3.5, "z": None},
    },
    {"add": [[2, 0.0, 140.0 + k * 0.125] for k in range(7)]},
    {
        "step": "z's own alarm: restarted from its run's outcomes, alerted",
        "now": 200.0,
        "last": {"x": 1.0, "y": 3.5, "z": None},
    },
    {
        "step": "five minutes on: outcomes older than 300 s leave",
        "now": 420.0,
        "last": {"x": 1.0, "y": 3.5, "z": 100.0},
    },
    {
        "step": "the workers' alert on z ends its alarm; z counted up to 130 s",
        "now": 420.0,
        "last": {"x": 1.0, "y": 4.0, "z": 130.0},
        "status": {"z": "degrading"},
    },
]


def local_folding() -> dict[str, Any]:
    paths = list(LOCAL_SPECS)
    params = SamplingParams(min_samples=20)
    evidence = LocalEvidence(paths, min_samples=params.min_samples)
    events: list[dict[str, Any]] = []
    for event in LOCAL_EVENTS:
        if "add" in event:
            returned = [
                evidence.add(index, reward, at=LOCAL_T0 + at) for index, reward, at in event["add"]
            ]
            events.append({"add": event["add"], "returned": returned})
            continue
        if "bulk" in event:
            bulk = event["bulk"]
            returned = [
                evidence.add(
                    bulk["path"], bulk["reward"], at=LOCAL_T0 + bulk["start"] + k * bulk["step"]
                )
                for k in range(bulk["count"])
            ]
            events.append({"bulk": bulk, "returned": [k + 1 for k, r in enumerate(returned) if r]})
            continue
        now = LOCAL_T0 + event["now"]
        wall = datetime.fromtimestamp(now, UTC)
        snapshot = None
        if "last" in event:
            stats = {
                name: _local_stats(
                    {**LOCAL_SPECS[name], "status": event.get("status", {}).get(name, "healthy")},
                    None if last is None else LOCAL_T0 + last,
                )
                for name, last in event["last"].items()
            }
            snapshot = PolicySnapshot(goal="vectors", version=1, generated_at=wall, paths=stats)
        arms = evidence.arms(snapshot.paths if snapshot is not None else {}, now=now)
        compiled = CompiledPolicy.compile(snapshot, paths, params, now=wall, local=arms)
        view = compiled.view("vectors", stale=False)
        events.append(
            {
                "step": event["step"],
                "now": now,
                "snapshot": None if snapshot is None else snapshot.model_dump_json(),
                "arms": _local_arms(arms),
                "alarmed": evidence.alarmed(),
                "compiled": [
                    {
                        "alpha": a.alpha,
                        "beta": a.beta,
                        "n": a.n,
                        "cold": a.cold,
                        "degrading": a.degrading,
                    }
                    for a in compiled.arm_set.arms
                ],
                "statuses": [p.status for p in view.paths],
            }
        )
    return {"paths": paths, "min_samples": params.min_samples, "t0": LOCAL_T0, "events": events}


def local() -> dict[str, Any]:
    return {"streams": local_streams(), "folding": local_folding()}


def render() -> str:
    return json.dumps(generate(), indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {OUT}\n")
