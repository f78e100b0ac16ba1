"""Certificate reconciler: decide → key → request → sign → store → ready → schedule renewal.

API writes for one issuance: create the CertificateRequest, write its status,
write the Secret (key and certificate in one request), write the Certificate
status, post one Event — five; then, at low priority, a list and a delete once the request
history exceeds ``revisionHistoryLimit``.

Crash safety: the key and certificate only ever reach the Secret together in
one write guarded by resourceVersion, so a crash leaves either the old pair
or the new one. After a restart a Secret whose certificate still matches is
left alone; its renewal timer is rebuilt from the certificate itself.
"""

from __future__ import annotations

import datetime
import functools
import logging
import time
from dataclasses import dataclass
from typing import Any, Final

from certmint import metrics
from certmint.controller.runtime import Operator
from certmint.controller.signers import signer_for
from certmint.controller.state import NO_ISSUER, CertificateRecord, IssuerRecord, IssuerToken, Settled, Signed
from certmint.core.conditions import Condition, condition_status, merge_conditions, parse_rfc3339, rfc3339
from certmint.core.decisions import (
    HANDOVER_TO,
    RENEWING,
    IssuerIdentity,
    Ownership,
    Reason,
    SecretSnapshot,
    certificate_label_value,
    certificate_template,
    desired_secret_metadata,
    issuance_reason,
    metadata_drift,
    renewal_reason,
    requested_identity,
    secret_ownership,
    stored_revision,
)
from certmint.core.policy import check_policy
from certmint.core.renewal import renewal_time, retry_delay
from certmint.core.spec import CertificateSpec, format_duration
from certmint.kube import resources
from certmint.kube.client import ApiError
from certmint.kube.resources import ObjectRef, SecretData
from certmint.pki.csr import build_csr, parse_csr
from certmint.pki.inspect import CertificateFacts, certificate_facts, load_pem_chain
from certmint.pki.keys import (
    PKIError,
    PrivateKey,
    encode_private_key,
    generate_private_key,
    generate_private_key_pem,
    key_algorithm,
    load_private_key,
)
from certmint.pki.signing import IssuedCertificate, SigningRequest

log = logging.getLogger("certmint.certificates")
COMPONENT = "certmint"


#: A Secret that is not certmint's is looked at again at least this often (it is not labelled, so
#: its handover or deletion reaches no watch of ours).
NOT_OWNED_RECHECK: Final = datetime.timedelta(minutes=2)


@dataclass(frozen=True)
class Failure:
    reason: str
    message: str
    retry: bool = True
    retry_cap: datetime.timedelta | None = None  # at most this long between retries


async def reconcile_certificate(op: Operator, namespace: str, name: str) -> None:
    key = ("Certificate", namespace, name)
    rec = op.state.certificates.get((namespace, name))
    if rec is None:
        op.queue.cancel_timer(key)
        return
    inputs = _inputs(op, rec)
    settled = rec.settled
    timer_only = False
    if settled is not None and settled.inputs == inputs:
        due = op.queue.due_at(key)
        if not settled.waits_for_timer or (due is not None and due > op.clock()):
            # Nothing we act on changed since the last outcome (often this event is our own status write).
            return
        timer_only = True  # here with the same inputs only because the timer fired: only the time has changed
    seen = SeenSecret(inputs[1])
    waits_for_timer = await _reconcile(op, rec, seen, timer_only=timer_only)
    if waits_for_timer is None:
        rec.settled = None
    else:
        # The outcome holds for the inputs we started from, with the Secret as we last read or wrote it:
        # anything that changed meanwhile differs from these and triggers another pass.
        rec.settled = Settled((inputs[0], seen.resource_version, inputs[2]), waits_for_timer)


@dataclass
class SeenSecret:
    """The Secret's resourceVersion as this reconcile pass last read or wrote it."""

    resource_version: str | None


