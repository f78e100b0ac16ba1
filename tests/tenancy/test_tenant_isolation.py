"""A tenant tries to obtain another namespace's identity, a CA, or to write or delete a Secret that is not certmint's.

The attacker is ``alice``: she may create, change and delete Certificates and CertificateRequests in team-a,
nothing else (conftest.py builds the world). The attacks that need an Issuer, or Secrets of the attacker's own,
are ``bob``'s, a namespace editor (with Kubernetes' ``edit`` role in team-a for the attacks that need Secrets).
Every attack must be refused, and the test asserts by what and why: the API server's admission (422 and the
rule's message), RBAC (403), certmint's ownership rule (``Ready=False`` ``SecretNotOwned``/``SecretInUse``, the
Secret unchanged to the byte and its resourceVersion), the issuer's policy (``Ready=False`` ``PolicyViolation``
naming the refused value, or a CertificateRequest ``Denied``/``InvalidRequest``) or an issuer that cannot sign
(``CASecretNotFound``). And nothing was issued: no Secret, no signed request (except where ``ownership_refuses``
says why not: a Secret without certmint's label is found only after signing). The last test checks that the
operator is still healthy and still issues what team-a may have.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.integration.builders import (
    API_VERSION,
    GROUP,
    VERSION,
    Certmint,
    certificate,
    issuer,
    leaf,
    serial_hex,
    unique,
)
from tests.integration.kubeutil import wait_for
from tests.tenancy.conftest import (
    ATTACKER_NS,
    CA_ISSUER,
    CA_SECRET,
    EDITOR,
    OUTCOMES,
    RELEASE,
    TEAM_B_ONLY,
    VICTIM_NS,
    World,
)

pytestmark = pytest.mark.tenancy

ADMISSION, POLICY, OWNERSHIP, RBAC, ISSUER = "admission", "policy", "ownership", "rbac", "issuer"
NOT_OWNED = ("SecretNotOwned",)
LEGIT_DURATION = "1h"  # within the example policy's maxDuration (24h): no attack is refused for its lifetime


@dataclass(frozen=True)
class Refusal:
    by: str
    reason: str


# -- how attempts are judged ---------------------------------------------------------------------------------


def admission_refuses(create: Callable[[], Any], fragment: str) -> Refusal:
    """The API server refuses the object at admission (422) with a message containing ``fragment``."""
    try:
        create()
    except ApiException as e:
        assert e.status == 422, f"expected 422 Invalid, got {e.status}: {e.body}"
        assert fragment in e.body, e.body
        return Refusal(ADMISSION, fragment)
    raise AssertionError(f"admitted; expected a refusal containing {fragment!r}")


def rbac_refuses(call: Callable[..., Any], *args: Any) -> Refusal:
    try:
        call(*args)
    except ApiException as e:
        assert e.status == 403, f"expected 403 Forbidden, got {e.status}: {e.body}"
        return Refusal(RBAC, "Forbidden")
    raise AssertionError("allowed; expected 403 Forbidden")


def certificate_refused(world: World, obj: dict[str, Any], reason: str, *mentions: str) -> Refusal:
    """alice creates ``obj`` in team-a; it must end Ready=False with ``reason``, its message naming ``mentions``,
    and no certificate issued: no Secret of that name, no signed CertificateRequest."""
    name, ns = obj["metadata"]["name"], obj["metadata"]["namespace"]
    world.alice.create(obj)
    ready = world.admin.wait_condition("Certificate", name, ns, "Ready", "False", reason=reason)
    for mention in mentions:
        assert mention in ready["message"], ready["message"]
    nothing_signed_for(world, name, ns)
    return Refusal(POLICY if reason == "PolicyViolation" else ISSUER, reason)


def nothing_signed_for(world: World, name: str, ns: str) -> None:
    """No certificate was issued for the Certificate ``name``: no signed CertificateRequest, no serial in its status."""
    obj = world.admin.get("Certificate", name, ns)
    signed = [
        r["metadata"]["name"]
        for r in world.admin.requests_owned_by(obj["metadata"]["uid"], ns)
        if (r.get("status") or {}).get("certificate")
    ]
    assert not signed, f"signed anyway: {signed}"
    assert "serialNumber" not in (obj.get("status") or {}), obj["status"]


def policy_refuses(world: World, *mentions: str, **spec: Any) -> Refusal:
    """A Certificate that is legitimate for team-a (its own Service name, 1h) but for the one thing the attack adds."""
    name = unique("attack")
    spec.setdefault("duration", LEGIT_DURATION)
    obj = certificate(name, ATTACKER_NS, issuer_name=spec.pop("issuer_name", CA_ISSUER), **spec)
    refusal = certificate_refused(world, obj, "PolicyViolation", *mentions)
    assert world.admin.secret(obj["spec"]["secretName"], ATTACKER_NS) is None
    return refusal


def submit_request(
    world: World, csr: x509.CertificateSigningRequest, namespace: str = ATTACKER_NS, **spec: Any
) -> dict[str, Any]:
    """A CertificateRequest of alice's for ``csr`` to the shared CA issuer, as she creates it."""
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    return {
        "apiVersion": API_VERSION,
        "kind": "CertificateRequest",
        "metadata": {"name": unique("csr-attack"), "namespace": namespace},
        "spec": {
            "request": pem,
            "issuerRef": {"name": CA_ISSUER, "kind": "ClusterIssuer"},
            "duration": LEGIT_DURATION,
            **spec,
        },
    }


