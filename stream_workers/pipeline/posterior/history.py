"""Per-path outcome sums in event-time buckets: the history behind the dashboard (pure, no I/O).

The posterior stage adds every item its frontier admits (so a replay adds nothing twice) to
``BucketSums``, by the item's event time (a backfill lands in the past), and writes the sums
with the goal's next snapshot. In Redis, ``RedisKeys.history(goal, res, bucket)`` is a hash
per goal and bucket: ``res`` ``m`` for an epoch minute, ``h`` for an epoch hour, with the
fields ``<path>|<field>`` (``FIELDS``):

======  ============================================  =========================
field   what it sums                                  written with
======  ============================================  =========================
n       outcomes                                      HINCRBY
s       rewards (1 a success, 0 a failure, a score)   HINCRBYFLOAT
cost    cost_usd of the outcomes that had one         HINCRBYFLOAT
cost_n  outcomes that had a cost                      HINCRBY
lat     latency_ms of the outcomes that had one       HINCRBYFLOAT
lat_n   outcomes that had a latency                   HINCRBY
======  ============================================  =========================

A bucket expires ``RETENTION`` after its end (25 hours for minutes, 8 days for hours); a
bucket already past that when written is not written. Best-effort: increments applied but
not yet written are lost if the worker dies (docs/deploy.md, "History").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final, Literal, Protocol

__all__ = [
    "COUNT_FIELDS",
    "FIELDS",
    "MAX_BUCKETS",
    "MAX_PENDING",
    "RESOLUTIONS",
    "RETENTION",
    "BucketSums",
    "HashWriter",
    "Increments",
    "PendingHistory",
    "Resolution",
    "bucket_of",
    "expires_at",
    "queue_writes",
]

Resolution = Literal["m", "h"]
#: Seconds per bucket of each resolution.
RESOLUTIONS: Final[dict[Resolution, int]] = {"m": 60, "h": 3600}
#: How long a bucket is kept after its end, in seconds: the dashboard reads the last day of
#: minutes and the last week of hours, each with an hour to spare.
RETENTION: Final[dict[Resolution, int]] = {"m": 25 * 3600, "h": 8 * 24 * 3600}
#: Hash fields per path, in the order of the sums ``BucketSums`` keeps; ``_n`` fields and
#: ``n`` are integers.
FIELDS: Final = ("n", "s", "cost", "cost_n", "lat", "lat_n")
#: Fields written with HINCRBY; the others are floats.
COUNT_FIELDS: Final = frozenset({"n", "cost_n", "lat_n"})
#: (path, minute) sums a goal accumulates at most between two state writes (a tick, unless
#: the broker is away): a path's month of minutes. Beyond it, items are counted as dropped.
MAX_BUCKETS: Final = 50_000
#: (goal, resolution, bucket) hashes the stage keeps unwritten at most while Redis is away:
#: a thousand goals' ten minutes; the hashes of the current minute and hour merge in place.
MAX_PENDING: Final = 20_000


def bucket_of(seconds: float, resolution: Resolution) -> int:
    """The epoch bucket (minute or hour) Unix time ``seconds`` falls in."""
    return int(seconds // RESOLUTIONS[resolution])


def expires_at(bucket: int, resolution: Resolution) -> int:
    """Unix time at which ``bucket`` expires: ``RETENTION`` after its end."""
    size = RESOLUTIONS[resolution]
    return (bucket + 1) * size + RETENTION[resolution]


class BucketSums:
    """The sums of one goal's items per (path, epoch minute), not yet written.

    Hours are derived from minutes when written (``by_bucket``). At most ``limit``
    (path, minute) entries: an item that would need one more is dropped and counted in
    ``dropped``.
    """

    __slots__ = ("_sums", "dropped", "limit")

    def __init__(self, limit: int = MAX_BUCKETS) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit!r}")
        self.limit = limit
        self._sums: dict[tuple[str, int], list[float]] = {}
        #: items (outcomes) left out because the limit was reached
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._sums)

    def __bool__(self) -> bool:
        return bool(self._sums)

    def add(
        self, path: str, at: float, reward: float, cost: float | None, latency: float | None
    ) -> None:
        """One item of ``path`` at event time ``at`` (Unix seconds)."""
        self.add_items(path, (0,), (at,), (reward,), (cost,), (latency,))

    def add_items(
        self,
        path: str,
        indices: Iterable[int],
        times: Sequence[float],
        rewards: Sequence[float],
        costs: Sequence[float | None],
        latencies: Sequence[float | None],
    ) -> None:
        """The items ``indices`` of a delta of ``path`` (parallel sequences, as in
        ``PathDelta``). One call per delta, the current minute's sums kept at hand: with a
        call and a look-up per item the history added 0.45 us per outcome instead of 0.35
        (``bench/pipeline.py --history``, in process, 2026-12-05)."""
        all_sums = self._sums
        current = None
        sums: list[float] = []
        for i in indices:
            minute = int(times[i] // 60)
            if minute != current:
                found = all_sums.get((path, minute))
                if found is None:
                    if len(all_sums) >= self.limit:
                        self.dropped += 1
                        current = None
                        continue
                    found = all_sums[path, minute] = [0, 0.0, 0.0, 0, 0.0, 0]
                sums, current = found, minute
            sums[0] += 1
            sums[1] += rewards[i]
            cost = costs[i]
            if cost is not None:
                sums[2] += cost
                sums[3] += 1
            latency = latencies[i]
            if latency is not None:
                sums[4] += latency
                sums[5] += 1

    def merge(self, other: BucketSums) -> None:
        """Add ``other``'s sums and drops to these (within this limit)."""
        self.dropped += other.dropped
        mine = self._sums
        for key, sums in other._sums.items():
            into = mine.get(key)
            if into is None:
                if len(mine) >= self.limit:
                    self.dropped += int(sums[0])
                    continue
                mine[key] = list(sums)
                continue
            for i, value in enumerate(sums):
                into[i] += value

    def take(self) -> BucketSums:
        """The sums and drops so far, in a new object; these start empty."""
        taken = BucketSums(self.limit)
        taken._sums, self._sums = self._sums, {}
        taken.dropped, self.dropped = self.dropped, 0
        return taken

    def by_bucket(self) -> Iterator[tuple[Resolution, int, dict[str, float]]]:
        """(resolution, bucket, {"<path>|<field>": value}) for every minute and hour touched,
        minutes first, oldest first; zero sums (no cost, no latency) are left out."""
        hours: dict[int, dict[str, float]] = {}
        minutes: dict[int, dict[str, float]] = {}
        for (path, minute), sums in sorted(self._sums.items(), key=lambda kv: kv[0][1]):
            fields = minutes.setdefault(minute, {})
            hour = hours.setdefault(minute // 60, {})
            for name, value in zip(FIELDS, sums, strict=True):
                if value:
                    field = f"{path}|{name}"
                    fields[field] = value
                    hour[field] = hour.get(field, 0) + value
        for minute, fields in minutes.items():
            yield "m", minute, fields
        for hour_bucket, fields in sorted(hours.items()):
            yield "h", hour_bucket, fields


#: One hash's increments: (resolution, bucket) -> {"<path>|<field>": value}.
Increments = tuple[Resolution, int, dict[str, float]]


class PendingHistory:
    """Increments ready for Redis, merged per hash, at most ``limit`` hashes in all goals.

    A hash not yet pending when ``limit`` are is dropped, its outcomes counted in
    ``dropped`` per resolution; a bucket already past its retention at ``now`` is not kept
    (it would expire on arrival).
    """

    __slots__ = ("_goals", "_size", "dropped", "limit")

    def __init__(self, limit: int = MAX_PENDING) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit!r}")
        self.limit = limit
        self._goals: dict[str, dict[tuple[Resolution, int], dict[str, float]]] = {}
        self._size = 0
        #: resolution -> outcomes whose increments of that resolution were dropped
        self.dropped: dict[Resolution, int] = {"m": 0, "h": 0}

    def __len__(self) -> int:
        return self._size

    def goals(self) -> list[str]:
        """Goals with increments pending, sorted."""
        return sorted(self._goals)

    def add(self, goal: str, sums: BucketSums, now: float) -> None:
        """Merge ``goal``'s ``sums`` (written after a snapshot of it as of ``now``)."""
        self.dropped["m"] += sums.dropped
        self.dropped["h"] += sums.dropped
        hashes = self._goals.get(goal)
        for resolution, bucket, fields in sums.by_bucket():
            if expires_at(bucket, resolution) <= now:
                continue
            if hashes is None:
                hashes = self._goals[goal] = {}
            into = hashes.get((resolution, bucket))
            if into is None:
                if self._size >= self.limit:
                    outcomes = sum(v for f, v in fields.items() if f.endswith("|n"))
                    self.dropped[resolution] += int(outcomes)
                    continue
                hashes[resolution, bucket] = dict(fields)
                self._size += 1
                continue
            for name, value in fields.items():
                into[name] = into.get(name, 0) + value
        if hashes is not None and not hashes:
            del self._goals[goal]

    def of(self, goal: str, limit: int) -> list[Increments]:
        """Up to ``limit`` pending hashes of ``goal``: minutes first, oldest first."""
        hashes = self._goals.get(goal, {})
        keys = sorted(hashes, key=lambda key: (key[0] != "m", key[1]))[:limit]
        return [(resolution, bucket, hashes[resolution, bucket]) for resolution, bucket in keys]

    def written(self, goal: str, written: list[Increments]) -> None:
        """``written`` (from ``of``) is in Redis: forget it."""
        hashes = self._goals.get(goal)
        if hashes is None:
            return
        for resolution, bucket, _ in written:
            if hashes.pop((resolution, bucket), None) is not None:
                self._size -= 1
        if not hashes:
            del self._goals[goal]


