"""``certmint convert`` as a user runs it, against the real API server and the session's operator (issue 17's Done).

The corpus of cert-manager manifests (tests/cli/cert_manager, every field of cert-manager's Certificate,
Issuer/ClusterIssuer and CertificateRequest) is converted by the CLI in a subprocess; its output is applied with
kubectl and strict field validation (a field certmint does not declare would be refused); every certificate that
comes out is checked against what the *original* cert-manager manifest asked for, read from the corpus here and
never from the converted output. The report must name every field that could not be converted, and nothing that
was not converted may reach the cluster. ``--from-cluster`` reads cert-manager objects from the API server (the
test serves cert-manager.io/v1 with stand-in CRDs, tests/integration/cert_manager_crds.yaml).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jks
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_der_private_key, load_pem_private_key, pkcs12
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID, SignatureAlgorithmOID
from kubernetes import client

from certmint.core.spec import parse_duration
from certmint.pki.keys import public_key_matches
from certmint.pki.timestamps import parse_rfc3339
from certmint.pki.usages import certificate_usages
from tests.controlplane.cluster import ControlPlane
from tests.controlplane.operator_process import OperatorProcess
from tests.integration.builders import Certmint, condition_of, unique
from tests.integration.conftest import OPERATOR_NAMESPACE, REPO
from tests.integration.kubeutil import wait_for
from tests.integration.test_cli import Cli, Result
from tests.unit.builders import build_ca

pytestmark = pytest.mark.integration

CORPUS = REPO / "tests" / "cli" / "cert_manager"
CERT_MANAGER_CRDS = Path(__file__).parent / "cert_manager_crds.yaml"
READY_TIMEOUT_S = 90

#: Every field of the corpus certmint cannot convert faithfully: (object, field) as the report names them.
EXPECTED_ERRORS = {
    ("Issuer letsencrypt", "spec.acme"),
    ("ClusterIssuer corpus-letsencrypt", "spec.acme"),
    ("Issuer vault", "spec.vault"),
    ("ClusterIssuer corpus-vault", "spec.vault"),
    ("Issuer venafi", "spec.venafi"),
    ("ClusterIssuer corpus-venafi", "spec.venafi"),
    ("Certificate literal-subject", "spec.literalSubject"),
    ("Certificate other-names", "spec.otherNames"),
    ("Certificate signature-algorithm", "spec.signatureAlgorithm"),
    ("Certificate literal-passwords", "spec.keystores.pkcs12.password"),
    ("Certificate literal-passwords", "spec.keystores.jks.password"),
    ("Certificate legacy-pkcs12", "spec.keystores.pkcs12.profile"),
    ("Certificate rsa-8192", "spec.privateKey.size"),
    ("Certificate external-issuer", "spec.issuerRef.group"),
    ("Certificate public-web", "spec.issuerRef"),
    ("Certificate no-subject", "spec.subject"),
    ("Certificate old-api", "apiVersion"),
}
CONVERTED_CERTIFICATES = {"root-ca", "intermediate-ca", "web", "api", "defaults", "ed25519", "exported"}
CONVERTED_REQUESTS = {"batch", "sub-ca"}

SUBJECT_OIDS = {
    "organizations": NameOID.ORGANIZATION_NAME,
    "organizationalUnits": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "countries": NameOID.COUNTRY_NAME,
    "localities": NameOID.LOCALITY_NAME,
    "provinces": NameOID.STATE_OR_PROVINCE_NAME,
    "streetAddresses": NameOID.STREET_ADDRESS,
    "postalCodes": NameOID.POSTAL_CODE,
}
SIGNATURE_OIDS = {
    "ECDSAWithSHA256": SignatureAlgorithmOID.ECDSA_WITH_SHA256,
    "ECDSAWithSHA384": SignatureAlgorithmOID.ECDSA_WITH_SHA384,
    "ECDSAWithSHA512": SignatureAlgorithmOID.ECDSA_WITH_SHA512,
    "SHA256WithRSA": SignatureAlgorithmOID.RSA_WITH_SHA256,
    "PureEd25519": SignatureAlgorithmOID.ED25519,
}


def originals() -> dict[tuple[str, str], dict[str, Any]]:
    """The corpus's cert-manager objects by (kind, name), as written (List items too)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(CORPUS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            for obj in doc.get("items", [doc]) if isinstance(doc, dict) else []:
                if obj.get("apiVersion") == "cert-manager.io/v1":
                    found[(obj["kind"], obj["metadata"]["name"])] = obj
    return found