def request_refused(world: World, csr: x509.CertificateSigningRequest, *mentions: str, **spec: Any) -> Refusal:
    """alice submits a CSR of her own key; it must be Denied or InvalidRequest, naming ``mentions``, and unsigned."""
    body = submit_request(world, csr, **spec)
    name = body["metadata"]["name"]
    world.alice.create(body)

    def settled() -> dict[str, Any] | None:
        status = world.admin.get("CertificateRequest", name, ATTACKER_NS).get("status") or {}
        final = [c for c in status.get("conditions") or [] if c["status"] == "True"]
        return status if [c for c in final if c["type"] in ("Denied", "InvalidRequest", "Ready")] else None

    status = wait_for(settled, f"CertificateRequest {name} to be judged")
    assert not status.get("certificate"), "the request was signed"
    (verdict,) = [
        c for c in status["conditions"] if c["type"] in ("Denied", "InvalidRequest") and c["status"] == "True"
    ]
    for mention in mentions:
        assert mention in verdict["message"], verdict["message"]
    return Refusal(POLICY, f"{verdict['type']}/{verdict['reason']}")


def _snapshot(world: World, name: str) -> tuple[Any, ...]:
    secret = world.admin.secret(name, ATTACKER_NS)
    assert secret is not None, f"Secret {name} is gone"
    meta = secret.metadata
    return (
        meta.resource_version,
        secret.type,
        dict(secret.data or {}),
        dict(meta.labels or {}),
        dict(meta.annotations or {}),
        meta.owner_references,
    )


def ownership_refuses(
    world: World,
    secret_name: str,
    reasons: tuple[str, ...],
    *mentions: str,
    name: str | None = None,
    attacker: Certmint | None = None,
    unsigned: bool = False,
    **spec: Any,
) -> Refusal:
    """The attacker (alice unless named) names an existing Secret in a Certificate (of the shared CA issuer unless
    ``spec`` says otherwise) with secretDeletionPolicy Delete, then deletes the Certificate: the Certificate is refused
    with one of ``reasons`` and the Secret is the same object, unchanged, throughout.

    ``unsigned``: nothing was signed for the Certificate either. Only for a Secret with certmint's label, which its
    label-selected Secret watch knows before it signs; one without it certmint learns of when its create of the
    Secret fails (409), after signing a certificate that stays in the CertificateRequest's status.
    """
    before = _snapshot(world, secret_name)
    name = name or unique("taker")
    attacker = attacker or world.alice
    spec = {"issuer_name": CA_ISSUER, "duration": LEGIT_DURATION, **spec}
    obj = certificate(name, ATTACKER_NS, secret=secret_name, secretDeletionPolicy="Delete", **spec)
    attacker.create(obj)

    def refused() -> dict[str, Any] | None:
        ready = world.admin.condition("Certificate", name, ATTACKER_NS, "Ready")
        return ready if ready and ready["status"] == "False" and ready["reason"] in reasons else None

    try:
        ready = wait_for(refused, f"Certificate {name} Ready=False ({' or '.join(reasons)})")
    except AssertionError as e:
        raise AssertionError(
            f"{e}; status now: {world.admin.get('Certificate', name, ATTACKER_NS).get('status')}"
        ) from None
    for mention in mentions:
        assert mention in ready["message"], ready["message"]
    assert _snapshot(world, secret_name) == before
    if unsigned:
        nothing_signed_for(world, name, ATTACKER_NS)
    uid = world.admin.get("Certificate", name, ATTACKER_NS)["metadata"]["uid"]
    attacker.delete("Certificate", name, ATTACKER_NS)

    def gone() -> bool:
        try:
            world.admin.get("Certificate", name, ATTACKER_NS)
        except ApiException as e:
            return e.status == 404
        return False

    wait_for(gone, f"Certificate {name} to be gone")
    wait_for(lambda: not world.admin.requests_owned_by(uid, ATTACKER_NS), f"the requests of {name} to be collected")
    assert _snapshot(world, secret_name) == before  # not deleted, not touched
    return Refusal(OWNERSHIP, ready["reason"])


