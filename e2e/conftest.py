"""Fixtures of the e2e tier: a real kind cluster (``e2e/kind/``), one per run.

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

from e2e.kind import provider as kind
from e2e.kind.provider import KindProvider

IN_CI = os.environ.get("CI", "").lower() == "true"
# Lines the suites report (handshakes and failures per scenario), repeated at the end of the run.
SUMMARY: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: needs a kind cluster (made by e2e/kind/run.sh); see e2e/kind/NOTES.md")
    config.addinivalue_line("markers", "e2e_early: runs before the other e2e tests (see pytest_collection_modifyitems)")
    config.addinivalue_line("markers", "e2e_late: runs after the other e2e tests (see pytest_collection_modifyitems)")
    # e2e/operator_image.py imports the image helpers of tests/chart/test_image.py, which is marked `chart`.
    config.addinivalue_line("markers", "chart: the chart tier (tests/chart)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Among the e2e tests only (their places in the run stay theirs): ``e2e_early`` ones first, ``e2e_late`` ones
    last. The pod-certificate rotation waits 10-17 min for the kubelet: its pods start early, the other scenarios
    run while it waits, and the rotation is checked at the end."""
    places = [i for i, item in enumerate(items) if item.get_closest_marker("e2e") is not None]

    def rank(item: pytest.Item) -> int:
        return 0 if item.get_closest_marker("e2e_early") else 2 if item.get_closest_marker("e2e_late") else 1

    ordered = sorted((items[i] for i in places), key=rank)  # stable: the collection order within each rank
    for i, item in zip(places, ordered, strict=True):
        items[i] = item


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
def kind_cluster(request: pytest.FixtureRequest) -> Iterator[KindProvider]:
    """One kind cluster for the whole run, made and deleted by ``e2e/kind/run.sh up`` / ``down``.

    When run.sh itself started pytest (``CERTMINT_E2E_KUBECONFIG``), its cluster is used and left to it."""
    if os.environ.get("CERTMINT_E2E_KUBECONFIG"):
        yield KindProvider.from_env()
        return
    reasons = kind.missing_prerequisites()
    if reasons:
        missing("; ".join(reasons))
    cluster = os.environ.get("CERTMINT_E2E_KIND_CLUSTER", kind.DEFAULT_CLUSTER)
    workdir = Path(tempfile.mkdtemp(prefix="certmint-e2e-"))
    log = workdir / "run-sh.log"
    try:
        provider, seconds = kind.create(cluster, workdir, log)
    except kind.KindError as e:
        kind.delete(cluster, log)
        pytest.fail(f"the kind cluster was not created: {e}\n(run.sh's whole output: {log})", pytrace=False)
    line = f"e2e: kind cluster {cluster} up, images loaded: up_s={seconds:.0f} local_node_image={provider.local}"
    SUMMARY.append(line)
    print(f"\n{line}", file=sys.stderr)
    failed_before = request.session.testsfailed
    yield provider
    failed = request.session.testsfailed > failed_before
    if failed:
        kind.export_logs(cluster, workdir / "kind-logs", log)
    rc = kind.delete(cluster, log)
    if failed or rc != 0:
        print(
            f"\ne2e: {'a test failed' if failed else f'run.sh down exited {rc}'}; the node's logs are in "
            f"{workdir}/kind-logs, run.sh's output in {log}",
            file=sys.stderr,
        )
    else:
        shutil.rmtree(workdir, ignore_errors=True)
