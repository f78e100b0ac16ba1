"""The Issuer/ClusterIssuer reconcile: is the CA usable? Its status (Ready, CA, chain, trust anchor), and its effect
on the Certificates that use it."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from certmint.controller.state import Kind
from certmint.pki.signing import fingerprint_sha256
from tests.controller.conftest import CA_ISSUER, SELF_SIGNED
from tests.controller.harness import NAMESPACE, OPERATOR_NAMESPACE, Harness, ca_secret, condition
from tests.integration.builders import certificate, cluster_issuer, issuer
from tests.unit.builders import NOW, CAPair, build_ca


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def ready(obj: dict[str, Any]) -> tuple[str, str]:
    c = condition(obj, "Ready")
    return (c.get("status", ""), c.get("reason", ""))


async def test_a_self_signed_issuer_is_ready_and_has_no_ca(harness: Harness) -> None:
    obj = harness.get("ClusterIssuer", None, SELF_SIGNED)
    assert ready(obj) == ("True", "SelfSigned")
    assert obj["status"]["observedGeneration"] == 1
    assert not any(obj["status"].get(k) for k in ("caSubject", "caFingerprint", "caChain", "trustAnchor"))


async def test_a_ca_issuer_publishes_its_ca_chain_and_trust_anchor(harness: Harness, root_ca: CAPair) -> None:
    obj = harness.get("ClusterIssuer", None, CA_ISSUER)
    assert ready(obj) == ("True", "KeyPairVerified")
    status = obj["status"]
    subject = root_ca.cert.subject.rfc4514_string()
    assert status["caSubject"] == subject
    assert status["caFingerprint"] == fingerprint_sha256(root_ca.cert)
    assert status["caNotAfter"] == "2031-01-01T12:00:00Z"
    assert [c["subject"] for c in status["caChain"]] == [subject]
    assert status["trustAnchor"] == {"subject": subject, "fingerprint": status["caFingerprint"], "selfSigned": True}


async def test_an_intermediate_ca_chain_up_to_its_root(harness: Harness, root_ca: CAPair) -> None:
    intermediate = build_ca("Controller Tier Intermediate CA", parent=root_ca)
    harness.create(ca_secret("intermediate-key-pair", OPERATOR_NAMESPACE, intermediate))
    harness.create(cluster_issuer("intermediate", ca_secret="intermediate-key-pair"))
    await harness.settle()
    status = harness.get("ClusterIssuer", None, "intermediate")["status"]
    assert status["trustAnchor"]["subject"] == intermediate.cert.subject.rfc4514_string()
    assert status["trustAnchor"]["selfSigned"] is False  # no root known: the intermediate is all there is
    harness.patch("Secret", OPERATOR_NAMESPACE, "intermediate-key-pair", {"data": {"ca.crt": b64(root_ca.cert_pem)}})
    await harness.advance(harness.settings.issuer_recheck_seconds)
    status = harness.get("ClusterIssuer", None, "intermediate")["status"]
    assert [c["subject"] for c in status["caChain"]] == [
        intermediate.cert.subject.rfc4514_string(),
        root_ca.cert.subject.rfc4514_string(),
    ]
    assert status["trustAnchor"]["fingerprint"] == fingerprint_sha256(root_ca.cert)
    assert status["trustAnchor"]["selfSigned"] is True


@dataclass(frozen=True)
class Broken:
    id: str
    secret: Callable[[CAPair], dict[str, Any] | None]  # the CA Secret's data (None: no Secret)
    reason: str
    says: str


def _data(**data: bytes) -> dict[str, Any]:
    return {k.replace("_", "."): b64(v) for k, v in data.items()}


def _pair(ca: CAPair) -> dict[str, Any]:
    return _data(tls_crt=ca.cert_pem, tls_key=ca.key_pem)


BROKEN = [
    Broken(
        "no Secret", lambda ca: None, "CASecretNotFound", "ClusterIssuer CA Secrets live in the operator's namespace"
    ),
    Broken("no tls.key", lambda ca: _data(tls_crt=ca.cert_pem), "CASecretInvalid", "has no tls.key"),
    Broken("no key pair", lambda ca: {}, "CASecretInvalid", "has no tls.crt or tls.key"),
    Broken("garbage", lambda ca: _data(tls_crt=b"x", tls_key=ca.key_pem), "CAUnparseable", "cannot be parsed"),
    Broken(
        "key of another CA",
        lambda ca: _data(tls_crt=ca.cert_pem, tls_key=build_ca("Other").key_pem),
        "CAKeyMismatch",
        "does not belong to CA certificate",
    ),
    Broken(
        "not a CA",
        lambda ca: _pair(build_ca("Leaf", ca=False)),
        "CANotACA",
        "is not a CA",
    ),
    Broken(
        "expired",
        lambda ca: _pair(build_ca("Old", not_before=NOW - timedelta(days=30), not_after=NOW - timedelta(days=1))),
        "CAExpired",
        "expired at",
    ),
]


@pytest.mark.parametrize("broken", BROKEN, ids=[b.id for b in BROKEN])
async def test_a_ca_issuer_that_cannot_sign_says_why_and_becomes_ready_when_repaired(
    harness: Harness, root_ca: CAPair, broken: Broken
) -> None:
    data = broken.secret(root_ca)
    if data is not None:
        body = ca_secret("broken-key-pair", OPERATOR_NAMESPACE, root_ca)
        body["data"] = data
        harness.create(body)
    harness.create(cluster_issuer("broken", ca_secret="broken-key-pair"))
    await harness.settle()
    obj = harness.get("ClusterIssuer", None, "broken")
    assert ready(obj) == ("False", broken.reason)
    assert broken.says in condition(obj, "Ready")["message"]
    assert obj["status"].get("caSubject") is None

    await harness.issued("web", issuer=CA_ISSUER)  # another issuer is not affected
    harness.create(
        {**harness.get("Certificate", NAMESPACE, "web"), "metadata": {"name": "uses-broken", "namespace": NAMESPACE}}
    )
    harness.patch(
        "Certificate", NAMESPACE, "uses-broken", {"spec": {"issuerRef": {"name": "broken"}, "secretName": "b"}}
    )
    await harness.settle()
    assert ready(harness.certificate("uses-broken")) == ("False", "IssuerNotReady")

    # Repaired: the CA Secret is a person's (not watched), so the issuer's next re-check finds it.
    repaired = ca_secret("broken-key-pair", OPERATOR_NAMESPACE, root_ca)
    if data is None:
        harness.create(repaired)
    else:
        harness.patch("Secret", OPERATOR_NAMESPACE, "broken-key-pair", {"data": repaired["data"]})
    await harness.advance(harness.settings.issuer_recheck_seconds)
    assert ready(harness.get("ClusterIssuer", None, "broken")) == ("True", "KeyPairVerified")
    assert ready(harness.certificate("uses-broken")) == ("True", "Issued")  # woken by the issuer, not its own timer


async def test_a_namespaced_issuer_reads_its_ca_secret_in_its_own_namespace_only(
    harness: Harness, root_ca: CAPair
) -> None:
    harness.create(ca_secret("team-ca", NAMESPACE, root_ca))
    harness.create(issuer("team", NAMESPACE, ca_secret="team-ca"))
    harness.create(cluster_issuer("cluster-team", ca_secret="team-ca"))  # a ClusterIssuer looks in certmint's namespace
    await harness.settle()
    assert ready(harness.get("Issuer", NAMESPACE, "team")) == ("True", "KeyPairVerified")
    assert ready(harness.get("ClusterIssuer", None, "cluster-team")) == ("False", "CASecretNotFound")
    status = await harness.issued("web", issuer="team", issuerRef={"name": "team", "kind": "Issuer"})
    assert status["revision"] == 1
    assert (harness.secret("web-tls") or {})["metadata"]["annotations"]["certmint.dev/issuer-kind"] == "Issuer"


async def test_a_deleted_issuer_makes_its_certificates_say_so_at_their_next_issuance(harness: Harness) -> None:
    first = await harness.issued("web", issuer=SELF_SIGNED)
    harness.delete("ClusterIssuer", None, SELF_SIGNED)
    await harness.settle()
    cert = harness.certificate("web")
    assert cert["status"]["serialNumber"] == first["serialNumber"]  # the certificate in the Secret is still good
    harness.patch("Certificate", NAMESPACE, "web", {"spec": {"dnsNames": ["api.apps.svc"]}})
    await harness.settle()
    assert ready(harness.certificate("web")) == ("False", "IssuerNotFound")


async def test_an_idle_issuer_recheck_writes_nothing(harness: Harness) -> None:
    mark = harness.mark()
    for _ in range(3):
        await harness.advance(harness.settings.issuer_recheck_seconds)
    assert harness.since(mark) == {("get", "secrets"): 3}  # the CA Secret, once per re-check; no status write


async def test_a_certificate_whose_issuer_the_watch_has_not_delivered_yet_waits_instead_of_failing(
    harness: Harness,
) -> None:
    """Applied together (kubectl apply -f, GitOps): the Certificate's event may come before its issuer's. The
    issuer exists in the API, so the Certificate waits for its first check: no IssuerNotFound, no Warning."""
    harness.create(cluster_issuer("late"))
    await harness.settle()
    key = (Kind.CLUSTER_ISSUER, "", "late")
    late = harness.op.state.issuers.pop(key)  # as if its watch event had not arrived yet
    harness.create(certificate("web", NAMESPACE, issuer_name="late"))
    await harness.settle()
    cert = harness.certificate("web")
    assert "IssuerNotFound" not in str(cert.get("status")) and harness.event_reasons("web") == []
    harness.op.observe_issuer(Kind.CLUSTER_ISSUER, "MODIFIED", harness.get("ClusterIssuer", None, "late"))
    await harness.settle()
    assert condition(harness.certificate("web"), "Ready")["status"] == "True"
    assert late.uid == harness.op.state.issuers[key].uid
