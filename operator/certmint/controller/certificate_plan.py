"""The Certificate reconcile's decisions: one typed snapshot in, one typed outcome out, no I/O.

``certificates.reconcile_certificate`` gathers a :class:`Snapshot` (spec, status decoded once, the
Secret as read, what of the issuer can change a decision, ``now``), asks :func:`plan` what to do, and
carries the answer out. Everything that decides lives here, so each path is a table row in
tests/unit/test_certificate_plan.py rather than an API server scenario:

- :class:`Keep`: the Secret's certificate is good; maybe repair its metadata or ca.crt; set the timer.
- :class:`Issue`: sign a new certificate (with the reason, the revision, where the key comes from).
- :class:`Fail`: a condition and, unless permanent, when to try again.
- :class:`ReadSecret`: the status alone cannot tell (it was not verified as things are): read the Secret, then
  plan again.
- :class:`Wait`: the issuer has not been checked yet (applied together, or at a start); its check wakes us.
- :class:`Resume`: the status was verified against this very Secret version, spec and issuer (a restart, a
  standby taking over): nothing to read or write, only the renewal timer to set.
- :class:`Stage`, :class:`Staged`, :class:`Switch`: a self-signed CA (a root) is renewed in phases, so that
  certificates signed under it stay trusted throughout (see "Root rotation" below).

Root rotation. A root that certificates chain to cannot be swapped at once: peers holding the old ca.crt
would refuse leaves of the new root, and the other way round. When a valid self-signed CA certificate is
to be replaced by one with a new key, the new root is first *staged* (Stage): signed, stored in the Secret
as next-tls.crt / next-tls.key, and appended to the Secret's ca.crt, which every ``ca`` issuer of that
Secret hands on to its certificates' ca.crt (trust anchors as a set). After ``trust_propagation`` (the
time a kubelet and an application need to pick up a changed ca.crt) the Secret's key pair *switches* to
it (Switch): the issuers re-issue their certificates under the new root, which every peer already trusts.
The old root stays in ca.crt for two more propagation delays (while those certificates are re-issued and
reach the peers), then it is *retired* (a Keep that rewrites ca.crt). Each phase is one Secret write
guarded by resourceVersion; the phase and its time are in the Secret's annotations, so a restart resumes it.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib
from dataclasses import dataclass
from typing import Final, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certmint.controller.signers import Refusal
from certmint.controller.state import IssuerToken, Signed
from certmint.controller.status import CertificateStatus, VerifiedStatus
from certmint.core import renewal
from certmint.core.ca_rotation import next_step
from certmint.core.conditions import condition_status, parse_rfc3339, rfc3339
from certmint.core.decisions import (
    HANDOVER_TO,
    INCORRECT_ISSUER,
    MANUALLY_TRIGGERED,
    RENEW_REQUEST,
    RENEWING,
    ROOT_RETIRE_AT,
    ROOT_SWITCH_AT,
    ROOT_SWITCHED_AT,
    IssuerIdentity,
    Ownership,
    Reason,
    SecretClaim,
    SecretSnapshot,
    desired_secret_metadata,
    issuance_reason,
    metadata_drift,
    renewal_reason,
    requested_identity,
    secret_ownership,
    stored_revision,
)
from certmint.core.outputs import KEYSTORE_KEYS, OUTPUT_KEYS
from certmint.core.policy import check_policy
from certmint.core.spec import CertificateSpec, IssuerRef, Policy
from certmint.kube.resources import SecretData
from certmint.pki.inspect import CertificateFacts, certificate_facts, leads_to, load_pem_chain
from certmint.pki.keys import PKIError, PrivateKey, key_algorithm, load_private_key
from certmint.pki.signing import SigningAuthority

#: A Secret that is not certmint's is looked at again at least this often (it is not labelled, so
#: its handover or deletion reaches no watch of ours).
NOT_OWNED_RECHECK: Final = datetime.timedelta(minutes=2)

#: A staged next root (Stage) waits in the CA Certificate's Secret under these keys until the switch.
NEXT_CRT: Final = "next-tls.crt"
NEXT_KEY: Final = "next-tls.key"
#: When the staged root becomes the Secret's key pair; when the old root leaves its ca.crt (RFC 3339).
SWITCH_AT: Final = ROOT_SWITCH_AT
RETIRE_AT: Final = ROOT_RETIRE_AT
SWITCHED_AT: Final = ROOT_SWITCHED_AT

#: Part of every status.verified.issuer digest. Bump it when plan() would judge an unchanged Secret differently
#: than the released version does (a new check, a new repair): statuses verified under the old judgement are
#: then not trusted, and the first pass of the new version reads every Secret again.
JUDGEMENT: Final = 1


class CertificateReason(enum.StrEnum):
    """The reasons certmint writes on a Certificate's Ready and Issuing conditions (besides a kind's refusal,
    signers.Refusal, and core.decisions.Ownership's)."""

    ISSUED = "Issued"
    RENEWED = "Renewed"
    READY = "Ready"
    UP_TO_DATE = "UpToDate"
    INVALID_SPEC = "InvalidSpec"
    ISSUER_NOT_FOUND = "IssuerNotFound"
    ISSUER_NOT_READY = "IssuerNotReady"
    POLICY_VIOLATION = "PolicyViolation"
    REQUEST_FAILED = "RequestFailed"
    SIGNING_FAILED = "SigningFailed"
    SECRET_WRITE_FAILED = "SecretWriteFailed"
    ROOT_STAGED = "RootStaged"  # a root's next one is in ca.crt, waiting for the switch
    ROOT_SWITCHED = "RootSwitched"
    ROOT_RETIRED = "RootRetired"
    REISSUE_SPREAD = "ReissueScheduled"  # signed by the previous CA, still trusted: re-issued at a spread time
    KEYSTORE_PASSWORD_UNAVAILABLE = "KeystorePasswordUnavailable"  # spec.keystores' password Secret unreadable
    WAITING_FOR_TRUST = "WaitingForTrust"  # the issuer's new root is not in every trust set yet (Hold)
    MANUAL_APPROVAL_REQUIRED = "ManualApprovalRequired"  # the issuer's policy.approval is Manual


