"""A root rotation of certmint's own root CA Certificate against the real API server (issue 14).

N Certificates under a CA Issuer on a certmint root; the root is re-issued with a new key. Checked while it runs,
from the Secrets as the API server has them (polled): the next root reaches every certificate's ca.crt before
any certificate is signed under it; the operator is SIGKILLed while the root is staged and the new process
resumes the phase; the certificates are re-issued under the new root spread over the propagation time, each
once; the old root is retired from every ca.crt only when none is left under it. Printed: when each phase
came, and the re-issues per second at their peak.

The operator here watches only the test's namespace (its own Issuers, no ClusterIssuer) with a short
propagation time (CERTMINT_TRUST_PROPAGATION_SECONDS).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator

import pytest
from cryptography import x509
from kubernetes import client

from certmint.pki.inspect import load_pem_chain
from tests.controlplane.cluster import ControlPlane
from tests.controlplane.operator_process import OperatorProcess
from tests.integration.builders import Certmint, certificate, issuer, unique
from tests.integration.kubeutil import wait_for
from tests.integration.replicas import FAST_LEASE, stand_ins

pytestmark = pytest.mark.integration

COUNT = 60
PROPAGATION_S = 8.0
ROOT = "rotated-root"


@pytest.fixture
def namespace(api: client.ApiClient) -> str:
    return Certmint(api).namespace(unique("rotation"))


@pytest.fixture
def rotating(control_plane: ControlPlane, operator: OperatorProcess, namespace: str) -> Iterator[OperatorProcess]:
    env = {
        **FAST_LEASE,
        "CERTMINT_WATCH_NAMESPACES": namespace,
        "CERTMINT_TRUST_PROPAGATION_SECONDS": str(PROPAGATION_S),
        "CERTMINT_ISSUER_RECHECK_SECONDS": "3600",
    }
    with stand_ins(control_plane, operator, [env], first_run=600) as (op,):
        yield op


def _roots(pem: bytes) -> list[x509.Certificate]:
    return load_pem_chain(pem) if pem else []


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:
        return False
    return True


def test_a_root_rotation_stages_resumes_after_a_kill_spreads_and_retires(
    api: client.ApiClient, namespace: str, rotating: OperatorProcess
) -> None:
    cm = Certmint(api)
    cm.create(issuer("bootstrap", namespace))
    root_spec = {"isCA": True, "commonName": "Rotated Root CA", "duration": "720h"}
    cm.create(certificate(ROOT, namespace, issuer_name="bootstrap", issuer_kind="Issuer", **root_spec))
    cm.wait_ready("Certificate", ROOT, namespace, timeout=60)
    cm.create(issuer("mesh", namespace, ca_secret=f"{ROOT}-tls"))
    cm.wait_ready("Issuer", "mesh", namespace, timeout=60)
    names = [f"svc-{i:03d}" for i in range(COUNT)]
    for name in names:
        cm.create(certificate(name, namespace, issuer_name="mesh", issuer_kind="Issuer", duration="2h"))
    for name in names:
        cm.wait_ready("Certificate", name, namespace, timeout=120)
    old_root = load_pem_chain(cm.secret_data(f"{ROOT}-tls", namespace)["tls.crt"])[0]

    def leaves() -> dict[str, dict[str, bytes]]:
        return {name: cm.secret_data(f"{name}-tls", namespace) for name in names}

    # Stage: the next root in the root Secret's ca.crt, then in every certificate's, none signed under it yet.
    t0 = time.monotonic()
    cm.patch("Certificate", ROOT, namespace, {"spec": {"duration": "700h"}})
    staged = wait_for(
        lambda: cm.secret_data(f"{ROOT}-tls", namespace).get("next-tls.crt"), "the next root to be staged", timeout=30
    )
    next_root = load_pem_chain(staged)[0]

    def both_roots() -> dict[str, dict[str, bytes]] | None:
        data = leaves()
        return data if all(len(_roots(d["ca.crt"])) == 2 for d in data.values()) else None

    announced = wait_for(both_roots, "every certificate's ca.crt to hold both roots", timeout=PROPAGATION_S)
    assert announced is not None
    staged_s = time.monotonic() - t0
    assert all(_signed_by(load_pem_chain(d["tls.crt"])[0], old_root) for d in announced.values())

    # The operator dies while the root is staged; a new process resumes the phase (no second next root).
    rotating.kill()
    rotating.start()

    # Switch and spread: poll every certificate until all are under the new root; at every poll each one's
    # tls.crt is signed by a root its own ca.crt holds, and nothing is signed twice.
    reissued_at: dict[str, float] = {}
    switched_s: float | None = None
    deadline = t0 + 6 * PROPAGATION_S + 60
    while len(reissued_at) < COUNT:
        assert time.monotonic() < deadline, f"{COUNT - len(reissued_at)} certificates not re-issued"
        root_data = cm.secret_data(f"{ROOT}-tls", namespace)
        if switched_s is None and load_pem_chain(root_data["tls.crt"])[0] == next_root:
            switched_s = time.monotonic() - t0
        for name, data in leaves().items():
            leaf = load_pem_chain(data["tls.crt"])[0]
            assert any(_signed_by(leaf, r) for r in _roots(data["ca.crt"])), f"{name}: signed by a root it lacks"
            if name not in reissued_at and _signed_by(leaf, next_root):
                reissued_at[name] = time.monotonic() - t0
        time.sleep(0.25)
    assert switched_s is not None and switched_s >= PROPAGATION_S * 0.9, switched_s
    assert all(cm.get("Certificate", n, namespace)["status"]["revision"] == 2 for n in names)
    root_status = cm.get("Certificate", ROOT, namespace)["status"]
    assert (
        root_status["revision"] == 2
        and load_pem_chain(cm.secret_data(f"{ROOT}-tls", namespace)["tls.crt"])[0] == next_root
    )

    # Retire: the old root leaves every ca.crt, none re-issued again.
    wait_for(
        lambda: all(_roots(d["ca.crt"]) == [next_root] for d in leaves().values()),
        "the old root to leave every ca.crt",
        timeout=3 * PROPAGATION_S + 30,
    )
    retired_s = time.monotonic() - t0
    assert all(cm.get("Certificate", n, namespace)["status"]["revision"] == 2 for n in names)

    per_second = collections.Counter(int(t) for t in reissued_at.values())
    spread = sorted(reissued_at.values())
    print(
        f"\nroot rotation, {COUNT} certificates, propagation {PROPAGATION_S:g}s (operator SIGKILLed while staged): "
        f"staged in every ca.crt {staged_s:.1f}s, switched {switched_s:.1f}s, "
        f"re-issued {spread[0]:.1f}-{spread[-1]:.1f}s (peak {max(per_second.values())}/s), "
        f"old root retired {retired_s:.1f}s after the change"
    )
    assert spread[-1] - spread[0] >= PROPAGATION_S / 3, spread  # spread out, not one burst
