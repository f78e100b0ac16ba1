"""Every outcome of the Certificate reconcile's plan, decided without I/O from one snapshot.

Each test states a situation (the spec, the status, the Secret as read or left unread, the issuer,
the time) and the one outcome certmint must choose: Keep (with its repairs), Issue (with its reason,
revision and key), Fail (with its condition and retry), or ReadSecret. The reconcile path around
the plan, through an API, is tests/controller's.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from certmint.controller.certificate_plan import (
    NOT_OWNED_RECHECK,
    RETIRE_AT,
    Fail,
    Issue,
    IssuerView,
    Keep,
    ReadSecret,
    Resume,
    Snapshot,
    UnreadSecret,
    Wait,
    _root_phase,
    plan,
    renewal_time_for,
    secret_metadata,
    verified_status,
)
from certmint.controller.signers import KINDS
from certmint.controller.state import IssuerRecord, Kind, Signed
from certmint.core.conditions import rfc3339
from certmint.core.decisions import CERTIFICATE_NAME, CERTIFICATE_UID, HANDOVER_TO
from certmint.core.spec import CertificateSpec, IssuerSpec
from certmint.kube.resources import SecretData
from certmint.pki.inspect import certificate_facts
from certmint.pki.keys import PrivateKey, encode_private_key, generate_private_key
from certmint.pki.signing import IssuedCertificate, SigningAuthority
from tests.unit.builders import NOW, build_ca, certificate_spec, issue_for

UID = "uid-web"
ROOT = build_ca("Plan Root CA")
AUTHORITY = SigningAuthority.from_pem(ROOT.cert_pem, ROOT.key_pem, now=NOW)
OTHER_ROOT = build_ca("Another Root CA")
OTHER_AUTHORITY = SigningAuthority.from_pem(OTHER_ROOT.cert_pem, OTHER_ROOT.key_pem, now=NOW)
OPEN_POLICY: dict[str, Any] = {}


def _issuer(
    kind: str = "ca",
    *,
    ready: bool = True,
    policy: dict[str, Any] | None = None,
    authority: SigningAuthority = AUTHORITY,
) -> IssuerRecord:
    body: dict[str, Any] = {"selfSigned": {}} if kind == "selfSigned" else {"ca": {"secretName": "root"}}
    spec = IssuerSpec.from_dict({**body, "policy": policy or OPEN_POLICY})
    return IssuerRecord(
        Kind.CLUSTER_ISSUER,
        "",
        "internal-ca",
        "uid-issuer",
        1,
        "1",
        spec,
        None,
        {},
        ready=ready,
        reason="KeyPairVerified" if ready else "CASecretNotFound",
        message="ok" if ready else "Secret certmint/root does not exist",
        authority=authority if ready and kind == "ca" else None,
        checked=True,
    )


def _view(spec: CertificateSpec, issuer: IssuerRecord | None) -> IssuerView:
    """The issuer as certificates._issuer_view presents it (kept in step by test_issuer_view_matches_gather)."""
    from certmint.controller.certificates import _issuer_view  # noqa: PLC0415  (the gather step's own function)

    return _issuer_view(spec, issuer)


def _snapshot(
    spec: CertificateSpec | None = None,
    *,
    secret: SecretData | UnreadSecret | None = None,
    status: dict[str, Any] | None = None,
    issuer: IssuerRecord | str | None = "ca",
    signed: Signed | None = None,
    now: datetime.datetime = NOW,
) -> Snapshot:
    spec = spec or certificate_spec()
    record = _issuer(issuer) if isinstance(issuer, str) else issuer
    return Snapshot(
        namespace="default",
        name="web",
        uid=UID,
        generation=1,
        spec=spec,
        status=status or {},
        secret=secret,
        issuer=_view(spec, record),
        signed=signed,
        now=now,
        jitter_fraction=0.0,
        min_renewal_interval=datetime.timedelta(seconds=30),
    )


def _issued(
    spec: CertificateSpec, key: PrivateKey | None = None, authority: SigningAuthority = AUTHORITY
) -> tuple[IssuedCertificate, PrivateKey]:
    return issue_for(spec, authority, key=key, now=NOW - datetime.timedelta(hours=1))


def _secret(
    spec: CertificateSpec,
    issued: IssuedCertificate,
    key: PrivateKey,
    *,
    revision: int = 1,
    drop_labels: bool = False,
    owners: frozenset[str] = frozenset(),
    ca_crt: bytes | None = None,
    annotations: dict[str, str] | None = None,
) -> SecretData:
    """The Secret certmint writes for ``issued`` (its metadata exactly as the plan wants it)."""
    facts = certificate_facts(issued.certificate)
    labels, wanted = secret_metadata(_snapshot(spec), facts, revision)
    return SecretData(
        name=spec.secret_name,
        namespace="default",
        resource_version="41",
        type="kubernetes.io/tls",
        data={
            "tls.crt": issued.chain_pem,
            "tls.key": encode_private_key(key, spec.private_key.encoding),
            "ca.crt": issued.ca_pem if ca_crt is None else ca_crt,
        },
        labels={} if drop_labels else labels,
        annotations=wanted if annotations is None else annotations,
        owner_uids=owners,
    )


def _good(spec: CertificateSpec | None = None, **secret: Any) -> tuple[CertificateSpec, SecretData]:
    spec = spec or certificate_spec()
    issued, key = _issued(spec)
    return spec, _secret(spec, issued, key, **secret)


def _status_of(spec: CertificateSpec, secret: SecretData, *, issuer: str = "ca", **extra: Any) -> dict[str, Any]:
    """The status a settled pass wrote for the certificate in ``secret``, verified at Secret version 41."""
    facts = certificate_facts(_load(secret))
    snapshot = _snapshot(spec, issuer=issuer)
    renewal_time = renewal_time_for(snapshot, facts)
    return {
        "verified": verified_status(snapshot, "41", snapshot.issuer.token),
        "notBefore": rfc3339(facts.not_before),
        "notAfter": rfc3339(facts.not_after),
        "renewalTime": rfc3339(renewal_time),
        "serialNumber": facts.serial_number,
        "revision": 1,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Issued", "message": ""}],
        **extra,
    }


def _load(secret: SecretData) -> Any:
    from certmint.pki.inspect import load_pem_chain  # noqa: PLC0415

    return load_pem_chain(secret.data["tls.crt"])[0]


def _renewal(spec: CertificateSpec, secret: SecretData) -> datetime.datetime:
    return renewal_time_for(_snapshot(spec), certificate_facts(_load(secret)))


# -- Keep -------------------------------------------------------------------------------------------------


def test_a_good_secret_is_kept_as_it_is_until_its_renewal_time() -> None:
    spec, secret = _good()
    decision = plan(_snapshot(spec, secret=secret))
    assert isinstance(decision, Keep)
    assert not decision.repairs
    assert decision.revision == 1
    assert decision.renewal_time == _renewal(spec, secret) > NOW


@pytest.mark.parametrize(
    ("change", "repair"),
    [
        pytest.param({"drop_labels": True}, "labels", id="labels-removed"),
        pytest.param({"annotations": {CERTIFICATE_UID: UID}}, "annotations", id="annotations-removed"),
        pytest.param({"ca_crt": build_ca("Another Root").cert_pem}, "ca_crt", id="ca-crt-not-the-trust-anchor"),
    ],
)
def test_drift_is_repaired_without_a_new_certificate(change: dict[str, Any], repair: str) -> None:
    spec, secret = _good(**change)
    decision = plan(_snapshot(spec, secret=secret))
    assert isinstance(decision, Keep) and decision.repairs
    assert getattr(decision, repair)
    if repair == "ca_crt":
        assert decision.ca_crt == AUTHORITY.trust_anchor_pem
    else:
        assert decision.ca_crt is None


def test_a_root_added_to_the_ca_secret_reaches_ca_crt_without_a_new_certificate() -> None:
    """The CA (and so its fingerprint) stays; only the trust anchor above it changes. The issuer's identity
    changes with it, so its Certificates are looked at again, and each Secret's ca.crt is rewritten."""
    root = build_ca("Root CA")
    intermediate = build_ca("Intermediate CA", parent=root)
    rootless = SigningAuthority.from_pem(intermediate.cert_pem, intermediate.key_pem, now=NOW)
    rooted = SigningAuthority.from_pem(intermediate.cert_pem, intermediate.key_pem, ca_crt=root.cert_pem, now=NOW)
    assert rootless.fingerprint_sha256 == rooted.fingerprint_sha256  # the same CA signs
    assert rootless.trust_anchor_pem == intermediate.cert_pem and rooted.trust_anchor_pem == root.cert_pem
    before, after = _issuer(authority=rootless), _issuer(authority=rooted)
    assert before.identity_token != after.identity_token  # so every Certificate of the issuer is looked at again

    spec = certificate_spec()
    issued, key = _issued(spec, authority=rooted)
    for ca_crt, written in ((intermediate.cert_pem, root.cert_pem), (root.cert_pem, None)):
        decision = plan(_snapshot(spec, secret=_secret(spec, issued, key, ca_crt=ca_crt), issuer=after))
        assert isinstance(decision, Keep)  # never a new certificate for this
        assert decision.ca_crt == written  # already the anchor: nothing to write


