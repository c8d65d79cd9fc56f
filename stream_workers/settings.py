"""Settings of the worker processes and the CLI (environment prefix ``OUTROUTE_``).

Everything in :class:`schemas.OutrouteSettings`, plus what only the workers need. Durations are
seconds. The join's and the posterior's knobs take their defaults from the parts they configure
(``JoinConfig``, ``PosteriorConfig``, ``BetaDropDetector``); ``JoinConfig.from_settings`` and
``PosteriorConfig.from_settings`` build those parts' configs from these settings.

=================================  ==========  ==================================================
variable                           default     meaning
=================================  ==========  ==================================================
OUTROUTE_REPLICATION_FACTOR        1           replication of topics created by outroute
OUTROUTE_OUTCOME_WINDOW            3600        how long a decision waits for its outcome
OUTROUTE_WINDOW_OVERRIDES          {}          JSON object: per-goal outcome windows
OUTROUTE_ORPHAN_GRACE              120         how long an early outcome waits for its decision
OUTROUTE_ON_TIMEOUT                ignore      ``ignore`` or ``failure`` for unreported decisions
OUTROUTE_DUPLICATE_HORIZON         120         how long joined traces are remembered
OUTROUTE_MAX_PENDING               1000000     pending decisions per partition before eviction
OUTROUTE_FLUSH_INTERVAL            0.1         how often joined outcomes are flushed as deltas
OUTROUTE_METRICS_PORT              (off)       serve Prometheus /metrics on this port
OUTROUTE_METRICS_BIND              0.0.0.0     address the metrics server listens on
OUTROUTE_SESSION_TIMEOUT           6           consumer group session timeout
OUTROUTE_HALF_LIFE                 86400       half-life of outcomes in the posteriors ...
OUTROUTE_HALF_LIFE_OUTCOMES        100         ... or this many newer outcomes of the path,
                                               whichever is later (0: by time alone) ...
OUTROUTE_MAX_HALF_LIFE             604800      ... and this long at the latest
OUTROUTE_DETECTOR_WINDOW           50          outcomes in the detector's recent window
OUTROUTE_MIN_DROP                  0.1         success-rate drop that opens an alert
OUTROUTE_MIN_SAMPLES               20          outcomes before a path is no longer cold
OUTROUTE_STALENESS                 604800      a path with no outcome for this long is stale
OUTROUTE_PUBLISH_INTERVAL          0.2         at most one snapshot per goal this often
OUTROUTE_HISTORY                   true        keep per-path history and the join's health counts
                                               in Redis for the dashboard (``false``: neither)
OUTROUTE_ALERTS_WEBHOOK_URL        (none)      where ``outroute alerts forward`` posts alerts
OUTROUTE_ALERTS_WEBHOOK_SECRET     (none)      HMAC-SHA256 key that signs the posted alerts
=================================  ==========  ==================================================
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from schemas import OutrouteSettings
from stream_workers.pipeline.join.state import JoinConfig
from stream_workers.pipeline.posterior.detectors import BetaDropDetector
from stream_workers.pipeline.posterior.state import PosteriorConfig

__all__ = ["WorkerSettings"]

# The join's and the posterior's knobs default to what the parts themselves default to.
_JOIN = JoinConfig()
_POSTERIOR = PosteriorConfig()
_DETECTOR = BetaDropDetector()


class WorkerSettings(OutrouteSettings):
    """Frozen. ``WorkerSettings.from_env()`` reads ``OUTROUTE_*`` variables."""

    replication_factor: int = Field(
        default=1, ge=1, le=32, description="Replication factor of topics created by outroute."
    )
    outcome_window: float = Field(default=_JOIN.outcome_window, gt=0)
    window_overrides: dict[str, float] = Field(default_factory=dict)
    orphan_grace: float = Field(default=_JOIN.orphan_grace, gt=0)
    #: An event dated more than this after its Kafka message's timestamp is dead-lettered: read
    #: as it says, it would move the event-time clocks past every open window and decay all
    #: history. Backfill rows may not be dated later than this after now.
    max_clock_skew: float = Field(default=300.0, gt=0)
    on_timeout: Literal["ignore", "failure"] = _JOIN.on_timeout
    duplicate_horizon: float = Field(default=_JOIN.duplicate_horizon, gt=0)
    max_pending: int = Field(default=_JOIN.max_pending, ge=1)
    flush_interval: float = Field(default=0.1, gt=0, le=10)
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_bind: str = "0.0.0.0"
    session_timeout: float = Field(default=6.0, ge=1, le=300)
    half_life: float = Field(default=_POSTERIOR.half_life, gt=0)
    half_life_outcomes: float = Field(default=_POSTERIOR.half_life_outcomes, ge=0)
    max_half_life: float = Field(default=_POSTERIOR.max_half_life, gt=0)
    #: at least the detector's minimum of recent outcomes, which an alert needs
    detector_window: int = Field(default=_DETECTOR.window, ge=_DETECTOR.min_recent, le=10_000)
    min_drop: float = Field(default=_DETECTOR.min_drop, gt=0, lt=1)
    min_samples: int = Field(default=_POSTERIOR.min_samples, ge=0)
    staleness: float = Field(default=_POSTERIOR.staleness, gt=0)
    publish_interval: float = Field(default=0.2, gt=0, le=60)
    history: bool = _POSTERIOR.history
    alerts_webhook_url: str | None = Field(default=None, pattern=r"^(https?://\S+)?$")
    alerts_webhook_secret: SecretStr | None = None

    @model_validator(mode="after")
    def _half_lives_in_order(self) -> WorkerSettings:
        if self.max_half_life < self.half_life:
            raise ValueError(
                f"max_half_life ({self.max_half_life:g} s) must be at least half_life "
                f"({self.half_life:g} s): it bounds how slowly counted outcomes decay"
            )
        return self

    @property
    def alerts_group(self) -> str:
        """Consumer group of the alert forwarder (one per topic prefix)."""
        return f"{self.topic_prefix}.alert-forwarder"

    @property
    def posterior_group(self) -> str:
        """Consumer group of the posterior stage (one per topic prefix)."""
        return f"{self.topic_prefix}.posterior"

    @property
    def join_group(self) -> str:
        """Consumer group of the join stage (one per topic prefix)."""
        return f"{self.topic_prefix}.join"
