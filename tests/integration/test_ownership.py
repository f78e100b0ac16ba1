"""Trust boundaries of the Certificate reconcile, through the real API server.

certmint writes only what is its own: a Certificate never takes over, labels, owner-references or
deletes a Secret that certmint did not create or that a person did not hand over. And what it
does write stays consistent when something fails half-way: one CertificateRequest per revision,
a signed certificate reused instead of signed again while the Secret write keeps failing, a
Certificate refused by its issuer's policy looked at again when that policy changes, a
Certificate with a long (legal) name issued like any other.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from kubernetes import client

from tests.integration.builders import Certmint, certificate, cluster_issuer, leaf, serial_hex, unique
from tests.integration.kubeutil import wait_for

pytestmark = pytest.mark.integration
GROUP, VERSION = "certmint.dev", "v1alpha1"


@pytest.fixture(scope="module")
def ns(cm: Certmint) -> str:
    return cm.namespace(unique("owners"))


def _snapshot(cm: Certmint, name: str, ns: str) -> tuple[str, dict[str, Any], dict[str, str], dict[str, str], Any]:
    secret = cm.secret(name, ns)
    assert secret is not None
    meta = secret.metadata
    return (
        meta.resource_version,
        dict(secret.data or {}),
        dict(meta.labels or {}),
        dict(meta.annotations or {}),
        meta.owner_references,
    )


# -- Secrets that are not certmint's ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "existing",
    [
        pytest.param(
            {"type": "kubernetes.io/tls", "stringData": {"tls.crt": "users-own-cert", "tls.key": "users-own-key"}},
            id="a-users-tls-secret",
        ),
        pytest.param({"type": "Opaque", "stringData": {"password": "hunter2"}}, id="an-opaque-secret"),
        pytest.param(
            {"metadata": {"labels": {"certmint.dev/certificate-name": "PLACEHOLDER"}}, "stringData": {"k": "v"}},
            id="a-secret-labelled-by-hand",
        ),
    ],
)
def test_a_certificate_never_takes_over_a_secret_it_did_not_create(
    cm: Certmint, ca_issuer: str, ns: str, existing: dict[str, Any]
) -> None:
    name = unique("victim")
    body: dict[str, Any] = {
        "metadata": {"name": f"{name}-tls"},
        **{k: v for k, v in existing.items() if k != "metadata"},
    }
    labels = (existing.get("metadata") or {}).get("labels")
    if labels:
        body["metadata"]["labels"] = {k: name for k in labels}
    cm.core.create_namespaced_secret(ns, body)
    before = _snapshot(cm, f"{name}-tls", ns)
    cm.create(certificate(name, ns, issuer_name=ca_issuer, secretDeletionPolicy="Delete"))
    ready = cm.wait_condition("Certificate", name, ns, "Ready", "False", reason="SecretNotOwned")
    assert f"certmint.dev/handover-to={name}" in ready["message"]
    assert _snapshot(cm, f"{name}-tls", ns) == before  # data, labels, annotations, owners: not a byte changed
    # Deleting the Certificate (secretDeletionPolicy: Delete) must not take the Secret with it.
    uid = cm.get("Certificate", name, ns)["metadata"]["uid"]
    cm.delete("Certificate", name, ns)
    # The CertificateRequest signed before the Secret was found to be someone else's goes with its Certificate, by
    # the controller manager's garbage collector: its going shows the collector has handled this deletion. The
    # collector's lag under a loaded CI machine has exceeded 30 s once, hence the longer wait.
    wait_for(
        lambda: not cm.requests_owned_by(uid, ns) and _gone(cm, name, ns),
        "the Certificate and its CertificateRequest to be gone",
        timeout=120,
    )
    assert _snapshot(cm, f"{name}-tls", ns) == before


def _gone(cm: Certmint, name: str, ns: str) -> bool:
    try:
        cm.get("Certificate", name, ns)
    except client.ApiException as e:
        return e.status == 404
    return False


def test_a_secret_handed_over_by_a_person_is_used(cm: Certmint, ca_issuer: str, ns: str) -> None:
    name = unique("handover")
    cm.core.create_namespaced_secret(
        ns, {"metadata": {"name": f"{name}-tls", "labels": {"app": "legacy"}}, "stringData": {"note": "old"}}
    )
    cm.create(certificate(name, ns, issuer_name=ca_issuer))
    cm.wait_condition("Certificate", name, ns, "Ready", "False", reason="SecretNotOwned")
    # The person who may write the Secret hands it over; the label makes certmint notice at once.
    cm.core.patch_namespaced_secret(
        f"{name}-tls",
        ns,
        {
            "metadata": {
                "annotations": {"certmint.dev/handover-to": name},
                "labels": {"certmint.dev/certificate-name": name},
            }
        },
    )
    status = cm.wait_ready("Certificate", name, ns)["status"]
    secret = cm.secret(f"{name}-tls", ns)
    assert secret is not None
    assert (
        secret.metadata.annotations["certmint.dev/certificate-uid"]
        == cm.get("Certificate", name, ns)["metadata"]["uid"]
    )
    assert secret.metadata.labels["app"] == "legacy"  # others' keys stay
    assert serial_hex(leaf(cm.secret_data(f"{name}-tls", ns))) == status["serialNumber"]


def test_two_certificates_on_one_secret_one_wins(cm: Certmint, ca_issuer: str, ns: str) -> None:
    first, second = unique("first"), unique("second")
    cm.create(certificate(first, ns, issuer_name=ca_issuer, secret=f"{first}-shared"))
    cm.wait_ready("Certificate", first, ns)
    before = _snapshot(cm, f"{first}-shared", ns)
    cm.create(certificate(second, ns, issuer_name=ca_issuer, secret=f"{first}-shared"))
    ready = cm.wait_condition("Certificate", second, ns, "Ready", "False", reason="SecretInUse")
    assert first in ready["message"]
    assert _snapshot(cm, f"{first}-shared", ns) == before


def test_a_recreated_certificate_keeps_certmints_secret(cm: Certmint, ca_issuer: str, ns: str) -> None:
    # GitOps: the Certificate is deleted and applied again (a new UID); its Secret (policy Retain) is certmint's.
    name = unique("again")
    cm.create(certificate(name, ns, issuer_name=ca_issuer))
    serial = cm.wait_ready("Certificate", name, ns)["status"]["serialNumber"]
    cm.delete("Certificate", name, ns)
    wait_for(lambda: _gone(cm, name, ns), "the Certificate to be gone")
    cm.create(certificate(name, ns, issuer_name=ca_issuer))
    status = cm.wait_ready("Certificate", name, ns)["status"]
    assert status["serialNumber"] == serial  # kept: nothing to re-issue
    secret = cm.secret(f"{name}-tls", ns)
    assert secret is not None
    assert (
        secret.metadata.annotations["certmint.dev/certificate-uid"]
        == cm.get("Certificate", name, ns)["metadata"]["uid"]
    )


# -- reliability --------------------------------------------------------------------------------------------


def test_a_certificate_with_a_long_name_is_issued(cm: Certmint, ca_issuer: str, ns: str) -> None:
    name = unique("l" * 90)  # legal up to 253; a label value may have 63
    cm.create(certificate(name, ns, issuer_name=ca_issuer, secret="long-name-tls", dnsNames=["long.example.test"]))
    status = cm.wait_ready("Certificate", name, ns)["status"]
    assert serial_hex(leaf(cm.secret_data("long-name-tls", ns))) == status["serialNumber"]
    uid = cm.get("Certificate", name, ns)["metadata"]["uid"]
    (request,) = cm.requests_owned_by(uid, ns)
    assert len(request["metadata"]["labels"]["certmint.dev/certificate-name"]) <= 63


def test_relaxing_the_issuers_policy_issues_a_refused_certificate(cm: Certmint, ca_issuer: str, ns: str) -> None:
    issuer = unique("strict")
    ca_secret = cm.get("ClusterIssuer", ca_issuer)["spec"]["ca"]["secretName"]
    cm.create(cluster_issuer(issuer, ca_secret=ca_secret, policy={"allowedDNSNames": ["*.allowed.test"]}))
    cm.wait_ready("ClusterIssuer", issuer)
    name = unique("refused")
    cm.create(certificate(name, ns, issuer_name=issuer, dnsNames=["web.later.test"]))
    cm.wait_condition("Certificate", name, ns, "Ready", "False", reason="PolicyViolation")
    cm.patch(
        "ClusterIssuer", issuer, None, {"spec": {"policy": {"allowedDNSNames": ["*.allowed.test", "*.later.test"]}}}
    )
    cm.wait_ready("Certificate", name, ns)


def test_one_request_per_revision_after_a_crash_left_one_unsigned(cm: Certmint, ca_issuer: str, ns: str) -> None:
    """A crash between creating a revision's request and storing its certificate leaves an unsigned request; the
    next issuance of that revision replaces it instead of making a second request with the same revision."""
    name = unique("crashed")
    cm.create(certificate(name, ns, issuer_name=ca_issuer))
    obj = cm.wait_ready("Certificate", name, ns)
    uid, revision = obj["metadata"]["uid"], obj["status"]["revision"]
    (first,) = cm.requests_owned_by(uid, ns)
    # What a SIGKILL right after the create leaves behind: the next revision's request, ours, without status.
    stale = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CertificateRequest",
        "metadata": {
            "name": f"{name}-{revision + 1}",
            "namespace": ns,
            "labels": {"certmint.dev/certificate-name": name},
            "annotations": {"certmint.dev/certificate-revision": str(revision + 1)},
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "Certificate",
                    "name": name,
                    "uid": uid,
                    "controller": True,
                }
            ],
        },
        "spec": first["spec"],
    }
    stale_uid = cm.create(stale)["metadata"]["uid"]
    cm.core.delete_namespaced_secret(f"{name}-tls", ns)  # the next issuance: revision + 1
    wait_for(lambda: cm.get("Certificate", name, ns)["status"].get("revision") == revision + 1, "revision + 1")
    requests = cm.requests_owned_by(uid, ns)
    revisions = [r["metadata"]["annotations"]["certmint.dev/certificate-revision"] for r in requests]
    assert sorted(revisions) == sorted({str(revision), str(revision + 1)}), revisions  # each revision once
    assert all((r.get("status") or {}).get("certificate") for r in requests), "every request is signed"
    assert stale_uid not in {r["metadata"]["uid"] for r in requests}


def test_a_failing_secret_write_signs_one_request_not_one_per_retry(cm: Certmint, ca_issuer: str, ns: str) -> None:
    # Annotations the CRD accepts (64 KiB each) but a Secret may not carry (256 KiB in all): every write is refused.
    name = unique("toobig")
    huge = {f"example.com/blob-{i}": "x" * 60_000 for i in range(5)}
    cm.create(certificate(name, ns, issuer_name=ca_issuer, duration="10m", secretTemplate={"annotations": huge}))
    uid = cm.get("Certificate", name, ns)["metadata"]["uid"]

    def failed_often() -> dict[str, Any] | None:
        status = cm.get("Certificate", name, ns).get("status") or {}
        return status if (status.get("failedIssuanceAttempts") or 0) >= 4 else None

    status = wait_for(failed_often, "four failed Secret writes", timeout=60)
    issuing = next(c for c in status["conditions"] if c["type"] == "Issuing")
    assert issuing["reason"] == "SecretWriteFailed"
    assert "spec.secretTemplate" in issuing["message"]
    assert len(cm.requests_owned_by(uid, ns)) == 1
    assert cm.secret(f"{name}-tls", ns) is None
    # Fixed by the user: issued, and still one request for the revision (the unstored one was replaced).
    cm.patch("Certificate", name, ns, {"spec": {"secretTemplate": None}})
    status = cm.wait_ready("Certificate", name, ns)["status"]
    stored = base64.b64decode(cm.core.read_namespaced_secret(f"{name}-tls", ns).data["tls.crt"])
    assert serial_hex(leaf({"tls.crt": stored})) == status["serialNumber"]
    (request,) = cm.requests_owned_by(uid, ns)
    assert request["status"]["certificate"].startswith("-----BEGIN CERTIFICATE-----")