def test_only_a_ca_issuer_has_an_anchor_to_write() -> None:
    spec = certificate_spec()
    assert _view(spec, _issuer("selfSigned")).trust_anchor_pem is None
    assert _view(spec, None).trust_anchor_pem is None  # issuer gone or unknown
    assert _view(spec, _issuer()).trust_anchor_pem == ROOT.cert_pem


def test_delete_policy_adds_the_missing_owner_reference_once() -> None:
    spec = certificate_spec(secretDeletionPolicy="Delete")
    _, without = _good(spec)
    _, with_owner = _good(spec, owners=frozenset({UID}))
    missing, present = plan(_snapshot(spec, secret=without)), plan(_snapshot(spec, secret=with_owner))
    assert isinstance(missing, Keep) and missing.add_owner
    assert isinstance(present, Keep) and not present.add_owner and not present.repairs


def test_the_revision_kept_is_the_secrets_when_a_crash_kept_it_from_the_status() -> None:
    spec, secret = _good(revision=4)
    decision = plan(_snapshot(spec, secret=secret, status={"revision": 3}))
    assert isinstance(decision, Keep) and decision.revision == 4


# -- Issue ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("situation", "code"),
    [
        pytest.param("absent", "DoesNotExist", id="no-secret"),
        pytest.param("no-key", "MissingData", id="tls-key-removed"),
        pytest.param("other-key", "InvalidKeyPair", id="key-does-not-match"),
        pytest.param("spec-changed", "SpecChanged", id="dns-names-changed"),
        pytest.param("other-ca", "IncorrectIssuer", id="signed-by-another-ca"),
        pytest.param("renewal-time", "Renewing", id="renewal-time-reached"),
        pytest.param("expired", "Expired", id="expired"),
    ],
)
def test_each_reason_to_issue(situation: str, code: str) -> None:
    spec, secret = _good()
    now = NOW
    snapshot_spec = spec
    current: SecretData | None = secret
    if situation == "absent":
        current = None
    elif situation == "no-key":
        current = dataclasses.replace(secret, data={k: v for k, v in secret.data.items() if k != "tls.key"})
    elif situation == "other-key":
        other = encode_private_key(generate_private_key("ECDSA", 256), "PKCS1")
        current = dataclasses.replace(secret, data={**secret.data, "tls.key": other})
    elif situation == "spec-changed":
        snapshot_spec = certificate_spec(dnsNames=["web.default.svc", "www.example.com"])
    elif situation == "other-ca":
        other_ca = build_ca("Another CA")
        authority = SigningAuthority.from_pem(other_ca.cert_pem, other_ca.key_pem, now=NOW)
        issued, key = issue_for(spec, authority, now=NOW - datetime.timedelta(hours=1))
        current = _secret(spec, issued, key)
    elif situation == "renewal-time":
        now = _renewal(spec, secret) + datetime.timedelta(seconds=1)
    elif situation == "expired":
        now = NOW + datetime.timedelta(days=2)
    decision = plan(_snapshot(snapshot_spec, secret=current, now=now))
    assert isinstance(decision, Issue)
    assert decision.reason.code == code
    assert decision.revision == (1 if current is None else 2)
    assert decision.key is None and decision.reuse is None
    assert decision.still_valid == (code == "Renewing")