def _admin_secret(world: World, body: dict[str, Any]) -> str:
    name = unique("existing")
    body.setdefault("metadata", {})["name"] = name
    world.admin.core.create_namespaced_secret(ATTACKER_NS, body)
    return name


# -- CSRs ----------------------------------------------------------------------------------------------------


def csr(
    *subject: tuple[x509.ObjectIdentifier, str],
    sans: list[x509.GeneralName] | None = None,
) -> x509.CertificateSigningRequest:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(oid, value) for oid, value in subject])
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256())


CN, ORG = NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME
OWN = "web.team-a.svc"
UPN = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")  # Microsoft UPN otherName, as smart-card logins use


def _utf8_der(text: str) -> bytes:
    raw = text.encode()
    return bytes([0x0C, len(raw)]) + raw


# -- the attacks ----------------------------------------------------------------------------------------------

Attack = Callable[[World], Refusal]
ATTACKS: dict[str, Attack] = {}


def attack(attack_id: str) -> Callable[[Attack], Attack]:
    def register(fn: Attack) -> Attack:
        assert attack_id not in ATTACKS, attack_id
        ATTACKS[attack_id] = fn
        return fn

    return register


# Secrets that are not certmint's, named in spec.secretName (the confused deputy of issue 11, item 1).


@attack("take-over-users-tls-secret")
def _(w: World) -> Refusal:
    name = _admin_secret(
        w, {"type": "kubernetes.io/tls", "stringData": {"tls.crt": "users-own-cert", "tls.key": "users-own-key"}}
    )
    return ownership_refuses(w, name, NOT_OWNED, "certmint.dev/handover-to")


@attack("take-over-opaque-secret")
def _(w: World) -> Refusal:
    name = _admin_secret(w, {"type": "Opaque", "stringData": {"password": "hunter2"}})
    return ownership_refuses(w, name, NOT_OWNED)


@attack("delete-service-account-token-secret")
def _(w: World) -> Refusal:
    sa = unique("builder")
    w.admin.core.create_namespaced_service_account(ATTACKER_NS, {"metadata": {"name": sa}})
    name = _admin_secret(
        w,
        {
            "type": "kubernetes.io/service-account-token",
            "metadata": {"annotations": {"kubernetes.io/service-account.name": sa}},
        },
    )
    # The token controller fills it in: a real, working token.
    wait_for(lambda: (w.admin.secret(name, ATTACKER_NS) or client.V1Secret()).data, f"token in Secret {name}")
    return ownership_refuses(w, name, NOT_OWNED)


@attack("take-over-secret-labelled-for-the-attacking-certificate")
def _(w: World) -> Refusal:
    # Label and annotation imitate what certmint puts on its Secrets, naming alice's Certificate: not a marker.
    taker = unique("taker")
    marks = {"certmint.dev/certificate-name": taker}
    name = _admin_secret(w, {"metadata": {"labels": marks, "annotations": marks}, "stringData": {"k": "v"}})
    return ownership_refuses(w, name, NOT_OWNED, name=taker)


@attack("take-over-secret-labelled-for-another-certificate")
def _(w: World) -> Refusal:
    # A label naming some other Certificate: refused either as not certmint's or as another Certificate's (the label
    # is how Secrets of certmint versions before the UID marker look), never written.
    marks = {"certmint.dev/certificate-name": "anything"}
    name = _admin_secret(w, {"metadata": {"labels": marks}, "stringData": {"k": "v"}})
    return ownership_refuses(w, name, (*NOT_OWNED, "SecretInUse"))


@attack("take-over-secret-handed-to-another-certificate")
def _(w: World) -> Refusal:
    name = _admin_secret(w, {"metadata": {"annotations": {"certmint.dev/handover-to": "someone-else"}}})
    return ownership_refuses(w, name, NOT_OWNED)


@attack("second-certificate-on-certmints-secret")
def _(w: World) -> Refusal:
    # team-a's own Certificate and its Secret, issued by certmint; a second Certificate names the same Secret.
    owner = unique("owner")
    w.alice.create(certificate(owner, ATTACKER_NS, issuer_name=CA_ISSUER, duration=LEGIT_DURATION))
    w.admin.wait_ready("Certificate", owner, ATTACKER_NS, timeout=60)
    return ownership_refuses(w, f"{owner}-tls", ("SecretInUse",), owner)