def _inputs(op: Operator, rec: CertificateRecord) -> tuple[int, str | None, IssuerToken]:
    """What a reconcile outcome depends on: the spec's generation, the Secret's version, the issuer's identity."""
    if rec.spec is None:
        return (rec.generation, None, NO_ISSUER)
    issuer = op.state.issuer_for(rec.namespace, rec.spec.issuer_ref)
    return (
        rec.generation,
        op.state.secret_versions.get((rec.namespace, rec.spec.secret_name)),
        issuer.identity_token if issuer else NO_ISSUER,
    )


async def _reconcile(op: Operator, rec: CertificateRecord, seen: SeenSecret, *, timer_only: bool) -> bool | None:
    """One pass; returns whether the outcome waits on a timer (renewal, retry), or None to look again now.

    ``timer_only``: the last pass settled with these very inputs (spec generation, Secret version,
    issuer identity) and its timer has fired since.
    """
    namespace, name = rec.namespace, rec.name
    if rec.spec is None:
        await _write_status(op, rec, [Condition("Ready", "False", "InvalidSpec", rec.spec_error or "invalid spec")], {})
        metrics.set_ready(namespace, name, "False")
        return False
    spec = rec.spec
    issuer = op.state.issuer_for(namespace, spec.issuer_ref)
    now = op.now()
    unread = timer_only and (namespace, spec.secret_name) not in op.state.secrets_to_read
    due = _due_renewal(op, rec, spec, now, seen.resource_version) if unread else None
    if due is not None:
        return await _renew_unread(op, rec, spec, issuer, *due, seen)
    if op.state.secret_known_absent(namespace, spec.secret_name):
        secret = None  # the Secret watch has listed everything with our label: no read needed
    else:
        secret = await resources.read_secret(op.api, namespace, spec.secret_name)
        op.state.secrets_to_read.discard((namespace, spec.secret_name))
    seen.resource_version = secret.resource_version if secret else None
    op.state.secret_versions[(namespace, spec.secret_name)] = seen.resource_version
    facts = _facts(secret)
    if secret is not None:
        refused = _not_ours(rec, spec, secret, facts)
        if refused is not None:
            return await _fail(op, rec, refused, valid=False)
    renewal_at = _renewal_at(op, rec, spec, facts)
    reason = issuance_reason(spec, _snapshot(secret), _identity(issuer), now=now, renewal_at=renewal_at)
    if reason is None and facts is not None and renewal_at is not None:
        await _keep(op, rec, spec, issuer, secret, facts, renewal_at, seen)
        return True
    assert reason is not None
    renewal_due = renewal_at if facts is not None and reason.code == RENEWING else None
    return await _issue(op, rec, spec, issuer, secret, reason, renewal_due, seen)


def _due_renewal(
    op: Operator, rec: CertificateRecord, spec: CertificateSpec, now: datetime.datetime, secret_version: str | None
) -> tuple[datetime.datetime, datetime.datetime] | None:
    """(renewal time, notAfter) when the status shows a valid certificate whose renewal time has come and
    a new key is wanted anyway; None when only the Secret can tell (rotationPolicy Never reuses its key).

    After a pass settled with unchanged inputs, the status is what that pass saw in the Secret: notBefore,
    notAfter and serialNumber are the certificate's own (whole seconds), so the renewal time is the same.
    """
    if spec.private_key.rotation_policy != "Always" or secret_version is None:
        return None
    status = rec.status
    if status.get("failedIssuanceAttempts") or condition_status(status.get("conditions") or [], "Ready") != "True":
        return None
    try:
        not_before = parse_rfc3339(status["notBefore"])
        not_after = parse_rfc3339(status["notAfter"])
        serial = str(status["serialNumber"])
    except (KeyError, TypeError, ValueError):
        return None
    renewal_at = _renewal_moment(op, rec, spec, not_before, not_after, serial)
    return (renewal_at, not_after) if renewal_at <= now < not_after else None