def test_rotation_policy_never_keeps_the_secrets_key_when_it_is_what_the_spec_asks_for() -> None:
    spec = certificate_spec(privateKey={"rotationPolicy": "Never"})
    _, secret = _good(spec)
    later = _renewal(spec, secret) + datetime.timedelta(seconds=1)
    decision = plan(_snapshot(spec, secret=secret, now=later))
    assert isinstance(decision, Issue) and decision.key is not None
    bigger = certificate_spec(privateKey={"rotationPolicy": "Never", "algorithm": "ECDSA", "size": 384})
    changed = plan(_snapshot(bigger, secret=secret, now=later))
    assert isinstance(changed, Issue) and changed.reason.code == "SpecChanged" and changed.key is None


def test_a_certificate_signed_for_this_revision_is_stored_instead_of_signing_again() -> None:
    spec = certificate_spec()
    issued, key = _issued(spec)
    token = _issuer().identity_token
    signed = Signed(1, 1, token, "web-1", key, issued)
    decision = plan(_snapshot(spec, signed=signed))
    assert isinstance(decision, Issue) and decision.reuse is signed
    later_revision = Signed(2, 1, token, "web-2", key, issued)
    assert isinstance(d := plan(_snapshot(spec, signed=later_revision)), Issue) and d.reuse is None
    other_issuer = Signed(1, 1, (True, "other", "other", 1, True, False), "web-1", key, issued)
    assert isinstance(d := plan(_snapshot(spec, signed=other_issuer)), Issue) and d.reuse is None


