"""Sending a backfill: validated, encoded batches produced to the decisions and outcomes topics
and flushed until acknowledged, in this process or in a pool of spawned ones."""

from __future__ import annotations

import multiprocessing
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from schemas import PARTITIONER
from stream_workers.ops.backfill.encode import ROW, Encoded, encode_row, latest_allowed_ms
from stream_workers.ops.backfill.rows import (
    Batch,
    cells_dict,
    json_lines,
    validate_cells,
    validate_line,
)
from stream_workers.settings import WorkerSettings

__all__ = ["BatchResult", "Job", "Planned", "producer_config", "run_batches"]


def producer_config(settings: WorkerSettings) -> dict[str, Any]:
    """librdkafka settings for bulk sends: large lz4 batches, a deep local queue."""
    return {
        **settings.kafka_client_config(),
        "partitioner": PARTITIONER,
        "linger.ms": 20,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
        "batch.num.messages": 10_000,
    }


class _Sender:
    """Produces messages and waits until the broker acknowledged them."""

    def __init__(self, settings: WorkerSettings, rate: float | None) -> None:
        from confluent_kafka import Producer

        self.rate = rate
        self.sent = 0
        self.started = time.monotonic()
        self.topics = settings.topics()
        self.producer = Producer(
            {
                **producer_config(settings),
                # the delivery callback runs for failures only: one Python call per message
                # less (successes are what flush() returning 0 already says)
                "delivery.report.only.error": True,
                "on_delivery": self._delivered,  # once here, not passed with each message
            }
        )
        self.failures = 0
        self.first_error = ""

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failures += 1
            self.first_error = self.first_error or str(err)

    def send(self, rows: list[Encoded], timeout: float) -> bool:
        """True when every message of ``rows`` was acknowledged within ``timeout``."""
        failures = self.failures
        produce, poll = self.producer.produce, self.producer.poll
        decisions, outcomes = self.topics.decisions.name, self.topics.outcomes.name
        for key, decision, outcome, _, _, _ in rows:
            if self.rate is not None:  # --rate: rows leave at most this fast
                ahead = self.sent / self.rate - (time.monotonic() - self.started)
                if ahead > 0:
                    poll(ahead)  # serves delivery callbacks while waiting
            self.sent += 1
            for topic, value in ((decisions, decision), (outcomes, outcome)):
                while True:
                    try:
                        produce(topic, value, key)
                        break
                    except BufferError:  # the local queue is full: let deliveries drain it
                        poll(0.05)
        remaining = self.producer.flush(timeout)
        return remaining == 0 and self.failures == failures


@dataclass
class Job:
    """What every batch of one run shares (sent to worker processes once)."""

    settings: WorkerSettings
    header: list[str]  # CSV; [] for JSON lines
    rate: float | None  # rows/s of this process
    flush_timeout: float


#: (valid rows, rejects as (line, raw, reason), acknowledged, first delivery error)
BatchResult = tuple[int, list[tuple[int, str, str]], bool, str]


class _BatchRunner:
    """Validates, encodes and (when asked) sends batches; one per process."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.sender: _Sender | None = None

    def __call__(self, batch: Batch, send: bool) -> BatchResult:
        encoded: list[Encoded] = []
        rejects: list[tuple[int, str, str]] = []
        latest_ms = latest_allowed_ms(self.job.settings.max_clock_skew)
        if isinstance(batch, tuple):  # JSON lines: the common case, validated inline
            validate_json = ROW.validate_json
            for number, line in json_lines(batch):
                try:
                    encoded.append(encode_row(validate_json(line), latest_ms=latest_ms))
                except (ValidationError, ValueError):
                    _, _, text, reason = validate_line(number, line, latest_ms)  # says why
                    rejects.append((number, text, reason))
        else:
            header, validate = self.job.header, ROW.validate_python
            for number, cells in batch:
                try:
                    if len(cells) == len(header):
                        row = validate(cells_dict(header, cells))
                        encoded.append(encode_row(row, latest_ms=latest_ms))
                        continue
                except (ValidationError, ValueError):
                    pass
                _, _, text, reason = validate_cells(header, number, cells, latest_ms)  # says why
                rejects.append((number, text, reason))
        if not send or not encoded:
            return len(encoded), rejects, True, ""
        if self.sender is None:
            self.sender = _Sender(self.job.settings, self.job.rate)
        acked = self.sender.send(encoded, self.job.flush_timeout)
        return len(encoded), rejects, acked, self.sender.first_error


_runner: _BatchRunner | None = None  # the runner of a worker process (set by its initializer)


def _start_worker(job: Job) -> None:
    global _runner
    _runner = _BatchRunner(job)


def _run_in_worker(batch: Batch, send: bool) -> BatchResult:
    if _runner is None:
        raise RuntimeError("backfill worker process was not initialised")
    return _runner(batch, send)


#: A batch, whether to send it (else only validate), and a label handed back with its result.
Planned = tuple[Batch, bool, str]


def run_batches(
    job: Job, planned: Iterable[Planned], workers: int, stack: ExitStack
) -> Iterator[tuple[BatchResult, Planned]]:
    """Each planned batch's result, in the order planned: run here (``workers`` == 1) or by
    ``workers`` spawned processes, whose pool ``stack`` shuts down."""
    if workers == 1:
        runner = _BatchRunner(job)
        for item in planned:
            yield runner(item[0], item[1]), item
        return
    pool = stack.enter_context(
        ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(job,),
        )
    )
    # A bounded window of batches in flight (memory stays bounded whatever the file size);
    # results are taken in file order.
    in_flight: deque[tuple[Future[BatchResult], Planned]] = deque()
    for item in planned:
        in_flight.append((pool.submit(_run_in_worker, item[0], item[1]), item))
        if len(in_flight) >= 2 * workers:
            future, done = in_flight.popleft()
            yield future.result(), done
    while in_flight:
        future, done = in_flight.popleft()
        yield future.result(), done
