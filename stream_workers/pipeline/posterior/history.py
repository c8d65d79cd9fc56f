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

from collections.abc import Iterator
from typing import Final, Literal

__all__ = [
    "FIELDS",
    "MAX_BUCKETS",
    "RESOLUTIONS",
    "RETENTION",
    "BucketSums",
    "Resolution",
    "bucket_of",
    "expires_at",
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
#: (path, minute) sums a goal keeps unwritten at most: a minute of 256 paths (the snapshot's
#: maximum) over about three days of backfill. Beyond it, items are counted as dropped.
MAX_BUCKETS: Final = 1_000_000 // len(FIELDS)


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
        key = (path, int(at // 60))
        sums = self._sums.get(key)
        if sums is None:
            if len(self._sums) >= self.limit:
                self.dropped += 1
                return
            sums = self._sums[key] = [0, 0.0, 0.0, 0, 0.0, 0]
        sums[0] += 1
        sums[1] += reward
        if cost is not None:
            sums[2] += cost
            sums[3] += 1
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
        """The sums so far, in a new object; these start empty (drops stay counted here)."""
        taken = BucketSums(self.limit)
        taken._sums, self._sums = self._sums, {}
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
