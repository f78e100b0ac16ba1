"""Shared test configuration: the tier rules from testing.md.

In CI (``CI=true``) a missing prerequisite of a tier is an error; locally the
tier is skipped with the reason printed in the summary.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.controlplane.cluster import ControlPlane, ControlPlaneError, build_binaries

IN_CI = os.environ.get("CI", "").lower() == "true"


def missing_prerequisite(reason: str) -> None:
    """Fail in CI, skip loudly elsewhere."""
    if IN_CI:
        pytest.fail(f"CI=true and a test prerequisite is missing: {reason}", pytrace=False)
    pytest.skip(f"SKIPPED TIER: {reason}")


@contextmanager
def session_control_plane(
    request: pytest.FixtureRequest, tier: str, *, with_controller_manager: bool = True
) -> Iterator[ControlPlane]:
    """A tier's control plane for the session; its logs are kept when a test of the session failed."""
    if shutil.which("go") is None and not os.environ.get("CERTMINT_KUBE_BIN_DIR"):
        missing_prerequisite("Go is needed to build kube-apiserver/etcd (run `make test`, which checks)")
    try:
        bin_dir = (
            Path(os.environ["CERTMINT_KUBE_BIN_DIR"]) if os.environ.get("CERTMINT_KUBE_BIN_DIR") else build_binaries()
        )
    except ControlPlaneError as e:
        missing_prerequisite(str(e))
    workdir = Path(__file__).resolve().parents[1] / ".local" / f"{tier}-cluster-{os.getpid()}"
    cp = ControlPlane(workdir=workdir, bin_dir=bin_dir, with_controller_manager=with_controller_manager)
    failed_before = request.session.testsfailed
    try:
        cp.start()
        yield cp
    finally:
        cp.stop()
        if request.session.testsfailed > failed_before:
            print(f"\n{tier} tier failures: control-plane and operator logs kept in {workdir}/logs", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
