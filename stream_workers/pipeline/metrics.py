"""The worker's counters in the Prometheus text format (served at /metrics when enabled).

A collector reads the stages' counters when Prometheus scrapes: nothing is counted twice and
the hot loops pay nothing for being observed. ``prometheus_client`` renders the text.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stream_workers.pipeline.join.service import JoinService
from stream_workers.pipeline.posterior.service import PosteriorService

__all__ = ["CONTENT_TYPE", "StageCollector", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4"


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)


def _counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name.removesuffix("_total"), help_text, value=value)


class StageCollector(Collector):
    """What the two stages of one worker have counted."""

    def __init__(self, join: JoinService, posterior: PosteriorService | None = None) -> None:
        self._join = join
        self._posterior = posterior

    def collect(self) -> Iterator[Metric]:
        join = self._join
        events = CounterMetricFamily(
            "outroute_join_events", "Join stage events by goal and kind.", labels=["goal", "kind"]
        )
        for kind, counter in sorted(join.counters().items()):
            for goal, value in sorted(counter.items()):
                events.add_metric([goal, kind], value)
        yield events
        yield _gauge(
            "outroute_join_partitions", "Input partitions being joined.", len(join.partitions)
        )
        yield _gauge(
            "outroute_join_partitions_waiting",
            "Input partitions assigned but paused: their state could not be restored yet.",
            len(join.waiting_partitions),
        )
        yield _gauge(
            "outroute_join_pending_decisions", "Decisions waiting for outcomes.", join.pending()
        )
        yield _counter(
            "outroute_join_deltas_sent_total", "PathDeltas acknowledged.", join.deltas_sent
        )
        yield _counter(
            "outroute_join_checkpoints_total", "Checkpoints written.", join.checkpoints_written
        )
        yield _counter(
            "outroute_join_checkpoint_errors_total",
            "Failed checkpoint writes.",
            join.failures["checkpoint"],
        )
        yield _counter(
            "outroute_join_send_errors_total", "Failed sends (retried).", join.failures["send"]
        )
        yield _counter(
            "outroute_health_dropped_total",
            "Join counts left out of the per-minute health (bounds reached while Redis was away).",
            join.health_dropped,
        )
        yield _counter(
            "outroute_join_restore_failures_total",
            "Partitions whose state could not be restored when assigned (retried).",
            join.restore_failures,
        )
        if self._posterior is not None:
            yield from self._collect_posterior(self._posterior)

    def _collect_posterior(self, posterior: PosteriorService) -> Iterator[Metric]:
        yield _gauge(
            "outroute_posterior_partitions",
            "Path-deltas partitions whose goals are held and updated.",
            len(posterior.partitions),
        )
        yield _gauge(
            "outroute_posterior_partitions_waiting",
            "Path-deltas partitions assigned but paused: their goals are not read back yet.",
            len(posterior.waiting_partitions),
        )
        yield _counter(
            "outroute_posterior_states_written_total",
            "Goal states acknowledged by the posterior-state topic.",
            posterior.states_written,
        )
        yield _counter(
            "outroute_posterior_state_errors_total",
            "Failed alert or goal state sends (retried).",
            posterior.failures["state"],
        )
        yield _counter(
            "outroute_posterior_restore_failures_total",
            "Failed reads of assigned partitions' goals from the posterior-state topic (retried).",
            posterior.restore_failures,
        )
        yield _counter(
            "outroute_redis_rewrites_total",
            "Times Redis was found without the snapshots of owned partitions and given them again.",
            posterior.redis_rewrites,
        )
        yield _counter(
            "outroute_snapshots_written_total",
            "Policy snapshots written to Redis.",
            posterior.snapshots_written,
        )
        yield _counter(
            "outroute_publish_errors_total",
            "Failed snapshot or alert list writes to Redis (retried).",
            posterior.failures["publish"],
        )
        yield _counter(
            "outroute_invalid_deltas_total", "Deltas skipped as invalid.", posterior.invalid_deltas
        )
        yield _counter(
            "outroute_history_dropped_total",
            "Outcomes left out of the per-minute history (bounds reached; docs/deploy.md).",
            posterior.history_dropped,
        )


def render_metrics(join: JoinService, posterior: PosteriorService | None = None) -> str:
    """The text a scrape of /metrics returns."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StageCollector(join, posterior))
    return generate_latest(registry).decode()
