"""The dashboard's web application: the page, its JSON API and its live feed.

Routes::

    GET  /                                         the page (static/index.html)
    GET  /static/{file}                            its one script, one stylesheet
    GET  /api/config                               read-only or not, the deployment (redacted)
    GET  /api/goals                                the goal list, needing attention first
    GET  /api/goals/{goal}?window=hour|day|week    one goal's view
    POST /api/goals/{goal}/paths/{path}/disable    body {"for": "30m", "reason": "..."}
    POST /api/goals/{goal}/paths/{path}/enable
    POST /api/goals/{goal}/pin                     body {"path": "...", "for": ..., "reason": ...}
    POST /api/goals/{goal}/unpin
                                                   (400: a bad field, 401/403: the token rules,
                                                   409: a rule refused it, 503: Kafka or Redis
                                                   could not take it; nothing changed)
    GET  /api/events                               server-sent events: ``goal`` names that changed

The feed relays the Redis channel every snapshot and override change is published on, so the
page re-reads a goal when, and only when, it changed. Every response carries the security
headers (a content security policy that allows only the page's own files: no inline script,
no other origin). Errors are JSON ``{"error": ...}`` naming what was wrong.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from importlib.resources import files
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from stream_workers.dashboard.access import Access
from stream_workers.dashboard.actions import BadRequest, change
from stream_workers.dashboard.views import WINDOWS, GoalNotFound, Views
from stream_workers.errors import OverrideRefused, WorkerError
from stream_workers.settings import WorkerSettings

__all__ = ["SECURITY_HEADERS", "create_app"]

log = logging.getLogger("outroute.dashboard")

STATIC: Final = Path(str(files("stream_workers.dashboard") / "static"))

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

#: The feed sends a goal at most this often (snapshots come every 200 ms per goal).
FEED_INTERVAL: Final = 0.5
_KEEPALIVE: Final = 15.0

_SETTINGS = web.AppKey("settings", WorkerSettings)
_ACCESS = web.AppKey("access", Access)
_VIEWS = web.AppKey("views", Views)
_TIMEOUT = web.AppKey("timeout", float)
_FEEDS: web.AppKey[set[asyncio.Task[Any]]] = web.AppKey("feeds")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _encode(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _json(value: Any) -> web.Response:
    return web.json_response(text=json.dumps(value, default=_encode))


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unknown routes and methods answer JSON like the rest of the API; a failure is logged
    and answered with its one-line reason, never a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith("/api/"):
            raise
        return _error(exc.status, exc.reason)
    except Exception as exc:
        log.exception("dashboard: %s %s failed", request.method, request.path)
        return _error(500, f"{type(exc).__name__}: {exc}")


async def _page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def _config(request: web.Request) -> web.Response:
    settings, access = request.app[_SETTINGS], request.app[_ACCESS]
    return _json(
        {
            "writable": access.writable,
            "windows": list(WINDOWS),
            "redis": settings.redis_url_redacted,
            "redis_key_prefix": settings.redis_key_prefix,
            "topic_prefix": settings.topic_prefix,
        }
    )


async def _goals(request: web.Request) -> web.Response:
    return _json(await asyncio.to_thread(request.app[_VIEWS].goals))


async def _goal(request: web.Request) -> web.Response:
    goal = request.match_info["goal"]
    window = request.query.get("window", "hour")
    if window not in WINDOWS:
        return _error(400, f"window: must be one of {', '.join(WINDOWS)}, got {window!r}")
    try:
        view = await asyncio.to_thread(request.app[_VIEWS].goal, goal, window)
    except GoalNotFound:
        return _error(404, f"goal {goal!r} has no snapshot: no outcomes reached the workers yet")
    return _json(view)


async def _change(request: web.Request) -> web.Response:
    access = request.app[_ACCESS]
    refusal = access.refusal(request.headers.get("Authorization"))
    if refusal is not None:
        return _error(refusal.status, refusal.message)
    if request.content_length:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "body: expected a JSON object")
    else:
        body = {}
    info = request.match_info
    try:
        result = await asyncio.to_thread(
            change,
            request.app[_SETTINGS],
            goal=info["goal"],
            action=info["action"],
            path=info.get("path"),
            body=body,
            by=access.actor,
            timeout=request.app[_TIMEOUT],
        )
    except BadRequest as exc:
        return _error(400, str(exc))
    except OverrideRefused as exc:
        return _error(409, str(exc))
    except WorkerError as exc:  # Kafka or Redis could not take the change
        return _error(503, str(exc))
    return _json(result)


async def _events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``event: goal`` with the goal's name, at most every FEED_INTERVAL
    per goal; a comment every 15 s keeps proxies from closing the stream."""
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    settings = request.app[_SETTINGS]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    task = asyncio.current_task()
    if task is not None:  # always: a handler runs in a task
        request.app[_FEEDS].add(task)
    client = aioredis.Redis.from_url(settings.redis_url.get_secret_value())
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe(settings.redis_keys().policy_updates)
        await response.write(b"retry: 2000\nevent: ready\ndata: {}\n\n")
        changed: set[str] = set()
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None:
                data = message["data"]
                changed.add(data.decode() if isinstance(data, bytes) else str(data))
            now = loop.time()
            if changed and (message is None or now - quiet_since >= FEED_INTERVAL):
                for goal in sorted(changed):
                    await response.write(f"event: goal\ndata: {json.dumps(goal)}\n\n".encode())
                changed.clear()
                quiet_since = now
            elif now - quiet_since >= _KEEPALIVE:
                await response.write(b": keepalive\n\n")
                quiet_since = now
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the page went away, or the server is stopping
    except RedisError as exc:  # the page's EventSource reconnects after the retry above
        log.warning("dashboard: the live feed lost Redis: %s", exc)
    finally:
        if task is not None:
            request.app[_FEEDS].discard(task)
        await pubsub.aclose()
        await client.aclose()
    return response


async def _close_feeds(app: web.Application) -> None:
    """Open feeds never end by themselves: cancel them so shutdown does not wait on them."""
    feeds = app[_FEEDS]
    for task in list(feeds):
        task.cancel()


def create_app(
    settings: WorkerSettings, access: Access, views: Views, *, timeout: float = 10.0
) -> web.Application:
    """The dashboard over ``settings``' deployment; ``views`` reads it (its Redis client).
    ``timeout``: how long a change waits for the broker's acknowledgement."""
    app = web.Application(middlewares=[_json_errors])
    app[_TIMEOUT] = timeout
    app[_SETTINGS] = settings
    app[_ACCESS] = access
    app[_VIEWS] = views
    app[_FEEDS] = set()
    app.on_response_prepare.append(_security_headers)
    app.on_shutdown.append(_close_feeds)
    app.router.add_get("/", _page)
    app.router.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)
    app.router.add_get("/api/config", _config)
    app.router.add_get("/api/goals", _goals)
    app.router.add_get("/api/goals/{goal}", _goal)
    app.router.add_post("/api/goals/{goal}/paths/{path}/{action:disable|enable}", _change)
    app.router.add_post("/api/goals/{goal}/{action:pin|unpin}", _change)
    app.router.add_get("/api/events", _events)
    return app
