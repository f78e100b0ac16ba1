"""Benchmark tier: registers the ``bench`` marker (deselect with ``-m "not bench"``)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "bench: runs the benchmark command at reduced scale on its own control plane (a few minutes)"
    )
