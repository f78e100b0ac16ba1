"""Verifier tier: certificates the operator issued, judged by tools certmint did not write.

The world, built once per session (tests/verifiers/test_matrix.py, ``matrix``): a control plane of the
tier's own, the CRDs and one operator process (the integration tier's fixtures ``api``, ``crds`` and
``operator``, over this tier's ``control_plane``), and a matrix of Certificates created in parallel. Each is
judged by pkilint, ``openssl verify -x509_strict`` and Python ``ssl`` handshakes (tests/verifiers/verify.py);
tests/verifiers/test_instruments.py shows each judge refusing a bad certificate first.

The terminal summary prints one line per certificate and verifier, and the count:
``verifiers: N certificates, pkilint errors=E warnings=W, openssl ok=A/B, ssl ok=C/D``.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import missing_prerequisite, session_control_plane
from tests.controlplane.cluster import ControlPlane
from tests.integration.conftest import api, crds, operator

__all__ = ["api", "crds", "operator"]  # the integration tier's fixtures, over this tier's control_plane


@dataclass
class Report:
    """What the session's verifiers said: lines for the summary, and the counts."""

    lines: list[str] = field(default_factory=list)
    certificates: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)
    lint_errors: int = 0
    lint_warnings: int = 0
    openssl: list[bool] = field(default_factory=list)
    ssl: list[bool] = field(default_factory=list)

    def line(self, text: str) -> None:
        self.lines.append(f"verifiers: {text}")
        print(f"verifiers: {text}")

    def summary(self) -> str:
        refused = f", refused by certmint={len(self.refused)}" if self.refused else ""
        return (
            f"verifiers: {len(self.certificates)} certificates{refused}, "
            f"pkilint errors={self.lint_errors} warnings={self.lint_warnings}, "
            f"openssl ok={sum(self.openssl)}/{len(self.openssl)}, ssl ok={sum(self.ssl)}/{len(self.ssl)}"
        )


REPORT = Report()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORT.lines:
        return
    terminalreporter.write_sep("-", "verifier tier: one line per certificate and verifier")
    for line in REPORT.lines:
        terminalreporter.write_line(line)
    terminalreporter.write_line(REPORT.summary())


@pytest.fixture(scope="session", autouse=True)
def verifier_prerequisites() -> None:
    """The judges themselves: pkilint (``make setup`` installs the dev extras) and the openssl command."""
    if importlib.util.find_spec("pkilint") is None:
        missing_prerequisite("pkilint is not installed (`make setup` installs the dev extras)")
    if shutil.which("openssl") is None:
        missing_prerequisite("the openssl command is needed for `openssl verify` (Debian package openssl)")


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    with session_control_plane(request, "verifiers") as cp:
        yield cp
