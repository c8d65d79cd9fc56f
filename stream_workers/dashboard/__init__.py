"""``outroute dashboard``: a web page over what the pipeline publishes, and a kill switch.

For every goal: each path's status, posterior and credible interval, recent rate against its
baseline, traffic share and success over time, cost and latency, alerts and overrides on a
timeline, and the pipeline's health; live through server-sent events fed by the Redis update
channel. With a token (``OUTROUTE_DASHBOARD_TOKEN``) the page can disable and enable a path or
pin a goal; without one it is read-only. Every asset ships in the package (no CDN).

Modules: ``access`` (the token rules), ``views`` (what the API answers, read from Redis),
``actions`` (the state changes), ``live`` (the traffic share of the last seconds),
``server`` (the aiohttp application) and ``serve`` (the server in a thread of its own).
The web server is imported only when used, so the CLI starts without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stream_workers.dashboard.access import (
    DEFAULT_BIND,
    DEFAULT_PORT,
    TOKEN_ENV,
    Access,
    check_bind,
)

if TYPE_CHECKING:
    from stream_workers.dashboard.serve import DashboardServer
    from stream_workers.dashboard.server import create_app

__all__ = [
    "DEFAULT_BIND",
    "DEFAULT_PORT",
    "TOKEN_ENV",
    "Access",
    "DashboardServer",
    "check_bind",
    "create_app",
]


def __getattr__(name: str) -> Any:
    if name == "DashboardServer":
        from stream_workers.dashboard.serve import DashboardServer

        return DashboardServer
    if name == "create_app":
        from stream_workers.dashboard.server import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