@dataclass(frozen=True, slots=True)
class IssuerView:
    """What of the Certificate's issuer can change a decision (None fields: not found or not ready)."""

    ref: IssuerRef
    found: bool
    ready: bool
    checked: bool  # False: found, but its first check has not run yet
    detail: str  # "reason: message" of its Ready condition
    token: IssuerToken
    identity: IssuerIdentity | None = None  # set when ready
    policy: Policy | None = None
    own_key_only: bool = False
    refusal: Refusal | None = None  # the kind cannot sign this Certificate as specified
    trust_anchor_pem: bytes | None = None  # what ca.crt must hold (a CA issuer): its trust anchors, as a PEM bundle
    anchors: tuple[x509.Certificate, ...] = ()  # those anchors
    authority: SigningAuthority | None = None  # a CA issuer's CA (its name constraints bind what it signs)
    ca_since: datetime.datetime | None = None  # when the current CA was first seen (IssuerRecord.ca_since)
    reissue_window: datetime.timedelta | None = None  # IssuerRecord.reissue_window; None: trust_propagation
    # Set while the issuer holds signing (a replaced CA Secret's new root is being announced): its switch time.
    signs_from: datetime.datetime | None = None

    @property
    def description(self) -> str:
        return f"{self.ref.kind} {self.ref.name!r}"


class RotationProbe(Protocol):
    """What a root's next rotation step waits for, counted only when a step is due (it decodes the statuses of
    every certificate of the issuers on the root's Secret)."""

    def pending(self, step: str) -> tuple[int | None, datetime.datetime | None]:
        """For ``step`` ("switch:<next serial>": trust sets of those issuers, certificates' ca.crt and Bundles,
        that lack the issuers' current anchors; "retire:<switch time>": certificates still under the previous
        root): how many (None: not known yet), and since when this process has seen none for this step."""
        ...


