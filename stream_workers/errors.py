"""Exceptions of the worker package.

::

    schemas.OutrouteError
     +-- WorkerError
          +-- TopicLayoutError     topics missing, or decisions/outcomes not co-partitioned
          +-- LocalStackError      the embedded broker or a local Redis could not be started
          +-- OverrideRefused      an override that breaks a rule (every path disabled, ...)
"""

from __future__ import annotations

from schemas import OutrouteError

__all__ = ["LocalStackError", "OverrideRefused", "TopicLayoutError", "WorkerError"]


class WorkerError(OutrouteError):
    """Base class of the worker package's exceptions."""


class TopicLayoutError(WorkerError):
    """The topics do not have the layout the join needs."""


class LocalStackError(WorkerError):
    """A local service (embedded broker, Redis) is unavailable or failed to start."""


class OverrideRefused(WorkerError):
    """An override was refused (it would disable every path of a goal, names an unknown path,
    ...); nothing was recorded or changed."""
