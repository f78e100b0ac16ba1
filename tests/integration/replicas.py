"""Operators of a test's own in place of the session's: replicas for leader election, one at INFO, a fast Lease."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tests.controlplane.cluster import ControlPlane
from tests.controlplane.operator_process import OperatorProcess
from tests.integration.conftest import OPERATOR_NAMESPACE

#: A Lease lost and won in seconds, for tests of leader election.
FAST_LEASE = {
    "CERTMINT_LEASE_DURATION_SECONDS": "4",
    "CERTMINT_LEASE_RENEW_SECONDS": "1",
    "CERTMINT_LEASE_RETRY_SECONDS": "0.5",
}


@contextlib.contextmanager
def stand_ins(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    envs: list[dict[str, str]],
    *,
    first_run: int,
    verbose: bool = True,
) -> Iterator[list[OperatorProcess]]:
    """Stop the session's operator, run one operator per entry of ``envs`` (started in order) instead, stop them at the
    end and start the session's again.

    The session's operator stops gracefully, so it hands its Lease over at once. Each stand-in's log is
    ``operator-<first_run + i + 1>.log``, apart from the session's.
    """
    operator.stop()
    started: list[OperatorProcess] = []
    try:
        for i, env in enumerate(envs):
            op = OperatorProcess(
                kubeconfig=control_plane.admin_kubeconfig,
                log_dir=control_plane.workdir / "logs",
                namespace=OPERATOR_NAMESPACE,
                extra_env=env,
                verbose=verbose,
            )
            op.log_dir.mkdir(exist_ok=True)
            op.runs = first_run + i
            started.append(op)
            op.start()
        yield started
    finally:
        for op in started:
            op.stop()
        operator.start()