# Names of other namespaces, wildcards, IPs and subjects through a Certificate (items 2 and 3): each attack's
# Certificate spec, and what the refusal must name.
POLICY_ATTACKS: dict[str, tuple[dict[str, Any], str]] = {
    "dns-name-of-team-b": ({"dnsNames": ["web.team-b.svc"]}, "web.team-b.svc"),
    "dns-name-of-team-b-cluster-local": (
        {"dnsNames": ["web.team-b.svc.cluster.local"]},
        "web.team-b.svc.cluster.local",
    ),
    "dns-name-of-the-api-server": ({"dnsNames": ["kubernetes.default.svc"]}, "kubernetes.default.svc"),
    "wildcard-every-service": ({"dnsNames": ["*.svc"]}, "*.svc"),
    "wildcard-services-of-team-b": ({"dnsNames": ["*.team-b.svc"]}, "*.team-b.svc"),
    "wildcard-cluster-local": ({"dnsNames": ["*.svc.cluster.local"]}, "*.svc.cluster.local"),
    "ip-address-san": ({"dnsNames": [OWN], "ipAddresses": ["10.0.0.1"]}, "10.0.0.1"),
    "common-name-admin-organization-system-masters": (
        {"commonName": "admin", "dnsNames": [OWN], "subject": {"organizations": ["system:masters"]}},
        "system:masters",
    ),
    "common-name-of-team-b": ({"commonName": "web.team-b.svc", "dnsNames": [OWN]}, "web.team-b.svc"),
    # OpenSSL and Python verify "kubernetes" as a host name against the CN when there is no DNS SAN to match.
    "dotless-common-name": ({"commonName": "kubernetes", "dnsNames": [OWN]}, "kubernetes"),
    "spiffe-id-of-team-b": (
        {"uris": ["spiffe://cluster.local/ns/team-b/sa/default"]},
        "spiffe://cluster.local/ns/team-b/sa/default",
    ),
    "spiffe-id-of-another-trust-domain": (
        {"uris": ["spiffe://evil.example/ns/team-a/sa/web"]},
        "spiffe://evil.example/ns/team-a/sa/web",
    ),
    "email-address-san": ({"dnsNames": [OWN], "emailAddresses": ["admin@example.com"]}, "admin@example.com"),
    "ca-certificate": ({"dnsNames": [OWN], "commonName": OWN, "isCA": True}, "isCA"),
    "lifetime-over-max-duration": ({"dnsNames": [OWN], "duration": "48h"}, "24h"),
    "issuer-whose-allowed-namespaces-exclude-team-a": ({"issuer_name": TEAM_B_ONLY, "dnsNames": [OWN]}, "team-a"),
}


def _policy_attack(spec: dict[str, Any], mention: str) -> Attack:
    return lambda w: policy_refuses(w, mention, **spec)


for _id, (_spec, _mention) in POLICY_ATTACKS.items():
    attack(_id)(_policy_attack(_spec, _mention))


@attack("spiffe-id-path-traversal")
def _(w: World) -> Refusal:
    uri = "spiffe://cluster.local/ns/team-a/sa/../../team-b/sa/web"
    try:
        return policy_refuses(w, uris=[uri])
    except ApiException as e:  # refused even earlier, at admission, is as good
        assert e.status == 422, e.body
        return Refusal(ADMISSION, "spec.uris")


# Refused at admission: what the API server can judge alone.


def _admitted(w: World, **spec: Any) -> Callable[[], Any]:
    spec.setdefault("duration", LEGIT_DURATION)
    return lambda: w.alice.create(certificate(unique("attack"), ATTACKER_NS, issuer_name=CA_ISSUER, **spec))


@attack("spiffe-id-without-trust-domain")
def _(w: World) -> Refusal:
    return admission_refuses(_admitted(w, uris=["spiffe://"]), "spec.uris[0]")


@attack("ipv4-mapped-ipv6-address")
def _(w: World) -> Refusal:
    # 10.0.0.1 in disguise: an IPv4 range in a policy would not judge it.
    fragment = "spec.ipAddresses must not contain IPv4-mapped IPv6 addresses"
    return admission_refuses(_admitted(w, dnsNames=[OWN], ipAddresses=["::ffff:10.0.0.1"]), fragment)


@attack("secret-template-imitates-certmints-label")
def _(w: World) -> Refusal:
    template = {"labels": {"certmint.dev/certificate-name": "web"}}
    fragment = "spec.secretTemplate.labels must not set certmint.dev/certificate-name"
    return admission_refuses(_admitted(w, dnsNames=[OWN], secretTemplate=template), fragment)


