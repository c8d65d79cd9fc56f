"""Policy feed benchmark: many goals in one process, their snapshots changing all the time.

    .venv/bin/python bench/feed.py                       # 1, 10, 100 and 1,000 goals
    .venv/bin/python bench/feed.py --goals 1,10 --seconds 3

For each number of goals G, one Router per goal in this process reads a Redis (the one at
OUTROUTE_REDIS_URL, or one the script starts) while a publisher process plays the workers:
every goal's snapshot is written again and announced on the update channel every
--interval seconds (the workers' publish_interval, 200 ms). Meanwhile the main thread decides
round-robin over the goals. Measured: decide() p50/p99, the policy threads' CPU per second
of wall time (from /proc), and the age of the snapshot each decision used (generated_at to
the decision: what the routers lag behind the workers).

Two designs in the same run: the shared feed (one thread, one subscriber to the batched
``policy-changes`` channel for every router of the process: what ``Router`` does) and, as the
baseline, a thread per router that subscribes to ``policy-updates`` and reads its own goal
when its name comes by (what every router did before the shared feed; here a
``SnapshotSource`` of the script's). The baseline is skipped above
--baseline-max goals: at 1,000 goals it is 1,000 threads, each woken by 5,000 messages a
second.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from redis.client import PubSub
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from producer_sdk import CacheOptions, ConnectionOptions, Router
from producer_sdk.testing import NullSink
from schemas import RedisKeys
from schemas.settings import DEFAULT_REDIS_URL
from stream_workers import find_or_start_redis

PATHS = ["model-a", "model-b", "model-c"]

#: Plays the workers: every goal's snapshot, rewritten and announced every interval, on both
#: channels as a worker does (a message per goal, and one naming them all). Each write moves
#: the posteriors a little, as a busy goal's do, so routers compile every one.
PUBLISHER = textwrap.dedent(
    """
    import json, sys, time
    from datetime import UTC, datetime
    import redis
    url, prefix, goals, interval, seconds = sys.argv[1:6]
    goals, interval, seconds = int(goals), float(interval), float(seconds)
    r = redis.Redis.from_url(url)
    names = [f"bench-feed-{g}" for g in range(goals)]
    start = time.monotonic()
    version = 0
    while time.monotonic() - start < seconds:
        version += 1
        tick = time.monotonic()
        pipe = r.pipeline(transaction=False)
        now = datetime.now(UTC).isoformat()
        for name in names:
            paths = {}
            for k, path in enumerate(("model-a", "model-b", "model-c")):
                n = 1000 + version
                rate = (0.95, 0.9, 0.8)[k]
                paths[path] = {
                    "alpha": 1 + n * rate, "beta": 1 + n * (1 - rate), "n": n,
                    "recent_n": 50, "recent_successes": 50 * rate, "status": "healthy",
                    "last_outcome_at": now,
                }
            snapshot = {"goal": name, "version": version, "generated_at": now, "paths": paths}
            pipe.set(f"{prefix}:policy:{name}", json.dumps(snapshot))
            pipe.publish(f"{prefix}:policy-updates", name)
        pipe.publish(f"{prefix}:policy-changes", "\\n".join(names))
        pipe.execute()
        time.sleep(max(0.0, interval - (time.monotonic() - tick)))
    print(version)
    """
)


class PerRouterSource:
    """The baseline: the design before the shared feed. Each router's own thread subscribes
    to the update channel, wakes for every goal's message, and reads its own goal's keys
    when its name comes by."""

    def __init__(self, url: str, keys: RedisKeys, goal: str) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=1.0)
        self._keys = (keys.policy(goal), keys.overrides(goal))
        self._channel = keys.policy_updates
        self._goal = goal.encode()
        self._pubsub: PubSub | None = None
        self._overrides: bytes | None = None

    def fetch(self) -> bytes | None:
        value, overrides = self._client.mget(self._keys)
        self._overrides = overrides if isinstance(overrides, bytes) else None
        return value if isinstance(value, bytes) else None

    def fetch_overrides(self) -> bytes | None:
        return self._overrides

    def wait_for_update(self, timeout: float) -> bool:
        if self._pubsub is None:
            self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call, unused-ignore]
            self._pubsub.subscribe(self._channel)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self._pubsub.get_message(timeout=left)
            if message and message.get("data") == self._goal:
                return True
        return False

    def close(self) -> None:
        if self._pubsub is not None:
            self._pubsub.close()
        self._client.close()


def _age(router: Router) -> float:
    generated = router.get_policy().generated_at
    return math.inf if generated is None else (datetime.now(UTC) - generated).total_seconds()


def thread_cpu(prefix: str) -> float:
    """CPU seconds so far of this process's threads whose names start with ``prefix``."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for thread in threading.enumerate():
        if not thread.name.startswith(prefix) or thread.native_id is None:
            continue
        try:
            fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        parts = fields[1].split()
        total += (int(parts[11]) + int(parts[12])) / ticks
    return total


