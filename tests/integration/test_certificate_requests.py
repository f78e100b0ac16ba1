"""CertificateRequest as a public API: a workload keeps its key and sends only a CSR."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client

from tests.controlplane.operator_process import OperatorProcess
from tests.integration.builders import API_VERSION, Certmint, certificate, cluster_issuer, unique
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
    return {
        "apiVersion": API_VERSION,
        "kind": "CertificateRequest",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"request": pem, "issuerRef": {"name": issuer, "kind": "ClusterIssuer"}, "duration": "1h"},
    }


def test_workload_csr_is_signed_or_denied_by_policy(api: client.ApiClient, operator: OperatorProcess) -> None:
    cm = Certmint(api)
    ns = cm.namespace(unique("csr"))
    root = unique("csr-root")
    cm.create(cluster_issuer(f"{root}-ss"))
    cm.create(certificate(root, OPERATOR_NAMESPACE, issuer_name=f"{root}-ss", commonName=root, isCA=True))
    cm.wait_ready("Certificate", root, OPERATOR_NAMESPACE)
    cm.create(
        cluster_issuer(
            root,
            ca_secret=f"{root}-tls",
            policy={"allowedURIs": ["spiffe://cluster.local/ns/{namespace}/sa/*"]},
        )
    )
    cm.wait_ready("ClusterIssuer", root)

    key, pem = _csr(f"spiffe://cluster.local/ns/{ns}/sa/worker")
    cm.create(_request("own", ns, root, pem))
    obj = cm.wait_ready("CertificateRequest", "own", ns)
    assert cm.condition("CertificateRequest", "own", ns, "Approved")["status"] == "True"  # type: ignore[index]
    cert = x509.load_pem_x509_certificates(obj["status"]["certificate"].encode())[0]
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(obj["status"]["ca"].encode()))

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