@attack("secret-template-forges-ownership-annotation")
def _(w: World) -> Refusal:
    template = {"annotations": {"certmint.dev/certificate-uid": "00000000-0000-0000-0000-000000000000"}}
    fragment = "spec.secretTemplate.annotations must not set certmint.dev/certificate-uid"
    return admission_refuses(_admitted(w, dnsNames=[OWN], secretTemplate=template), fragment)


@attack("lifetime-beyond-duration-arithmetic")
def _(w: World) -> Refusal:
    return admission_refuses(_admitted(w, dnsNames=[OWN], duration="3000000h"), "spec.duration must be at most 87600h")


# CSRs of alice's own key, through a CertificateRequest (the public API for workloads that keep their key).


@attack("csr-two-common-names")
def _(w: World) -> Refusal:
    return request_refused(w, csr((CN, "web.team-b.svc"), (CN, "nodots")))


@attack("csr-common-name-with-trailing-dot")
def _(w: World) -> Refusal:
    return request_refused(w, csr((CN, "api.team-b.svc.")))


@attack("csr-dotless-common-name")
def _(w: World) -> Refusal:
    return request_refused(w, csr((CN, "nodots")), "nodots")


@attack("csr-unknown-subject-attribute")
def _(w: World) -> Refusal:
    return request_refused(w, csr((CN, OWN), (NameOID.USER_ID, "root")))


@attack("csr-other-name-san")
def _(w: World) -> Refusal:
    sans: list[x509.GeneralName] = [x509.DNSName(OWN), x509.OtherName(UPN, _utf8_der("administrator@corp.example"))]
    return request_refused(w, csr((CN, OWN), sans=sans))


@attack("csr-directory-name-san")
def _(w: World) -> Refusal:
    admin = x509.Name([x509.NameAttribute(CN, "admin"), x509.NameAttribute(ORG, "system:masters")])
    return request_refused(w, csr((CN, OWN), sans=[x509.DNSName(OWN), x509.DirectoryName(admin)]))


@attack("csr-dns-name-of-team-b")
def _(w: World) -> Refusal:
    return request_refused(w, csr(sans=[x509.DNSName("web.team-b.svc")]), "web.team-b.svc")


@attack("csr-dns-name-with-trailing-dot")
def _(w: World) -> Refusal:
    return request_refused(w, csr(sans=[x509.DNSName("web.team-b.svc.")]))


@attack("csr-ip-address-san")
def _(w: World) -> Refusal:
    sans: list[x509.GeneralName] = [x509.DNSName(OWN), x509.IPAddress(ipaddress.ip_address("10.0.0.1"))]
    return request_refused(w, csr((CN, OWN), sans=sans), "10.0.0.1")


@attack("csr-organization-system-masters")
def _(w: World) -> Refusal:
    return request_refused(w, csr((CN, OWN), (ORG, "system:masters"), sans=[x509.DNSName(OWN)]), "system:masters")


@attack("csr-spiffe-id-of-team-b")
def _(w: World) -> Refusal:
    uri = "spiffe://cluster.local/ns/team-b/sa/default"
    return request_refused(w, csr(sans=[x509.UniformResourceIdentifier(uri)]), uri)


@attack("csr-ca-certificate")
def _(w: World) -> Refusal:
    return request_refused(w, csr((CN, OWN), sans=[x509.DNSName(OWN)]), isCA=True)


# What RBAC alone keeps from her.


@attack("read-the-ca-secret")
def _(w: World) -> Refusal:
    return rbac_refuses(client.CoreV1Api(w.alice_api).read_namespaced_secret, CA_SECRET, RELEASE)


@attack("read-team-b-private-key")
def _(w: World) -> Refusal:
    return rbac_refuses(client.CoreV1Api(w.alice_api).read_namespaced_secret, "web-tls", VICTIM_NS)


@attack("create-a-clusterissuer")
def _(w: World) -> Refusal:
    body = {
        "apiVersion": API_VERSION,
        "kind": "ClusterIssuer",
        "metadata": {"name": "mine"},
        "spec": {"ca": {"secretName": CA_SECRET}},
    }
    return rbac_refuses(w.alice.create, body)


@attack("relax-the-clusterissuer-policy")
def _(w: World) -> Refusal:
    return rbac_refuses(w.alice.patch, "ClusterIssuer", CA_ISSUER, None, {"spec": {"policy": None}})


@attack("create-an-issuer")
def _(w: World) -> Refusal:
    return rbac_refuses(w.alice.create, issuer("mine", ATTACKER_NS, ca_secret=CA_SECRET))


@attack("certificate-in-team-b")
def _(w: World) -> Refusal:
    return rbac_refuses(w.alice.create, certificate(unique("attack"), VICTIM_NS, issuer_name=CA_ISSUER))