@dataclass(frozen=True, slots=True)
class UnreadSecret:
    """The Secret was not read: unchanged (same resourceVersion in our watch) since the last settled pass."""

    resource_version: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    namespace: str
    name: str
    uid: str
    generation: int
    spec: CertificateSpec
    status: CertificateStatus  # decoded once per pass; never written to
    secret: SecretData | UnreadSecret | None  # None: does not exist
    issuer: IssuerView
    signed: Signed | None  # a certificate signed for a revision whose Secret write failed
    now: datetime.datetime
    jitter_fraction: float
    min_renewal_interval: datetime.timedelta
    trust_propagation: datetime.timedelta = datetime.timedelta(0)  # 0: a root is replaced at once (no Stage)
    # A root's: certificates of issuers on its Secret still signed by the previous root (ReissueScheduled).
    # For a root with phases: what its next rotation step waits for, asked only while a step is due (RotationProbe).
    probe: RotationProbe | None = None
    renew_request: str | None = None  # the Certificate's RENEW_REQUEST annotation

    @property
    def renewal_requested(self) -> bool:
        """A person asked for a re-issue (RENEW_REQUEST) that the status does not record as honoured yet."""
        return bool(self.renew_request) and self.renew_request != self.status.get("lastRenewRequest")

    @property
    def where(self) -> str:
        return f"Secret {self.namespace}/{self.spec.secret_name}"


@dataclass(frozen=True, slots=True)
class Failure:
    reason: str
    message: str
    retry: bool = True
    retry_cap: datetime.timedelta | None = None  # at most this long between retries


@dataclass(frozen=True, slots=True)
class Keep:
    facts: CertificateFacts
    renewal_time: datetime.datetime
    revision: int
    labels: dict[str, str]  # to set (drifted or missing); empty when none
    annotations: dict[str, str]
    ca_crt: bytes | None  # the issuer's trust anchor, when the Secret's ca.crt is another one
    add_owner: bool  # secretDeletionPolicy Delete and our owner reference is missing
    takeover: str | None = None  # the Secret becomes this Certificate's now: how (SecretClaim.via), for the log
    retire: bool = False  # a rotated root's old root leaves ca.crt now (ca_crt is the new one alone)
    deferred: str | None = None  # a re-issue waits until wake_at (why, for the Issuing condition): nothing verified
    wake_at: datetime.datetime | None = None  # look again then, before the renewal time (a retirement due)

    @property
    def repairs(self) -> bool:
        return bool(self.labels or self.annotations or self.ca_crt is not None or self.add_owner or self.retire)


@dataclass(frozen=True, slots=True)
class Issue:
    reason: Reason
    revision: int
    renewal_time: datetime.datetime | None  # the renewal time, when a still valid certificate is renewed
    key: PrivateKey | None  # the Secret's key to keep (rotationPolicy Never), else None: a new one
    reuse: Signed | None  # signed by an earlier pass for this revision: store it, sign nothing
    takeover: str | None = None  # as Keep.takeover
    # A rotation's re-issue of a certificate its peers still trust: the controller paces these to
    # CERTMINT_ROTATION_REISSUE_RATE (renewals and everything else go at once).
    paced: bool = False

    @property
    def still_valid(self) -> bool:
        return self.renewal_time is not None


@dataclass(frozen=True, slots=True)
class Fail:
    failure: Failure
    valid: bool  # the Secret still holds a valid certificate: Ready stays True


@dataclass(frozen=True, slots=True)
class ReadSecret:
    pass


@dataclass(frozen=True, slots=True)
class Wait:
    issuer: str  # which issuer's first check is awaited


@dataclass(frozen=True, slots=True)
class Resume:
    """The status describes the Secret as it is (status.verified names this Secret version, generation and
    issuer): nothing to read, repair or write; set the renewal timer and the metrics from the status."""

    renewal_time: datetime.datetime
    not_after: datetime.datetime


@dataclass(frozen=True, slots=True)
class Stage:
    """Sign the next root like ``issue`` would, but stage it (next-tls.*, appended to ca.crt) until ``switch_at``."""

    issue: Issue
    current_pem: bytes  # the root the Secret holds now, kept as tls.crt and first in ca.crt
    switch_at: datetime.datetime


@dataclass(frozen=True, slots=True)
class Staged:
    """A next root is staged and its switch time has not come: keep the current one, look again at ``wake_at``."""

    facts: CertificateFacts  # the current root's
    renewal_time: datetime.datetime
    switch_at: datetime.datetime
    next_serial: str
    wake_at: datetime.datetime
    pending: int | None = 0  # trust sets the next root has not reached yet (None: not known yet)
    postponed: bool = False  # switch_at is later than the Secret's annotation says: write it


