"""core.pod_certificates: a PodCertificateRequest read as the kubelet sends it, judged by the issuer's policy and the
API's lifetime rules, and signed with pki.signing.sign_within. Real keys, real CSRs, an injected clock."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import uuid
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.x509 import verification
from cryptography.x509.oid import ExtensionOID

from certmint.core import pod_certificates as pc
from certmint.core.spec import PodCertificates, Policy, SpecError
from certmint.pki.signing import SigningAuthority, sign_within
from tests.podcert import PodKey, b64, pcr, pod_key, spki
from tests.unit.builders import NOW

SIGNER = "certmint.dev/pods"
TRUST_DOMAIN = "cluster.local"
PODS = PodCertificates(signer_name=SIGNER, trust_domain=TRUST_DOMAIN)
DAY = datetime.timedelta(days=1)
HOUR = datetime.timedelta(hours=1)

_KEYS: dict[str, PodKey] = {}


def key(key_type: str) -> PodKey:
    """One key per type for the module (RSA 3072 generation takes a while)."""
    if key_type not in _KEYS:
        _KEYS[key_type] = pod_key(key_type)
    return _KEYS[key_type]


def request(
    key_type: str = "ECDSAP256",
    *,
    namespace: str = "shop",
    service_account: str = "web",
    max_expiration_seconds: int | None = 86400,
    legacy_key: bool = False,
    uid: str | None = None,
) -> pc.PodRequest:
    obj = pcr(
        namespace,
        f"req-{uuid.uuid4().hex[:5]}",
        signer_name=SIGNER,
        key=key(key_type),
        service_account=service_account,
        max_expiration_seconds=max_expiration_seconds,
        legacy_key=legacy_key,
        uid=uid or str(uuid.uuid4()),
    )
    parsed = pc.parse_request(obj)
    assert isinstance(parsed, pc.PodRequest), parsed
    return parsed


def judge(
    req: pc.PodRequest,
    *,
    pods: PodCertificates = PODS,
    policy: dict[str, Any] | None = None,
    now: datetime.datetime = NOW,
    ca_not_before: datetime.datetime = NOW - DAY,
    ca_not_after: datetime.datetime = NOW + 365 * DAY,
    jitter_fraction: float = 0.1,
) -> pc.Grant | pc.Refusal:
    return pc.judge(
        req,
        pods,
        Policy.from_dict(policy),
        now=now,
        ca_not_before=ca_not_before,
        ca_not_after=ca_not_after,
        jitter_fraction=jitter_fraction,
    )


def granted(answer: pc.Grant | pc.Refusal) -> pc.Grant:
    assert isinstance(answer, pc.Grant), answer
    return answer


def refused(answer: object, type_: str, reason: str) -> pc.Refusal:
    assert isinstance(answer, pc.Refusal), answer
    assert (answer.type, answer.reason) == (type_, reason), answer
    assert answer.message
    return answer


# -- parse_request ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_type", "algorithm", "size"),
    [("ECDSAP256", "ECDSA", 256), ("ECDSAP384", "ECDSA", 384), ("ED25519", "Ed25519", 0), ("RSA3072", "RSA", 3072)],
)
@pytest.mark.parametrize("legacy_key", [False, True], ids=["stubPKCS10Request", "pkixPublicKey"])
def test_parse_request_takes_the_public_key_from_either_form(
    key_type: str, algorithm: str, size: int, legacy_key: bool
) -> None:
    obj = pcr(
        "shop",
        "req-1",
        signer_name=SIGNER,
        key=key(key_type),
        service_account="web",
        node_name="n7",
        max_expiration_seconds=7200,
        legacy_key=legacy_key,
        uid="u-1",
    )
    parsed = pc.parse_request(obj)
    assert isinstance(parsed, pc.PodRequest), parsed
    assert (parsed.key_algorithm, parsed.key_size) == (algorithm, size)
    assert spki_of(parsed.public_key) == spki(key(key_type))
    assert (parsed.namespace, parsed.name, parsed.uid, parsed.signer_name) == ("shop", "req-1", "u-1", SIGNER)
    assert (parsed.pod_name, parsed.service_account, parsed.node_name) == ("req-1-pod", "web", "n7")
    assert parsed.max_expiration == datetime.timedelta(seconds=7200)


def spki_of(public_key: Any) -> bytes:
    der: bytes = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return der


def test_parse_request_defaults_the_lifetime_to_the_apis_default() -> None:
    obj = pcr("shop", "req-1", signer_name=SIGNER, key=key("ECDSAP256"), uid="u")
    assert "maxExpirationSeconds" not in obj["spec"]
    parsed = pc.parse_request(obj)
    assert isinstance(parsed, pc.PodRequest)
    assert parsed.max_expiration == DAY


def _without_keys(obj: dict[str, Any]) -> dict[str, Any]:
    for field in ("stubPKCS10Request", "pkixPublicKey", "proofOfPossession"):
        obj["spec"].pop(field, None)
    return obj


def test_parse_request_fails_a_request_without_a_key() -> None:
    obj = _without_keys(pcr("shop", "r", signer_name=SIGNER, key=key("ECDSAP256"), uid="u"))
    refused(pc.parse_request(obj), pc.FAILED, pc.UNREADABLE_KEY)


def test_parse_request_fails_a_stub_csr_whose_signature_does_not_verify() -> None:
    obj = pcr("shop", "r", signer_name=SIGNER, key=key("ED25519"), uid="u")
    der = bytearray(base64.b64decode(obj["spec"]["stubPKCS10Request"]))
    der[-1] ^= 0x01  # the last byte of the Ed25519 signature
    obj["spec"]["stubPKCS10Request"] = b64(bytes(der))
    refusal = refused(pc.parse_request(obj), pc.FAILED, pc.UNREADABLE_KEY)
    assert "signature" in refusal.message


def test_parse_request_fails_a_key_that_cannot_sign() -> None:
    obj = _without_keys(pcr("shop", "r", signer_name=SIGNER, key=key("ECDSAP256"), uid="u"))
    x = x25519.X25519PrivateKey.generate().public_key()
    obj["spec"]["pkixPublicKey"] = b64(
        x.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    refused(pc.parse_request(obj), pc.FAILED, pc.UNREADABLE_KEY)


# -- judge: granted -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["ECDSAP256", "ECDSAP384", "ED25519", "RSA3072"])
def test_an_allowed_pod_gets_exactly_its_spiffe_id(key_type: str) -> None:
    req = request(key_type, namespace="shop", service_account="web")
    grant = granted(judge(req))
    uri = "spiffe://cluster.local/ns/shop/sa/web"
    assert grant.spiffe_id == uri
    csr = grant.request.csr
    assert csr.uris == (uri,)
    assert (csr.dns_names, csr.ip_addresses, csr.email_addresses) == ((), (), ())
    assert csr.common_name is None
    assert grant.request.is_ca is False
    assert csr.public_key is req.public_key


@pytest.mark.parametrize("max_expiration_seconds", [3600, 3601, 5400, 86400, 7862400])
@pytest.mark.parametrize("jitter_fraction", [0.0, 0.1, 0.5, 0.9])
def test_the_lifetime_and_refresh_time_obey_the_apis_rules(max_expiration_seconds: int, jitter_fraction: float) -> None:
    now = NOW + datetime.timedelta(microseconds=654321)
    for _ in range(20):
        grant = granted(
            judge(request(max_expiration_seconds=max_expiration_seconds), now=now, jitter_fraction=jitter_fraction)
        )
        lifetime = grant.not_after - grant.not_before
        assert pc.MIN_LIFETIME <= lifetime <= datetime.timedelta(seconds=max_expiration_seconds)
        assert abs(grant.not_before - now) <= datetime.timedelta(minutes=5)  # the API: within 5 min of its clock
        assert grant.not_before <= now  # valid at once
        assert grant.not_before + pc.REFRESH_MARGIN <= grant.begin_refresh_at <= grant.not_after - pc.REFRESH_MARGIN
        for t in (grant.not_before, grant.not_after, grant.begin_refresh_at):
            assert t.microsecond == 0  # whole seconds, as the certificate and metav1.Time keep them
        assert grant.request.duration == lifetime


def test_the_lifetime_is_the_shorter_of_the_request_and_the_policy() -> None:
    grant = granted(judge(request(max_expiration_seconds=86400), policy={"maxDuration": "2h"}))
    assert grant.not_after - grant.not_before == 2 * HOUR
    grant = granted(judge(request(max_expiration_seconds=5400), policy={"maxDuration": "2h"}))
    assert grant.not_after - grant.not_before == datetime.timedelta(seconds=5400)


def test_different_requests_refresh_at_different_times() -> None:
    refresh = {granted(judge(request(), jitter_fraction=0.1)).begin_refresh_at for _ in range(50)}
    assert len(refresh) >= 45  # a jitter by the request's UID: a node's pods do not refresh together
    # ... and the same request gets the same time (a retried answer does not move).
    uid = str(uuid.uuid4())
    again = {granted(judge(request(uid=uid), jitter_fraction=0.1)).begin_refresh_at for _ in range(3)}
    assert len(again) == 1


def test_without_jitter_the_refresh_is_a_third_of_the_lifetime_before_expiry() -> None:
    grant = granted(judge(request(max_expiration_seconds=3 * 3600), jitter_fraction=0.0))
    assert grant.not_after - grant.begin_refresh_at == HOUR


def test_refresh_before_percentage_moves_the_refresh_and_the_apis_margin_still_holds() -> None:
    half = PodCertificates(signer_name=SIGNER, trust_domain=TRUST_DOMAIN, refresh_before_percentage=50)
    grant = granted(judge(request(max_expiration_seconds=4 * 3600), pods=half, jitter_fraction=0.0))
    assert grant.not_after - grant.begin_refresh_at == 2 * HOUR
    # 95% of an hour before expiry is 3 minutes after notBefore: the API's 10 minutes win.
    early = PodCertificates(signer_name=SIGNER, trust_domain=TRUST_DOMAIN, refresh_before_percentage=95)
    grant = granted(judge(request(max_expiration_seconds=3600), pods=early, jitter_fraction=0.1))
    assert grant.begin_refresh_at == grant.not_before + pc.REFRESH_MARGIN


@pytest.mark.parametrize("value", [0, 100, "50", True])
def test_refresh_before_percentage_outside_1_to_99_is_refused(value: object) -> None:
    spec = {"signerName": SIGNER, "trustDomain": TRUST_DOMAIN, "refreshBeforePercentage": value}
    with pytest.raises(SpecError, match="refreshBeforePercentage"):
        PodCertificates.from_dict(spec)


def test_a_ca_that_expires_in_a_day_caps_the_lifetime() -> None:
    grant = granted(judge(request(max_expiration_seconds=7862400), ca_not_after=NOW + 2 * HOUR + DAY / 2))
    assert grant.not_after == NOW + 2 * HOUR + DAY / 2


def test_service_account_patterns_bind_to_the_pods_namespace() -> None:
    pods = dataclasses.replace(PODS, allowed_service_accounts=("{namespace}/web", "ops/*"))
    granted(judge(request(namespace="shop", service_account="web"), pods=pods))
    granted(judge(request(namespace="ops", service_account="anything"), pods=pods))
    refused(
        judge(request(namespace="shop", service_account="db"), pods=pods), pc.DENIED, pc.SERVICE_ACCOUNT_NOT_ALLOWED
    )


def test_allowed_uris_with_the_namespace_placeholder_admit_the_pods_own_id() -> None:
    granted(judge(request(namespace="shop"), policy={"allowedURIs": ["spiffe://cluster.local/ns/{namespace}/sa/*"]}))


# -- judge: refused -------------------------------------------------------------------------------------------


def test_a_namespace_the_policy_does_not_allow_is_denied() -> None:
    refusal = refused(
        judge(request(namespace="intruder"), policy={"allowedNamespaces": ["shop", "team-*"]}),
        pc.DENIED,
        pc.NAMESPACE_NOT_ALLOWED,
    )
    assert "intruder" in refusal.message and "team-*" in refusal.message
    granted(judge(request(namespace="team-a"), policy={"allowedNamespaces": ["shop", "team-*"]}))


def test_a_service_account_the_issuer_excludes_is_denied() -> None:
    pods = dataclasses.replace(PODS, allowed_service_accounts=("shop/web",))
    refusal = refused(
        judge(request(namespace="shop", service_account="db"), pods=pods), pc.DENIED, pc.SERVICE_ACCOUNT_NOT_ALLOWED
    )
    assert "shop/db" in refusal.message


def test_an_empty_service_account_list_allows_nobody() -> None:
    pods = dataclasses.replace(PODS, allowed_service_accounts=())
    refused(judge(request(), pods=pods), pc.DENIED, pc.SERVICE_ACCOUNT_NOT_ALLOWED)


@pytest.mark.parametrize("key_type", ["RSA3072", "ECDSAP384"])
def test_a_key_type_the_policy_does_not_allow_is_denied_with_the_apis_reason(key_type: str) -> None:
    policy = {"allowedKeyAlgorithms": ["Ed25519"]}
    refusal = refused(judge(request(key_type), policy=policy), pc.DENIED, pc.UNSUPPORTED_KEY_TYPE)
    assert pc.UNSUPPORTED_KEY_TYPE == "UnsupportedKeyType"  # the API's well-known reason
    assert "keyType" in refusal.message
    granted(judge(request("ED25519"), policy=policy))


def test_a_policy_max_duration_below_an_hour_is_denied() -> None:
    refusal = refused(judge(request(), policy={"maxDuration": "30m"}), pc.DENIED, pc.LIFETIME_TOO_SHORT)
    assert "1h" in refusal.message


def test_a_uri_the_policy_does_not_allow_is_denied() -> None:
    refused(
        judge(request(namespace="shop"), policy={"allowedURIs": ["spiffe://other.domain/ns/{namespace}/sa/*"]}),
        pc.DENIED,
        pc.POLICY_VIOLATION,
    )


def test_a_policy_min_duration_above_the_requested_lifetime_is_denied() -> None:
    refused(judge(request(max_expiration_seconds=3600), policy={"minDuration": "2h"}), pc.DENIED, pc.POLICY_VIOLATION)


@pytest.mark.parametrize("left", [datetime.timedelta(minutes=59), datetime.timedelta(minutes=10)])
def test_a_ca_that_expires_within_the_hour_fails_the_request(left: datetime.timedelta) -> None:
    refusal = refused(judge(request(), ca_not_after=NOW + left), pc.FAILED, pc.LIFETIME_TOO_SHORT)
    assert "renew the CA" in refusal.message


def test_the_namespace_is_judged_before_the_key() -> None:
    # A refused namespace is told so, whatever else is wrong with the request.
    refused(
        judge(
            request("RSA3072", namespace="x"), policy={"allowedNamespaces": ["y"], "allowedKeyAlgorithms": ["ECDSA"]}
        ),
        pc.DENIED,
        pc.NAMESPACE_NOT_ALLOWED,
    )


# -- signed ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["ECDSAP256", "ED25519", "RSA3072"])
def test_the_signed_leaf_carries_only_the_uri_and_the_pods_key(key_type: str, authority: SigningAuthority) -> None:
    req = request(key_type, namespace="shop", service_account="web", max_expiration_seconds=7200)
    grant = granted(
        judge(req, ca_not_before=authority.not_before, ca_not_after=authority.valid_until, jitter_fraction=0.1)
    )
    issued = sign_within(grant.request, authority, not_before=grant.not_before, not_after=grant.not_after, now=NOW)
    leaf = issued.certificate
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert list(san.value) == [x509.UniformResourceIdentifier("spiffe://cluster.local/ns/shop/sa/web")]
    assert san.critical  # the subject is empty, so RFC 5280 wants the SAN critical
    assert len(leaf.subject) == 0
    assert spki_of(leaf.public_key()) == spki(key(key_type))
    assert leaf.not_valid_before_utc == grant.not_before
    assert leaf.not_valid_after_utc == grant.not_after
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    oids = {e.oid for e in leaf.extensions}
    assert oids <= {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    }
    chain = x509.load_pem_x509_certificates(issued.chain_pem)
    assert chain[0] == leaf
    # A client that trusts the CA accepts it as a TLS client certificate naming exactly the SPIFFE ID.
    store = verification.Store([authority.trust_anchor])
    verified = verification.PolicyBuilder().store(store).time(NOW).build_client_verifier().verify(leaf, chain[1:])
    assert verified.subjects == [x509.UniformResourceIdentifier("spiffe://cluster.local/ns/shop/sa/web")]
