"""Prometheus text exposition of the worker's counters (served at /metrics when enabled)."""

from __future__ import annotations

from stream_workers.pipeline.join.service import JoinService
from stream_workers.pipeline.posterior.service import PosteriorService

__all__ = ["render_metrics"]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(join: JoinService, posterior: PosteriorService | None = None) -> str:
    lines = [
        "# HELP outroute_join_events_total Join stage events by goal and kind.",
        "# TYPE outroute_join_events_total counter",
    ]
    for kind, counter in sorted(join.counters().items()):
        for goal, value in sorted(counter.items()):
            lines.append(
                f'outroute_join_events_total{{goal="{_label(goal)}",kind="{kind}"}} {value}'
            )
    gauges = {
        "outroute_join_partitions": ("Input partitions being joined.", len(join.partitions)),
        "outroute_join_partitions_waiting": (
            "Input partitions assigned but paused: their state could not be restored yet.",
            len(join.waiting_partitions),
        ),
        "outroute_join_pending_decisions": ("Decisions waiting for outcomes.", join.pending()),
    }
    counters = {
        "outroute_join_deltas_sent_total": ("PathDeltas acknowledged.", join.deltas_sent),
        "outroute_join_checkpoints_total": ("Checkpoints written.", join.checkpoints_written),
        "outroute_join_checkpoint_errors_total": (
            "Failed checkpoint writes.",
            join.checkpoint_errors,
        ),
        "outroute_join_send_errors_total": ("Failed sends (retried).", join.send_errors),
        "outroute_join_restore_failures_total": (
            "Partitions whose state could not be restored when assigned (retried).",
            join.restore_failures,
        ),
    }
    if posterior is not None:
        gauges["outroute_posterior_partitions"] = (
            "Path-deltas partitions whose goals are held and updated.",
            len(posterior.partitions),
        )
        gauges["outroute_posterior_partitions_waiting"] = (
            "Path-deltas partitions assigned but paused: their goals are not read back yet.",
            len(posterior.waiting_partitions),
        )
        counters["outroute_posterior_states_written_total"] = (
            "Goal states acknowledged by the posterior-state topic.",
            posterior.states_written,
        )
        counters["outroute_posterior_state_errors_total"] = (
            "Failed alert or goal state sends (retried).",
            posterior.state_errors,
        )
        counters["outroute_posterior_restore_failures_total"] = (
            "Failed reads of assigned partitions' goals from the posterior-state topic (retried).",
            posterior.restore_failures,
        )
        counters["outroute_redis_rewrites_total"] = (
            "Times Redis was found without the snapshots of owned partitions and given them again.",
            posterior.redis_rewrites,
        )
        counters["outroute_snapshots_written_total"] = (
            "Policy snapshots written to Redis.",
            posterior.snapshots_written,
        )
        counters["outroute_publish_errors_total"] = (
            "Failed snapshot or alert list writes to Redis (retried).",
            posterior.publish_errors,
        )
        counters["outroute_invalid_deltas_total"] = (
            "Deltas skipped as invalid.",
            posterior.invalid_deltas,
        )
    for name, (help_text, value) in gauges.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value}"]
    for name, (help_text, value) in counters.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name} {value}"]
    return "\n".join(lines) + "\n"