@attack("request-in-team-b")
def _(w: World) -> Refusal:
    body = submit_request(w, csr(sans=[x509.DNSName("web.team-b.svc")]), namespace=VICTIM_NS)
    return rbac_refuses(w.alice.create, body)


@attack("approve-her-own-request")
def _(w: World) -> Refusal:
    # Before the operator judges it, she writes the verdict herself: Approved, and a certificate of her making.
    body = submit_request(w, csr(sans=[x509.DNSName("web.team-b.svc")]))
    name = body["metadata"]["name"]
    w.alice.create(body)
    verdict = {
        "status": {
            "conditions": [{"type": "Approved", "status": "True", "reason": "Mine", "message": "approved by alice"}],
            "certificate": "forged",
        }
    }
    patch = w.alice.custom.patch_namespaced_custom_object_status
    refusal = rbac_refuses(patch, GROUP, VERSION, ATTACKER_NS, "certificaterequests", name, verdict)
    wait_for(lambda: w.admin.condition("CertificateRequest", name, ATTACKER_NS, "Denied"), f"{name} to be judged")
    assert not (w.admin.get("CertificateRequest", name, ATTACKER_NS).get("status") or {}).get("certificate")
    return refusal


@attack("impersonate-the-operator")
def _(w: World) -> Refusal:
    api = client.ApiClient(w.alice_api.configuration)
    sa = w.installed.deployment["spec"]["template"]["spec"]["serviceAccountName"]
    api.set_default_header("Impersonate-User", f"system:serviceaccount:{RELEASE}:{sa}")
    return rbac_refuses(client.CoreV1Api(api).read_namespaced_secret, CA_SECRET, RELEASE)


@attack("token-of-the-operator-service-account")
def _(w: World) -> Refusal:
    sa = w.installed.deployment["spec"]["template"]["spec"]["serviceAccountName"]
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
    return rbac_refuses(client.CoreV1Api(w.alice_api).create_namespaced_service_account_token, sa, RELEASE, request)


# A namespace editor (bob: the chart's certmint-edit role in team-a) and an Issuer of his own.


@attack("issuer-naming-the-clusterissuers-ca-secret")
def _(w: World) -> Refusal:
    # A namespaced Issuer reads its CA Secret from its own namespace: the name of the cluster CA's Secret finds nothing.
    name = unique("stolen-ca")
    w.bob.create(issuer(name, ATTACKER_NS, ca_secret=CA_SECRET))
    ready = w.admin.wait_condition("Issuer", name, ATTACKER_NS, "Ready", "False", reason="CASecretNotFound")
    assert ATTACKER_NS in ready["message"], ready["message"]
    obj = certificate(
        unique("attack"),
        ATTACKER_NS,
        issuer_name=name,
        issuer_kind="Issuer",
        dnsNames=["web.team-b.svc"],
        duration=LEGIT_DURATION,
    )
    certificate_refused(w, obj, "IssuerNotReady")
    return Refusal(ISSUER, "CASecretNotFound")


