"""``outroute policy`` and ``outroute goals``: what the workers published to Redis."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console

from stream_workers.cli._common import EXIT_FAILURE, Commands, add_redis_flags, settings_from

__all__ = ["add_commands"]


def add_commands(commands: Commands) -> None:
    policy = commands.add_parser(
        "policy",
        help="show the published policy of one goal or of all",
        description="Per goal, a table of its paths: posterior mean and 90%% interval, "
        "outcomes, recent vs baseline success, status, mean cost and latency; with the "
        "snapshot's version and age.",
    )
    policy.add_argument("goal", nargs="?", metavar="GOAL", help="default: every goal")
    policy.add_argument("--json", action="store_true", help="one JSON object per path")
    add_redis_flags(policy)
    policy.set_defaults(func=_policy)

    goals = commands.add_parser("goals", help="list the goals that have a published policy")
    goals.add_argument("--json", action="store_true", help="one JSON object per goal")
    add_redis_flags(goals)
    goals.set_defaults(func=_goals)


def _policy(args: argparse.Namespace, console: Console) -> int:
    from stream_workers.ops.policy_view import load_snapshots, print_policies

    snapshots, problems = load_snapshots(settings_from(args), args.goal)
    print_policies(snapshots, console, as_json=args.json)
    for problem in problems:
        print(f"outroute: {problem}", file=sys.stderr)
    if not snapshots and not problems:
        print("outroute: no goals have a snapshot yet", file=sys.stderr)
    return EXIT_FAILURE if problems and args.goal else 0


def _goals(args: argparse.Namespace, console: Console) -> int:
    from stream_workers.ops.policy_view import list_goals

    for goal in list_goals(settings_from(args)):
        print(json.dumps({"goal": goal}) if args.json else goal)
    return 0
