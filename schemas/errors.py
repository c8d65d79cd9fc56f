"""The root of every exception outroute raises on purpose.

::

    OutrouteError
     +-- stream_workers.WorkerError
          +-- TopicLayoutError        topics missing or not co-partitioned
          +-- LocalStackError         the embedded broker or Redis could not be started

Bad arguments to public functions raise ``ValueError`` (pydantic's ``ValidationError`` is one)
naming the field and the rule.
"""

from __future__ import annotations

__all__ = ["OutrouteError"]


class OutrouteError(Exception):
    """Base class of outroute's own exceptions."""