def corpus_secret(name: str) -> dict[str, Any]:
    """A Secret of the corpus (which convert leaves out: the user already has it)."""
    for path in sorted(CORPUS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Secret" and doc["metadata"]["name"] == name:
                return doc
    raise AssertionError(f"no Secret {name} in the corpus")


# -- fixtures --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli(control_plane: ControlPlane, operator: OperatorProcess) -> Cli:
    return Cli(control_plane.admin_kubeconfig)


@pytest.fixture(scope="module")
def converted(cli: Cli) -> Result:
    return cli("convert", str(CORPUS))


@pytest.fixture(scope="module")
def applied(
    control_plane: ControlPlane, cm: Certmint, converted: Result, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The converted corpus applied into a new namespace as a user would, after what a user already has there: the
    keystore password Secret, and the CA Secret of the ClusterIssuer in certmint's namespace (docs/migration.md)."""
    ns = cm.namespace(unique("convert"))
    password = corpus_secret("keystore-password")
    cm.core.create_namespaced_secret(ns, {"metadata": password["metadata"], "stringData": password["stringData"]})
    now = datetime.now(UTC)
    root = build_ca("corpus cluster CA", not_before=now - timedelta(hours=1), not_after=now + timedelta(days=30))
    cm.core.create_namespaced_secret(
        OPERATOR_NAMESPACE,
        {
            "metadata": {"name": "corpus-root-ca"},
            "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": root.cert_pem.decode(), "tls.key": root.key_pem.decode()},
        },
    )
    manifests = tmp_path_factory.mktemp("convert") / "certmint.yaml"
    manifests.write_text(converted.out)
    control_plane.kubectl("apply", "--validate=strict", "-n", ns, "-f", str(manifests))
    for obj in yaml.safe_load_all(converted.out):
        namespaced = obj["kind"] != "ClusterIssuer"
        cm.wait_ready(obj["kind"], obj["metadata"]["name"], ns if namespaced else None, timeout=READY_TIMEOUT_S)
    return ns


# -- the report ------------------------------------------------------------------------------------------------


def test_the_report_names_every_field_that_could_not_be_converted_and_exits_1(converted: Result) -> None:
    assert converted.code == 1, converted
    assert "Traceback" not in converted.err
    reported = set()
    for line in converted.err.splitlines():
        severity, _, rest = line.partition(": ")
        if severity == "error":
            obj, _, rest = rest.partition(": ")
            reported.add((obj, rest.partition(": ")[0]))
    assert reported == EXPECTED_ERRORS
    assert "do-not-print-me" not in converted.out + converted.err


def test_only_what_converted_faithfully_reaches_the_cluster(cm: Certmint, applied: str) -> None:
    assert {c["metadata"]["name"] for c in cm.items("Certificate", applied)} == CONVERTED_CERTIFICATES
    assert {
        r["metadata"]["name"]
        for r in cm.items("CertificateRequest", applied)
        if not r["metadata"].get("ownerReferences")
    } == CONVERTED_REQUESTS
    assert {i["metadata"]["name"] for i in cm.items("Issuer", applied)} == {"selfsigned", "ca"}


# -- each certificate against what the original asked for -------------------------------------------------------


def expected_key(spec: dict[str, Any]) -> tuple[str, int]:
    """cert-manager's key: RSA 2048 unless told, ECDSA 256 by default, Ed25519 without a size."""
    key = spec.get("privateKey") or {}
    algorithm = key.get("algorithm", "RSA")
    if algorithm == "Ed25519":
        return algorithm, 0
    return algorithm, key.get("size") or {"RSA": 2048, "ECDSA": 256}[algorithm]


def expected_usages(spec: dict[str, Any], algorithm: str) -> set[str]:
    """What was asked (cert-manager's default: digital signature, key encipherment), minus what the key cannot do
    (RFC 8813, 8410; an RSA CA only signs, RFC 3279), and a CA's cert sign and crl sign."""
    usages = set(spec.get("usages") or ["digital signature", "key encipherment"])
    if algorithm in ("ECDSA", "Ed25519") or spec.get("isCA"):
        usages -= {"key encipherment", "data encipherment"}
    if spec.get("isCA"):
        usages |= {"cert sign", "crl sign"}
    return usages


def key_of(cert: x509.Certificate) -> tuple[str, int]:
    public = cert.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        return "RSA", public.key_size
    if isinstance(public, ec.EllipticCurvePublicKey):
        return "ECDSA", public.curve.key_size
    assert isinstance(public, ed25519.Ed25519PublicKey)
    return "Ed25519", 0


def extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> Any:
    try:
        return cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None


def sans(cert: x509.Certificate) -> dict[str, set[str]]:
    ext = extension(cert, x509.SubjectAlternativeName)
    names = ext.value if ext else x509.SubjectAlternativeName([])
    return {
        "dnsNames": set(names.get_values_for_type(x509.DNSName)),
        "ipAddresses": {str(ip) for ip in names.get_values_for_type(x509.IPAddress)},
        "uris": set(names.get_values_for_type(x509.UniformResourceIdentifier)),
        "emailAddresses": set(names.get_values_for_type(x509.RFC822Name)),
    }


def issuer_urls(issuer: dict[str, Any]) -> dict[str, list[str]]:
    block = issuer["spec"].get("ca") or issuer["spec"].get("selfSigned") or {}
    return {
        "crl": block.get("crlDistributionPoints") or [],
        "ocsp": block.get("ocspServers") or [],
        "caIssuers": block.get("issuingCertificateURLs") or [],
    }


def cert_urls(cert: x509.Certificate) -> dict[str, list[str]]:
    crl = extension(cert, x509.CRLDistributionPoints)
    aia = extension(cert, x509.AuthorityInformationAccess)
    access = list(aia.value) if aia else []
    return {
        "crl": [n.value for p in (crl.value if crl else []) for n in p.full_name or []],
        "ocsp": [a.access_location.value for a in access if a.access_method == AuthorityInformationAccessOID.OCSP],
        "caIssuers": [
            a.access_location.value for a in access if a.access_method == AuthorityInformationAccessOID.CA_ISSUERS
        ],
    }


def check_common(cert: x509.Certificate, spec: dict[str, Any], issuer: dict[str, Any], *, what: str) -> None:
    """What a Certificate and a CertificateRequest share: lifetime, usages, isCA, the issuer's URLs."""
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    duration = parse_duration(spec.get("duration", "2160h"))
    assert duration <= lifetime <= duration + timedelta(seconds=61), f"{what}: lifetime {lifetime}, asked {duration}"
    algorithm, _ = key_of(cert)
    assert certificate_usages(cert) == expected_usages(spec, algorithm), what
    constraints = extension(cert, x509.BasicConstraints)
    assert bool(constraints and constraints.value.ca) is bool(spec.get("isCA")), what
    assert cert_urls(cert) == issuer_urls(issuer), what


def check_certificate(cm: Certmint, ns: str, name: str) -> None:
    corpus = originals()
    spec = corpus[("Certificate", name)]["spec"]
    ref = spec["issuerRef"]
    issuer = corpus[(ref.get("kind", "Issuer"), ref["name"])]
    secret = cm.secret(spec["secretName"], ns)
    assert secret is not None
    data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
    cert = x509.load_pem_x509_certificates(data["tls.crt"])[0]
    what = f"Certificate {name}"

    check_common(cert, spec, issuer, what=what)
    # Subject, attribute by attribute, and the SANs.
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == (
        [spec["commonName"]] if "commonName" in spec else []
    ), what
    subject = spec.get("subject") or {}
    for field, oid in SUBJECT_OIDS.items():
        assert sorted(a.value for a in cert.subject.get_attributes_for_oid(oid)) == sorted(subject.get(field, []))
    serial = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)]
    assert serial == ([subject["serialNumber"]] if "serialNumber" in subject else []), what
    assert sans(cert) == {k: set(spec.get(k, [])) for k in ("dnsNames", "ipAddresses", "uris", "emailAddresses")}
    # The key: algorithm, size, encoding.
    algorithm, size = expected_key(spec)
    assert key_of(cert) == (algorithm, size), what
    encoding = (spec.get("privateKey") or {}).get("encoding") or ("PKCS8" if algorithm == "Ed25519" else "PKCS1")
    header = {"PKCS8": b"PRIVATE KEY", "PKCS1": b"RSA PRIVATE KEY" if algorithm == "RSA" else b"EC PRIVATE KEY"}
    assert data["tls.key"].startswith(b"-----BEGIN " + header[encoding] + b"-----"), what
    key = load_pem_private_key(data["tls.key"], None)
    assert public_key_matches(key, cert), what  # type: ignore[arg-type]
    if "signatureAlgorithm" in spec:
        assert cert.signature_algorithm_oid == SIGNATURE_OIDS[spec["signatureAlgorithm"]], what
    # Renewal: renewBefore, renewBeforePercentage or a third of the lifetime, minus certmint's jitter (< 10 %).
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    if "renewBefore" in spec:
        before = parse_duration(spec["renewBefore"])
    else:
        before = lifetime * spec.get("renewBeforePercentage", 100 / 3) / 100
    status = cm.get("Certificate", name, ns)["status"]
    latest = cert.not_valid_after_utc - before
    renewal_time = parse_rfc3339(status["renewalTime"])
    assert latest - lifetime / 10 - timedelta(seconds=2) <= renewal_time <= latest + timedelta(seconds=2), what
    # Name constraints of a CA.
    constraints = extension(cert, x509.NameConstraints)
    if "nameConstraints" in spec:
        asked = spec["nameConstraints"]
        assert constraints is not None and constraints.critical is bool(asked.get("critical")), what
        for side, subtrees in (
            ("permitted", constraints.value.permitted_subtrees),
            ("excluded", constraints.value.excluded_subtrees),
        ):
            got = {
                "dnsDomains": {n.value for n in subtrees or [] if isinstance(n, x509.DNSName)},
                "ipRanges": {str(n.value) for n in subtrees or [] if isinstance(n, x509.IPAddress)},
                "emailAddresses": {n.value for n in subtrees or [] if isinstance(n, x509.RFC822Name)},
                "uriDomains": {n.value for n in subtrees or [] if isinstance(n, x509.UniformResourceIdentifier)},
            }
            assert got == {k: set(asked.get(side, {}).get(k, [])) for k in got}, f"{what} {side}"
    else:
        assert constraints is None, what
    # The Secret's extras: template, output formats, keystores.
    template = spec.get("secretTemplate") or {}
    assert template.get("labels", {}).items() <= (secret.metadata.labels or {}).items(), what
    assert template.get("annotations", {}).items() <= (secret.metadata.annotations or {}).items(), what
    formats = {f["type"] for f in spec.get("additionalOutputFormats") or []}
    assert ("tls-combined.pem" in data) is ("CombinedPEM" in formats), what
    assert ("key.der" in data) is ("DER" in formats), what
    if "CombinedPEM" in formats:
        assert data["tls-combined.pem"].startswith(data["tls.key"]) and data["tls.crt"] in data["tls-combined.pem"]
    if "DER" in formats:
        assert public_key_matches(load_der_private_key(data["key.der"], None), cert), what  # type: ignore[arg-type]
    keystores = spec.get("keystores") or {}
    assert ("keystore.p12" in data) is bool(keystores.get("pkcs12", {}).get("create")), what
    assert ("keystore.jks" in data) is bool(keystores.get("jks", {}).get("create")), what
    password = corpus_secret("keystore-password")["stringData"]["password"]
    if "keystore.p12" in data:
        p12_key, p12_cert, _ = pkcs12.load_key_and_certificates(data["keystore.p12"], password.encode())
        assert p12_cert == cert and p12_key is not None and public_key_matches(p12_key, cert), what  # type: ignore[arg-type]
    if "keystore.jks" in data:
        store = jks.KeyStore.loads(data["keystore.jks"], password)
        entry = store.private_keys[keystores["jks"].get("alias", "certificate")]
        assert x509.load_der_x509_certificate(entry.cert_chain[0][1]) == cert, what


