"""Killing the operator at arbitrary moments never leaves a mismatched key pair, nor a re-issuance storm."""

from __future__ import annotations

import random
import time

import pytest
from cryptography.hazmat.primitives import serialization
from kubernetes import client

from tests.controlplane.operator_process import OperatorProcess
from tests.integration.builders import Certmint, certificate, leaf
from tests.integration.kubeutil import wait_for

pytestmark = pytest.mark.integration

COUNT = 25
KILLS = 6


def _all_settled(cm: Certmint, ns: str, names: list[str]) -> bool:
    for name in names:
        obj = cm.get("Certificate", name, ns)
        status = obj.get("status", {})
        ready = [c for c in status.get("conditions", []) if c["type"] == "Ready" and c["status"] == "True"]
        if not ready or status.get("observedGeneration") != obj["metadata"]["generation"]:
            return False
    return True


def test_kill_during_issuance_never_leaves_a_mismatched_secret(
    api: client.ApiClient, operator: OperatorProcess
) -> None:
    cm = Certmint(api)
    ns, issuer = cm.namespace_and_issuer("crash")
    names = [f"c{i}" for i in range(COUNT)]
    for name in names:
        cm.create(certificate(name, ns, issuer_name=issuer, commonName=name, privateKey={"algorithm": "ECDSA"}))
    rng = random.Random(20261126)
    try:
        for round_ in range(KILLS):
            # Change every spec, so a burst of re-issuances is in flight, then crash somewhere inside it.
            for name in names:
                cm.patch("Certificate", name, ns, {"spec": {"dnsNames": [f"{name}-r{round_}.example.test"]}})
            time.sleep(rng.uniform(0.05, 0.6))  # the crash point: an arbitrary moment, by design
            operator.kill()
            _assert_every_secret_consistent(cm, ns, names)
            operator.start()
        wait_for(
            lambda: _all_settled(cm, ns, names),
            "all certificates Ready for their latest generation",
            timeout=90,
        )
        _assert_every_secret_consistent(cm, ns, names, require_all=True)
        _assert_requests_signed_once_per_revision(cm, ns, names)

        # A restart with everything valid re-issues nothing.
        serials = {n: cm.get("Certificate", n, ns)["status"]["serialNumber"] for n in names}
        operator.stop()
        operator.start()
        wait_for(
            lambda: (
                operator.metrics().value("certmint_workqueue_depth") == 0
                and operator.metrics().value("certmint_scheduled_timers") >= COUNT
            ),
            "the restarted operator to verify every certificate and go idle",
            timeout=60,
        )
        assert operator.metrics().value("certmint_issuances_total") == 0
        assert {n: cm.get("Certificate", n, ns)["status"]["serialNumber"] for n in names} == serials
    finally:
        if operator.proc is None:
            operator.start()


def _assert_every_secret_consistent(cm: Certmint, ns: str, names: list[str], require_all: bool = False) -> None:
    for name in names:
        secret = cm.secret(f"{name}-tls", ns)
        if secret is None:
            assert not require_all, f"Secret {name}-tls missing"
            continue
        data = cm.secret_data(f"{name}-tls", ns)
        key = serialization.load_pem_private_key(data["tls.key"], None)
        cert = leaf(data)
        assert key.public_key().public_numbers() == cert.public_key().public_numbers(), (  # type: ignore[union-attr]
            f"Secret {ns}/{name}-tls holds a key that does not match its certificate"
        )


def _assert_requests_signed_once_per_revision(cm: Certmint, ns: str, names: list[str]) -> None:
    """After the crashes: no CertificateRequest of ours is left unsigned, and no revision has two requests."""
    items = cm.items("CertificateRequest", ns)
    for name in names:
        uid = cm.get("Certificate", name, ns)["metadata"]["uid"]
        mine = [r for r in items if any(o["uid"] == uid for o in r["metadata"].get("ownerReferences") or [])]
        revisions = [r["metadata"]["annotations"]["certmint.dev/certificate-revision"] for r in mine]
        assert len(revisions) == len(set(revisions)), f"Certificate {name}: a revision claimed twice: {revisions}"
        unsigned = [r["metadata"]["name"] for r in mine if not (r.get("status") or {}).get("certificate")]
        assert not unsigned, f"Certificate {name}: requests left without a certificate: {unsigned}"
