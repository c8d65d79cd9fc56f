"""``outroute dashboard``: the web page over the published policies, alerts and history."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from types import FrameType

from pydantic import SecretStr
from rich.console import Console

from stream_workers.cli._common import (
    PORT,
    Commands,
    add_connection_flags,
    add_redis_flags,
    settings_from,
)
from stream_workers.dashboard.access import DEFAULT_BIND, DEFAULT_PORT, TOKEN_ENV, Access

__all__ = ["add_commands"]


def add_commands(commands: Commands) -> None:
    dashboard = commands.add_parser(
        "dashboard",
        help="serve a live web page of every goal's paths, alerts and pipeline health",
        description="Serve the dashboard: the goals needing attention first; per goal each "
        "path's status, posterior mean and 95% interval, recent rate against its baseline, "
        "traffic share and success over the last hour, day or week with alerts and overrides "
        "on the charts, cost, latency and the pipeline's health; live through server-sent "
        f"events. With {TOKEN_ENV} set, the page can disable and enable paths and pin a goal "
        "(it asks for the token); without it the dashboard is read-only. Binding to an "
        "address other than loopback needs the token. Runs until Ctrl-C.",
    )
    dashboard.add_argument(
        "--bind",
        default=DEFAULT_BIND,
        metavar="ADDRESS",
        help=f"address to listen on (default {DEFAULT_BIND}; another needs {TOKEN_ENV})",
    )
    dashboard.add_argument(
        "--port",
        type=PORT,
        default=DEFAULT_PORT,
        metavar="PORT",
        help=f"port to listen on (default {DEFAULT_PORT})",
    )
    add_connection_flags(dashboard)
    add_redis_flags(dashboard)
    dashboard.set_defaults(func=_dashboard)


def _dashboard(args: argparse.Namespace, console: Console) -> int:
    from stream_workers.dashboard.serve import DashboardServer

    token = os.environ.get(TOKEN_ENV) or None
    access = Access(SecretStr(token) if token is not None else None)
    server = DashboardServer(
        settings_from(args), bind=args.bind, port=args.port, access=access, timeout=args.timeout
    )
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with server:
            mode = "changes need the token" if access.writable else f"read-only ({TOKEN_ENV} unset)"
            console.print(f"dashboard: {server.url} ({mode}); Ctrl-C to stop", highlight=False)
            stop.wait()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    console.print("dashboard stopped")
    return 0