async def _renew_unread(
    op: Operator,
    rec: CertificateRecord,
    spec: CertificateSpec,
    issuer: IssuerRecord | None,
    renewal_at: datetime.datetime,
    not_after: datetime.datetime,
    seen: SeenSecret,
) -> bool | None:
    """Renew without reading the Secret first: it is unchanged since the last pass (same resourceVersion
    in our watch), and the write is guarded by that version, so a change we have not seen yet makes it
    fail with a conflict and the next pass reads the Secret."""
    assert seen.resource_version is not None
    log.debug(
        "Certificate %s/%s: renewing; Secret unchanged at version %s", rec.namespace, rec.name, seen.resource_version
    )
    secret = SecretData(
        name=spec.secret_name,
        namespace=rec.namespace,
        resource_version=seen.resource_version,
        type="kubernetes.io/tls",
        data={},
        labels={},
        annotations={},
        # The last pass made sure of our owner reference (secretDeletionPolicy Delete); the version is the same.
        owner_uids=frozenset({rec.uid}) if spec.secret_deletion_policy == "Delete" else frozenset(),
    )
    return await _issue(op, rec, spec, issuer, secret, renewal_reason(renewal_at, not_after), renewal_at, seen)


def _not_ours(
    rec: CertificateRecord, spec: CertificateSpec, secret: SecretData, facts: CertificateFacts | None
) -> Failure | None:
    """Why this existing Secret must not be written for the Certificate, or None when it may.

    certmint writes only into Secrets it created or that a person handed over (see
    core.decisions.secret_ownership): a Certificate must not give its author, through the
    operator's RBAC, a write into (or, by owner reference, the deletion of) any Secret of the namespace.
    """
    claim = secret_ownership(
        secret.labels,
        secret.annotations,
        certificate_name=rec.name,
        certificate_uid=rec.uid,
        secret_serial=facts.serial_number if facts else None,
        status_serial=rec.status.get("serialNumber"),
    )
    where = f"Secret {rec.namespace}/{spec.secret_name}"
    if claim.ownership is Ownership.IN_USE:
        return Failure(
            Ownership.IN_USE.value,
            f"{where} belongs to Certificate {claim.other}; choose another spec.secretName",
            retry=False,
        )
    if claim.ownership is Ownership.NOT_OWNED:
        return Failure(
            Ownership.NOT_OWNED.value,
            f"{where} exists and was not created by certmint, so certmint leaves it untouched; choose another "
            f"spec.secretName, or delete the Secret, or hand it over to this Certificate with "
            f"`kubectl annotate secret {spec.secret_name} -n {rec.namespace} {HANDOVER_TO}={rec.name}`",
            retry_cap=NOT_OWNED_RECHECK,
        )
    if claim.via is not None:
        log.info("Certificate %s/%s: taking over %s (%s)", rec.namespace, rec.name, where, claim.via)
    return None


def _stale_trust_anchor(issuer: IssuerRecord | None, secret: SecretData) -> bytes | None:
    """The issuer's trust anchor when the Secret's ca.crt is another one, else None.

    Only reached for a certificate its CA issuer signed (issuance_reason found nothing to re-issue), so a
    different ca.crt means the anchor changed under the same CA (e.g. the root was added to the CA Secret's
    ca.crt after this certificate was issued): the leaf stays, ca.crt is rewritten.
    """
    authority = issuer.authority if issuer is not None else None
    if authority is None or secret.data.get("ca.crt") == authority.trust_anchor_pem:
        return None
    return authority.trust_anchor_pem


def _secret_metadata(
    rec: CertificateRecord, spec: CertificateSpec, facts: CertificateFacts, revision: int
) -> tuple[dict[str, str], dict[str, str]]:
    return desired_secret_metadata(
        spec,
        certificate_name=rec.name,
        certificate_uid=rec.uid,
        issuer_name=spec.issuer_ref.name,
        issuer_kind=spec.issuer_ref.kind,
        facts=facts,
        revision=revision,
    )


def _facts(secret: SecretData | None) -> CertificateFacts | None:
    if secret is None or not secret.data.get("tls.crt"):
        return None
    try:
        return certificate_facts(load_pem_chain(secret.data["tls.crt"])[0])
    except PKIError:
        return None


def _snapshot(secret: SecretData | None) -> SecretSnapshot:
    if secret is None:
        return SecretSnapshot(exists=False, certificate_pem=None, key_pem=None, labels={}, annotations={})
    return SecretSnapshot(
        exists=True,
        certificate_pem=secret.data.get("tls.crt"),
        key_pem=secret.data.get("tls.key"),
        labels=secret.labels,
        annotations=secret.annotations,
    )


