"""Exceptions of the SDK.

::

    schemas.OutrouteError
     +-- RouterError
          +-- NoCurrentDecision    router.report() with no decide() in this thread or task
          +-- ProviderError        a model provider call failed (carries the failure category)

Bad arguments raise ``ValueError`` naming the argument and the rule. ``decide()`` never raises
for a valid router: Kafka or Redis trouble degrades to counted drops and a stale policy.
"""

from __future__ import annotations

from schemas import FailureCategory, OutrouteError

__all__ = ["NoCurrentDecision", "ProviderError", "RouterError"]


class RouterError(OutrouteError):
    """Base class of the SDK's exceptions."""


class NoCurrentDecision(RouterError, LookupError):
    """``router.report()`` was called where no ``decide()`` happened (this thread or task)."""


class ProviderError(RouterError):
    """A model provider call failed. Reported to outroute as a failure before it is raised."""

    def __init__(
        self,
        message: str,
        *,
        model: str,
        category: FailureCategory,
        trace_id: str,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.model = model
        self.category = category
        self.trace_id = trace_id
        self.status_code = status_code

    def __str__(self) -> str:
        status = f", HTTP {self.status_code}" if self.status_code is not None else ""
        return (
            f"{self.args[0]} (model {self.model}, {self.category}{status}, trace {self.trace_id})"
        )
