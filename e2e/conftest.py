"""Fixtures of the e2e tier: a real single-node cluster (``e2e/localnode.py``).

The tier rule of testing.md: with ``CI=true`` a missing prerequisite fails
the run; elsewhere the tier is skipped and says why.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.controlplane.cluster import ControlPlane

from e2e.localnode import LocalNode, LocalNodeError, missing_prerequisites, start_cluster, stop_cluster

IN_CI = os.environ.get("CI", "").lower() == "true"
# Lines the suites report (handshakes and failures per scenario), repeated at the end of the run.
SUMMARY: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: needs a real node (kubelet + containerd) on this machine; see e2e/NOTES.md"
    )
    # e2e/operator_image.py imports the image helpers of tests/chart/test_image.py, which is marked `chart`.
    config.addinivalue_line("markers", "chart: the chart tier (tests/chart)")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SUMMARY:
        terminalreporter.write_sep("-", "e2e summary")
        for line in SUMMARY:
            terminalreporter.write_line(line)


def missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true and an e2e prerequisite is missing: {reason}", pytrace=False)
    pytest.skip(f"SKIPPED TIER e2e: {reason}")


@pytest.fixture(scope="session")
def local_cluster(request: pytest.FixtureRequest) -> Iterator[tuple[ControlPlane, LocalNode]]:
    reasons = missing_prerequisites()
    if reasons:
        missing("; ".join(reasons))
    workdir = Path(tempfile.mkdtemp(prefix="certmint-e2e-"))
    try:
        cp, node = start_cluster(workdir)
    except LocalNodeError as e:
        stop_cluster(workdir)
        pytest.fail(f"the local node did not start: {e}\n(logs kept in {workdir})", pytrace=False)
    failed_before = request.session.testsfailed
    yield cp, node
    stop_cluster(workdir)
    if request.session.testsfailed > failed_before:
        print(
            f"\ne2e: a test failed; control-plane and node logs kept in {workdir}/logs and {workdir}/node/logs",
            file=sys.stderr,
        )
    else:
        shutil.rmtree(workdir, ignore_errors=True)