def _identity(issuer: IssuerRecord | None) -> IssuerIdentity | None:
    if issuer is None or not issuer.ready or issuer.spec is None:
        return None
    return signer_for(issuer.spec).identity(issuer.authority)


def _renewal_at(
    op: Operator, rec: CertificateRecord, spec: CertificateSpec, facts: CertificateFacts | None
) -> datetime.datetime | None:
    if facts is None:
        return None
    return _renewal_moment(op, rec, spec, facts.not_before, facts.not_after, facts.serial_number)


def _renewal_moment(
    op: Operator,
    rec: CertificateRecord,
    spec: CertificateSpec,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    serial: str,
) -> datetime.datetime:
    """The renewal time of the certificate with this validity and serial (the jitter key is uid/serial)."""
    return renewal_time(
        not_before,
        not_after,
        renew_before=spec.renew_before,
        renew_before_percentage=spec.renew_before_percentage,
        jitter_key=f"{rec.uid}/{serial}",
        max_jitter_fraction=op.settings.jitter_fraction,
        min_interval=datetime.timedelta(seconds=op.settings.min_renewal_interval),
    )


def _ref(rec: CertificateRecord) -> ObjectRef:
    return ObjectRef(kind="Certificate", namespace=rec.namespace, name=rec.name, uid=rec.uid)


# -- the Secret is good: repair metadata, publish status, set the timer -----------------------------------


async def _keep(
    op: Operator,
    rec: CertificateRecord,
    spec: CertificateSpec,
    issuer: IssuerRecord | None,
    secret: SecretData | None,
    facts: CertificateFacts,
    renewal_at: datetime.datetime,
    seen: SeenSecret,
) -> None:
    assert secret is not None
    revision = stored_revision(rec.status.get("revision"), secret.annotations)
    labels, annotations = _secret_metadata(rec, spec, facts, revision)
    drift = metadata_drift(secret.labels, secret.annotations, labels, annotations)
    owner = _ref(rec) if spec.secret_deletion_policy == "Delete" else None
    anchor = _stale_trust_anchor(issuer, secret)
    if drift is not None or anchor is not None or (owner is not None and owner.uid not in secret.owner_uids):
        set_labels, set_annotations = drift or ({}, {})
        updated = await resources.update_secret(
            op.api,
            secret,
            data=None if anchor is None else {"ca.crt": anchor},  # a merge patch: tls.crt and tls.key stay
            labels=set_labels,
            annotations=set_annotations,
            owner=owner,
        )
        op.secret_written(rec.namespace, spec.secret_name, updated.resource_version)
        seen.resource_version = updated.resource_version
        what = "ca.crt (the issuer's trust anchor changed)" if anchor is not None else "metadata"
        log.info("Certificate %s/%s: repaired Secret %s without re-issuing", rec.namespace, rec.name, what)
    ready = Condition("Ready", "True", "Ready", f"certificate is up to date and valid until {rfc3339(facts.not_after)}")
    issuing = Condition("Issuing", "False", "UpToDate", f"next renewal at {rfc3339(renewal_at)}")
    fields: dict[str, Any] = {
        "notBefore": rfc3339(facts.not_before),
        "notAfter": rfc3339(facts.not_after),
        "renewalTime": rfc3339(renewal_at),
        "serialNumber": facts.serial_number,
        "revision": revision,
        "failedIssuanceAttempts": None,
        "lastFailureTime": None,
    }
    if all(rec.status.get(k) == v for k, v in fields.items()):
        # Same certificate as the status already describes (e.g. after a restart): keep the conditions'
        # wording from the issuance instead of rewriting every Certificate once.
        ready = _same_status_condition(rec.status, ready)
        issuing = _same_status_condition(rec.status, issuing)
    await _write_status(op, rec, [ready, issuing], fields)
    _observe_metrics(rec, spec, facts, renewal_at, "True")
    op.schedule(("Certificate", rec.namespace, rec.name), renewal_at)


