"""``outroute worker``: one pipeline worker process."""

from __future__ import annotations

import argparse

from rich.console import Console

from stream_workers.cli._common import PORT, Commands, add_connection_flags, settings_from

__all__ = ["add_commands"]


def add_commands(commands: Commands) -> None:
    worker = commands.add_parser(
        "worker",
        help="run a pipeline worker (join and posterior stages) until SIGTERM or Ctrl-C",
        description="Run one worker process with both stages: the join stage joins decisions "
        "with outcomes for the input partitions it is assigned and emits per-(goal, path) "
        "deltas; the posterior stage turns the deltas of its goals into posteriors, alerts and "
        "the policy snapshots in Redis. Start several to share the partitions. Refuses to "
        "start unless decisions and outcomes are co-partitioned. Settings (OUTROUTE_OUTCOME_"
        "WINDOW, OUTROUTE_HALF_LIFE, OUTROUTE_DETECTOR_WINDOW, ...) come from the environment; "
        "see docs/deploy.md.",
    )
    add_connection_flags(worker)
    worker.add_argument(
        "--metrics-port",
        type=PORT,
        metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (default: off)",
    )
    worker.add_argument(
        "-l",
        "--loglevel",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="default: warning",
    )
    # the worker configures logging through Faust
    worker.set_defaults(func=_worker, configures_logging=True)


def _worker(args: argparse.Namespace, console: Console) -> int:
    from stream_workers.pipeline.worker import run_worker

    run_worker(settings_from(args), loglevel=args.loglevel)