@dataclass(frozen=True, slots=True)
class Switch:
    """The staged root becomes the Secret's key pair; the old one stays in ca.crt until ``retire_at``."""

    facts: CertificateFacts  # the staged root's
    chain_pem: bytes
    key_pem: bytes
    revision: int
    retire_at: datetime.datetime


@dataclass(frozen=True, slots=True)
class Hold:
    """Nothing may be signed for this Certificate before ``until`` (its issuer's replaced CA Secret holds a root
    that is not in every trust set yet), and its Secret holds no valid certificate to keep meanwhile."""

    until: datetime.datetime
    message: str


Plan = Keep | Issue | Fail | ReadSecret | Wait | Resume | Stage | Staged | Switch | Hold


def issuer_digest(token: IssuerToken) -> str | None:
    """What status.verified.issuer records of a ready, checked issuer: a digest of its CA and trust anchor (none for
    a selfSigned issuer), its generation (policy) and :data:`JUDGEMENT`; None for any other issuer (nothing is
    verified against it)."""
    ready, ca_fingerprint, anchor_fingerprint, generation, checked, holds = token
    if not (ready and checked):
        return None
    text = f"{JUDGEMENT}|{ca_fingerprint}|{anchor_fingerprint}|{generation}" + ("|holds" if holds else "")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def verified_status(s: Snapshot, secret_version: str, issuer: IssuerToken) -> VerifiedStatus | None:
    """status.verified for a Secret at ``secret_version`` found (or written) good for this spec and ``issuer``."""
    digest = issuer_digest(issuer)
    if digest is None:
        return None
    return {"generation": s.generation, "secretResourceVersion": secret_version, "issuer": digest}


def plan(s: Snapshot) -> Plan:
    if isinstance(s.secret, UnreadSecret):
        if _rotates_roots(s):
            return ReadSecret()  # a root's phases are in its Secret (few such Certificates: always read)
        return _plan_unread(s, s.secret)
    secret = s.secret
    decision = _plan_read(s, secret)
    if secret is None or not _rotates_roots(s):
        return decision
    return _root_phase(s, secret, decision)


def _plan_read(s: Snapshot, secret: SecretData | None) -> Plan:
    facts = secret_facts(secret)
    takeover = None
    if secret is not None:
        claim = secret_ownership(
            secret.labels,
            secret.annotations,
            certificate_name=s.name,
            certificate_uid=s.uid,
            secret_serial=facts.serial_number if facts else None,
            status_serial=s.status.get("serialNumber"),
        )
        refused = _not_ours(s, claim)
        if refused is not None:
            return Fail(refused, valid=False)
        takeover = claim.via
    renewal_time = renewal_time_for(s, facts) if facts is not None else None
    reason = issuance_reason(s.spec, _snapshot(secret), s.issuer.identity, now=s.now, renewal_time=renewal_time)
    if reason is None and s.renewal_requested:
        reason = Reason(MANUALLY_TRIGGERED, f"re-issue requested: annotation {RENEW_REQUEST}={s.renew_request}")
    if reason is None and facts is not None and renewal_time is not None:
        assert secret is not None
        return dataclasses.replace(_keep(s, secret, facts, renewal_time), takeover=takeover)
    assert reason is not None
    spread_at = _spread_reissue(s, reason, facts, renewal_time, secret)
    if spread_at is not None and s.now < spread_at and renewal_time is not None and secret is not None:
        assert facts is not None
        kept = _keep(s, secret, facts, renewal_time)
        why = f"{reason.message}; its peers still trust it: re-issued at {rfc3339(spread_at)}, after the CA change"
        return dataclasses.replace(kept, takeover=takeover, wake_at=spread_at, deferred=why)
    renewing = renewal_time if facts is not None and reason.code in (RENEWING, MANUALLY_TRIGGERED) else None
    decision = _issue(s, secret, reason, renewing)
    if isinstance(decision, Issue) and _holding(s):
        return _held(s, secret, facts, renewal_time, decision, takeover)
    if isinstance(decision, Issue):
        return dataclasses.replace(decision, takeover=takeover, paced=spread_at is not None)
    return decision


def _holding(s: Snapshot) -> bool:
    return s.issuer.signs_from is not None and s.now < s.issuer.signs_from


