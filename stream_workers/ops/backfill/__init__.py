"""``outroute backfill``: historical decisions with their outcomes, into the live topics.

Each row of a JSON-lines or CSV file is one decision and its outcome::

    trace_id, goal, path, decided_at, success            required
    score, cost_usd (or cost), latency_ms (or latency),  optional
    occurred_at, failure_category

A valid row becomes a DecisionEvent (candidates ``[path]``, reason ``forced``, service
``backfill``) and an OutcomeEvent (source ``backfill``) with the row's timestamps, so windows
and decay see them where they happened. The Kafka messages carry the time they are sent, not the
row's: Kafka's time-based retention deletes a segment whose newest message timestamp is older
than ``retention.ms`` at its next check (every 5 minutes by default), so history sent with its
own timestamps would vanish before a stopped or lagging worker read it. ``occurred_at``
defaults to ``decided_at`` plus ``latency_ms``. Bad rows, including rows whose bytes are not
UTF-8, go to the rejects file with their line number and reason; the run goes on.

Event ids are derived from the row (goal, path, trace id, decision time). Rows are sent in
batches of 5,000 lines, and a batch whose messages were all acknowledged is recorded in Redis
(``<key prefix>:backfill:<topic prefix>:<digest of its lines>``): running the same file again
skips its batches and changes nothing. A run cut short resends its unfinished batches; the join
drops the replayed events by id. With ``workers`` > 1, batches are validated, encoded and sent by
that many processes, and reported in file order.

Modules: ``rows`` reads and validates the file, ``encode`` turns a row into its two messages,
``send`` produces batches (here or in a process pool), ``run`` is the run as a whole.
"""

from stream_workers.ops.backfill.encode import ROW, BackfillRow, Encoded, encode_row
from stream_workers.ops.backfill.rows import BATCH_ROWS, MAX_REJECT_CHARS, Format, read_rows
from stream_workers.ops.backfill.run import BackfillSummary, backfill
from stream_workers.ops.backfill.send import producer_config

__all__ = [
    "BATCH_ROWS",
    "MAX_REJECT_CHARS",
    "ROW",
    "BackfillRow",
    "BackfillSummary",
    "Encoded",
    "Format",
    "backfill",
    "encode_row",
    "producer_config",
    "read_rows",
]
