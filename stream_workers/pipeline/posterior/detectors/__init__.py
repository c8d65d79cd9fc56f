"""Degradation detectors: one algorithm per module, behind the protocol ``GoalState`` uses.

``Detector`` (in ``protocol``) is what a path's detector must do; ``DetectorFactory`` makes
one for a new path, and ``PosteriorConfig.detector`` holds the factory the stage uses.
``DETECTORS`` maps each kind's ``name`` to its class: the contract test runs over all of them.

=============  ====================  =====================================================
kind           class                 what it compares
=============  ====================  =====================================================
beta-drop      ``BetaDropDetector``  the recent window with the decayed history before it
=============  ====================  =====================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from stream_workers.pipeline.posterior.detectors.beta_drop import BetaDropDetector
from stream_workers.pipeline.posterior.detectors.protocol import (
    Detector,
    DetectorFactory,
    Transition,
)

__all__ = ["DETECTORS", "BetaDropDetector", "Detector", "DetectorFactory", "Transition"]

#: Every kind of detector, by name.
DETECTORS: Final[Mapping[str, DetectorFactory]] = MappingProxyType(
    {BetaDropDetector.name: BetaDropDetector}
)
