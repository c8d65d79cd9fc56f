"""The dashboard as a small server with ``start()`` and ``close()``: its own event loop in one
named thread, so ``outroute dashboard`` runs it in the foreground and ``outroute demo`` beside
the simulated traffic."""

from __future__ import annotations

import asyncio
import logging
import threading
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from stream_workers.clients import sync_redis
from stream_workers.dashboard.access import DEFAULT_BIND, DEFAULT_PORT, Access, check_bind
from stream_workers.dashboard.server import create_app
from stream_workers.dashboard.views import Views
from stream_workers.errors import WorkerError
from stream_workers.settings import WorkerSettings

__all__ = ["DashboardServer"]

log = logging.getLogger("outroute.dashboard")


class DashboardServer:
    """Serves the dashboard of ``settings``' deployment on ``bind``:``port`` (0: a free one);
    a change waits up to ``timeout`` seconds for the broker to record it.

    Nothing happens in the constructor; ``start()`` checks the bind rule and Redis, binds, and
    returns once the server answers (or raises WorkerError naming what failed).
    """

    def __init__(
        self,
        settings: WorkerSettings,
        *,
        bind: str = DEFAULT_BIND,
        port: int = DEFAULT_PORT,
        access: Access | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.settings = settings
        self.bind = bind
        self.port = port
        self.access = access if access is not None else Access()
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._redis: Any = None
        self._bound_port: int | None = None

    @property
    def url(self) -> str:
        """The page's address (the bound port once started)."""
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"http://{host}:{self._bound_port or self.port}/"

    def start(self, timeout: float = 10.0) -> Self:
        check_bind(self.bind, self.access.token)
        self._redis = sync_redis(self.settings, "the dashboard")
        views = Views(self.settings, self._redis)
        app = create_app(self.settings, self.access, views, timeout=self.timeout)
        loop = asyncio.new_event_loop()
        runner = self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        ready = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            await runner.setup()
            await web.TCPSite(runner, self.bind, self.port).start()
            self._bound_port = int(runner.addresses[0][1])

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(serve())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="outroute-dashboard", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            self.close()
            raise WorkerError(f"the dashboard did not start on {self.url} within {timeout:g} s")
        if failure:
            self.close()
            raise WorkerError(f"the dashboard could not serve {self.url}: {failure[0]}")
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Stop serving (open live feeds are ended); idempotent."""
        loop, runner, thread = self._loop, self._runner, self._thread
        self._loop = self._runner = self._thread = None
        if loop is not None and thread is not None and thread.is_alive():
            if runner is not None and loop.is_running():
                done = asyncio.run_coroutine_threadsafe(runner.cleanup(), loop)
                try:
                    done.result(timeout)
                except Exception as exc:  # stopping anyway: the loop ends below
                    log.warning("dashboard: stopping the server: %s", exc)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
        if loop is not None and not loop.is_running():
            loop.close()
        if self._redis is not None:
            self._redis.close()
            self._redis = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DashboardServer({self.url!r}, writable={self.access.writable})"