def _same_status_condition(status: dict[str, Any], wanted: Condition) -> Condition:
    """The existing condition of ``wanted``'s type when it already has ``wanted``'s status, else ``wanted``."""
    for c in status.get("conditions") or []:
        if c.get("type") == wanted.type and c.get("status") == wanted.status:
            return Condition(wanted.type, wanted.status, str(c.get("reason", wanted.reason)), str(c.get("message", "")))
    return wanted


def _observe_metrics(
    rec: CertificateRecord, spec: CertificateSpec, facts: CertificateFacts, renewal_at: datetime.datetime, ready: str
) -> None:
    metrics.certificates.set_times(
        rec.namespace,
        rec.name,
        spec.issuer_ref.name,
        spec.issuer_ref.kind,
        expiration=facts.not_after.timestamp(),
        renewal=renewal_at.timestamp(),
    )
    metrics.set_ready(rec.namespace, rec.name, ready)


# -- issuance ----------------------------------------------------------------------------------------------


async def _issue(
    op: Operator,
    rec: CertificateRecord,
    spec: CertificateSpec,
    issuer: IssuerRecord | None,
    secret: SecretData | None,
    reason: Reason,
    renewal_due: datetime.datetime | None,
    seen: SeenSecret,
) -> bool | None:
    """Issue a new certificate. ``renewal_due``: the renewal time, when a still valid one is being renewed."""
    started = time.perf_counter()
    still_valid = renewal_due is not None
    if renewal_due is not None:  # how late, compared with the renewal time
        metrics.renewal_start_lag.observe((op.now() - renewal_due).total_seconds())
    failure = _precheck(rec, spec, issuer)
    if failure is not None:
        return await _fail(op, rec, failure, valid=still_valid)
    assert issuer is not None and issuer.spec is not None
    # The next revision after the one stored (the Secret's record wins when a crash kept it from the status).
    stored = stored_revision(rec.status.get("revision"), secret.annotations) if secret is not None else 0
    revision = max(int(rec.status.get("revision") or 0), stored) + 1
    now = op.now()
    signed = rec.signed
    if signed is not None and signed.reusable(revision, rec.generation, issuer.identity_token, now):
        # Signed for this revision by an earlier pass whose Secret write failed: store that, sign nothing new.
        log.debug("Certificate %s/%s: reusing CertificateRequest %s", rec.namespace, rec.name, signed.request_name)
    else:
        rec.signed = None
        key = await _private_key(op, spec, secret)
        csr_pem = build_csr(key, certificate_template(spec))
        try:
            request_name = await _create_request(op, rec, revision, _request_spec(spec, csr_pem))
        except ApiError as e:
            return await _fail(
                op, rec, Failure("RequestFailed", f"could not create a CertificateRequest: {e}"), valid=still_valid
            )
        request_key = (rec.namespace, request_name)
        op.state.inflight_requests.add(request_key)
        try:
            signing = SigningRequest(
                csr=parse_csr(csr_pem), duration=spec.duration, usages=spec.usages, is_ca=spec.is_ca
            )
            issued = signer_for(issuer.spec).sign(signing, key=key, authority=issuer.authority, now=now)
            await resources.patch_status(
                op.api, "CertificateRequest", rec.namespace, request_name, signed_request_status(issued, issuer, now)
            )
        except (ApiError, PKIError) as e:
            return await _fail(
                op,
                rec,
                Failure("SigningFailed", f"signing CertificateRequest {request_name} failed: {e}"),
                valid=still_valid,
            )
        finally:
            op.state.inflight_requests.discard(request_key)
        signed = Signed(revision, rec.generation, issuer.identity_token, request_name, key, issued)
        rec.signed = signed
    key, issued, request_key = signed.key, signed.issued, (rec.namespace, signed.request_name)

    facts = certificate_facts(issued.certificate)
    labels, annotations = _secret_metadata(rec, spec, facts, revision)
    data = {
        "tls.crt": issued.chain_pem,
        "tls.key": encode_private_key(key, spec.private_key.encoding),
        "ca.crt": issued.ca_pem,
    }
    owner = _ref(rec) if spec.secret_deletion_policy == "Delete" else None
    try:
        if secret is None:
            written = await resources.create_tls_secret(
                op.api, rec.namespace, spec.secret_name, data=data, labels=labels, annotations=annotations, owner=owner
            )
        else:
            written = await resources.update_secret(
                op.api, secret, data=data, labels=labels, annotations=annotations, owner=owner
            )
    except ApiError as e:
        if e.conflict or (secret is not None and e.not_found):
            # The Secret changed or went away under us, or exists without our label: start over from a fresh read.
            op.state.secrets_to_read.add((rec.namespace, spec.secret_name))
            op.queue.add(("Certificate", rec.namespace, rec.name))
            return None
        return await _fail(op, rec, _secret_write_failure(spec, rec.namespace, e), valid=still_valid)
    rec.signed = None
    op.secret_written(rec.namespace, spec.secret_name, written.resource_version)
    seen.resource_version = written.resource_version

    renewal_at = _renewal_at(op, rec, spec, facts)
    assert renewal_at is not None
    trigger = "Renewed" if reason.code == "Renewing" else "Issued"
    message = (
        f"{trigger} certificate serial {facts.serial_number} (revision {revision}, CertificateRequest "
        f"{request_key[1]}), valid until {rfc3339(facts.not_after)}; reason: {reason.message}"
    )
    ready = Condition("Ready", "True", trigger, f"certificate is up to date and valid until {rfc3339(facts.not_after)}")
    issuing = Condition("Issuing", "False", trigger, message)
    await _write_status(
        op,
        rec,
        [ready, issuing],
        {
            "notBefore": rfc3339(facts.not_before),
            "notAfter": rfc3339(facts.not_after),
            "renewalTime": rfc3339(renewal_at),
            "serialNumber": facts.serial_number,
            "revision": revision,
            "failedIssuanceAttempts": None,
            "lastFailureTime": None,
        },
    )
    op.schedule(("Certificate", rec.namespace, rec.name), renewal_at)
    metrics.issuances.labels(spec.issuer_ref.kind, trigger).inc()
    metrics.issuance_seconds.observe(time.perf_counter() - started)
    _observe_metrics(rec, spec, facts, renewal_at, "True")
    log.info("Certificate %s/%s: %s", rec.namespace, rec.name, message)
    await _event(op, rec, "Normal", trigger, message)
    if revision > spec.revision_history_limit:
        # Clean-up, not part of the issuance: it waits behind every renewal still queued.
        op.queue.add(("PruneRequests", rec.namespace, rec.name), low=True)
    return True


