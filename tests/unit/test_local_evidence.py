"""A router's own outcomes: folded until a snapshot counts them, and a drop seen where it
happens (producer_sdk._impl.local), alone and inside a Router. Streams are seeded; the
bounds are the module's (Lorden's bound for false alarms) and exact alarm indices."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from producer_sdk import Router, SamplingParams
from producer_sdk._impl.local import ALARM_P, PENDING_AGE, PENDING_MAX, LocalEvidence
from producer_sdk.testing import NullSink, StaticSnapshotSource
from schemas import PathStats, PathStatus, PolicySnapshot
from stream_workers.local.simulation import bernoulli_stream

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def stats(
    alpha: float, beta: float, *, status: PathStatus = "healthy", last: datetime | None = None
) -> PathStats:
    return PathStats(
        alpha=alpha,
        beta=beta,
        n=int(alpha + beta - 2),
        recent_n=min(20, int(alpha + beta - 2)),
        recent_successes=min(18.0, alpha - 1),
        status=status,
        last_outcome_at=last,
    )


def watched(alpha: float = 951.0, beta: float = 51.0) -> LocalEvidence:
    evidence = LocalEvidence(["x"], min_samples=20)
    evidence.arms({"x": stats(alpha, beta)})
    return evidence


def first_alarm(evidence: LocalEvidence, rewards: list[float]) -> int | None:
    """The 1-based index of the outcome that raised the alarm."""
    for i, reward in enumerate(rewards, start=1):
        if evidence.add(0, reward, at=0.0):
            return i
    return None


def test_a_drop_from_095_to_030_alarms_after_a_handful_of_outcomes() -> None:
    assert first_alarm(watched(), bernoulli_stream([0.3], [100], seed=3)) == 5
    found = [first_alarm(watched(), bernoulli_stream([0.3], [100], seed=s)) for s in range(200)]
    assert None not in found
    ordered = sorted(i for i in found if i is not None)
    assert ordered[len(ordered) // 2] <= 8
    assert ordered[int(0.9 * len(ordered))] <= 11


@pytest.mark.parametrize(("p0", "alpha", "beta"), [(0.95, 951.0, 51.0), (0.8, 801.0, 201.0)])
def test_a_stationary_path_alarms_within_lordens_bound(
    p0: float, alpha: float, beta: float
) -> None:
    """A CUSUM of likelihood ratios alarming at log(1 / ALARM_P) raises at most one false
    alarm per 1 / ALARM_P outcomes on average: 20 in 200,000 here; far fewer in fact."""
    evidence = watched(alpha, beta)
    n = 200_000
    alarms = 0
    for reward in bernoulli_stream([p0], [n], seed=1):
        if evidence.add(0, reward, at=0.0) and evidence.alarmed():
            alarms += 1
            evidence._paths[0].end_alarm()
    assert alarms <= n * ALARM_P
    assert alarms == {0.95: 1, 0.8: 3}[p0]


def test_no_baseline_no_alarm_until_the_snapshot_has_evidence() -> None:
    for known in ({}, {"x": stats(9.0, 3.0)}, {"x": stats(95.0, 5.0, status="degrading")}):
        evidence = LocalEvidence(["x"], min_samples=20)
        evidence.arms(known)
        assert first_alarm(evidence, [0.0] * 50) is None


def test_the_alarm_restarts_the_path_from_its_run_and_ends_when_the_path_is_back() -> None:
    evidence = watched()
    # A success keeps the CUSUM at zero; each failure adds log(0.525 / 0.051) = 2.33, so the
    # fourth one in a row crosses log(1e4) = 9.21.
    assert first_alarm(evidence, [1.0, 0.0, 0.0, 0.0, 0.0]) == 5
    (arm,) = evidence.arms({"x": stats(951.0, 51.0)})
    assert arm.alarm == (0.0, 4.0)  # the run since the CUSUM left zero: four failures
    # Back at 0.95: "within 5 points of p0" beats "half of p0" after a few outcomes.
    back = bernoulli_stream([0.95], [100], seed=5)
    ended = next(i for i, r in enumerate(back, start=1) if evidence.add(0, r, at=0.0))
    assert ended == 8
    assert evidence.alarmed() == []


def test_the_workers_alert_ends_the_local_alarm() -> None:
    evidence = watched()
    first_alarm(evidence, [0.0] * 4)
    assert evidence.alarmed() == ["x"]
    (arm,) = evidence.arms({"x": stats(3.0, 20.0, status="degrading")})
    assert arm.alarm is None
    assert evidence.alarmed() == []


def test_outcomes_fold_until_the_snapshot_counts_them_and_never_twice() -> None:
    evidence = LocalEvidence(["x", "y"], min_samples=20)
    at = [(T0 + timedelta(seconds=k)).timestamp() for k in range(4)]
    for k, reward in enumerate([1.0, 0.0, 1.0, 1.0]):
        evidence.add(0, reward, at=at[k])
    now = at[-1] + 1
    x, y = evidence.arms({}, now=now)
    assert (x.successes, x.failures, x.count) == (3.0, 1.0, 4)
    assert y.count == 0
    # A snapshot that counted the first two: they leave, the last two stay folded.
    (x, _) = evidence.arms({"x": stats(40.0, 10.0, last=T0 + timedelta(seconds=1))}, now=now)
    assert (x.successes, x.failures, x.count) == (2.0, 0.0, 2)
    (x, _) = evidence.arms({"x": stats(42.0, 10.0, last=T0 + timedelta(seconds=3))}, now=now)
    assert x.count == 0


def test_folded_outcomes_are_bounded_in_number_and_age() -> None:
    evidence = LocalEvidence(["x"], min_samples=20)
    for k in range(PENDING_MAX + 10):
        evidence.add(0, 1.0, at=1000.0 + k * 0.001)
    (x,) = evidence.arms({}, now=1001.0)
    assert x.count == PENDING_MAX
    (x,) = evidence.arms({}, now=1000.0 + PENDING_AGE + 2.0)
    assert x.count == 0


NOW = datetime.now(UTC)
SNAPSHOT = PolicySnapshot(
    goal="g",
    version=1,
    generated_at=NOW,
    paths={"a": stats(951.0, 51.0, last=NOW), "b": stats(901.0, 101.0, last=NOW)},
)


def router(**sampling: object) -> Router:
    return Router(
        "g",
        ["a", "b"],
        event_sink=NullSink(),
        snapshot_source=StaticSnapshotSource(SNAPSHOT),
        sampling=SamplingParams(**sampling),  # type: ignore[arg-type]
        seed=7,
    )


def serve(r: Router, requests: int = 400) -> list[str]:
    """``requests`` decisions of ``r`` after "a" dropped to 0.3 ("b" at 0.9), reported."""
    r.start()
    rng = random.Random(11)
    paths = []
    for _ in range(requests):
        d = r.decide()
        paths.append(d.path)
        d.report(rng.random() < (0.3 if d.path == "a" else 0.9))
    return paths


def test_a_router_leaves_a_path_on_its_own_outcomes_before_any_snapshot_says_so() -> None:
    """ "a" (0.95 in the snapshot) fails from now on; the snapshot never changes. The router
    sees it in its own outcomes and sends "a" only recovery probes after a few failures."""
    r = router()
    try:
        paths = serve(r)
        on_a = [k for k, path in enumerate(paths) if path == "a"]
        # Four failures in its first four outcomes raise the alarm (decision 4); then
        # only probes: 3 % halving every 200 decisions to 1.5 %, about 2 % of the last 300.
        assert on_a[:6] == [0, 1, 2, 3, 17, 98]
        assert Counter(paths[100:])["a"] == 9
        assert r.get_policy().path("a").status == "degrading"
        assert r.get_policy().path("b").status == "healthy"
    finally:
        r.close()


def test_without_local_outcomes_the_router_waits_for_the_snapshot() -> None:
    r = router(local_outcomes=False)
    try:
        paths = serve(r)
        # The snapshot's 0.95 over 1,000 outcomes outweighs 400 of them at 0.3.
        assert Counter(paths[100:])["a"] == 286
        assert r.get_policy().path("a").status == "healthy"
    finally:
        r.close()
