"""Shared helpers. Integration fixtures live in tests/integration/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/integration talks to real servers: mark it so `-m` can select."""
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)
