"""Every Kafka topic and Redis key outroute uses, under a configurable prefix.

Topics (``P`` is the topic prefix, ``N`` the configured partition count)::

    P.decisions     key trace_id   N partitions   DecisionEvent, from the SDK
    P.outcomes      key trace_id   N partitions   OutcomeEvent, from the SDK, graders, backfill
    P.path-deltas   key goal       N partitions   PathDelta, from the join stage
    P.alerts        key goal       1 partition    DegradationAlert, for ops (total order)
    P.dead-letter   key source key 1 partition    malformed input with the reason
    P.posterior-state key goal     N partitions   the posterior stage's state, compacted
    P.overrides     key goal       1 partition    every override (disable, enable, pin, unpin)

``decisions`` and ``outcomes`` MUST have the same partition count and the same key so that a
trace's decision and outcome land in the same partition number: the join is then local to a
partition. ``posterior-state`` has the partition count of ``path-deltas``: a goal's state is
written to the partition its deltas travel in. Producers hash keys with ``murmur2``
(``PARTITIONER``), the hash of the Java client, aiokafka and Faust, so every client agrees on
the partition of a key.

Redis keys (``R`` is the Redis key prefix)::

    R:policy:<goal>      string   PolicySnapshot JSON
    R:goals              set      goals that have a snapshot
    R:policy-updates     channel  a goal name is published after each snapshot write
    R:policy-changes     channel  the goals written together, one message per write
                                  (names joined by newlines): what a process that routes
                                  many goals follows, woken once per batch, not per goal
    R:alerts:<goal>      list     recent DegradationAlert JSON, newest first, capped
    R:overrides:<goal>   string   the goal's active overrides (GoalOverrides JSON), read by the
                                  SDKs with the snapshot; a change is published on
                                  R:policy-updates and R:policy-changes like a snapshot
    R:override-log:<goal> list    recent override records, newest first, capped
    R:override-lock:<goal> string held while one writer changes the goal's overrides
    R:history:<goal>:<res>:<bucket>  hash  per-path outcome sums of one time bucket
                                  (res ``m``: minute, ``h``: hour; bucket: epoch minute or
                                  hour), written by the posterior stage, expiring
    R:health:<goal>:<bucket>  hash  the join's counts for the goal in one epoch minute
                                  (joined, unreported, duplicates, ...), expiring
    R:health:<goal>:h:<bucket>  hash  the same counts in one epoch hour, expiring
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = ["PARTITIONER", "PREFIX_PATTERN", "RedisKeys", "TopicSpec", "Topics", "check_prefix"]

#: librdkafka partitioner name matching the Java client's (and aiokafka's) key hash.
PARTITIONER: Final = "murmur2_random"

PREFIX_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
_PREFIX_RE: Final = re.compile(PREFIX_PATTERN)


def check_prefix(prefix: str, *, what: str = "prefix") -> str:
    """Return ``prefix`` if it is a valid topic/key prefix, else raise ValueError naming it."""
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        raise ValueError(
            f"{what} {prefix!r} is invalid: use 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return prefix


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic: its name, what its key is, how many partitions it needs, and why it exists."""

    name: str
    key: str
    partitions: int
    description: str
    config: Mapping[str, str] = field(default_factory=dict)


class Topics:
    """The topics of one deployment (one prefix)."""

    __slots__ = (
        "alerts",
        "dead_letter",
        "decisions",
        "outcomes",
        "overrides",
        "partitions",
        "path_deltas",
        "posterior_state",
        "prefix",
    )

    def __init__(self, prefix: str = "outroute", partitions: int = 12) -> None:
        check_prefix(prefix, what="topic prefix")
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise ValueError(f"partitions must be a positive integer, got {partitions!r}")
        self.prefix = prefix
        self.partitions = partitions
        self.decisions = TopicSpec(
            f"{prefix}.decisions", "trace_id", partitions, "DecisionEvent per decide()"
        )
        self.outcomes = TopicSpec(
            f"{prefix}.outcomes", "trace_id", partitions, "OutcomeEvent per report()"
        )
        self.path_deltas = TopicSpec(
            f"{prefix}.path-deltas", "goal", partitions, "coalesced per-(goal, path) deltas"
        )
        self.alerts = TopicSpec(f"{prefix}.alerts", "goal", 1, "DegradationAlert open/resolved")
        self.dead_letter = TopicSpec(
            f"{prefix}.dead-letter", "source key", 1, "malformed input with the reason"
        )
        self.posterior_state = TopicSpec(
            f"{prefix}.posterior-state",
            "goal",
            partitions,
            "posterior state per goal, compacted: what was learned, if Redis loses it",
            # Compaction only cleans closed segments: small ones keep what a worker reads back
            # on assignment close to one record per goal.
            {
                "cleanup.policy": "compact",
                "segment.bytes": str(16 * 1024 * 1024),
                "segment.ms": str(3600 * 1000),
                "min.cleanable.dirty.ratio": "0.25",
            },
        )

        self.overrides = TopicSpec(
            f"{prefix}.overrides", "goal", 1, "who disabled, enabled, pinned a path, when, why"
        )

    def __iter__(self) -> Iterator[TopicSpec]:
        yield from (
            self.decisions,
            self.outcomes,
            self.path_deltas,
            self.alerts,
            self.dead_letter,
            self.posterior_state,
            self.overrides,
        )

    def __repr__(self) -> str:
        return f"Topics(prefix={self.prefix!r}, partitions={self.partitions})"


class RedisKeys:
    """The Redis keys and channel of one deployment (one prefix)."""

    __slots__ = ("goals", "policy_changes", "policy_updates", "prefix")

    def __init__(self, prefix: str = "outroute") -> None:
        check_prefix(prefix, what="redis key prefix")
        self.prefix = prefix
        self.goals = f"{prefix}:goals"
        self.policy_updates = f"{prefix}:policy-updates"
        self.policy_changes = f"{prefix}:policy-changes"

    def policy(self, goal: str) -> str:
        return f"{self.prefix}:policy:{goal}"

    def alerts(self, goal: str) -> str:
        return f"{self.prefix}:alerts:{goal}"

    def overrides(self, goal: str) -> str:
        return f"{self.prefix}:overrides:{goal}"

    def override_log(self, goal: str) -> str:
        return f"{self.prefix}:override-log:{goal}"

    def override_lock(self, goal: str) -> str:
        return f"{self.prefix}:override-lock:{goal}"

    def history(self, goal: str, resolution: str, bucket: int) -> str:
        """``resolution`` ``m`` (bucket: epoch minute) or ``h`` (bucket: epoch hour)."""
        return f"{self.prefix}:history:{goal}:{resolution}:{bucket}"

    def health(self, goal: str, bucket: int, resolution: str = "m") -> str:
        """The join's counts of ``goal`` in epoch minute ``bucket``, or in epoch hour
        ``bucket`` for ``resolution`` ``h``."""
        if resolution == "h":
            return f"{self.prefix}:health:{goal}:h:{bucket}"
        return f"{self.prefix}:health:{goal}:{bucket}"

    def __repr__(self) -> str:
        return f"RedisKeys(prefix={self.prefix!r})"
