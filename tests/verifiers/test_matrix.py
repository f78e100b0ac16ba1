"""Every certificate certmint issues is accepted by verifiers it did not write, trusting exactly ``ca.crt``.

The matrix (``CASES``): every key algorithm and size (ECDSA P-256/P-384, RSA 2048/3072/4096, Ed25519), every
SAN kind (DNS, IPv4, IPv6, URI incl. SPIFFE, email), explicit and default usages, CA and leaf, on five
chains:

- ``self-signed``            a selfSigned ClusterIssuer; the certificate is its own trust anchor;
- ``root``                   the CA ClusterIssuer ``root`` (allowCA) on the self-signed CA Certificate ``root``;
- ``certmint-intermediate``  root → the isCA Certificate ``intermediate`` → the CA ClusterIssuer ``intermediate``;
- ``hand-intermediate``      a CA Secret made here with cryptography: tls.crt = the intermediate alone,
                             ca.crt = its root (the README's shape for a hand-made CA Secret);
- ``hand-chain``             the same CA, tls.crt = intermediate + root, no ca.crt.

Each certificate is judged by pkilint (0 RFC errors, 0 warnings), by ``openssl verify -x509_strict`` with
the purpose its usages allow, and by Python ``ssl`` handshakes as a server and/or as a client, as its
usages allow, with the chain's partner certificate on the other side (tests/verifiers/verify.py).
One test per certificate, so a report names each one that fails; one more per CA ClusterIssuer checks that
its status.caChain and status.trustAnchor are the chain and the anchor its certificates carry.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID
from kubernetes import client

from certmint.pki.keys import signature_hash
from tests.controlplane.operator_process import OperatorProcess
from tests.integration.builders import Certmint, certificate, cluster_issuer
from tests.integration.conftest import OPERATOR_NAMESPACE
from tests.integration.kubeutil import wait_for
from tests.verifiers.conftest import REPORT
from tests.verifiers.verify import (
    TLSFiles,
    extended_key_usages,
    handshake,
    is_ca,
    lint,
    openssl_verify,
    purposes,
    server_names,
)
from tests.x509util import certificate_builder, common_name

pytestmark = pytest.mark.verifiers

NS = "verifiers"  # the leaves' namespace; the CA Certificates and CA Secrets live in the operator's
SELF_SIGNED, ROOT, INTERMEDIATE, HAND, HAND_CHAIN = "selfsigned", "root", "intermediate", "hand", "hand-chain"
ISSUER_OF_CHAIN = {
    "self-signed": SELF_SIGNED,
    "root": ROOT,
    "certmint-intermediate": INTERMEDIATE,
    "hand-intermediate": HAND,
    "hand-chain": HAND_CHAIN,
}
# cert-manager's ca issuer fields (issue 17): the intermediate's leaves carry CRL Distribution Points and AIA.
INTERMEDIATE_URLS = {
    "crlDistributionPoints": ["http://pki.example.com/intermediate.crl"],
    "ocspServers": ["http://ocsp.example.com"],
    "issuingCertificateURLs": ["http://pki.example.com/intermediate.crt"],
}
SERVER = ["digital signature", "server auth"]
CLIENT = ["digital signature", "client auth"]
MTLS = ["digital signature", "server auth", "client auth"]
SMIME = ["digital signature", "email protection"]


def spiffe(sa: str) -> str:
    return f"spiffe://cluster.local/ns/{NS}/sa/{sa}"


@dataclass(frozen=True)
class Case:
    name: str  # the Certificate's name; its Secret is <name>-tls
    chain: str  # a key of ISSUER_OF_CHAIN
    key: str  # for the report
    spec: dict[str, Any]  # names, usages, privateKey, isCA...
    namespace: str = NS
    #: A certificate certmint may rightly refuse to issue (Ready=False, or refused at admission), with a
    #: message naming the subject. Issued, it is judged like every other.
    may_be_refused: bool = False

    @property
    def issuer(self) -> str:
        return ISSUER_OF_CHAIN[self.chain]


def _key(algorithm: str, size: int | None = None) -> dict[str, Any]:
    key: dict[str, Any] = {"algorithm": algorithm, **({"size": size} if size else {})}
    if algorithm == "Ed25519":
        key["encoding"] = "PKCS8"  # admission: PKCS#1, the default encoding, cannot hold an Ed25519 key
    return {"privateKey": key}


CASES: tuple[Case, ...] = (
    # -- CAs: usages left to the defaults, as the README's quick start does -------------------------------
    Case(
        ROOT, "self-signed", "ECDSA P-256", {"commonName": "certmint verifiers root", "isCA": True}, OPERATOR_NAMESPACE
    ),
    Case(
        INTERMEDIATE,
        "root",
        "RSA 3072",
        {"commonName": "certmint verifiers intermediate", "isCA": True, **_key("RSA", 3072)},
        OPERATOR_NAMESPACE,
    ),
    # -- self-signed leaves ----------------------------------------------------------------------------------
    Case(
        "ss-p384-mtls",
        "self-signed",
        "ECDSA P-384",
        {
            "commonName": "ss.verifiers.test",
            "dnsNames": ["ss.verifiers.test"],
            "ipAddresses": ["127.0.0.1", "::1"],
            "usages": MTLS,
            **_key("ECDSA", 384),
        },
    ),
    # Only SANs: the subject is empty, and so would be the issuer name (RFC 5280 forbids an empty issuer).
    Case(
        "ss-sans-only",
        "self-signed",
        "ECDSA P-256",
        {"dnsNames": ["ss-sans.verifiers.test"], "uris": [spiffe("ss-sans")]},
        may_be_refused=True,
    ),
    # -- directly under the root -----------------------------------------------------------------------------
    Case(
        "root-p256-server",
        "root",
        "ECDSA P-256",
        {"dnsNames": ["server.root.verifiers.test"], "ipAddresses": ["127.0.0.1", "::1"], "usages": SERVER},
    ),
    Case(
        "root-p384-client",
        "root",
        "ECDSA P-384",
        {"uris": [spiffe("root-client")], "usages": CLIENT, **_key("ECDSA", 384)},
    ),
    Case(
        "root-p256-default",
        "root",
        "ECDSA P-256",
        {"commonName": "default.root.verifiers.test", "dnsNames": ["default.root.verifiers.test"]},
    ),
    Case(
        "root-rsa2048-default",
        "root",
        "RSA 2048",
        {"dnsNames": ["rsa.root.verifiers.test"], "ipAddresses": ["127.0.0.1"], **_key("RSA", 2048)},
    ),
    Case(
        "root-rsa4096-server",
        "root",
        "RSA 4096",
        {
            "dnsNames": ["rsa4096.root.verifiers.test"],
            "usages": ["digital signature", "key encipherment", "server auth"],
            **_key("RSA", 4096),
        },
    ),
    Case(
        "root-ed25519-default",
        "root",
        "Ed25519",
        {"dnsNames": ["ed.root.verifiers.test"], "ipAddresses": ["::1"], **_key("Ed25519")},
    ),
    Case("root-smime", "root", "ECDSA P-256", {"emailAddresses": ["alice@example.com"], "usages": SMIME}),
    Case(
        "root-https-uri-client",
        "root",
        "ECDSA P-256",
        {"uris": ["https://client.verifiers.test/app"], "usages": CLIENT},
    ),
    # -- under certmint's own intermediate CA ----------------------------------------------------------------
    Case(
        "int-p256-server",
        "certmint-intermediate",
        "ECDSA P-256",
        {"dnsNames": ["server.int.verifiers.test"], "ipAddresses": ["127.0.0.1"], "usages": SERVER},
    ),
    Case("int-p256-client", "certmint-intermediate", "ECDSA P-256", {"uris": [spiffe("int-client")], "usages": CLIENT}),
    Case(
        "int-ed25519-mtls",
        "certmint-intermediate",
        "Ed25519",
        {"dnsNames": ["ed.int.verifiers.test"], "ipAddresses": ["::1"], "usages": MTLS, **_key("Ed25519")},
    ),
    Case(
        "int-p384-default",
        "certmint-intermediate",
        "ECDSA P-384",
        {"dnsNames": ["default.int.verifiers.test"], "uris": [spiffe("int-default")], **_key("ECDSA", 384)},
    ),
    Case("int-smime", "certmint-intermediate", "ECDSA P-256", {"emailAddresses": ["bob@example.com"], "usages": SMIME}),
    # -- under a hand-made intermediate (root only in the CA Secret's ca.crt) --------------------------------
    Case(
        "hand-p256-server",
        "hand-intermediate",
        "ECDSA P-256",
        {"dnsNames": ["server.hand.verifiers.test"], "ipAddresses": ["127.0.0.1", "::1"], "usages": SERVER},
    ),
    Case("hand-p256-client", "hand-intermediate", "ECDSA P-256", {"uris": [spiffe("hand-client")], "usages": CLIENT}),
    Case(
        "hand-p256-default",
        "hand-intermediate",
        "ECDSA P-256",
        {"dnsNames": ["default.hand.verifiers.test"], "uris": [spiffe("hand-default")]},
    ),
    # -- the same CA, its Secret's tls.crt holding the root too, no ca.crt -----------------------------------
    Case(
        "hand-chain-p256-mtls",
        "hand-chain",
        "ECDSA P-256",
        {"dnsNames": ["mtls.hand-chain.verifiers.test"], "ipAddresses": ["127.0.0.1"], "usages": MTLS},
    ),
)
BY_NAME = {case.name: case for case in CASES}

#: The other side of a handshake, per chain: (server, client). A self-contained chain's certificate is its own.
PARTNERS: dict[str, tuple[str, str]] = {
    "root": ("root-p256-server", "root-p384-client"),
    "certmint-intermediate": ("int-p256-server", "int-p256-client"),
    "hand-intermediate": ("hand-p256-server", "hand-p256-client"),
}


# -- the world -----------------------------------------------------------------------------------------------


@dataclass
class Issued:
    case: Case
    data: dict[str, bytes] = field(default_factory=dict)  # the Secret's keys
    refusal: str = ""
    files: TLSFiles | None = None

    @property
    def chain(self) -> list[x509.Certificate]:
        return x509.load_pem_x509_certificates(self.data["tls.crt"])

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]


@dataclass
class Matrix:
    issued: dict[str, Issued]
    hand_root: x509.Certificate
    issuer_status: dict[str, dict[str, Any]]  # the CA ClusterIssuers' status once every certificate was issued


def _hand_made_ca() -> tuple[x509.Certificate, x509.Certificate, bytes]:
    """A root and an intermediate made with cryptography, as an administrator's own PKI would be."""
    now = datetime.now(UTC)
    root_key, int_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP384R1())
    root_name = common_name("verifiers hand-made root")
    int_name = common_name("verifiers hand-made intermediate")
    ca_usage = x509.KeyUsage(True, False, False, False, False, True, True, False, False)

    def build(subject: x509.Name, issuer: x509.Name, key: Any, signer: Any, path_length: int | None) -> Any:
        builder = (
            certificate_builder(
                subject, key.public_key(), now - timedelta(hours=1), now + timedelta(days=2), issuer=issuer
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(ca_usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        )
        if signer is not key:
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key())
            builder = builder.add_extension(aki, critical=False)
        return builder.sign(signer, signature_hash(signer))

    root = build(root_name, root_name, root_key, root_key, None)
    intermediate = build(int_name, root_name, int_key, root_key, 0)
    key_pem = int_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return root, intermediate, key_pem


def _ca_secret(core: client.CoreV1Api, name: str, data: dict[str, bytes]) -> None:
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name=name),
        type="kubernetes.io/tls",
        data={k: base64.b64encode(v).decode() for k, v in data.items()},
    )
    core.create_namespaced_secret(OPERATOR_NAMESPACE, body)