@pytest.mark.parametrize("name", sorted(CONVERTED_CERTIFICATES))
def test_each_certificate_is_what_the_cert_manager_manifest_asked_for(cm: Certmint, applied: str, name: str) -> None:
    check_certificate(cm, applied, name)


@pytest.mark.parametrize("name", sorted(CONVERTED_REQUESTS))
def test_each_request_is_signed_as_the_cert_manager_manifest_asked(cm: Certmint, applied: str, name: str) -> None:
    corpus = originals()
    spec = corpus[("CertificateRequest", name)]["spec"]
    issuer = corpus[(spec["issuerRef"].get("kind", "Issuer"), spec["issuerRef"]["name"])]
    request = spec["request"]
    pem = request if request.startswith("-----BEGIN") else base64.b64decode(request).decode()
    csr = x509.load_pem_x509_csr(pem.encode())
    status = cm.get("CertificateRequest", name, applied)["status"]
    cert = x509.load_pem_x509_certificates(status["certificate"].encode())[0]

    check_common(cert, spec, issuer, what=f"CertificateRequest {name}")
    assert cert.public_key() == csr.public_key()
    assert cert.subject == csr.subject
    try:
        asked = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        asked = x509.SubjectAlternativeName([])
    assert set(sans(cert)["dnsNames"]) == set(asked.get_values_for_type(x509.DNSName))


