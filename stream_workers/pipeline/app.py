"""The Faust app: one per worker process; its services are the pipeline's stages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust

from stream_workers.clients import faust_broker_credentials
from stream_workers.pipeline.join.service import JoinService
from stream_workers.pipeline.metrics import render_metrics
from stream_workers.pipeline.posterior.service import PosteriorService
from stream_workers.settings import WorkerSettings

__all__ = ["create_app"]


def create_app(settings: WorkerSettings, datadir: Path) -> tuple[faust.App, JoinService]:
    """The app; ``datadir`` is where Faust makes its directories (its tables live in memory)."""
    app = faust.App(
        f"{settings.topic_prefix}-worker",
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers.split(",")],
        broker_credentials=faust_broker_credentials(settings),
        store="memory://",
        datadir=datadir,
        # Faust's defaults (60 s) make joining a group take ~30 s on the embedded broker.
        broker_session_timeout=settings.session_timeout,
        broker_rebalance_timeout=settings.session_timeout,
        broker_heartbeat_interval=1.0,
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
        text = render_metrics(join, posterior)
        return web.text(text, content_type="text/plain; version=0.0.4")

    return app, join
