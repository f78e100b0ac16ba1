"""Shared test configuration: the tier rules from testing.md.

In CI (``CI=true``) a missing prerequisite of a tier is an error; locally the
tier is skipped with the reason printed in the summary.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def missing_prerequisite(reason: str) -> None:
    """Fail in CI, skip loudly elsewhere."""
    if IN_CI:
        pytest.fail(f"CI=true and a test prerequisite is missing: {reason}", pytrace=False)
    pytest.skip(f"SKIPPED TIER: {reason}")