def _held(
    s: Snapshot,
    secret: SecretData | None,
    facts: CertificateFacts | None,
    renewal_time: datetime.datetime | None,
    issue: Issue,
    takeover: str | None,
) -> Keep | Hold:
    """An issuance the issuer holds back until its switch (IssuerView.signs_from): a valid certificate is kept
    meanwhile (its ca.crt brought to the issuer's anchors, so the switch does not wait for it); otherwise Hold."""
    assert s.issuer.signs_from is not None
    why = (
        f"{issue.reason.message}; {s.issuer.description} signs under the new root of its CA Secret only once every "
        f"trust set holds it, from {rfc3339(s.issuer.signs_from)}"
    )
    if secret is not None and facts is not None and renewal_time is not None and s.now < facts.not_after:
        kept = _keep(s, secret, facts, renewal_time)
        return dataclasses.replace(kept, takeover=takeover, wake_at=s.issuer.signs_from, deferred=why)
    return Hold(s.issuer.signs_from, why)


def _spread_reissue(
    s: Snapshot,
    reason: Reason,
    facts: CertificateFacts | None,
    renewal_time: datetime.datetime | None,
    secret: SecretData | None,
) -> datetime.datetime | None:
    """When a certificate signed by the issuer's previous CA is to be re-issued (None: at once, unpaced).

    Only while its peers still trust it (its chain in the Secret leads to one of the issuer's trust anchors: a
    rotated root kept in ca.crt, directly or through the previous intermediate) and no renewal is due; then spread
    over the issuer's re-issue window after the CA changed (the trust propagation time, longer when
    CERTMINT_ROTATION_REISSUE_RATE needs it), by a hash of the certificate, so that a rotation does not re-issue
    everything at once; the controller also paces them to that rate (Issue.paced). The previous root is retired
    only once none is left (RotationProbe)."""
    issuer = s.issuer
    if reason.code != INCORRECT_ISSUER or facts is None or renewal_time is None or issuer.ca_since is None:
        return None
    if s.trust_propagation <= datetime.timedelta(0) or not s.now < min(renewal_time, facts.not_after):
        return None
    if secret is None or not _leads_to_anchor(secret, issuer.anchors, s.now):
        return None
    digest = hashlib.sha256(f"{s.uid}/{facts.serial_number}".encode()).digest()
    window = issuer.reissue_window or s.trust_propagation
    return issuer.ca_since + window * (int.from_bytes(digest[:4], "big") / 2**32)


def _leads_to_anchor(secret: SecretData, anchors: tuple[x509.Certificate, ...], now: datetime.datetime) -> bool:
    """Whether the certificate chain in the Secret's tls.crt leads to one of ``anchors`` (pki.inspect.leads_to)."""
    try:
        return leads_to(load_pem_chain(secret.data.get("tls.crt") or b""), anchors, now)
    except PKIError:
        return False


def _rotates_roots(s: Snapshot) -> bool:
    """A self-signed CA Certificate: its certificate is a root that others may chain to."""
    return s.spec.is_ca and s.issuer.own_key_only and s.trust_propagation > datetime.timedelta(0)