@contextlib.contextmanager
def namespace_editor(world: World) -> Iterator[Certmint]:
    """bob as a namespace editor of team-a has it (Kubernetes' own ``edit`` ClusterRole: Secrets included), for as
    long as the attack runs."""
    rbac = client.RbacAuthorizationV1Api(world.admin.core.api_client)
    binding = unique("bob-edit")
    group = "rbac.authorization.k8s.io"
    rbac.create_namespaced_role_binding(
        ATTACKER_NS,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name=binding),
            role_ref=client.V1RoleRef(api_group=group, kind="ClusterRole", name="edit"),
            subjects=[client.RbacV1Subject(api_group=group, kind="User", name=EDITOR)],
        ),
    )
    attributes = client.V1ResourceAttributes(namespace=ATTACKER_NS, verb="create", resource="secrets")
    review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=attributes))
    access = client.AuthorizationV1Api(world.bob.core.api_client)

    def allowed() -> bool:
        status = access.create_self_subject_access_review(review).status
        return status is not None and status.allowed

    try:
        wait_for(allowed, "bob may create Secrets")
        yield world.bob
    finally:
        rbac.delete_namespaced_role_binding(binding, ATTACKER_NS)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def forged_like(template: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    """A self-signed certificate for the attacker's own ``key`` that is ``template`` in every other respect (subject,
    validity, extensions): a root certmint issued for a spec matches that spec, and so does this one."""
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(template.subject)
        .issuer_name(template.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(template.not_valid_before_utc)
        .not_valid_after(template.not_valid_after_utc)
    )
    for extension in template.extensions:
        value: x509.ExtensionType = extension.value
        if isinstance(value, x509.SubjectKeyIdentifier):
            value = x509.SubjectKeyIdentifier.from_public_key(public)
        elif isinstance(value, x509.AuthorityKeyIdentifier):
            value = x509.AuthorityKeyIdentifier.from_issuer_public_key(public)
        builder = builder.add_extension(value, extension.critical)
    return builder.sign(key, hashes.SHA256())


def certified_with(world: World, forged: list[x509.Certificate], besides: str) -> list[str]:
    """Where in team-a a certificate has the key of one of ``forged`` or is signed with it: in any Secret but
    ``besides`` (the forgery itself), or in any CertificateRequest."""
    pems = [
        (f"Secret {secret.metadata.name} {key}", base64.b64decode(value))
        for secret in world.admin.core.list_namespaced_secret(ATTACKER_NS).items
        if secret.metadata and secret.metadata.name != besides
        for key, value in (secret.data or {}).items()
        if key.endswith(".crt")
    ]
    pems += [
        (f"CertificateRequest {r['metadata']['name']} {key}", r["status"][key].encode())
        for r in world.admin.items("CertificateRequest", ATTACKER_NS)
        for key in ("certificate", "ca")
        if (r.get("status") or {}).get(key)
    ]
    keys = {_spki(cert) for cert in forged}
    found = []
    for where, pem in pems:
        try:
            certs = x509.load_pem_x509_certificates(pem)
        except ValueError:  # not certificates (other attacks' Secrets hold "users-own-cert"): no key in them
            continue
        for cert in certs:
            if _spki(cert) in keys or any(_signed_with(cert, ca) for ca in forged):
                found.append(f"{where}: {cert.subject.rfc4514_string()} serial {serial_hex(cert)}")
    return found


def _signed_with(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True)
class ForgedRoot:
    name: str  # of the root CA Certificate the Secret waits for
    secret: str
    spec: dict[str, Any]  # the Certificate's (certificate() keywords)
    current: x509.Certificate  # tls.crt, for a key of the editor's own
    staged: x509.Certificate  # next-tls.crt, for another key of the editor's own


def forge_staged_root(w: World, editor: Certmint, *, handover: bool = False) -> ForgedRoot:
    """A Secret dressed as certmint's own for a root CA Certificate in the middle of a rotation whose switch time
    has passed (next-tls.crt/next-tls.key, the staged root in ca.crt, certmint.dev/root-switch-at), both key pairs
    of the editor's own making, created by ``editor`` under the name a root Certificate will use (``handover``: and
    handed over to it). The Certificate is not created."""
    self_signed = unique("self-signed")
    editor.create(issuer(self_signed, ATTACKER_NS))
    w.admin.wait_ready("Issuer", self_signed, ATTACKER_NS, timeout=60)
    spec: dict[str, Any] = {
        "issuer_name": self_signed,
        "issuer_kind": "Issuer",
        "isCA": True,
        "commonName": "team-a root CA",
        "duration": "720h",
    }
    # A genuine root for the same spec, the editor's to read: the forged pairs copy everything of it but the key,
    # so that they match the spec as certmint judges it (a staged root that does not is never switched to).
    donor = unique("donor")
    editor.create(certificate(donor, ATTACKER_NS, **spec))
    w.admin.wait_ready("Certificate", donor, ATTACKER_NS, timeout=60)
    donor_meta = editor.core.read_namespaced_secret(f"{donor}-tls", ATTACKER_NS).metadata
    assert donor_meta is not None
    template = leaf(editor.secret_data(f"{donor}-tls", ATTACKER_NS))
    current_key, next_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    current, staged = forged_like(template, current_key), forged_like(template, next_key)

    def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    name = unique("root")
    # certmint's own Secret metadata as the donor's shows it, but for this Certificate and these certificates; only
    # the Certificate's UID (certmint's mark, set when it creates a Secret) cannot be known in advance.
    marks = {k: v for k, v in (donor_meta.annotations or {}).items() if k.startswith("certmint.dev/")}
    marks.pop("certmint.dev/certificate-uid", None)
    switch_at = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    handed = {"certmint.dev/handover-to": name} if handover else {}
    marks |= {
        **handed,
        "certmint.dev/certificate-name": name,
        "certmint.dev/serial-number": serial_hex(current),
        "certmint.dev/root-switch-at": switch_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    labels = {**(donor_meta.labels or {}), "certmint.dev/certificate-name": name}
    data = {
        "tls.crt": _pem(current),
        "tls.key": key_pem(current_key),
        "ca.crt": _pem(current) + _pem(staged),  # the staged root announced in ca.crt, as a rotation does
        "next-tls.crt": _pem(staged),
        "next-tls.key": key_pem(next_key),
    }
    secret = f"{name}-tls"
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name=secret, labels=labels, annotations=marks),
        type="kubernetes.io/tls",
        data={k: base64.b64encode(v).decode() for k, v in data.items()},
    )
    editor.core.create_namespaced_secret(ATTACKER_NS, body)
    return ForgedRoot(name=name, secret=secret, spec=spec, current=current, staged=staged)


