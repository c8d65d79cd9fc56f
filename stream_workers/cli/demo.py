"""``outroute demo``: simulated traffic through the whole pipeline on the local stack."""

from __future__ import annotations

import argparse

from rich.console import Console

from stream_workers.cli._common import COUNT, PORT, SECONDS, Commands, number
from stream_workers.dashboard.access import DEFAULT_PORT, TOKEN_ENV
from stream_workers.local.apache_kafka import KAFKA_VERSION
from stream_workers.local.stack import BROKER_KINDS

__all__ = ["add_commands"]


def add_commands(commands: Commands) -> None:
    demo = commands.add_parser(
        "demo",
        help="route simulated traffic through the whole pipeline on the local stack",
        description="Start a Kafka broker (the embedded one, or Apache Kafka with --broker "
        "kafka), find or start Redis, create the "
        "topics and run a worker; then route simulated requests with the SDK among three paths "
        "(large, medium and small models) while the best one silently degrades and recovers, "
        "with a live view of traffic, posteriors and alerts, and the dashboard served on "
        "127.0.0.1. At the end, the success rate per "
        "phase next to a hard-coded fallback chain on the same requests. Ctrl-C stops "
        "everything cleanly. With --stack-only, just the local stack until Ctrl-C.",
    )
    demo.add_argument(
        "--broker",
        choices=BROKER_KINDS,
        default="embedded",
        help="embedded: Tansu, in memory, no JVM (default); kafka: Apache Kafka "
        f"{KAFKA_VERSION} in KRaft mode, from jars Maven resolves once (needs a JDK 17+ and "
        "Maven)",
    )
    demo.add_argument("--broker-port", type=PORT, metavar="PORT", help="default: a free port")
    demo.add_argument(
        "--redis-url",
        metavar="URL",
        help="Redis to use; if none answers there, a Redis-compatible server (redis-server "
        "from PATH, else the bundled valkey-server) is started on a free port "
        "(default: OUTROUTE_REDIS_URL or redis://127.0.0.1:6379/0)",
    )
    demo.add_argument("--partitions", type=COUNT, default=4, metavar="N", help="default: 4")
    demo.add_argument(
        "--requests",
        type=number(int, at_least=30),
        default=6000,
        metavar="N",
        help="simulated requests, at least 30 (6000)",
    )
    demo.add_argument("--seed", type=int, default=0, help="of the simulated world (0)")
    demo.add_argument(
        "--speed",
        type=number(float, above=0),
        default=100.0,
        metavar="R",
        help="requests per second (100)",
    )
    demo.add_argument(
        "--no-live", action="store_true", help="plain log lines instead of the live view"
    )
    demo.add_argument(
        "--dashboard-port",
        type=number(int, at_least=0, at_most=65535),
        default=DEFAULT_PORT,
        metavar="PORT",
        help=f"serve the dashboard on 127.0.0.1:PORT while the traffic runs (default "
        f"{DEFAULT_PORT}; 0: no dashboard); read-only unless {TOKEN_ENV} is set",
    )
    demo.add_argument(
        "--stack-only", action="store_true", help="only run the local stack, until Ctrl-C"
    )
    demo.add_argument(
        "--duration",
        type=SECONDS,
        metavar="SECONDS",
        help="with --stack-only: stop by itself after this long (default: until Ctrl-C)",
    )
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace, console: Console) -> int:
    from stream_workers.local.demo import run_demo

    return run_demo(
        console,
        broker=args.broker,
        broker_port=args.broker_port,
        redis_url=args.redis_url,
        partitions=args.partitions,
        duration=args.duration,
        stack_only=args.stack_only,
        requests=args.requests,
        seed=args.seed,
        speed=args.speed,
        live=not args.no_live and console.is_terminal,
        dashboard_port=args.dashboard_port or None,
    )