def _root_phase(s: Snapshot, secret: SecretData, decision: Plan) -> Plan:
    """Turn ``decision`` for a root into its rotation phase (see the module docs)."""
    if not isinstance(decision, Keep | Issue):
        # A Fail (the Secret is not this Certificate's, the issuer cannot sign) or a Wait stands as it is: a phase
        # writes into the Secret, which only a Secret found ours (Keep, Issue) may get.
        return decision
    current = secret_facts(secret)
    switch_at = _annotation_time(secret, SWITCH_AT)
    staged = _staged_next(s, secret) if switch_at is not None else None
    if staged is not None and current is not None and switch_at is not None:
        next_facts, chain_pem, key_pem = staged
        pending, clear_since = s.probe.pending(f"switch:{next_facts.serial_number}") if s.probe else (0, None)
        step = _next_step(s, switch_at, pending, clear_since)
        if step is None or s.now >= current.not_after:  # (an expired root protects nothing: switched at once)
            revision = max(int(s.status.get("revision") or 0), stored_revision(None, secret.annotations)) + 1
            return Switch(next_facts, chain_pem, key_pem, revision, s.now + 2 * s.trust_propagation)
        at, wake = step
        renewal_time = renewal_time_for(s, current)
        return Staged(current, renewal_time, at, next_facts.serial_number, wake, pending, at != switch_at)
    if (
        isinstance(decision, Issue)
        and decision.key is None  # a new key: a new root (rotationPolicy Never keeps the root's key: no change)
        and current is not None
        and current.self_issued
        and current.is_ca  # a root: something may chain to it
        and s.now < current.not_after  # an expired root protects nothing: replaced at once
        and "tls.crt" in secret.data
    ):
        current_pem = load_pem_chain(secret.data["tls.crt"])[0].public_bytes(Encoding.PEM)
        return Stage(decision, current_pem, s.now + s.trust_propagation)
    retire_at = _annotation_time(secret, RETIRE_AT)
    if isinstance(decision, Keep) and retire_at is not None:
        switched = secret.annotations.get(SWITCHED_AT) or secret.annotations[RETIRE_AT]
        pending, clear_since = s.probe.pending(f"retire:{switched}") if s.probe else (0, None)
        step = _next_step(s, retire_at, pending, clear_since)
        if step is None:
            own = load_pem_chain(secret.data["tls.crt"])[0].public_bytes(Encoding.PEM)
            return dataclasses.replace(decision, ca_crt=own, retire=True)
        at, wake = step
        if at != retire_at:
            return dataclasses.replace(
                decision, annotations={**decision.annotations, RETIRE_AT: rfc3339(at)}, wake_at=wake
            )
        return dataclasses.replace(decision, wake_at=wake)
    return decision


def _next_step(
    s: Snapshot, at: datetime.datetime, pending: int | None, clear_since: datetime.datetime | None
) -> tuple[datetime.datetime, datetime.datetime] | None:
    """core.ca_rotation.next_step for this pass."""
    return next_step(s.now, s.trust_propagation, at, pending, clear_since)


def _annotation_time(secret: SecretData, key: str) -> datetime.datetime | None:
    try:
        return parse_rfc3339(secret.annotations[key]) if key in secret.annotations else None
    except ValueError:
        return None


def _staged_next(s: Snapshot, secret: SecretData) -> tuple[CertificateFacts, bytes, bytes] | None:
    """The staged next root, when it is a usable key pair that matches the spec (else it is not switched to)."""
    chain_pem, key_pem = secret.data.get(NEXT_CRT), secret.data.get(NEXT_KEY)
    if not chain_pem or not key_pem:
        return None
    staged = SecretSnapshot(exists=True, certificate_pem=chain_pem, key_pem=key_pem, labels={}, annotations={})
    if issuance_reason(s.spec, staged, s.issuer.identity, now=s.now, renewal_time=None) is not None:
        return None
    facts = secret_facts(dataclasses.replace(secret, data={"tls.crt": chain_pem}))
    return (facts, chain_pem, key_pem) if facts is not None else None


def _plan_unread(s: Snapshot, secret: UnreadSecret) -> Plan:
    """Plan from the status, without reading the Secret (it is at ``secret.resource_version`` in our watch), when
    status.verified says a pass found (or wrote) this very Secret version good for this generation and issuer;
    otherwise (another version, spec or issuer, a failure, no such record) the Secret is read.

    Then the status is what that pass saw in the Secret: notBefore, notAfter and serialNumber are the
    certificate's own (whole seconds), so the renewal time is the same. Before it: :class:`Resume` (a restart, a
    standby taking over, any pass with nothing changed). At it: renew without reading the Secret when a new key
    is wanted anyway; the Secret write is guarded by the version we saw, so a change not seen yet fails it and
    the next pass reads.
    """
    if s.issuer.found and not s.issuer.checked:
        return Wait(s.issuer.description)  # its check wakes us: a Secret read now would be read again then
    if s.renewal_requested:
        return ReadSecret()
    status = s.status
    verified = verified_status(s, secret.resource_version, s.issuer.token)
    if verified is None or status.get("verified") != verified:
        return ReadSecret()
    if status.get("failedIssuanceAttempts") or condition_status(status.get("conditions") or [], "Ready") != "True":
        return ReadSecret()
    try:
        not_before = parse_rfc3339(status["notBefore"])
        not_after = parse_rfc3339(status["notAfter"])
        serial = str(status["serialNumber"])
    except (KeyError, TypeError, ValueError):
        return ReadSecret()
    renewal_time = _renewal_time(s, not_before, not_after, serial)
    if s.now < renewal_time:
        # A renewalTime that is not this one (an edited status, changed jitter settings) is put right by a full pass.
        return Resume(renewal_time, not_after) if status.get("renewalTime") == rfc3339(renewal_time) else ReadSecret()
    if s.now >= not_after or s.spec.private_key.rotation_policy != "Always" or _holding(s):
        # Expired: the Secret decides; rotationPolicy Never reuses the Secret's key; a held issuance keeps the
        # certificate in the Secret meanwhile.
        return ReadSecret()
    blocked = _blocked(s, valid=True)
    if blocked is not None:
        return blocked
    revision = int(status.get("revision") or 0) + 1
    return Issue(renewal_reason(renewal_time, not_after), revision, renewal_time, None, _reusable(s, revision))