@attack("forged-staged-root-secret")
def _(w: World) -> Refusal:
    # The root rotation's staged state lives in the root's Secret. Were certmint to switch to the forged one, its
    # root would be a key of the editor's making. It writes nothing into the Secret (SecretNotOwned), signs nothing.
    with namespace_editor(w) as bob:
        forged = forge_staged_root(w, bob)
        refusal = ownership_refuses(
            w, forged.secret, NOT_OWNED, name=forged.name, attacker=bob, unsigned=True, **forged.spec
        )
        assert not certified_with(w, [forged.current, forged.staged], besides=forged.secret)
        return refusal


# -- the tests ------------------------------------------------------------------------------------------------


def test_the_forged_staged_root_is_switched_to_in_a_secret_handed_over(world: World) -> None:
    """The control of forged-staged-root-secret: the same forgery in a Secret a person hands over to the Certificate
    (certmint.dev/handover-to) is switched to. So the forgery is one certmint would act on: only ownership stops it."""
    with namespace_editor(world) as bob:
        forged = forge_staged_root(world, bob, handover=True)
        bob.create(certificate(forged.name, ATTACKER_NS, secret=forged.secret, **forged.spec))

        def switched() -> bool:
            return leaf(world.admin.secret_data(forged.secret, ATTACKER_NS)) == forged.staged

        # Its switch time is long past, but this process has not seen the next root in every trust set before:
        # the switch comes half a propagation time (the chart's 120 s) after its first look.
        wait_for(switched, f"Secret {forged.secret} holding the staged root in tls.crt", timeout=150)
    data = world.admin.secret_data(forged.secret, ATTACKER_NS)
    assert "next-tls.crt" not in data and "next-tls.key" not in data, sorted(data)
    assert x509.load_pem_x509_certificates(data["ca.crt"]) == [forged.current, forged.staged]
    status = world.admin.wait_ready("Certificate", forged.name, ATTACKER_NS)["status"]
    assert status["revision"] == 2 and status["serialNumber"] == serial_hex(forged.staged), status


def test_there_are_at_least_25_attacks() -> None:
    assert len(ATTACKS) >= 25


@pytest.mark.parametrize("attack_id", list(ATTACKS))
def test_attack_is_refused(world: World, attack_id: str) -> None:
    try:
        refusal = ATTACKS[attack_id](world)
    except BaseException as e:
        OUTCOMES.append(f"tenancy: attack={attack_id} NOT REFUSED as expected: {str(e).splitlines()[0][:200]}")
        raise
    line = f"tenancy: attack={attack_id} refused by={refusal.by} reason={refusal.reason}"
    OUTCOMES.append(line)
    print(line)


def test_the_documented_policy_is_not_flagged_unrestricted(world: World) -> None:
    conditions = world.admin.get("ClusterIssuer", CA_ISSUER).get("status", {}).get("conditions") or []
    unrestricted = [c for c in conditions if c["type"] == "Unrestricted"]
    assert unrestricted and unrestricted[0]["status"] == "False", conditions


def test_the_operator_is_still_healthy_and_issues_what_team_a_may_have(world: World) -> None:
    assert world.operator.proc is not None and world.operator.proc.poll() is None, "the operator exited"
    assert world.operator.get("/healthz")[0] == 200
    name = unique("legit")
    names = [f"{name}.team-a.svc", f"{name}.team-a.svc.cluster.local"]
    uri = "spiffe://cluster.local/ns/team-a/sa/web"
    world.alice.create(certificate(name, ATTACKER_NS, issuer_name=CA_ISSUER, dnsNames=names, uris=[uri], duration="1h"))
    world.admin.wait_ready("Certificate", name, ATTACKER_NS, timeout=60)
    issued = leaf(world.admin.secret_data(f"{name}-tls", ATTACKER_NS))
    assert issued.issuer.rfc4514_string() == f"CN={CA_SECRET} test CA"
    san = issued.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == names
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [uri]
    # The victim's identity was never re-issued or touched by any attack.
    victim = world.admin.get("Certificate", "web", VICTIM_NS)
    assert victim["status"]["revision"] == 1, victim["status"]
    log = world.operator.log_path.read_text()
    assert "Traceback" not in log, f"an attack provoked a traceback; log: {world.operator.log_path}"