async def prune_requests(op: Operator, namespace: str, name: str) -> None:
    """Delete the Certificate's CertificateRequests beyond its revisionHistoryLimit (a low-priority key)."""
    rec = op.state.certificates.get((namespace, name))
    if rec is not None and rec.spec is not None:
        await _prune_requests(op, rec, rec.spec.revision_history_limit)


def _secret_write_failure(spec: CertificateSpec, namespace: str, error: ApiError) -> Failure:
    """A refused Secret write, with what the user can change when the refusal comes from the spec."""
    message = f"could not write Secret {namespace}/{spec.secret_name}: {error}"
    if error.status in (400, 413, 422):  # the API server judged the Secret itself, not a passing failure
        message += (
            "; the Secret certmint would write is refused as it is: check spec.secretTemplate (label and "
            "annotation syntax, annotations at most 256 KiB in all) and spec.secretName; the signed certificate is "
            "kept and stored once the Secret is accepted"
        )
    return Failure("SecretWriteFailed", message)


def request_name(certificate_name: str, revision: int) -> str:
    """The CertificateRequest of one revision of a Certificate: one name per revision, so revisions stay unique."""
    return f"{certificate_label_value(certificate_name)}-{revision}"


async def _create_request(op: Operator, rec: CertificateRecord, revision: int, spec: dict[str, Any]) -> str:
    """Create the revision's CertificateRequest; returns its name.

    The name is the revision's own, so a second request for a revision cannot exist. One that is
    already there is ours from a pass that did not get to store its certificate (the operator
    stopped, or the Secret write failed before a restart): its private key is gone with that pass,
    so it is replaced. A name taken by an object that is not ours is left alone, and the request
    gets a generated name instead.
    """
    name = request_name(rec.name, revision)
    create = functools.partial(
        resources.create_certificate_request,
        op.api,
        rec.namespace,
        certificate=_ref(rec),
        label=certificate_label_value(rec.name),
        revision=revision,
        spec=spec,
    )
    try:
        return str((await create(name=name))["metadata"]["name"])
    except ApiError as e:
        if not e.conflict:
            raise
    existing = await resources.get_certificate_request(op.api, rec.namespace, name)
    if existing is not None and rec.uid in resources.owner_uids(existing):
        log.info("Certificate %s/%s: replacing CertificateRequest %s left unstored", rec.namespace, rec.name, name)
        await resources.delete_certificate_request(op.api, rec.namespace, name)
        return str((await create(name=name))["metadata"]["name"])
    return str((await create(name=None))["metadata"]["name"])