def _ready(cm: Certmint, kind: str, name: str, namespace: str | None) -> bool:
    c = cm.condition(kind, name, namespace, "Ready")
    return bool(c and c["status"] == "True")


def _wait_all(cm: Certmint, objects: list[tuple[str, str, str | None]], what: str, timeout: float = 60) -> None:
    """Wait for every object's Ready=True at once (they converge in parallel)."""

    def all_ready() -> bool:
        return all(_ready(cm, kind, name, ns) for kind, name, ns in objects)

    try:
        wait_for(all_ready, what, timeout=timeout)
    except AssertionError as e:
        states = [
            f"{kind} {ns or ''}/{name}: {cm.get(kind, name, ns).get('status', {}).get('conditions')}"
            for kind, name, ns in objects
            if not _ready(cm, kind, name, ns)
        ]
        raise AssertionError(f"{e}; not ready: {states}") from None


def _create_certificates(cm: Certmint, cases: list[Case], issued: dict[str, Issued]) -> None:
    for case in cases:
        issued[case.name] = Issued(case)
        try:
            cm.create(certificate(case.name, case.namespace, issuer_name=case.issuer, duration="24h", **case.spec))
        except client.ApiException as e:
            if not case.may_be_refused or e.status != 422:
                raise
            issued[case.name].refusal = f"refused at admission: {e.body}"


