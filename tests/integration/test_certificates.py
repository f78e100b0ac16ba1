"""The operator's lifecycle through the real API: issue, store, repair, re-issue, renew, refuse, recover."""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

import jks
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.controlplane.cluster import ControlPlane
from tests.controlplane.operator_process import OperatorProcess
from tests.integration.builders import Certmint, certificate, cluster_issuer, leaf, serial_hex, unique
from tests.integration.conftest import OPERATOR_NAMESPACE, api_for
from tests.integration.kubeutil import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ns(cm: Certmint) -> str:
    return cm.namespace(unique("team"))


def test_ca_issuer_status_describes_its_ca(cm: Certmint, ca_issuer: str) -> None:
    status = cm.get("ClusterIssuer", ca_issuer)["status"]
    ca = leaf(cm.secret_data(f"{ca_issuer}-tls", OPERATOR_NAMESPACE))
    assert status["caSubject"] == ca.subject.rfc4514_string()
    assert status["caNotAfter"] == ca.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert status["caFingerprint"]


def test_issues_a_certificate_matching_the_spec(cm: Certmint, ca_issuer: str, ns: str) -> None:
    name = unique("web")
    cm.create(
        certificate(
            name,
            ns,
            issuer_name=ca_issuer,
            commonName="web",
            dnsNames=["web.example.test", "web"],
            ipAddresses=["10.1.2.3"],
            uris=[f"spiffe://cluster.local/ns/{ns}/sa/web"],
            duration="2h",
            usages=["digital signature", "server auth"],
            secretTemplate={"labels": {"team": "a"}, "annotations": {"owner": "web-team"}},
        )
    )
    obj = cm.wait_ready("Certificate", name, ns)
    data = cm.secret_data(f"{name}-tls", ns)
    assert set(data) == {"tls.crt", "tls.key", "ca.crt"}
    cert = leaf(data)
    ca_cert = x509.load_pem_x509_certificate(data["ca.crt"])
    cert.verify_directly_issued_by(ca_cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == ["web", "web.example.test"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.1.2.3")]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://cluster.local/ns/{ns}/sa/web"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey) and cert.public_key().curve.key_size == 256
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 2 * 3600 <= lifetime.total_seconds() <= 2 * 3600 + 120  # backdated by at most a minute or two
    key = serialization.load_pem_private_key(data["tls.key"], None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
    assert data["tls.key"].startswith(b"-----BEGIN EC PRIVATE KEY-----")  # PKCS1-style default encoding

    status = obj["status"]
    assert status["serialNumber"] == serial_hex(cert)
    assert status["notAfter"] == cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert status["revision"] == 1
    assert status["renewalTime"] < status["notAfter"]
    secret = cm.secret(f"{name}-tls", ns)
    assert secret is not None and secret.type == "kubernetes.io/tls"
    assert secret.metadata.labels["certmint.dev/certificate-name"] == name
    assert secret.metadata.labels["team"] == "a"
    assert secret.metadata.annotations["owner"] == "web-team"
    assert secret.metadata.annotations["certmint.dev/serial-number"] == serial_hex(cert)
    assert secret.metadata.annotations["certmint.dev/issuer-name"] == ca_issuer

    requests = cm.requests_of(name, ns)
    assert len(requests) == 1
    request_status = {c["type"]: c["status"] for c in requests[0]["status"]["conditions"]}
    assert request_status == {"Approved": "True", "Ready": "True"}


def _issued(cm: Certmint, ca_issuer: str, ns: str, **spec: Any) -> tuple[str, str]:
    name = unique("svc")
    cm.create(certificate(name, ns, issuer_name=ca_issuer, **spec))
    obj = cm.wait_ready("Certificate", name, ns)
    return name, obj["status"]["serialNumber"]


def _serial_changed(cm: Certmint, name: str, ns: str, old: str) -> str | None:
    obj = cm.get("Certificate", name, ns)
    serial = obj.get("status", {}).get("serialNumber")
    ready = [c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Ready" and c["status"] == "True"]
    return serial if serial and serial != old and ready else None


def test_deleted_secret_is_reissued(cm: Certmint, ca_issuer: str, ns: str) -> None:
    name, serial = _issued(cm, ca_issuer, ns)
    cm.core.delete_namespaced_secret(f"{name}-tls", ns)
    new = wait_for(lambda: _serial_changed(cm, name, ns, serial), "re-issuance after Secret deletion")
    assert serial_hex(leaf(cm.secret_data(f"{name}-tls", ns))) == new


def test_tampered_key_is_reissued(cm: Certmint, ca_issuer: str, ns: str) -> None:
    name, serial = _issued(cm, ca_issuer, ns)
    stranger = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cm.core.patch_namespaced_secret(f"{name}-tls", ns, {"data": {"tls.key": base64.b64encode(stranger).decode()}})
    wait_for(lambda: _serial_changed(cm, name, ns, serial), "re-issuance after the key was replaced")
    data = cm.secret_data(f"{name}-tls", ns)
    key = serialization.load_pem_private_key(data["tls.key"], None)
    assert key.public_key().public_numbers() == leaf(data).public_key().public_numbers()  # type: ignore[union-attr]


def test_metadata_drift_is_repaired_without_reissuing(cm: Certmint, ca_issuer: str, ns: str) -> None:
    name, serial = _issued(cm, ca_issuer, ns, secretTemplate={"labels": {"tier": "gold"}})
    cm.core.patch_namespaced_secret(
        f"{name}-tls",
        ns,
        {"metadata": {"labels": {"tier": "bronze"}, "annotations": {"certmint.dev/serial-number": None}}},
    )

    def repaired() -> bool:
        s = cm.secret(f"{name}-tls", ns)
        return bool(
            s
            and s.metadata.labels.get("tier") == "gold"
            and s.metadata.annotations.get("certmint.dev/serial-number") == serial
        )

    wait_for(repaired, "the Secret's label and annotation to be repaired")
    assert cm.get("Certificate", name, ns)["status"]["serialNumber"] == serial
    assert serial_hex(leaf(cm.secret_data(f"{name}-tls", ns))) == serial


def test_spec_change_reissues_exactly_once(cm: Certmint, ca_issuer: str, ns: str, operator: OperatorProcess) -> None:
    name, serial = _issued(cm, ca_issuer, ns)
    cm.patch("Certificate", name, ns, {"spec": {"dnsNames": [f"{name}.{ns}.svc", "extra.example.test"]}})
    wait_for(lambda: _serial_changed(cm, name, ns, serial), "re-issuance after the spec changed")
    cert = leaf(cm.secret_data(f"{name}-tls", ns))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "extra.example.test" in san.get_values_for_type(x509.DNSName)
    # Settle: the status write, the Secret event and the request events all came back; still revision 2.
    wait_for(lambda: operator.metrics().value("certmint_workqueue_depth") == 0, "an idle work queue")
    obj = cm.get("Certificate", name, ns)
    assert obj["status"]["revision"] == 2
    assert obj["status"]["serialNumber"] == serial_hex(cert)


def test_additional_output_formats_are_written_and_removed(cm: Certmint, ca_issuer: str, ns: str) -> None:
    """cert-manager's additionalOutputFormats through the real API: tls-combined.pem and key.der beside tls.key and
    tls.crt, and key.der gone (with a new certificate) once the spec no longer asks for it."""
    formats = [{"type": "CombinedPEM"}, {"type": "DER"}]
    name, serial = _issued(cm, ca_issuer, ns, additionalOutputFormats=formats)
    data = cm.secret_data(f"{name}-tls", ns)
    assert data["tls-combined.pem"] == data["tls.key"] + data["tls.crt"]
    der_key = serialization.load_der_private_key(data["key.der"], password=None)
    assert _public_key_der(der_key.public_key()) == _public_key_der(leaf(data).public_key())

    cm.patch("Certificate", name, ns, {"spec": {"additionalOutputFormats": [{"type": "CombinedPEM"}]}})
    wait_for(lambda: _serial_changed(cm, name, ns, serial), "re-issuance without key.der")
    data = cm.secret_data(f"{name}-tls", ns)
    assert "key.der" not in data
    assert data["tls-combined.pem"] == data["tls.key"] + data["tls.crt"]


def test_keystores_open_with_the_password_and_follow_a_renewal(cm: Certmint, ca_issuer: str, ns: str) -> None:
    """cert-manager's keystores through the real API: keystore.p12 (cryptography) and keystore.jks (pyjks) hold
    tls.key and tls.crt, and a renewal asked with certmint.dev/renew-request rewrites both for the new key."""
    password = "it's a secret"
    cm.core.create_namespaced_secret(
        ns, {"metadata": {"name": "keystore-pw"}, "data": {"pw": base64.b64encode(password.encode()).decode()}}
    )
    ref = {"name": "keystore-pw", "key": "pw"}
    keystores = {
        "pkcs12": {"create": True, "passwordSecretRef": ref},
        "jks": {"create": True, "passwordSecretRef": ref},
    }
    name, serial = _issued(cm, ca_issuer, ns, keystores=keystores)

    def check(data: dict[str, bytes]) -> None:
        mine = _public_key_der(serialization.load_pem_private_key(data["tls.key"], None).public_key())
        p12 = pkcs12.load_pkcs12(data["keystore.p12"], password.encode())
        assert p12.key is not None and p12.cert is not None
        assert _public_key_der(p12.key.public_key()) == mine
        assert p12.cert.certificate == leaf(data)
        entry = jks.KeyStore.loads(data["keystore.jks"], password).private_keys["certificate"]
        assert entry.cert_chain[0][1] == leaf(data).public_bytes(serialization.Encoding.DER)
        jks_key = serialization.load_der_private_key(entry.pkey_pkcs8, None)
        assert _public_key_der(jks_key.public_key()) == mine

    first = cm.secret_data(f"{name}-tls", ns)
    check(first)
    cm.patch("Certificate", name, ns, {"metadata": {"annotations": {"certmint.dev/renew-request": "now"}}})
    wait_for(lambda: _serial_changed(cm, name, ns, serial), "the renewal asked for")
    second = cm.secret_data(f"{name}-tls", ns)
    assert second["tls.key"] != first["tls.key"]
    check(second)


def _public_key_der(key: Any) -> bytes:
    der: bytes = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return der


def _key_pair(cm: Certmint, name: str, ns: str) -> tuple[bytes, bytes]:
    """(the certificate's public key, the public half of tls.key), both DER."""
    data = cm.secret_data(f"{name}-tls", ns)
    private = serialization.load_pem_private_key(data["tls.key"], password=None)
    return _public_key_der(leaf(data).public_key()), _public_key_der(private.public_key())


def _renewed_unread(operator: OperatorProcess, name: str, ns: str) -> int:
    """How often the operator renewed this Certificate without reading its Secret first (its debug log)."""
    return operator.log_path.read_text(errors="replace").count(f"Certificate {ns}/{name}: renewing; Secret unchanged")


def test_short_lived_certificate_is_renewed_while_we_watch(
    cm: Certmint, ca_issuer: str, ns: str, operator: OperatorProcess
) -> None:
    name, first = _issued(cm, ca_issuer, ns, duration="1m", renewBefore="45s")
    first_key = _key_pair(cm, name, ns)
    # Renewal at 15 s is raised to the floor between two issuances: 30 s (CERTMINT_MIN_RENEWAL_INTERVAL_SECONDS).
    second = wait_for(lambda: _serial_changed(cm, name, ns, first), "the first renewal", timeout=45)
    third = wait_for(lambda: _serial_changed(cm, name, ns, second), "the second renewal", timeout=45)
    obj = cm.get("Certificate", name, ns)
    assert obj["status"]["serialNumber"] == third
    assert obj["status"]["revision"] == 3
    ready = cm.condition("Certificate", name, ns, "Ready")
    assert ready is not None and ready["reason"] == "Renewed"
    certificate_key, private_key = _key_pair(cm, name, ns)
    assert certificate_key == private_key  # key and certificate were written together
    assert certificate_key != first_key[0]  # rotationPolicy Always: a new key per renewal
    # Nothing but the time changed between renewals: the Secret's version from the watch was enough.
    assert _renewed_unread(operator, name, ns) == 2


def test_a_key_kept_across_renewals_is_read_from_the_secret(
    cm: Certmint, ca_issuer: str, ns: str, operator: OperatorProcess
) -> None:
    name, first = _issued(cm, ca_issuer, ns, duration="1m", renewBefore="45s", privateKey={"rotationPolicy": "Never"})
    first_key = _key_pair(cm, name, ns)
    wait_for(lambda: _serial_changed(cm, name, ns, first), "the first renewal", timeout=45)
    assert _key_pair(cm, name, ns) == first_key  # the same key, certified again
    assert _renewed_unread(operator, name, ns) == 0


def test_missing_issuer_is_reported_and_recovers(cm: Certmint, ns: str) -> None:
    issuer_name = unique("later")
    name = unique("waiting")
    cm.create(certificate(name, ns, issuer_name=issuer_name, duration="10m"))
    c = cm.wait_condition("Certificate", name, ns, "Ready", "False", reason="IssuerNotFound")
    assert issuer_name in c["message"] and "retrying in" in c["message"]
    assert cm.get("Certificate", name, ns)["status"]["failedIssuanceAttempts"] >= 1
    cm.create(cluster_issuer(issuer_name))
    cm.wait_ready("Certificate", name, ns)
    assert "failedIssuanceAttempts" not in cm.get("Certificate", name, ns)["status"]


def test_ca_issuer_with_missing_secret_is_not_ready(cm: Certmint) -> None:
    name = unique("broken")
    cm.create(cluster_issuer(name, ca_secret="does-not-exist"))
    c = cm.wait_condition("ClusterIssuer", name, None, "Ready", "False", reason="CASecretNotFound")
    assert f"{OPERATOR_NAMESPACE}/does-not-exist" in c["message"]


def test_ca_issuer_refuses_a_non_ca_key_pair(cm: Certmint, ca_issuer: str, ns: str) -> None:
    leaf_name, _ = _issued(cm, ca_issuer, OPERATOR_NAMESPACE)
    name = unique("notca")
    cm.create(cluster_issuer(name, ca_secret=f"{leaf_name}-tls"))
    c = cm.wait_condition("ClusterIssuer", name, None, "Ready", "False", reason="CANotACA")
    assert f"{leaf_name}-tls" in c["message"]


def test_policy_denies_a_foreign_namespaces_spiffe_id(cm: Certmint, ca_issuer: str) -> None:
    team_a, team_b = cm.namespace(unique("team-a")), cm.namespace(unique("team-b"))
    ca_secret = cm.get("ClusterIssuer", ca_issuer)["spec"]["ca"]["secretName"]
    spiffe = unique("spiffe")
    cm.create(
        cluster_issuer(
            spiffe,
            ca_secret=ca_secret,
            policy={"allowedURIs": ["spiffe://cluster.local/ns/{namespace}/sa/*"]},
        )
    )
    cm.wait_ready("ClusterIssuer", spiffe)

    own = unique("own")
    cm.create(certificate(own, team_a, issuer_name=spiffe, uris=[f"spiffe://cluster.local/ns/{team_a}/sa/api"]))
    cm.wait_ready("Certificate", own, team_a)

    foreign = unique("foreign")
    cm.create(certificate(foreign, team_a, issuer_name=spiffe, uris=[f"spiffe://cluster.local/ns/{team_b}/sa/api"]))
    c = cm.wait_condition("Certificate", foreign, team_a, "Ready", "False", reason="PolicyViolation")
    assert f"spiffe://cluster.local/ns/{team_b}/sa/api" in c["message"]
    assert team_a in c["message"]
    assert cm.secret(f"{foreign}-tls", team_a) is None


def test_deleting_a_certificate_keeps_its_secret_unless_asked(cm: Certmint, ca_issuer: str, ns: str) -> None:
    kept, _ = _issued(cm, ca_issuer, ns)
    dropped, _ = _issued(cm, ca_issuer, ns, secretDeletionPolicy="Delete")
    cm.delete("Certificate", kept, ns)
    cm.delete("Certificate", dropped, ns)
    wait_for(
        lambda: cm.secret(f"{dropped}-tls", ns) is None,
        "the Delete-policy Secret to be garbage-collected",
        timeout=60,
    )
    assert cm.secret(f"{kept}-tls", ns) is not None


def test_request_history_is_pruned(cm: Certmint, ca_issuer: str, ns: str) -> None:
    name, serial = _issued(cm, ca_issuer, ns, revisionHistoryLimit=1)
    for i in range(2):
        cm.patch("Certificate", name, ns, {"spec": {"dnsNames": [f"v{i}.example.test"]}})
        serial = wait_for(lambda s=serial: _serial_changed(cm, name, ns, s), f"re-issuance {i + 1}")

    def pruned() -> bool:
        items = cm.custom.list_namespaced_custom_object(
            "certmint.dev",
            "v1alpha1",
            ns,
            "certificaterequests",
            label_selector=f"certmint.dev/certificate-name={name}",
        )["items"]
        return len(items) == 1

    wait_for(pruned, "CertificateRequests beyond revisionHistoryLimit=1 to be deleted")


def test_events_and_metrics_describe_issuance(cm: Certmint, ca_issuer: str, ns: str, operator: OperatorProcess) -> None:
    name, serial = _issued(cm, ca_issuer, ns)
    events = wait_for(
        lambda: [
            e
            for e in cm.core.list_namespaced_event(ns).items
            if e.involved_object.name == name and e.reason == "Issued"
        ],
        "an Issued event",
    )
    assert serial in events[0].message
    metrics = operator.metrics()
    expiry = {"issuer_kind": "ClusterIssuer", "issuer_name": ca_issuer, "name": name, "namespace": ns}
    assert expiry in [labels for labels, _ in metrics.select("certmint_certificate_expiration_timestamp_seconds")]
    issued = {"issuer_kind": "ClusterIssuer", "trigger": "Issued"}
    assert issued in [labels for labels, _ in metrics.select("certmint_issuances_total")]
    assert operator.get("/healthz")[0] == 200


def test_restricted_user_cannot_read_issued_secrets(
    control_plane: ControlPlane, cm: Certmint, ca_issuer: str, ns: str
) -> None:
    name, _ = _issued(cm, ca_issuer, ns)
    bob = client.CoreV1Api(api_for(control_plane, "bob"))
    with pytest.raises(ApiException) as err:
        bob.read_namespaced_secret(f"{name}-tls", ns)
    assert err.value.status == 403