def _precheck(rec: CertificateRecord, spec: CertificateSpec, issuer: IssuerRecord | None) -> Failure | None:
    ref = spec.issuer_ref
    where = "" if ref.kind == "ClusterIssuer" else f" in namespace {rec.namespace}"
    if issuer is None:
        return Failure("IssuerNotFound", f"{ref.kind} {ref.name!r} does not exist{where}")
    if not issuer.ready or issuer.spec is None:
        return Failure("IssuerNotReady", f"{ref.kind} {ref.name!r} is not ready: {issuer.reason}: {issuer.message}")
    signer = signer_for(issuer.spec)
    refusal = signer.refusal(spec, f"{ref.kind} {ref.name!r}")
    if refusal is not None:
        return Failure(refusal.reason, refusal.message, retry=False)
    violations = check_policy(
        issuer.spec.policy,
        requested_identity(spec),
        namespace=rec.namespace,
        cluster_scoped_issuer=ref.kind == "ClusterIssuer",
        self_signed=signer.own_key_only,
    )
    if violations:
        # Permanent until the Certificate or the issuer's policy changes; both re-trigger us.
        return Failure("PolicyViolation", f"{ref.kind} {ref.name!r} refuses: " + "; ".join(violations), retry=False)
    return None


async def _private_key(op: Operator, spec: CertificateSpec, secret: SecretData | None) -> PrivateKey:
    wanted = (spec.private_key.algorithm, spec.private_key.size)
    if spec.private_key.rotation_policy == "Never" and secret is not None and secret.data.get("tls.key"):
        try:
            existing = load_private_key(secret.data["tls.key"])
            if key_algorithm(existing.public_key()) == wanted:
                return existing
        except PKIError:
            pass
    if spec.private_key.algorithm == "RSA":
        # RSA generation takes 50 ms to seconds and holds the GIL: another process keeps the loop free.
        pem: bytes = await op.run_in_process(generate_private_key_pem, *wanted)
        return load_private_key(pem, check_rsa=False)  # we just made it: no need for OpenSSL's slow check
    return generate_private_key(*wanted)


def _request_spec(spec: CertificateSpec, csr_pem: bytes) -> dict[str, Any]:
    return {
        "request": csr_pem.decode(),
        "issuerRef": {"name": spec.issuer_ref.name, "kind": spec.issuer_ref.kind, "group": "certmint.dev"},
        "duration": format_duration(spec.duration),
        "usages": list(spec.usages),
        "isCA": spec.is_ca,
    }


def signed_request_status(issued: IssuedCertificate, issuer: IssuerRecord, now: datetime.datetime) -> dict[str, Any]:
    who = f"{issuer.kind} {issuer.name}"
    conditions = merge_conditions(
        [],
        [
            Condition("Approved", "True", "PolicyAllowed", f"the request satisfies the policy of {who}"),
            Condition("Ready", "True", "Issued", f"signed by {who}, serial {issued.serial_number}"),
        ],
        now=now,
    )
    return {
        "conditions": conditions,
        "certificate": issued.chain_pem.decode(),
        "ca": issued.ca_pem.decode(),
        "notBefore": rfc3339(issued.not_before),
        "notAfter": rfc3339(issued.not_after),
    }