# -- Fail -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("issuer", "spec_overrides", "reason", "retry"),
    [
        pytest.param(None, {}, "IssuerNotFound", True, id="issuer-missing"),
        pytest.param(_issuer(ready=False), {}, "IssuerNotReady", True, id="issuer-not-ready"),
        pytest.param(
            _issuer(policy={"allowedDNSNames": ["*.other.svc"]}), {}, "PolicyViolation", False, id="policy-refuses"
        ),
        pytest.param(
            _issuer("selfSigned"),
            {"commonName": None, "subject": None},
            "EmptySubject",
            False,
            id="self-signed-without-subject",
        ),
    ],
)
def test_an_issuer_that_cannot_sign_fails_the_issuance(
    issuer: IssuerRecord | None, spec_overrides: dict[str, Any], reason: str, retry: bool
) -> None:
    spec = certificate_spec(**spec_overrides)
    decision = plan(_snapshot(spec, issuer=issuer))
    assert isinstance(decision, Fail)
    assert (decision.failure.reason, decision.failure.retry, decision.valid) == (reason, retry, False)


def test_an_issuer_not_checked_yet_is_waited_for_not_reported() -> None:
    unchecked = dataclasses.replace(_issuer(ready=False), checked=False, reason="Pending")
    decision = plan(_snapshot(certificate_spec(), issuer=unchecked))
    assert isinstance(decision, Wait) and decision.issuer == "ClusterIssuer 'internal-ca'"
    checked = plan(_snapshot(certificate_spec(), issuer=dataclasses.replace(unchecked, checked=True)))
    assert isinstance(checked, Fail) and checked.failure.reason == "IssuerNotReady"


def test_a_renewal_that_cannot_happen_leaves_the_valid_certificate_ready() -> None:
    spec, secret = _good()
    later = _renewal(spec, secret) + datetime.timedelta(seconds=1)
    decision = plan(_snapshot(spec, secret=secret, issuer=_issuer(ready=False), now=later))
    assert isinstance(decision, Fail) and decision.valid
    assert decision.failure.reason == "IssuerNotReady"


def test_a_secret_certmint_did_not_create_is_refused_and_looked_at_again_later() -> None:
    spec = certificate_spec()
    users = SecretData("web-tls", "default", "3", "kubernetes.io/tls", {"tls.crt": b"x"}, {}, {}, frozenset())
    decision = plan(_snapshot(spec, secret=users))
    assert isinstance(decision, Fail) and not decision.valid
    assert decision.failure.reason == "SecretNotOwned"
    assert decision.failure.retry and decision.failure.retry_cap == NOT_OWNED_RECHECK
    assert f"{HANDOVER_TO}=web" in decision.failure.message
    handed_over = dataclasses.replace(users, annotations={HANDOVER_TO: "web"})
    assert isinstance(d := plan(_snapshot(spec, secret=handed_over)), Issue) and d.reason.code == "MissingData"
    assert d.takeover == "handover"  # logged when acted on
    _, ours = _good()
    assert isinstance(kept := plan(_snapshot(spec, secret=ours)), Keep) and kept.takeover is None