def _settled(cm: Certmint, case: Case, issued: Issued) -> bool:
    """Ready, or (for a case certmint may refuse) Ready=False with a message about the subject."""
    if issued.refusal:
        return True
    c = cm.condition("Certificate", case.name, case.namespace, "Ready")
    if c and c["status"] == "True":
        return True
    if case.may_be_refused and c and c["status"] == "False" and "subject" in c.get("message", "").lower():
        issued.refusal = f"Ready=False {c['reason']}: {c['message']}"
        return True
    return False


@pytest.fixture(scope="session")
def matrix(api: client.ApiClient, operator: OperatorProcess, tmp_path_factory: pytest.TempPathFactory) -> Matrix:
    """Every case issued (or refused, where allowed), created in waves as the issuers they need become ready."""
    cm = Certmint(api)
    cm.namespace(NS)
    hand_root, hand_int, hand_key = _hand_made_ca()
    pem = Encoding.PEM
    _ca_secret(
        cm.core,
        "hand-ca",
        {"tls.crt": hand_int.public_bytes(pem), "tls.key": hand_key, "ca.crt": hand_root.public_bytes(pem)},
    )
    _ca_secret(
        cm.core,
        "hand-chain-ca",
        {"tls.crt": hand_int.public_bytes(pem) + hand_root.public_bytes(pem), "tls.key": hand_key},
    )
    cm.create(cluster_issuer(SELF_SIGNED))
    cm.create(cluster_issuer(HAND, ca_secret="hand-ca"))
    cm.create(cluster_issuer(HAND_CHAIN, ca_secret="hand-chain-ca"))
    _wait_all(cm, [("ClusterIssuer", n, None) for n in (SELF_SIGNED, HAND, HAND_CHAIN)], "the first issuers")

    issued: dict[str, Issued] = {}
    # Wave 1: the root, the self-signed leaves and those of the hand-made CA.
    _create_certificates(cm, [BY_NAME[ROOT], *by_chain("self-signed"), *by_chain("hand-intermediate")], issued)
    _create_certificates(cm, by_chain("hand-chain"), issued)
    _wait_all(cm, [("Certificate", ROOT, OPERATOR_NAMESPACE)], "the root CA Certificate")
    root_issuer = cluster_issuer(ROOT, ca_secret=f"{ROOT}-tls", policy={"allowCA": True})
    cm.create(root_issuer)
    _wait_all(cm, [("ClusterIssuer", ROOT, None)], "the root ClusterIssuer")
    # Wave 2: the intermediate and the root's leaves.
    _create_certificates(cm, [BY_NAME[INTERMEDIATE], *by_chain("root")], issued)
    _wait_all(cm, [("Certificate", INTERMEDIATE, OPERATOR_NAMESPACE)], "the intermediate CA Certificate")
    intermediate = cluster_issuer(INTERMEDIATE, ca_secret=f"{INTERMEDIATE}-tls")
    intermediate["spec"]["ca"].update(INTERMEDIATE_URLS)  # so every verifier judges CRL DP and AIA too
    cm.create(intermediate)
    _wait_all(cm, [("ClusterIssuer", INTERMEDIATE, None)], "the intermediate ClusterIssuer")
    # Wave 3: the intermediate's leaves.
    _create_certificates(cm, by_chain("certmint-intermediate"), issued)

    def all_settled() -> bool:
        return all(_settled(cm, case, issued[case.name]) for case in CASES)

    try:
        wait_for(all_settled, "every Certificate of the matrix Ready", timeout=120)
    except AssertionError as e:
        pending = [
            f"{c.name}: {cm.condition('Certificate', c.name, c.namespace, 'Ready')}"
            for c in CASES
            if not _settled(cm, c, issued[c.name])
        ]
        raise AssertionError(f"{e}; pending: {pending}") from None

    files = tmp_path_factory.mktemp("verifiers")
    for case in CASES:
        one = issued[case.name]
        if not one.refusal:
            one.data = cm.secret_data(f"{case.name}-tls", case.namespace)
            one.files = TLSFiles.write(Path(files), case.name, one.data)
    ca_issuers = (ROOT, INTERMEDIATE, HAND, HAND_CHAIN)
    return Matrix(issued, hand_root, {n: cm.get("ClusterIssuer", n).get("status", {}) for n in ca_issuers})


