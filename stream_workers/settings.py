"""Settings of the worker processes and the CLI (environment prefix ``OUTROUTE_``).

Everything in :class:`schemas.OutrouteSettings`, plus what only the workers need.
"""

from __future__ import annotations

from pydantic import Field

from schemas import OutrouteSettings

__all__ = ["WorkerSettings"]


class WorkerSettings(OutrouteSettings):
    """Frozen. ``WorkerSettings.from_env()`` reads ``OUTROUTE_*`` variables."""

    replication_factor: int = Field(
        default=1, ge=1, le=32, description="Replication factor of topics created by outroute."
    )