# -- from the cluster ------------------------------------------------------------------------------------------


def test_from_cluster_without_cert_managers_crds_is_one_clear_error(cli: Cli) -> None:
    result = cli("convert", "--from-cluster", "-A")

    assert result.code == 1, result
    assert result.one_line_error() == (
        "certmint: error: this cluster does not serve cert-manager.io/v1 (cert-manager's CRDs are not installed): "
        "nothing to convert from it"
    )


@pytest.fixture(scope="module")
def cert_manager_namespace(control_plane: ControlPlane, cm: Certmint) -> Iterator[tuple[str, str, str]]:
    """cert-manager objects in a namespace of their own, applied with kubectl (so they carry its last-applied
    annotation), one with a status; a ClusterIssuer they use and one nobody uses."""
    control_plane.kubectl("apply", "-f", str(CERT_MANAGER_CRDS))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CERT_MANAGER_CRDS))
    ns = cm.namespace(unique("cm"))
    used, unused = unique("cm-used"), unique("cm-unused")
    objects = [
        {"kind": "ClusterIssuer", "metadata": {"name": used}, "spec": {"selfSigned": {}}},
        {"kind": "ClusterIssuer", "metadata": {"name": unused}, "spec": {"selfSigned": {}}},
        {"kind": "Issuer", "metadata": {"name": "selfsigned", "namespace": ns}, "spec": {"selfSigned": {}}},
        {
            "kind": "Certificate",
            "metadata": {"name": "web", "namespace": ns, "labels": {"app": "web"}},
            "spec": {
                "secretName": "web-tls",
                "commonName": "web.example.com",
                "dnsNames": ["web.example.com"],
                "privateKey": {"algorithm": "ECDSA"},
                "issuerRef": {"name": "selfsigned", "group": "cert-manager.io"},
            },
        },
        {
            "kind": "Certificate",
            "metadata": {"name": "api", "namespace": ns},
            "spec": {
                "secretName": "api-tls",
                "commonName": "api.example.com",
                "issuerRef": {"name": used, "kind": "ClusterIssuer"},
            },
        },
    ]
    text = yaml.safe_dump_all([{"apiVersion": "cert-manager.io/v1", **o} for o in objects])
    control_plane.kubectl("apply", "-f", "-", stdin=text)
    uid = json.loads(
        control_plane.kubectl("get", "certificates.cert-manager.io", "web", "-n", ns, "-o", "json").stdout
    )["metadata"]["uid"]
    owned = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "CertificateRequest",
        "metadata": {
            "name": "web-1",
            "namespace": ns,
            "ownerReferences": [
                {
                    "apiVersion": "cert-manager.io/v1",
                    "kind": "Certificate",
                    "name": "web",
                    "uid": uid,
                    "controller": True,
                }
            ],
        },
        "spec": {"request": "LS0t", "issuerRef": {"name": "selfsigned"}},
    }
    control_plane.kubectl("apply", "-f", "-", stdin=json.dumps(owned))
    status = {"status": {"notAfter": "2026-04-01T00:00:00Z", "revision": 1}}
    control_plane.kubectl(
        "patch",
        "certificates.cert-manager.io",
        "web",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )
    yield ns, used, unused
    control_plane.kubectl("delete", "--wait=false", "-f", str(CERT_MANAGER_CRDS))


