"""The posterior stage: path-deltas in; per goal, policy snapshots and alerts out.

Its logic is pure and exported here: ``GoalState`` (``state``) admits each delta's items
through the frontier (``frontier``), updates each path's ``DecayedBeta`` (``decayed``) and
feeds its degradation detector (the ``detectors`` package), built as ``PosteriorConfig`` says.
Its I/O is ``service.PosteriorService`` (Kafka in, Redis and Kafka out) with the state topic
in ``changelog``; import those from their modules: they need aiokafka and Redis.
"""

from stream_workers.pipeline.posterior.decayed import DecayedBeta
from stream_workers.pipeline.posterior.state import GoalState, PosteriorConfig

__all__ = ["DecayedBeta", "GoalState", "PosteriorConfig"]
