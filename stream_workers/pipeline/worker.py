"""``outroute worker``: one worker process of the pipeline."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import NoReturn

import faust

from stream_workers.ops.topics import verify_join_topics
from stream_workers.pipeline.app import create_app
from stream_workers.settings import WorkerSettings

__all__ = ["run_worker"]

log = logging.getLogger("outroute.worker")


def run_worker(settings: WorkerSettings, *, loglevel: str = "warning") -> NoReturn:
    """Check the topics, then run until SIGTERM/SIGINT (exit code 0) or a fatal error."""
    partitions = verify_join_topics(settings)  # refuses topics that are not co-partitioned
    # Faust makes a data directory even for memory tables; a temporary one leaves nothing behind
    # in the working directory (it used to leave "<prefix>-worker-data" there).
    with tempfile.TemporaryDirectory(prefix="outroute-worker-") as datadir:
        _run(settings, partitions, Path(datadir), loglevel)


def _run(settings: WorkerSettings, partitions: int, datadir: Path, loglevel: str) -> NoReturn:
    app, _ = create_app(settings, datadir)
    level = getattr(logging, loglevel.upper())

    @app.task  # type: ignore[untyped-decorator]
    async def quiet_root_logger() -> None:
        # Faust filters in its handler but leaves the root logger at DEBUG, so every library
        # debug call still builds a record (~20 % of a worker's time, measured here).
        logging.getLogger().setLevel(level)
        log.warning(
            "outroute worker: joining %d partitions of %s (group %s)",
            partitions,
            settings.topics().decisions.name,
            settings.join_group,
        )

    worker = faust.Worker(app, loglevel=level, quiet=True)
    worker.execute_from_commandline()