def test_from_cluster_converts_a_namespace_and_the_cluster_issuers_it_uses(
    cli: Cli, cm: Certmint, control_plane: ControlPlane, cert_manager_namespace: tuple[str, str, str]
) -> None:
    ns, used, _ = cert_manager_namespace

    result = cli("convert", "--from-cluster", "-n", ns, "--report", "json")

    assert result.code == 0, result
    objects = list(yaml.safe_load_all(result.out))
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("ClusterIssuer", used),
        ("Issuer", "selfsigned"),
        ("Certificate", "api"),
        ("Certificate", "web"),
    ]
    for obj in objects:
        assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}  # no status
        assert set(obj["metadata"]) <= {"name", "namespace", "labels"}, obj["metadata"]  # nothing the server set
    report = json.loads(result.err)
    assert report["faithful"] is True
    left_out = [f for f in report["findings"] if f["object"] == f"CertificateRequest {ns}/web-1"]
    assert [f["message"] for f in left_out] == [
        "made by cert-manager for Certificate web: left out (certmint makes its own requests for a converted "
        "Certificate)"
    ]

    control_plane.kubectl("apply", "--server-side", "--field-manager=migration", "-f", "-", stdin=result.out)
    for name in ("web", "api"):
        ready = cm.wait_ready("Certificate", name, ns, timeout=READY_TIMEOUT_S)
        assert condition_of(ready, "Ready") is not None
    data = cm.secret_data("web-tls", ns)
    cert = x509.load_pem_x509_certificates(data["tls.crt"])[0]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "web.example.com"
    assert key_of(cert) == ("ECDSA", 256)


