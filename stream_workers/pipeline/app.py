"""The Faust app of a worker process: one per process; its services are the pipeline's stages.

Faust is the process shell: it starts and stops the two stages as services, serves /metrics,
handles signals and logging, and gives the ``worker`` command its options. It does not read
or write Kafka here: both stages are batched aiokafka loops (``stage.BatchStage``), because
the same join as a Faust agent over a Faust Table measured 19-37x slower on this machine
(``bench/faust_table_join.py`` against ``bench/pipeline.py``: ~3,500-5,600 events/s against
100,000-130,000; BENCHMARKS.md). So the app starts none of Faust's own Kafka machinery (its
consumer, producer, topic conductor and table manager would be idle clients of the broker,
one more group member to rebalance): ``_ShellOnly`` below switches them off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust
from faust.app.base import BootStrategy

from stream_workers.clients import faust_broker_credentials
from stream_workers.pipeline.join.service import JoinService
from stream_workers.pipeline.metrics import CONTENT_TYPE, render_metrics
from stream_workers.pipeline.posterior.service import PosteriorService
from stream_workers.settings import WorkerSettings

__all__ = ["create_app"]


class _ShellOnly(BootStrategy):
    """Start sensors, the web server (when enabled), agents' supervisor and the services;
    no Faust consumer, producer, conductor or tables."""

    enable_kafka = False


class _App(faust.App):
    BootStrategy = _ShellOnly


def create_app(settings: WorkerSettings, datadir: Path) -> tuple[faust.App, JoinService]:
    """The app; ``datadir`` is where Faust makes its directories (nothing is stored there:
    the app has no tables)."""
    app = _App(
        f"{settings.topic_prefix}-worker",
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers.split(",")],
        broker_credentials=faust_broker_credentials(settings),
        store="memory://",
        datadir=datadir,
        topic_replication_factor=settings.replication_factor,
        web_enabled=settings.metrics_port is not None,
        web_port=settings.metrics_port or 6066,
        web_bind=settings.metrics_bind,
    )
    join = JoinService(settings)
    app.service(join)  # type: ignore[arg-type]  # an instance works as well as a class
    posterior = PosteriorService(settings)
    app.service(posterior)  # type: ignore[arg-type]

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.text(render_metrics(join, posterior), content_type=CONTENT_TYPE)

    return app, join