def test_a_secret_of_another_certificate_is_refused_for_good() -> None:
    spec, secret = _good()
    theirs = dataclasses.replace(
        secret,
        labels={**secret.labels, CERTIFICATE_NAME: "api"},
        annotations={**secret.annotations, CERTIFICATE_UID: "uid-other", CERTIFICATE_NAME: "api"},
    )
    decision = plan(_snapshot(spec, secret=theirs))
    assert isinstance(decision, Fail)
    assert (decision.failure.reason, decision.failure.retry) == ("SecretInUse", False)


# -- planned from the status: resume or renew without reading the Secret, or ask for it ---------------------


@pytest.mark.parametrize("kind", ["ca", "selfSigned"])
def test_a_status_verified_at_this_secret_version_resumes_without_reading_it(kind: str) -> None:
    """A restart or a standby's takeover: the status names this Secret version, generation and issuer."""
    spec, secret = _good()
    status = _status_of(spec, secret, issuer=kind)
    decision = plan(_snapshot(spec, secret=UnreadSecret("41"), status=status, issuer=kind))
    assert decision == Resume(_renewal(spec, secret), certificate_facts(_load(secret)).not_after)
    other = "selfSigned" if kind == "ca" else "ca"  # verified against another issuer: read
    assert isinstance(plan(_snapshot(spec, secret=UnreadSecret("41"), status=status, issuer=other)), ReadSecret)


@pytest.mark.parametrize(
    ("version", "status_change", "issuer_change"),
    [
        pytest.param("42", {}, {}, id="another-secret-version"),
        pytest.param("41", {"verified": None}, {}, id="never-verified"),
        pytest.param("41", {"generation": 2}, {}, id="another-generation"),
        pytest.param("41", {}, {"generation": 2}, id="issuer-edited"),
        pytest.param("41", {}, {"authority": OTHER_AUTHORITY}, id="another-ca"),
        pytest.param("41", {"renewalTime": "2030-01-01T00:00:00Z"}, {}, id="renewal-time-edited"),
        pytest.param("41", {"conditions": [{"type": "Ready", "status": "False"}]}, {}, id="not-ready"),
    ],
)
def test_a_status_not_verified_as_things_are_asks_for_the_secret(
    version: str, status_change: dict[str, Any], issuer_change: dict[str, Any]
) -> None:
    spec, secret = _good()
    status = _status_of(spec, secret)
    if "generation" in status_change:
        status["verified"] = {**status["verified"], "generation": status_change.pop("generation")}
    status.update(status_change)
    issuer = dataclasses.replace(_issuer(), **issuer_change)
    assert isinstance(plan(_snapshot(spec, secret=UnreadSecret(version), status=status, issuer=issuer)), ReadSecret)


def test_an_unread_secret_waits_for_its_issuers_first_check_instead_of_being_read() -> None:
    spec, secret = _good()
    unchecked = dataclasses.replace(_issuer(ready=False), checked=False, reason="Pending")  # as after a start
    decision = plan(_snapshot(spec, secret=UnreadSecret("41"), status=_status_of(spec, secret), issuer=unchecked))
    assert isinstance(decision, Wait)


def test_a_due_renewal_with_an_unchanged_secret_is_planned_without_reading_it() -> None:
    spec, secret = _good()
    due = _renewal(spec, secret)
    status = _status_of(spec, secret)
    decision = plan(_snapshot(spec, secret=UnreadSecret("41"), status=status, now=due + datetime.timedelta(seconds=1)))
    assert isinstance(decision, Issue)
    assert (decision.reason.code, decision.revision, decision.renewal_time) == ("Renewing", 2, due)