def test_from_cluster_with_all_namespaces_reads_every_cluster_issuer(
    cli: Cli, cert_manager_namespace: tuple[str, str, str]
) -> None:
    _, used, unused = cert_manager_namespace

    result = cli("convert", "--from-cluster", "-A", "-o", "json")

    assert result.code == 0, result
    names = {(o["kind"], o["metadata"]["name"]) for o in json.loads(result.out)["items"]}
    assert {("ClusterIssuer", used), ("ClusterIssuer", unused), ("Certificate", "web")} <= names


def test_from_cluster_for_a_namespace_user_who_may_not_list_cluster_issuers(
    cli: Cli, control_plane: ControlPlane, api: client.ApiClient, cert_manager_namespace: tuple[str, str, str]
) -> None:
    ns, _, _ = cert_manager_namespace
    rbac = client.RbacAuthorizationV1Api(api)
    role = unique("cm-reader")
    resources = ["issuers", "certificates", "certificaterequests"]
    rule = {"apiGroups": ["cert-manager.io"], "resources": resources, "verbs": ["list"]}
    rbac.create_namespaced_role(ns, {"metadata": {"name": role}, "rules": [rule]})
    subject = {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role}
    rbac.create_namespaced_role_binding(ns, {"metadata": {"name": role}, "roleRef": role_ref, "subjects": [subject]})
    alice = control_plane.kubeconfig_for("alice")

    def converted() -> Result | None:  # RBAC takes effect through the API server's informer: soon, not at once
        result = cli("convert", "--from-cluster", "-n", ns, "--report", "json", kubeconfig=alice)
        return result if result.code == 0 else None

    result = wait_for(converted, "alice's conversion of her namespace")
    names = [(o["kind"], o["metadata"]["name"]) for o in yaml.safe_load_all(result.out)]
    assert names == [("Issuer", "selfsigned"), ("Certificate", "api"), ("Certificate", "web")]
    (read_error,) = json.loads(result.err)["readErrors"]
    assert read_error.startswith("cannot list cert-manager clusterissuers: forbidden")
