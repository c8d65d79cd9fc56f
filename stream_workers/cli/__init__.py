"""The ``outroute`` command line.

Settings come from ``OUTROUTE_*`` environment variables (see ``schemas.settings``); the flags of
a command override them. Failures exit non-zero with a one-line reason on stderr.

One module per command group adds its commands to the parser: ``demo``, ``worker``,
``topics``, ``alerts``, ``backfill``, ``policy`` (with ``goals``), ``overrides`` (``path``,
``goal`` and ``overrides``), ``dashboard`` and ``schemas``; what they share is in ``_common``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from pydantic import ValidationError
from rich.console import Console

from schemas import OutrouteError
from stream_workers.cli import (
    alerts,
    backfill,
    dashboard,
    demo,
    overrides,
    policy,
    schemas,
    topics,
    worker,
)
from stream_workers.cli._common import EXIT_FAILURE, EXIT_INTERRUPTED, Command, one_line

__all__ = ["build_parser", "main"]


def _version() -> str:
    try:
        return version("outroute")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="outroute",
        description="Outcome-based routing: workers, topics, schemas and the local demo.",
    )
    parser.add_argument("--version", action="version", version=f"outroute {_version()}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    groups = (demo, worker, topics, alerts, backfill, policy, overrides, dashboard, schemas)
    for group in groups:  # in the order of --help
        group.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Piped output is not cut to 80 columns: tables stay whole for logs and grep.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    func: Command = args.func
    if not getattr(args, "configures_logging", False):
        logging.basicConfig(level=logging.WARNING, format="outroute: %(message)s")
    try:
        return func(args, console)
    except (OutrouteError, ValidationError, OSError) as exc:
        print(f"outroute: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
