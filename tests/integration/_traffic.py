"""Demo-like traffic for the dashboard's tests: SDK routers deciding and reporting through the
real pipeline, in a thread, with success rates a test can change while it runs."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque

from producer_sdk import CacheOptions, ConnectionOptions, Router
from stream_workers import WorkerSettings


class Traffic:
    """``routers`` routers of ``goal`` among ``rates``' paths, ``rate`` decisions per second
    in all, each reported as a success with its path's current rate (seeded)."""

    def __init__(
        self,
        settings: WorkerSettings,
        goal: str,
        rates: dict[str, float],
        *,
        rate: float = 200.0,
        routers: int = 2,
        seed: int = 7,
    ) -> None:
        connection = ConnectionOptions(
            bootstrap_servers=settings.bootstrap_servers,
            topic_prefix=settings.topic_prefix,
            redis_url=settings.redis_url,
            redis_key_prefix=settings.redis_key_prefix,
        )
        self.rates = dict(rates)
        self.rate = rate
        self.routers = [
            Router(
                goal,
                list(rates),
                connection=connection,
                service=f"dashboard-test-{i}",
                cache=CacheOptions(poll_interval=0.5),
                seed=seed + i,
            )
            for i in range(routers)
        ]
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        #: (monotonic time, path) of the recent decisions
        self._recent: deque[tuple[float, str]] = deque(maxlen=100_000)
        self.decided: Counter[str] = Counter()
        self._thread = threading.Thread(target=self._run, name="dashboard-test-traffic")

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def _run(self) -> None:
        started = time.monotonic()
        i = 0
        while not self._stop.is_set():
            ahead = i / self.rate - (time.monotonic() - started)
            if ahead > 0 and self._stop.wait(ahead):
                break
            router = self.routers[i % len(self.routers)]
            decision = router.decide()
            ok = self._rng.random() < self.rates[decision.path]
            decision.report(success=ok, cost_usd=0.001, latency_ms=100.0)
            with self._lock:
                self._recent.append((time.monotonic(), decision.path))
                self.decided[decision.path] += 1
            i += 1

    def since(self, seconds: float) -> Counter[str]:
        """Decisions per path in the last ``seconds``."""
        cutoff = time.monotonic() - seconds
        with self._lock:
            return Counter(path for at, path in self._recent if at >= cutoff)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        for router in self.routers:
            router.close(timeout=2)
