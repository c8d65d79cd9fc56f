"""Baseline for bench/pipeline.py: the straightforward Faust join (a Table entry per pending
event, a per-event agent over both topics). Not part of outroute.

    python bench/faust_table_join.py worker --without-web -l warn
Environment: BENCH_BOOTSTRAP, BENCH_PREFIX, BENCH_PARTITIONS, BENCH_PROGRESS (a file).
"""

from __future__ import annotations

import json
import logging
import os
import time

import faust

PREFIX = os.environ["BENCH_PREFIX"]
PARTITIONS = int(os.environ["BENCH_PARTITIONS"])
PROGRESS = os.environ["BENCH_PROGRESS"]

app = faust.App(
    f"{PREFIX}-faust-baseline",
    broker=f"kafka://{os.environ['BENCH_BOOTSTRAP']}",
    store="memory://",
    topic_partitions=PARTITIONS,
    broker_session_timeout=10,
    broker_rebalance_timeout=10,
    broker_heartbeat_interval=1,
    web_enabled=False,
)
inputs = app.topic(
    f"{PREFIX}.decisions",
    f"{PREFIX}.outcomes",
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)
pending = app.Table("pending", default=None, partitions=PARTITIONS)
pending.key_serializer = pending.value_serializer = "raw"  # type: ignore[attr-defined]
state = {"joined": 0, "first": 0.0}


@app.task  # type: ignore[untyped-decorator]
async def quiet() -> None:
    logging.getLogger().setLevel(logging.WARNING)


@app.agent(inputs)
async def join(stream):  # type: ignore[no-untyped-def]
    async for event in stream.events():
        if not state["first"]:
            state["first"] = time.time()
        body = json.loads(event.value)
        trace = body["trace_id"].encode()
        other = pending.get(trace)
        if other is None:
            pending[trace] = event.value
        else:
            del pending[trace]
            state["joined"] += 1
            if state["joined"] % 1000 == 0:
                with open(PROGRESS, "w") as f:
                    json.dump(
                        {"joined": state["joined"], "first": state["first"], "at": time.time()}, f
                    )


if __name__ == "__main__":
    app.main()