def measure(
    design: str, goals: int, url: str, prefix: str, seconds: float, interval: float
) -> dict[str, Any]:
    keys = RedisKeys(prefix)
    connection = ConnectionOptions(redis_url=url, redis_key_prefix=prefix)
    names = [f"bench-feed-{g}" for g in range(goals)]
    publisher = subprocess.Popen(
        # it plays the workers until the measurement is over (stopped there)
        [sys.executable, "-c", PUBLISHER, url, prefix, str(goals), str(interval), "3600"],
        stdout=subprocess.PIPE,
        text=True,
    )
    routers = []
    sink = NullSink()
    for name in names:
        source: Any = None
        if design == "thread per router":
            source = lambda name=name: PerRouterSource(url, keys, name)  # noqa: E731
        routers.append(
            Router(
                name,
                PATHS,
                connection=connection,
                event_sink=sink,
                snapshot_source=source,
                cache=CacheOptions(init_wait=5.0),
                seed=1,
            )
        )
    try:
        for router in routers:
            router.start(wait=0)
        settle = time.monotonic() + 30
        while any(r.get_policy().version is None for r in routers):
            if time.monotonic() > settle:
                raise SystemExit(f"{design}, {goals} goals: routers got no snapshot in 30 s")
            time.sleep(0.05)
        # Past the first compiles (3 ms per table, three per goal: 9 s for 1,000 goals),
        # until the policies are current: the steady state is what is measured.
        while time.monotonic() < settle + 60:
            if max(_age(r) for r in routers[:: max(1, goals // 50)]) < 2 * interval + 0.5:
                break
            time.sleep(0.2)
        else:
            raise SystemExit(f"{design}, {goals} goals: policies still behind after 90 s")
        threads = "outroute-policy"
        cpu0, wall0 = thread_cpu(threads), time.monotonic()
        latencies: list[int] = []
        ages: list[float] = []
        rng = random.Random(0)
        end = wall0 + seconds
        i = 0
        clock = time.perf_counter_ns
        while time.monotonic() < end:
            router = routers[i % goals]
            t = clock()
            decision = router.decide()
            latencies.append(clock() - t)
            if i % 97 == 0:
                generated = router.get_policy().generated_at
                if generated is not None:
                    ages.append((datetime.now(UTC) - generated).total_seconds())
            decision.report(rng.random() < 0.9)
            i += 1
            if i % 200 == 0:
                time.sleep(0.001)  # a service also waits on its own I/O
        cpu = (thread_cpu(threads) - cpu0) / (time.monotonic() - wall0)
    finally:
        for router in routers:
            router.close(timeout=1)
        publisher.terminate()
        publisher.wait(60)
    latencies.sort()
    ages.sort()

    def pct(values: list[Any], q: float) -> Any:
        return values[min(len(values) - 1, int(q * len(values)))]

    return {
        "design": design,
        "goals": goals,
        "decisions": len(latencies),
        "p50_us": pct(latencies, 0.5) / 1000,
        "p99_us": pct(latencies, 0.99) / 1000,
        "cpu": cpu,
        "age_p50_ms": 1000 * statistics.median(ages),
        "age_p99_ms": 1000 * pct(ages, 0.99),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--goals", default="1,10,100,1000", help="comma-separated goal counts")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per row")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between updates")
    parser.add_argument(
        "--baseline-max", type=int, default=100, help="largest goal count for the baseline"
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    try:
        counts = [int(g) for g in args.goals.split(",") if g.strip()]
    except ValueError:
        parser.error(f"--goals must be comma-separated integers, got {args.goals!r}")
    if not counts or min(counts) < 1 or args.seconds <= 0 or args.interval <= 0:
        parser.error("--goals must be >= 1, --seconds and --interval > 0")
    console = Console(width=160) if not sys.stdout.isatty() else Console()
    server = find_or_start_redis(os.environ.get("OUTROUTE_REDIS_URL", DEFAULT_REDIS_URL))
    rows: list[dict[str, Any]] = []
    try:
        for goals in counts:
            designs = ["shared feed"]
            if goals <= args.baseline_max:
                designs.append("thread per router")
            for design in designs:
                prefix = f"bench-feed-{os.getpid()}-{goals}-{len(rows)}"
                console.print(f"{design}, {goals} goals ...", highlight=False)
                rows.append(measure(design, goals, server.url, prefix, args.seconds, args.interval))
                client = redis.Redis.from_url(server.url)
                for key in client.scan_iter(f"{prefix}:*"):
                    client.delete(key)
                client.close()
    finally:
        server.stop()
    table = Table(title=f"Policy feed: snapshots of every goal rewritten every {args.interval:g} s")
    for column in (
        "goals",
        "design",
        "decisions",
        "decide p50 us",
        "decide p99 us",
        "policy threads CPU s/s",
        "policy age p50 ms",
        "policy age p99 ms",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            f"{row['goals']:,}",
            row["design"],
            f"{row['decisions']:,}",
            f"{row['p50_us']:.2f}",
            f"{row['p99_us']:.2f}",
            f"{row['cpu']:.3f}",
            f"{row['age_p50_ms']:,.0f}",
            f"{row['age_p99_ms']:,.0f}",
        )
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
