"""Shared helpers. Integration fixtures live in tests/integration/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent

# Property tests check correctness, not speed: on a loaded 2-core machine Hypothesis's
# timing checks (per-example deadline, slow input generation) fail for reasons unrelated to
# the code under test.
settings.register_profile("outroute", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("outroute")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/integration talks to real servers: mark it so `-m` can select."""
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)
