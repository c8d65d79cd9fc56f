"""The pipeline: one Faust worker process runs the join stage and the posterior stage.

decisions + outcomes --(join, per partition)--> path-deltas --(posterior, per goal)--> Redis
snapshots, alerts, and the compacted posterior-state topic. ``run_worker`` is what
``outroute worker`` runs; ``create_app`` builds the app for embedding or tests. Both are
imported on first use, so that the pure stages (``join.state``, ``posterior.state``) load
without Faust.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stream_workers.pipeline.app import create_app
    from stream_workers.pipeline.worker import run_worker

__all__ = ["create_app", "run_worker"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from stream_workers.pipeline.app import create_app

        return create_app
    if name == "run_worker":
        from stream_workers.pipeline.worker import run_worker

        return run_worker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
