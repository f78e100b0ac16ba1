"""Under an intermediate CA, ca.crt is the root and tls.crt the leaf plus the intermediates (issue 12, item 1).

Whichever way the intermediate's Secret was made — issued by certmint (its tls.crt has no root, its ca.crt
is the root) or by hand with the root only in ca.crt — a leaf's Secret must satisfy verifiers that need a
self-signed trust anchor: ``openssl verify -x509_strict`` and a Python ``ssl`` mutual-TLS handshake, each
trusting exactly the Secret's ca.crt, as the README tells users to. The issuer's status shows the chain.
"""

from __future__ import annotations

import base64
import datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from kubernetes import client

from tests.integration.builders import Certmint, ca_chain, certificate, cluster_issuer, unique
from tests.integration.conftest import OPERATOR_NAMESPACE
from tests.integration.kubeutil import wait_for
from tests.verifiers.verify import TLSFiles, handshake, openssl_verify
from tests.x509util import certificate_builder, common_name

pytestmark = pytest.mark.integration


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.PEM)


def _link(cert: x509.Certificate) -> dict[str, str]:
    """One entry of status.caChain, computed independently of the operator."""
    return {
        "subject": cert.subject.rfc4514_string(),
        "fingerprint": cert.fingerprint(hashes.SHA256()).hex(":").upper(),
        "notAfter": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _status_shows(
    cm: Certmint, issuer: str, chain: list[x509.Certificate], self_signed: bool, timeout: float = 30
) -> dict[str, Any]:
    """Wait until the ClusterIssuer's status lists ``chain`` (CA first) and names its top as the anchor."""
    top = _link(chain[-1])
    wanted_anchor = {"subject": top["subject"], "fingerprint": top["fingerprint"], "selfSigned": self_signed}

    def shown() -> dict[str, Any] | None:
        status = cm.get("ClusterIssuer", issuer).get("status") or {}
        if status.get("caChain") == [_link(c) for c in chain] and status.get("trustAnchor") == wanted_anchor:
            return dict(status)
        return None

    subjects = [c.subject.rfc4514_string() for c in chain]
    try:
        status = wait_for(shown, f"ClusterIssuer {issuer} showing the chain {subjects}", timeout=timeout)
    except AssertionError as e:
        raise AssertionError(f"{e}; status now: {cm.get('ClusterIssuer', issuer).get('status')}") from None
    assert status is not None
    return status


def _leaves_verify_against_the_root(
    cm: Certmint, issuer: str, intermediate: x509.Certificate, root: x509.Certificate, tmp_path: Path
) -> None:
    """A server and a client Certificate under ``issuer``: ca.crt is the root, tls.crt leaf + intermediate,
    and both openssl and a Python ssl mTLS handshake accept them trusting exactly ca.crt."""
    ns = cm.namespace(unique("chain"))
    cm.create(certificate("server", ns, issuer_name=issuer, dnsNames=[f"server.{ns}.svc"], duration="24h"))
    cm.create(certificate("client", ns, issuer_name=issuer, uris=[f"spiffe://cluster.local/ns/{ns}/sa/client"]))
    files = {}
    for name in ("server", "client"):
        cm.wait_ready("Certificate", name, ns)
        data = cm.secret_data(f"{name}-tls", ns)
        served = x509.load_pem_x509_certificates(data["tls.crt"])
        assert data["ca.crt"] == _pem(root), f"{name}: ca.crt is {x509.load_pem_x509_certificate(data['ca.crt'])}"
        assert served[1:] == [intermediate], f"{name}: tls.crt after the leaf is {served[1:]}"
        served[0].verify_directly_issued_by(intermediate)
        purpose = "sslserver" if name == "server" else "sslclient"
        verdict = openssl_verify(data["tls.crt"], data["ca.crt"], purpose)
        assert verdict.ok, f"{name}: openssl verify -x509_strict -purpose {purpose}: {verdict.detail}"
        files[name] = TLSFiles.write(tmp_path, name, data)
    outcome = handshake(files["server"], files["client"], f"server.{ns}.svc")
    assert outcome.ok, outcome.detail


def test_certmint_made_intermediate(cm: Certmint, tmp_path: Path) -> None:
    root_name = ca_chain(cm, unique("root"), OPERATOR_NAMESPACE)
    cm.patch("ClusterIssuer", root_name, None, {"spec": {"policy": {"allowCA": True}}})
    wait_for(
        lambda: (cm.get("ClusterIssuer", root_name).get("status") or {}).get("observedGeneration") == 2,
        f"ClusterIssuer {root_name} observing policy.allowCA",
    )
    (root,) = x509.load_pem_x509_certificates(cm.secret_data(f"{root_name}-tls", OPERATOR_NAMESPACE)["tls.crt"])
    _status_shows(cm, root_name, [root], self_signed=True)

    int_name = unique("int")
    cm.create(certificate(int_name, OPERATOR_NAMESPACE, issuer_name=root_name, commonName=f"{int_name} CA", isCA=True))
    cm.wait_ready("Certificate", int_name, OPERATOR_NAMESPACE)
    int_secret = cm.secret_data(f"{int_name}-tls", OPERATOR_NAMESPACE)
    (intermediate,) = x509.load_pem_x509_certificates(int_secret["tls.crt"])  # certmint leaves the root out
    assert int_secret["ca.crt"] == _pem(root)

    cm.create(cluster_issuer(int_name, ca_secret=f"{int_name}-tls"))
    cm.wait_ready("ClusterIssuer", int_name)
    _status_shows(cm, int_name, [intermediate, root], self_signed=True)
    _leaves_verify_against_the_root(cm, int_name, intermediate, root, tmp_path)


def _hand_made(name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None) -> Any:
    """A CA made with cryptography alone, as a person would with openssl: signed by ``issuer`` or by itself."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    parent_cert, parent_key = issuer if issuer else (None, key)
    not_before, not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=2)
    builder = (
        certificate_builder(
            common_name(name),
            key.public_key(),
            not_before,
            not_after,
            issuer=parent_cert.subject if parent_cert else None,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(parent_key.public_key()), critical=False)
    )
    return builder.sign(parent_key, hashes.SHA256()), key


def _ca_secret(cm: Certmint, name: str, cert: x509.Certificate, key: Any, ca_crt: bytes | None) -> None:
    data = {
        "tls.crt": _pem(cert),
        "tls.key": key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()),
    }
    if ca_crt is not None:
        data["ca.crt"] = ca_crt
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name=name),
        type="kubernetes.io/tls",
        data={k: base64.b64encode(v).decode() for k, v in data.items()},
    )
    cm.core.create_namespaced_secret(OPERATOR_NAMESPACE, body)


def _hand_made_issuer(
    cm: Certmint, name: str, *, root_in_ca_crt: bool = False, ca_crt: bytes | None = None
) -> tuple[x509.Certificate, x509.Certificate]:
    """A hand-made root and intermediate; the ClusterIssuer ``name`` signs with the intermediate (Secret
    ``<name>-ca``, whose ca.crt holds the root if ``root_in_ca_crt``, else ``ca_crt``). Returns (root, intermediate).
    """
    root, root_key = _hand_made(unique("hand-root"))
    intermediate, int_key = _hand_made(unique("hand-int"), (root, root_key))
    _ca_secret(cm, f"{name}-ca", intermediate, int_key, ca_crt=_pem(root) if root_in_ca_crt else ca_crt)
    cm.create(cluster_issuer(name, ca_secret=f"{name}-ca"))
    return root, intermediate


def test_hand_made_intermediate_with_the_root_only_in_ca_crt(cm: Certmint, tmp_path: Path) -> None:
    name = unique("hand-int")
    root, intermediate = _hand_made_issuer(cm, name, root_in_ca_crt=True)
    cm.wait_ready("ClusterIssuer", name)
    _status_shows(cm, name, [intermediate, root], self_signed=True)
    _leaves_verify_against_the_root(cm, name, intermediate, root, tmp_path)


def test_a_chain_without_its_root_is_signed_with_but_the_issuer_says_what_to_add(cm: Certmint) -> None:
    name = unique("rootless")
    _, intermediate = _hand_made_issuer(cm, name)
    ready = cm.wait_condition("ClusterIssuer", name, None, "Ready", "True")
    top = intermediate.subject.rfc4514_string()
    assert f'the chain ends at "{top}", which is not self-signed' in ready["message"]
    assert "to the CA Secret's ca.crt" in ready["message"]
    _status_shows(cm, name, [intermediate], self_signed=False)


def test_a_ca_crt_outside_the_chain_is_refused(cm: Certmint) -> None:
    stranger, _ = _hand_made(unique("stranger-root"))
    name = unique("wrong-anchor")
    _hand_made_issuer(cm, name, ca_crt=_pem(stranger))
    refused = cm.wait_condition("ClusterIssuer", name, None, "Ready", "False", reason="CAChainInvalid")
    assert f'ca.crt holds "{stranger.subject.rfc4514_string()}", which is not in the chain' in refused["message"]
    status = cm.get("ClusterIssuer", name).get("status") or {}
    assert status.get("caChain") is None and status.get("trustAnchor") is None


def test_a_root_added_to_the_ca_secret_later_reaches_every_ca_crt_without_reissuing(cm: Certmint) -> None:
    name = unique("late-root")
    root, intermediate = _hand_made_issuer(cm, name)
    ns = cm.namespace(unique("late"))
    cm.create(certificate("server", ns, issuer_name=name, dnsNames=[f"server.{ns}.svc"], duration="24h"))
    cm.wait_ready("Certificate", "server", ns)
    before = cm.secret_data("server-tls", ns)
    assert before["ca.crt"] == _pem(intermediate)  # the top of what the issuer knows, and it says so

    cm.core.patch_namespaced_secret(
        f"{name}-ca", OPERATOR_NAMESPACE, {"data": {"ca.crt": base64.b64encode(_pem(root)).decode()}}
    )
    # A hand-made CA Secret carries no certmint label, so the issuer sees the change at its periodic recheck
    # (CERTMINT_ISSUER_RECHECK_SECONDS, 60 s by default).
    _status_shows(cm, name, [intermediate, root], self_signed=True, timeout=90)
    after = wait_for(
        lambda: (data := cm.secret_data("server-tls", ns))["ca.crt"] == _pem(root) and data,
        "the Certificate's ca.crt rewritten to the root",
        timeout=30,
    )
    assert after["tls.crt"] == before["tls.crt"] and after["tls.key"] == before["tls.key"]  # not re-issued
    verdict = openssl_verify(after["tls.crt"], after["ca.crt"], "sslserver")
    assert verdict.ok, verdict.detail
