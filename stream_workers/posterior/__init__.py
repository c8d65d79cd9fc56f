"""The posterior stage's pure logic: decayed Beta posteriors and degradation detectors."""

from .beta import DecayedBeta, beta_cdf, prob_below
from .detector import BetaDropDetector, Detector, NoopDetector, Transition

__all__ = [
    "BetaDropDetector",
    "DecayedBeta",
    "Detector",
    "NoopDetector",
    "Transition",
    "beta_cdf",
    "prob_below",
]
