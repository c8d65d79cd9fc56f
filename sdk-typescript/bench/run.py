"""Run the TypeScript SDK's benchmark against a fresh broker of either kind.

    .venv/bin/python sdk-typescript/bench/run.py                  # the embedded broker
    .venv/bin/python sdk-typescript/bench/run.py --broker kafka   # Apache Kafka

Builds the package (npm run build:test), starts the broker on a free port, creates the
topics, runs build/bench/decide.js, and prints its JSON result.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from stream_workers import ApacheKafka, EmbeddedBroker, WorkerSettings, create_topics  # noqa: E402

PACKAGE = ROOT / "sdk-typescript"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=("embedded", "kafka"), default="embedded")
    parser.add_argument("--iterations", type=int, default=200_000, help="decide() calls timed")
    parser.add_argument("--loop", type=int, default=100_000, help="decide() + report() pairs")
    args = parser.parse_args()
    subprocess.run(["npm", "run", "--silent", "build:test"], cwd=PACKAGE, check=True)
    broker: AbstractContextManager[Any] = (
        EmbeddedBroker() if args.broker == "embedded" else ApacheKafka()
    )
    with broker as running:
        settings = WorkerSettings(
            bootstrap_servers=running.bootstrap_servers, topic_prefix="bench", partitions=12
        )
        create_topics(settings)
        env = {
            **os.environ,
            "OUTROUTE_BOOTSTRAP_SERVERS": running.bootstrap_servers,
            "OUTROUTE_TOPIC_PREFIX": "bench",
            "BENCH_ITERATIONS": str(args.iterations),
            "BENCH_LOOP": str(args.loop),
        }
        subprocess.run(
            ["node", str(PACKAGE / "build" / "bench" / "decide.js")],
            cwd=PACKAGE,
            env=env,
            check=True,
        )


if __name__ == "__main__":
    main()
