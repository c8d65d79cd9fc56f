"""What services embed: ``Router`` decides a path per request and reports how it went.

from producer_sdk import Router

router = Router(goal="summarize", paths=["gpt-4o", "claude-sonnet-4"])
decision = router.decide()
...
decision.report(success=True, latency_ms=840)
"""

from .cache import SnapshotSource
from .decision import Decision
from .emitter import EmitterStats, EventSink, KafkaEventSink
from .errors import NoCurrentDecision, ProviderError, RouterError
from .options import CacheOptions, ConnectionOptions, EmitterOptions, Provider
from .policy import PathOverride, PathView, PolicyView
from .providers import Completion
from .router import SDK_VERSION, Router, RouterStats
from .sampling import SamplingParams
from .streams import AsyncCompletionStream, CompletionStream

__all__ = [
    "SDK_VERSION",
    "AsyncCompletionStream",
    "CacheOptions",
    "Completion",
    "CompletionStream",
    "ConnectionOptions",
    "Decision",
    "EmitterOptions",
    "EmitterStats",
    "EventSink",
    "KafkaEventSink",
    "NoCurrentDecision",
    "PathOverride",
    "PathView",
    "PolicyView",
    "Provider",
    "ProviderError",
    "Router",
    "RouterError",
    "RouterStats",
    "SamplingParams",
    "SnapshotSource",
]