async def _prune_requests(op: Operator, rec: CertificateRecord, limit: int) -> None:
    try:
        requests = [
            r
            for r in await resources.list_certificate_requests(op.api, rec.namespace, certificate_label_value(rec.name))
            if rec.uid in resources.owner_uids(r)
        ]
        ordered = sorted(
            requests,
            key=lambda r: int((r["metadata"].get("annotations") or {}).get(resources.REVISION_ANNOTATION, "0")),
        )
        for old in ordered[:-limit]:
            await resources.delete_certificate_request(op.api, rec.namespace, old["metadata"]["name"])
    except ApiError as e:
        log.warning("Certificate %s/%s: pruning old CertificateRequests failed: %s", rec.namespace, rec.name, e)


# -- failures and status -------------------------------------------------------------------------------------


async def _fail(op: Operator, rec: CertificateRecord, failure: Failure, *, valid: bool) -> bool:
    """Record a failed attempt; keep Ready=True only while the Secret still holds a valid, matching certificate."""
    attempts = int(rec.status.get("failedIssuanceAttempts") or 0) + 1
    spec = rec.spec
    now = op.now()
    metrics.errors.labels("Certificate", failure.reason).inc()
    retry_note = ""
    if failure.retry and spec is not None:
        delay = retry_delay(spec.duration, attempts)
        if failure.retry_cap is not None:
            delay = min(delay, failure.retry_cap)
        op.schedule(("Certificate", rec.namespace, rec.name), now + delay)
        retry_note = f"; retrying in {format_duration(delay)} (attempt {attempts})"
    else:
        op.queue.cancel_timer(("Certificate", rec.namespace, rec.name))
    message = failure.message + retry_note
    conditions = [Condition("Issuing", "True", failure.reason, message)]
    if not valid:
        conditions.append(Condition("Ready", "False", failure.reason, message))
    previous_reason = _condition_reason(rec.status, "Issuing")
    await _write_status(
        op,
        rec,
        conditions,
        {
            "failedIssuanceAttempts": attempts,
            "lastFailureTime": rfc3339(now),
        },
    )
    metrics.set_ready(rec.namespace, rec.name, "True" if valid else "False")
    if previous_reason != failure.reason:  # one Event per new cause, not one per retry
        log.warning("Certificate %s/%s: %s", rec.namespace, rec.name, message)
        await _event(op, rec, "Warning", failure.reason, message)
    return failure.retry


def _condition_reason(status: dict[str, Any], type_: str) -> str | None:
    for c in status.get("conditions") or []:
        if c.get("type") == type_ and c.get("status") == "True":
            return str(c.get("reason"))
    return None


async def _write_status(
    op: Operator, rec: CertificateRecord, conditions: list[Condition], fields: dict[str, Any]
) -> None:
    status: dict[str, Any] = {
        **fields,
        "observedGeneration": rec.generation,
        "conditions": merge_conditions(
            rec.status.get("conditions") or [], conditions, now=op.now(), observed_generation=rec.generation
        ),
    }
    if all(rec.status.get(k) == v for k, v in status.items()):
        return
    try:
        result = await resources.patch_status(op.api, "Certificate", rec.namespace, rec.name, status)
    except ApiError as e:
        if e.not_found:
            return  # deleted meanwhile
        raise
    rec.status = dict(result.get("status") or {})
    rec.resource_version = result["metadata"]["resourceVersion"]
    if condition_status(rec.status.get("conditions") or [], "Ready") is None:
        log.debug("status of %s/%s has no Ready condition", rec.namespace, rec.name)


async def _event(op: Operator, rec: CertificateRecord, type_: str, reason: str, message: str) -> None:
    if not op.settings.post_events:
        return
    try:
        await resources.post_event(
            op.api,
            _ref(rec),
            type_=type_,
            reason=reason,
            message=message,
            component=COMPONENT,
            now=op.now(),
            fallback_namespace=op.settings.namespace,
        )
    except ApiError as e:  # an Event is nice to have; never fail a reconcile over it
        log.debug("posting an Event failed: %s", e)