def by_chain(chain: str) -> list[Case]:
    """The chain's leaves (its CA Certificates are created on their own, before the leaves)."""
    return [c for c in CASES if c.chain == chain and not c.spec.get("isCA")]


# -- the verdicts --------------------------------------------------------------------------------------------


def _anchor(matrix: Matrix, issued: Issued) -> list[str]:
    """ca.crt is exactly the root at the top of the issuing chain (the README's promise), nothing else."""
    chain = issued.case.chain
    if chain == "self-signed":
        expected = issued.leaf
    elif chain in ("hand-intermediate", "hand-chain"):
        expected = matrix.hand_root
    else:
        expected = matrix.issued[ROOT].leaf
    anchors = x509.load_pem_x509_certificates(issued.data["ca.crt"])
    ok = anchors == [expected]
    shown = ", ".join(a.subject.rfc4514_string() or "(empty)" for a in anchors)
    REPORT.line(f"{issued.case.name} ca.crt = {shown}: " + ("the chain's root" if ok else "NOT the chain's root"))
    if ok:
        return []
    return [f"ca.crt holds {shown}, not the root {expected.subject.rfc4514_string()} of the {chain} chain"]


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER, as the issuer status (and ``openssl x509 -fingerprint -sha256``) spell it."""
    digest = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _pkilint(issued: Issued) -> list[str]:
    chain = issued.chain
    issuer = chain[1] if len(chain) > 1 else x509.load_pem_x509_certificates(issued.data["ca.crt"])[0]
    result = lint(issued.leaf, issuer)
    REPORT.lint_errors += len(result.errors)
    REPORT.lint_warnings += len(result.warnings)
    listed = [*result.errors, *result.warnings]
    others = sorted({f.code for f in result.notices})
    REPORT.line(
        f"{issued.case.name} pkilint errors={len(result.errors)} warnings={len(result.warnings)}"
        + "".join(f"\n    {f}" for f in listed)
        + (f"\n    listed only: {', '.join(others)}" if others else "")
        + "".join(f"\n    set aside: {f}" for f in result.set_aside)
    )
    return [f"pkilint: {f}" for f in listed]


def _openssl(issued: Issued) -> list[str]:
    failures = []
    for purpose in purposes(issued.leaf):
        outcome = openssl_verify(issued.data["tls.crt"], issued.data["ca.crt"], purpose)
        REPORT.openssl.append(outcome.ok)
        shown = f"-purpose {purpose}" if purpose else "(a CA: no purpose)"
        REPORT.line(
            f"{issued.case.name} openssl verify -x509_strict {shown}: " + ("OK" if outcome.ok else outcome.detail)
        )
        if not outcome.ok:
            failures.append(f"openssl verify {shown}: {outcome.detail}")
    return failures


def _can(cert: x509.Certificate, eku: x509.ObjectIdentifier) -> bool:
    ekus = extended_key_usages(cert)
    return not is_ca(cert) and (ekus is None or eku in ekus)


def _partner(matrix: Matrix, issued: Issued, role: int) -> Issued:
    """The chain's server (role 0) or client (role 1) for the other side of a handshake."""
    names = PARTNERS.get(issued.case.chain)
    return matrix.issued[names[role]] if names else issued


