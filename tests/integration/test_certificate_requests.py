"""CertificateRequest as a public API: a workload keeps its key and sends only a CSR."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client

from tests.controlplane.operator_process import OperatorProcess
from tests.integration.builders import Certmint, ca_chain, resource, unique
from tests.integration.conftest import OPERATOR_NAMESPACE

pytestmark = pytest.mark.integration


def _csr(uri: str) -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "workload")]))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(serialization.Encoding.PEM).decode()


def _request(name: str, ns: str, issuer: str, pem: str) -> dict[str, object]:
    spec = {"request": pem, "issuerRef": {"name": issuer, "kind": "ClusterIssuer"}, "duration": "1h"}
    return resource("CertificateRequest", name, spec, ns)


def test_workload_csr_is_signed_or_denied_by_policy(api: client.ApiClient, operator: OperatorProcess) -> None:
    cm = Certmint(api)
    ns = cm.namespace(unique("csr"))
    root = unique("csr-root")
    policy = {"allowedURIs": ["spiffe://cluster.local/ns/{namespace}/sa/*"]}
    ca_chain(cm, root, OPERATOR_NAMESPACE, policy=policy, root_spec={"commonName": root, "isCA": True})

    key, pem = _csr(f"spiffe://cluster.local/ns/{ns}/sa/worker")
    cm.create(_request("own", ns, root, pem))
    obj = cm.wait_ready("CertificateRequest", "own", ns)
    assert cm.condition("CertificateRequest", "own", ns, "Approved")["status"] == "True"  # type: ignore[index]
    cert = x509.load_pem_x509_certificates(obj["status"]["certificate"].encode())[0]
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(obj["status"]["ca"].encode()))

    # cert-manager's manifests carry the CSR as base64 of the PEM (issue 17): signed the same way.
    key2, pem2 = _csr(f"spiffe://cluster.local/ns/{ns}/sa/worker")
    cm.create(_request("own-base64", ns, root, base64.b64encode(pem2.encode()).decode()))
    obj = cm.wait_ready("CertificateRequest", "own-base64", ns)
    cert = x509.load_pem_x509_certificates(obj["status"]["certificate"].encode())[0]
    assert cert.public_key().public_numbers() == key2.public_key().public_numbers()  # type: ignore[union-attr]

    _, foreign = _csr("spiffe://cluster.local/ns/someone-else/sa/worker")
    cm.create(_request("foreign", ns, root, foreign))
    denied = cm.wait_condition("CertificateRequest", "foreign", ns, "Denied", "True")
    assert "someone-else" in denied["message"]
    assert "certificate" not in cm.get("CertificateRequest", "foreign", ns).get("status", {})

    cm.create(
        _request(
            "garbage",
            ns,
            root,
            "-----BEGIN CERTIFICATE REQUEST-----\nbm9wZQ==\n-----END CERTIFICATE REQUEST-----\n",
        )
    )
    invalid = cm.wait_condition("CertificateRequest", "garbage", ns, "InvalidRequest", "True")
    assert "spec.request" in invalid["message"]


def _raw_csr(subject: list[tuple[x509.ObjectIdentifier, str]], dns_names: tuple[str, ...] = ()) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(oid, value) for oid, value in subject])
    )
    if dns_names:
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


ISOLATED_POLICY = {
    "allowedDNSNames": ["*.{namespace}.svc", "*.{namespace}.svc.cluster.local"],
    "allowedIPRanges": [],
    "allowedURIs": ["spiffe://cluster.local/ns/{namespace}/sa/*"],
    "allowedEmailAddresses": [],
    "allowedSubject": {},
}


def test_only_what_the_policy_judged_is_signed(api: client.ApiClient, operator: OperatorProcess) -> None:
    """Issue 11, items 2 and 3: a tenant's CSR cannot carry another namespace's name past the policy."""
    cm = Certmint(api)
    ns = cm.namespace(unique("judged"))
    root = unique("judged-root")
    ca_chain(cm, root, OPERATOR_NAMESPACE, policy=ISOLATED_POLICY, root_spec={"commonName": root, "isCA": True})

    cn, org = NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME
    attacks = {
        "two-cns": (_raw_csr([(cn, "web.other.svc"), (cn, "nodots")]), "more than one common name"),
        "trailing-dot": (_raw_csr([(cn, "api.other.svc.")]), "trailing dot"),
        "no-dots": (_raw_csr([(cn, "nodots")]), 'common name "nodots" is not allowed'),
        "masters": (_raw_csr([(cn, "admin"), (org, "system:masters")]), "system:masters"),
        "other-namespace": (_raw_csr([(cn, f"web.{ns}.svc")], ("web.other.svc.cluster.local",)), "web.other.svc"),
    }
    for name, (pem, _) in attacks.items():
        cm.create(_request(name, ns, root, pem))
    for name, (_, why) in attacks.items():
        denied = cm.wait_condition("CertificateRequest", name, ns, "Denied", "True")
        assert why in denied["message"], (name, denied)
        assert "certificate" not in cm.get("CertificateRequest", name, ns).get("status", {})

    own = _raw_csr([(cn, f"web.{ns}.svc")], (f"web.{ns}.svc", f"web.{ns}.svc.cluster.local"))
    cm.create(_request("own", ns, root, own))
    signed = cm.wait_ready("CertificateRequest", "own", ns)
    cert = x509.load_pem_x509_certificates(signed["status"]["certificate"].encode())[0]
    assert cert.subject.rfc4514_string() == f"CN=web.{ns}.svc"


def test_a_shared_ca_without_isolation_says_so(api: client.ApiClient, operator: OperatorProcess) -> None:
    """Issue 11, item 3: the documented footgun is visible in the ClusterIssuer's status."""
    cm = Certmint(api)
    root = unique("unrestricted")
    policy = {"allowedURIs": ["spiffe://cluster.local/ns/{namespace}/sa/*"]}
    ca_chain(cm, root, OPERATOR_NAMESPACE, policy=policy, root_spec={"commonName": root, "isCA": True})
    warning = cm.wait_condition("ClusterIssuer", root, None, "Unrestricted", "True", reason="NoNamespaceIsolation")
    assert "DNS name, IP address, email address and subject attribute" in warning["message"]
    assert cm.condition("ClusterIssuer", root, None, "Ready")["status"] == "True"  # type: ignore[index]

    cm.patch("ClusterIssuer", root, None, {"spec": {"policy": ISOLATED_POLICY}})
    cm.wait_condition("ClusterIssuer", root, None, "Unrestricted", "False", reason="NamesRestricted")
