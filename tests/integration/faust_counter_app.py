"""A minimal Faust app for the harness test: counts keys of a topic into a Table.

Run by tests/integration/test_harness.py as a subprocess: ``python faust_counter_app.py worker``.
"""

from __future__ import annotations

import logging
import os

import faust

app = faust.App(
    os.environ["HARNESS_APP_ID"],
    broker=f"kafka://{os.environ['HARNESS_BOOTSTRAP']}",
    store="memory://",
    topic_partitions=4,
    topic_replication_factor=1,
    # Defaults of 60 s make joining a group take ~30 s on the embedded broker.
    broker_session_timeout=10,
    broker_rebalance_timeout=10,
    broker_heartbeat_interval=1,
    web_enabled=False,
)
source = app.topic(
    os.environ["HARNESS_SOURCE"],
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)
counts = app.Table("counts", default=int, partitions=4)


@app.task
async def quiet_logs() -> None:
    logging.getLogger().setLevel(logging.WARNING)


@app.agent(source)
async def count(stream):  # type: ignore[no-untyped-def]
    async for event in stream.events():
        counts[event.key.decode()] += 1


if __name__ == "__main__":
    app.main()