def _handshakes(matrix: Matrix, issued: Issued) -> list[str]:
    pairs: list[tuple[str, Issued, Issued, str]] = []  # (role, server, client, name the client verifies)
    if _can(issued.leaf, ExtendedKeyUsageOID.SERVER_AUTH):
        pairs += [("server", issued, _partner(matrix, issued, 1), n) for n in server_names(issued.leaf)]
    if _can(issued.leaf, ExtendedKeyUsageOID.CLIENT_AUTH):
        server = _partner(matrix, issued, 0)
        names = server_names(server.leaf) if server.files else []
        pairs.append(("client", server, issued, names[0] if names else "(the partner server has no name)"))
    failures = []
    for role, server, client_side, name in pairs:
        other = client_side if role == "server" else server
        if server.files is None or client_side.files is None:
            ok, detail = False, f"partner {other.case.name} was not issued ({other.refusal})"
        else:
            outcome = handshake(server.files, client_side.files, name)
            ok, detail = outcome.ok, outcome.detail
        REPORT.ssl.append(ok)
        REPORT.line(
            f"{issued.case.name} ssl as {role} ({name!r}, other side {other.case.name}): " + ("OK" if ok else detail)
        )
        if not ok:
            failures.append(f"ssl as {role} for {name!r} with {other.case.name}: {detail}")
    return failures