def _issue(s: Snapshot, secret: SecretData | None, reason: Reason, renewal_time: datetime.datetime | None) -> Plan:
    blocked = _blocked(s, valid=renewal_time is not None)
    if blocked is not None:
        return blocked
    # The next revision after the one stored (the Secret's record wins when a crash kept it from the status).
    stored = stored_revision(s.status.get("revision"), secret.annotations) if secret is not None else 0
    revision = max(int(s.status.get("revision") or 0), stored) + 1
    return Issue(reason, revision, renewal_time, _kept_key(s.spec, secret), _reusable(s, revision))


def _reusable(s: Snapshot, revision: int) -> Signed | None:
    signed = s.signed
    if signed is not None and signed.reusable(revision, s.generation, s.issuer.token, s.now):
        return signed
    return None


def _kept_key(spec: CertificateSpec, secret: SecretData | None) -> PrivateKey | None:
    """rotationPolicy Never: the Secret's key, when it is one of the algorithm and size the spec asks for."""
    if spec.private_key.rotation_policy != "Never" or secret is None or not secret.data.get("tls.key"):
        return None
    try:
        existing = load_private_key(secret.data["tls.key"])
    except PKIError:
        return None
    if key_algorithm(existing.public_key()) != (spec.private_key.algorithm, spec.private_key.size):
        return None
    return existing


def _blocked(s: Snapshot, *, valid: bool) -> Fail | Wait | None:
    """Why the issuer cannot sign this Certificate now (``valid``: the Secret's certificate is still good), or
    None when it may."""
    issuer = s.issuer
    if issuer.found and not issuer.checked:
        return Wait(issuer.description)
    failure = _precheck(s)
    return Fail(failure, valid=valid) if failure is not None else None


def _precheck(s: Snapshot) -> Failure | None:
    issuer, spec = s.issuer, s.spec
    if not issuer.found:
        where = "" if issuer.ref.kind == "ClusterIssuer" else f" in namespace {s.namespace}"
        return Failure(CertificateReason.ISSUER_NOT_FOUND, f"{issuer.description} does not exist{where}")
    if not issuer.ready or issuer.policy is None:
        return Failure(CertificateReason.ISSUER_NOT_READY, f"{issuer.description} is not ready: {issuer.detail}")
    if issuer.refusal is not None:
        return Failure(issuer.refusal.reason, issuer.refusal.message, retry=False)
    if issuer.policy.manual_approval:
        # Never a way around a person's approval: a Certificate would renew on its own, unapproved.
        return Failure(
            CertificateReason.MANUAL_APPROVAL_REQUIRED,
            f"{issuer.description} signs only CertificateRequests that a person approved (spec.policy.approval: "
            "Manual), and a Certificate renews on its own with no one to approve each renewal: use an issuer whose "
            "approval is Automatic, or create a CertificateRequest and have it approved",
            retry=False,
        )
    violations = check_policy(
        issuer.policy,
        requested_identity(spec),
        namespace=s.namespace,
        cluster_scoped_issuer=issuer.ref.kind == "ClusterIssuer",
        self_signed=issuer.own_key_only,
    )
    if issuer.authority is not None:
        violations += issuer.authority.name_constraint_violations(spec)
    if violations:
        # Permanent until the Certificate or the issuer's policy changes; both re-trigger us.
        return Failure(
            CertificateReason.POLICY_VIOLATION, f"{issuer.description} refuses: " + "; ".join(violations), retry=False
        )
    return None