class HashWriter(Protocol):
    """What ``queue_writes`` needs of a Redis pipeline."""

    def hincrby(self, name: str, key: str, amount: int = 1) -> Any: ...
    def hincrbyfloat(self, name: str, key: str, amount: float = 1.0) -> Any: ...
    def expireat(self, name: str, when: int) -> Any: ...


def queue_writes(
    pipe: HashWriter,
    key_of: Callable[[Resolution, int], str],
    hashes: list[Increments],
    now: float,
) -> int:
    """Queue on ``pipe`` the increments of ``hashes`` (HINCRBY for counts, HINCRBYFLOAT for
    sums) and each hash's EXPIREAT; ``key_of(resolution, bucket)`` names the hash. A bucket
    past its retention at ``now`` is left out (it would expire on arrival). Returns the
    commands queued."""
    queued = 0
    for resolution, bucket, fields in hashes:
        expiry = expires_at(bucket, resolution)
        if expiry <= now:
            continue
        key = key_of(resolution, bucket)
        for name, value in fields.items():
            if name.rpartition("|")[2] in COUNT_FIELDS:
                pipe.hincrby(key, name, int(value))
            else:
                pipe.hincrbyfloat(key, name, value)
        pipe.expireat(key, expiry)
        queued += len(fields) + 1
    return queued