#: Per CA ClusterIssuer, a certificate it issued (its Secret shows what the issuer serves).
ISSUED_BY = {
    ROOT: "root-p256-server",
    INTERMEDIATE: "int-p256-server",
    HAND: "hand-p256-server",
    HAND_CHAIN: "hand-chain-p256-mtls",
}


@pytest.mark.parametrize("issuer", list(ISSUED_BY))
def test_issuer_status_shows_the_chain_it_serves(issuer: str, matrix: Matrix) -> None:
    """status.caChain is tls.crt above the leaf, then the anchor; status.trustAnchor is ca.crt (README)."""
    issued = matrix.issued[ISSUED_BY[issuer]]
    assert not issued.refusal, issued.refusal
    anchors = x509.load_pem_x509_certificates(issued.data["ca.crt"])
    served = [fingerprint(c) for c in [*issued.chain[1:], *anchors]]
    status = matrix.issuer_status[issuer]
    listed = [entry.get("fingerprint") for entry in status.get("caChain", [])]
    anchor = status.get("trustAnchor", {}).get("fingerprint")
    verdict = "the chain its certificates carry" if listed == served and [anchor] == served[-1:] else "NOT that chain"
    REPORT.line(f"ClusterIssuer {issuer} status.caChain ({len(listed)}) and trustAnchor: {verdict}")
    assert listed == served, f"status.caChain {listed}, certificates carry {served}"
    assert [anchor] == served[-1:], f"status.trustAnchor {anchor}, ca.crt {served[-1:]}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_verifier_accepts_the_certificate(case: Case, matrix: Matrix) -> None:
    issued = matrix.issued[case.name]
    REPORT.certificates.add(case.name)
    if issued.refusal:
        REPORT.refused.add(case.name)
        REPORT.line(f"{case.name} [{case.chain}, {case.key}] not issued: {issued.refusal}")
        assert case.may_be_refused, issued.refusal
        assert "subject" in issued.refusal.lower(), f"the refusal does not say what to fix: {issued.refusal}"
        return
    kind = "CA" if is_ca(issued.leaf) else "leaf"
    subject = issued.leaf.subject.rfc4514_string() or "(empty subject)"
    REPORT.line(f"{case.name} [{case.chain}, {case.key}, {kind}] {subject}")
    failures = _anchor(matrix, issued) + _pkilint(issued) + _openssl(issued) + _handshakes(matrix, issued)
    assert not failures, f"{case.name} ({case.chain}, {case.key}):\n" + "\n".join(failures)


def test_the_intermediates_certificates_carry_its_crl_and_aia_urls(matrix: Matrix) -> None:
    """The CA issuer's crlDistributionPoints, ocspServers and issuingCertificateURLs in every leaf it signed (and
    judged by the verifiers above like the rest of each certificate)."""
    leaves = [matrix.issued[c.name] for c in by_chain("certmint-intermediate")]
    leaves = [i for i in leaves if not i.refusal]
    assert leaves
    for issued in leaves:
        cdp = issued.leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        assert [name.value for point in cdp for name in point.full_name or []] == INTERMEDIATE_URLS[
            "crlDistributionPoints"
        ]
        aia = issued.leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        found = {(d.access_method.dotted_string, d.access_location.value) for d in aia}
        assert found == {
            (AuthorityInformationAccessOID.OCSP.dotted_string, INTERMEDIATE_URLS["ocspServers"][0]),
            (AuthorityInformationAccessOID.CA_ISSUERS.dotted_string, INTERMEDIATE_URLS["issuingCertificateURLs"][0]),
        }
    REPORT.line(f"{len(leaves)} certificates of the intermediate carry its CRL and AIA URLs")