def _not_ours(s: Snapshot, claim: SecretClaim) -> Failure | None:
    """Why this existing Secret must not be written for the Certificate, or None when it may.

    certmint writes only into Secrets it created or that a person handed over (see
    core.decisions.secret_ownership): a Certificate must not give its author, through the
    operator's RBAC, a write into (or, by owner reference, the deletion of) any Secret of the namespace.
    """
    if claim.ownership is Ownership.IN_USE:
        return Failure(
            Ownership.IN_USE.value,
            f"{s.where} belongs to Certificate {claim.other}; choose another spec.secretName",
            retry=False,
        )
    if claim.ownership is Ownership.NOT_OWNED:
        return Failure(
            Ownership.NOT_OWNED.value,
            f"{s.where} exists and was not created by certmint, so certmint leaves it untouched; choose another "
            f"spec.secretName, or delete the Secret, or hand it over to this Certificate with "
            f"`kubectl annotate secret {s.spec.secret_name} -n {s.namespace} {HANDOVER_TO}={s.name}`",
            retry_cap=NOT_OWNED_RECHECK,
        )
    return None


def _keep(s: Snapshot, secret: SecretData, facts: CertificateFacts, renewal_time: datetime.datetime) -> Keep:
    revision = stored_revision(s.status.get("revision"), secret.annotations)
    labels, annotations = secret_metadata(s, facts, revision)
    set_labels, set_annotations = metadata_drift(secret.labels, secret.annotations, labels, annotations) or ({}, {})
    # Only reached for a certificate its issuer signed (issuance_reason found nothing to re-issue), so a different
    # ca.crt means the anchor changed under the same CA (e.g. the root was added to the CA Secret's ca.crt after
    # this certificate was issued): the leaf stays, ca.crt is rewritten.
    anchor = s.issuer.trust_anchor_pem
    stale_anchor = anchor if anchor is not None and secret.data.get("ca.crt") != anchor else None
    add_owner = s.spec.secret_deletion_policy == "Delete" and s.uid not in secret.owner_uids
    return Keep(facts, renewal_time, revision, set_labels, set_annotations, stale_anchor, add_owner)


def secret_metadata(s: Snapshot, facts: CertificateFacts, revision: int) -> tuple[dict[str, str], dict[str, str]]:
    return desired_secret_metadata(
        s.spec,
        certificate_name=s.name,
        certificate_uid=s.uid,
        issuer_name=s.spec.issuer_ref.name,
        issuer_kind=s.spec.issuer_ref.kind,
        facts=facts,
        revision=revision,
    )


def secret_facts(secret: SecretData | None) -> CertificateFacts | None:
    if secret is None or not secret.data.get("tls.crt"):
        return None
    try:
        return certificate_facts(load_pem_chain(secret.data["tls.crt"])[0])
    except PKIError:
        return None


def renewal_time_for(s: Snapshot, facts: CertificateFacts) -> datetime.datetime:
    """The renewal time of the certificate ``facts`` describes (core.renewal.renewal_time, jittered by uid/serial)."""
    return _renewal_time(s, facts.not_before, facts.not_after, facts.serial_number)


def _renewal_time(
    s: Snapshot, not_before: datetime.datetime, not_after: datetime.datetime, serial: str
) -> datetime.datetime:
    """The renewal time of the certificate with this validity and serial (the jitter key is uid/serial)."""
    return renewal.renewal_time(
        not_before,
        not_after,
        renew_before=s.spec.renew_before,
        renew_before_percentage=s.spec.renew_before_percentage,
        jitter_key=f"{s.uid}/{serial}",
        max_jitter_fraction=s.jitter_fraction,
        min_interval=s.min_renewal_interval,
    )


def _snapshot(secret: SecretData | None) -> SecretSnapshot:
    if secret is None:
        return SecretSnapshot(exists=False, certificate_pem=None, key_pem=None, labels={}, annotations={})
    return SecretSnapshot(
        exists=True,
        certificate_pem=secret.data.get("tls.crt"),
        key_pem=secret.data.get("tls.key"),
        labels=secret.labels,
        annotations=secret.annotations,
        outputs={k: secret.data[k] for k in (*OUTPUT_KEYS.values(), *KEYSTORE_KEYS.values()) if k in secret.data},
    )
