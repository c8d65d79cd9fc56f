"""The posterior stage's pure logic: decayed Beta posteriors and degradation detectors."""

from stream_workers.pipeline.posterior.beta import (
    DecayedBeta,
    beta_cdf,
    prob_below,
    prob_below_at_most,
)
from stream_workers.pipeline.posterior.detector import (
    BetaDropDetector,
    Detector,
    NoopDetector,
    Transition,
)
from stream_workers.pipeline.posterior.state import GoalState, PosteriorConfig

__all__ = [
    "BetaDropDetector",
    "DecayedBeta",
    "Detector",
    "GoalState",
    "NoopDetector",
    "PosteriorConfig",
    "Transition",
    "beta_cdf",
    "prob_below",
    "prob_below_at_most",
]
