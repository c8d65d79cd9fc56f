"""The worker's /metrics text: names, types and label escaping, read by Prometheus's parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from stream_workers.pipeline.join.service import JoinService
from stream_workers.pipeline.metrics import render_metrics
from stream_workers.pipeline.posterior.service import PosteriorService
from stream_workers.settings import WorkerSettings


def test_counters_of_both_stages_are_exposed_under_their_names() -> None:
    settings = WorkerSettings()
    join, posterior = JoinService(settings), PosteriorService(settings)
    join.totals["joined"]['odd"goal\\'] = 3
    join.failures.record("send", 100, "a send failed")
    posterior.snapshots_written = 7
    families = {f.name: f for f in text_string_to_metric_families(render_metrics(join, posterior))}
    events = families["outroute_join_events"]
    assert events.type == "counter"
    (sample,) = events.samples
    assert sample.name == "outroute_join_events_total"
    assert sample.labels == {"goal": 'odd"goal\\', "kind": "joined"}
    assert sample.value == 3
    assert families["outroute_join_send_errors"].samples[0].value == 1
    assert families["outroute_snapshots_written"].samples[0].value == 7
    assert families["outroute_join_partitions_waiting"].type == "gauge"
    assert families["outroute_history_dropped"].samples[0].value == 0
    assert families["outroute_health_dropped"].samples[0].value == 0


def test_without_a_posterior_stage_only_the_join_is_exposed() -> None:
    text = render_metrics(JoinService(WorkerSettings()))
    names = {f.name for f in text_string_to_metric_families(text)}
    assert "outroute_join_pending_decisions" in names
    assert not any(name.startswith("outroute_posterior") for name in names)