@pytest.mark.parametrize(
    ("spec_overrides", "status_extra", "at"),
    [
        pytest.param({"privateKey": {"rotationPolicy": "Never"}}, {}, "due", id="key-kept-so-needs-the-secret"),
        pytest.param({}, {"failedIssuanceAttempts": 2}, "due", id="after-failures"),
        pytest.param({}, {"notAfter": "garbage"}, "due", id="status-unreadable"),
    ],
)
def test_a_timer_that_the_status_cannot_settle_asks_for_the_secret(
    spec_overrides: dict[str, Any], status_extra: dict[str, Any], at: str
) -> None:
    spec, secret = _good(certificate_spec(**spec_overrides))
    due = _renewal(spec, secret)
    now = due - datetime.timedelta(seconds=1) if at == "before" else due + datetime.timedelta(seconds=1)
    snapshot = _snapshot(spec, secret=UnreadSecret("41"), status=_status_of(spec, secret, **status_extra), now=now)
    assert isinstance(plan(snapshot), ReadSecret)


# -- the issuer as the plan sees it -------------------------------------------------------------------------


def test_issuer_view_matches_gather() -> None:
    spec = certificate_spec()
    view = _view(spec, _issuer())
    assert view.ready and view.found and view.identity is not None
    assert view.trust_anchor_pem == AUTHORITY.trust_anchor_pem and not view.own_key_only
    missing = _view(spec, None)
    assert not missing.found and missing.identity is None
    self_signed = _view(spec, _issuer("selfSigned"))
    assert self_signed.own_key_only == KINDS["selfSigned"].own_key_only is True


# -- a root's phases ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class Probe:
    """A RotationProbe with fixed answers; records the steps asked about."""

    count: int | None
    clear_since: datetime.datetime | None = None
    asked: list[str] = dataclasses.field(default_factory=list)

    def pending(self, step: str) -> tuple[int | None, datetime.datetime | None]:
        self.asked.append(step)
        return self.count, self.clear_since


def test_the_previous_root_is_retired_only_when_no_certificate_signed_under_it_is_left() -> None:
    """The probe's count: certificates of the issuers on this root's Secret still waiting for their spread
    re-issue (still signed by the previous root). While there are any, the retirement waits, and it comes at least
    half a propagation time after none was left (certificate_plan._next_step)."""
    previous, current = build_ca("Previous Root"), build_ca("Current Root")
    spec = certificate_spec(isCA=True, commonName="Current Root")
    secret = SecretData(
        name="root-tls",
        namespace="default",
        resource_version="7",
        type="kubernetes.io/tls",
        data={"tls.crt": current.cert_pem, "tls.key": current.key_pem, "ca.crt": previous.cert_pem + current.cert_pem},
        labels={},
        annotations={RETIRE_AT: rfc3339(NOW - datetime.timedelta(seconds=1))},
        owner_uids=frozenset(),
    )
    facts = certificate_facts(current.cert)
    keep = Keep(facts, NOW + datetime.timedelta(days=30), 2, {}, {}, None, False)
    base = dataclasses.replace(
        _snapshot(spec, secret=secret, issuer="selfSigned"), trust_propagation=datetime.timedelta(seconds=120)
    )
    # Certificates still under the previous root, at the retirement time: postponed a whole propagation time (the
    # annotation rewritten), looked at again in a quarter of it.
    waiting = _root_phase(dataclasses.replace(base, probe=Probe(3)), secret, keep)
    assert isinstance(waiting, Keep) and not waiting.retire and waiting.ca_crt is None
    assert waiting.wake_at == NOW + datetime.timedelta(seconds=30)
    assert waiting.annotations == {RETIRE_AT: rfc3339(NOW + datetime.timedelta(seconds=120))}
    # None left since long enough before the retirement time: retired now.
    long_clear = dataclasses.replace(base, probe=Probe(0, NOW - datetime.timedelta(seconds=61)))
    retired = _root_phase(long_clear, secret, keep)
    assert isinstance(retired, Keep) and retired.retire and retired.ca_crt == current.cert_pem
    # None left, but first seen so only now (a restart): when the last one went is not known, so the retirement
    # comes half a propagation time later.
    late = _root_phase(dataclasses.replace(base, probe=Probe(0, NOW)), secret, keep)
    assert isinstance(late, Keep) and not late.retire and late.ca_crt is None
    assert late.wake_at == NOW + datetime.timedelta(seconds=60)
    assert late.annotations == {RETIRE_AT: rfc3339(NOW + datetime.timedelta(seconds=60))}
