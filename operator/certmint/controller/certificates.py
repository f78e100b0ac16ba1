"""Certificate reconciler: gather a snapshot → plan (controller.certificate_plan, pure) → act.

Acting on an Issue: key → request → sign → store → ready → schedule renewal.

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

import dataclasses
import datetime
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from certmint import metrics
from certmint.controller.certificate_plan import (
    NEXT_CRT,
    NEXT_KEY,
    RETIRE_AT,
    SWITCH_AT,
    SWITCHED_AT,
    CertificateReason,
    Fail,
    Failure,
    Hold,
    Issue,
    IssuerView,
    Keep,
    Plan,
    ReadSecret,
    Resume,
    Snapshot,
    Stage,
    Staged,
    Switch,
    UnreadSecret,
    Wait,
    plan,
    renewal_time_for,
    secret_metadata,
    verified_status,
)
from certmint.controller.runtime import Operator
from certmint.controller.signers import SigningJob, signer_for
from certmint.controller.state import NO_ISSUER, CertificateRecord, IssuerRecord, IssuerToken, Kind, Settled, Signed
from certmint.controller.status import CertificateStatus, write_status
from certmint.controller.trust_sets import pending_announcements, pending_reissues
from certmint.core.approval import POLICY_ALLOWED
from certmint.core.ca_rotation import watch_from
from certmint.core.conditions import Condition, condition_status, merge_conditions, rfc3339
from certmint.core.decisions import RENEWING, certificate_label_value
from certmint.core.outputs import KEYSTORE_KEYS, additional_outputs
from certmint.core.renewal import retry_delay
from certmint.core.spec import CertificateSpec, IssuerRef, format_duration
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
    load_private_key,
)
from certmint.pki.keystores import jks_keystore, pkcs12_keystore
from certmint.pki.signing import IssuedCertificate, SigningRequest

log = logging.getLogger("certmint.certificates")


async def reconcile_certificate(op: Operator, namespace: str, name: str) -> None:
    """gather → plan → act, skipped when nothing it depends on changed since the last outcome."""
    key = (Kind.CERTIFICATE, namespace, name)
    rec = op.state.certificates.get((namespace, name))
    if rec is None:
        op.queue.cancel_timer(key)
        return
    inputs = _inputs(op, rec)
    settled = rec.settled
    if settled is not None and settled.inputs == inputs:
        due = op.queue.due_at(key)
        if not settled.waits_for_timer or (due is not None and due > op.clock()):
            # Nothing we act on changed since the last outcome (often this event is our own status write).
            return
    if rec.spec is None:
        await _write_status(
            op,
            rec,
            rec.read_status(),
            [Condition("Ready", "False", CertificateReason.INVALID_SPEC, rec.spec_error or "invalid spec")],
            {},
        )
        metrics.set_ready(namespace, name, "False")
        rec.settled = Settled(inputs, False)
        return
    snapshot = await _gather(op, rec, rec.spec)
    decision = plan(snapshot)
    if isinstance(decision, ReadSecret):  # the same snapshot, with the Secret as it is now
        snapshot = dataclasses.replace(snapshot, secret=await _read_secret(op, rec.namespace, rec.spec.secret_name))
        decision = plan(snapshot)
    assert not isinstance(decision, ReadSecret)
    if isinstance(decision, Issue) and decision.paced:
        come_back = op.reissue_pacer.admit(key, op.clock())
        if come_back is not None:  # its peers still trust what it has: it waits for its turn, holding no worker
            op.queue.add_at(key, come_back)
            rec.settled = None
            return
    seen = SeenSecret(_version_of(snapshot.secret))
    waits_for_timer = await _act(op, rec, snapshot, decision, seen)
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


def _version_of(secret: SecretData | UnreadSecret | None) -> str | None:
    return secret.resource_version if secret is not None else None


# -- gather --------------------------------------------------------------------------------------------------


async def _gather(op: Operator, rec: CertificateRecord, spec: CertificateSpec) -> Snapshot:
    """Everything this pass decides on, read once; the Secret only when our watch does not know its version (or
    saw it deleted or relabelled): otherwise plan decides from the status whether it must be read."""
    namespace = rec.namespace
    secret_key = (namespace, spec.secret_name)
    secret: SecretData | UnreadSecret | None
    version = op.state.secret_versions.get(secret_key)
    if version is not None and secret_key not in op.state.secrets_to_read:
        secret = UnreadSecret(version)
    else:
        secret = await _read_secret(op, namespace, spec.secret_name)
    record = op.state.issuer_for(namespace, spec.issuer_ref)
    issuer = _issuer_view(spec, record)
    if record is None and await _issuer_exists(op, namespace, spec.issuer_ref):
        # Applied together with this Certificate, and our watch has not delivered it yet: wait for its first
        # check (which wakes this Certificate) instead of reporting it missing and retrying in 30 s.
        issuer = dataclasses.replace(issuer, found=True, detail="not seen by the operator's watch yet")
    rotates = spec.is_ca and issuer.own_key_only and op.settings.trust_propagation_seconds > 0  # a root's phases
    now = op.now()
    return Snapshot(
        namespace=namespace,
        name=rec.name,
        uid=rec.uid,
        generation=rec.generation,
        spec=spec,
        status=rec.read_status(),
        secret=secret,
        issuer=issuer,
        signed=rec.signed,
        now=now,
        jitter_fraction=op.settings.jitter_fraction,
        min_renewal_interval=datetime.timedelta(seconds=op.settings.min_renewal_interval),
        trust_propagation=datetime.timedelta(seconds=op.settings.trust_propagation_seconds),
        probe=_RootProbe(op, rec, spec, now) if rotates else None,
        renew_request=rec.renew_request,
    )


async def _issuer_exists(op: Operator, namespace: str, ref: IssuerRef) -> bool:
    """Whether the API server has the issuer that our state lacks (one GET, only for a Certificate whose issuer
    the watches have not delivered)."""
    path = resources.object_path(ref.kind, None if ref.kind == "ClusterIssuer" else namespace, ref.name)
    try:
        return await op.api.get(path) is not None
    except ApiError:
        return False  # reported as missing, as before; the retry looks again


@dataclass
class _RootProbe:
    """certificate_plan.RotationProbe over the operator's state; remembers in the record since when a step has
    found nothing pending (CertificateRecord.clear_since, per step)."""

    op: Operator
    rec: CertificateRecord
    spec: CertificateSpec
    now: datetime.datetime

    def pending(self, step: str) -> tuple[int | None, datetime.datetime | None]:
        if step.startswith("switch:"):
            count = pending_announcements(self.op, self.rec.namespace, self.spec.secret_name)
        else:
            count = pending_reissues(self.op, self.rec.namespace, self.spec.secret_name)
        if count != 0:
            self.rec.clear_since = None
            return count, None
        if self.rec.clear_since is None or self.rec.clear_since[0] != step:
            self.rec.clear_since = (step, self.now)
        return 0, self.rec.clear_since[1]


async def _read_secret(op: Operator, namespace: str, name: str) -> SecretData | None:
    """The Secret as it is now (None: absent), its version recorded; no request when the Secret watch has listed
    everything with our label and this one is not among it."""
    key = (namespace, name)
    if op.state.secret_known_absent(namespace, name):
        secret = None
    else:
        secret = await resources.read_secret(op.api, namespace, name)
        op.state.secrets_to_read.discard(key)
    op.state.secret_versions[key] = secret.resource_version if secret else None
    return secret


def _issuer_view(spec: CertificateSpec, issuer: IssuerRecord | None) -> IssuerView:
    ref = spec.issuer_ref
    if issuer is None:
        return IssuerView(ref, found=False, ready=False, checked=False, detail="not found", token=NO_ISSUER)
    authority = issuer.authority
    anchor = authority.trust_bundle_pem if authority is not None else None
    detail = f"{issuer.reason}: {issuer.message}"
    if not issuer.ready or issuer.spec is None:
        return IssuerView(
            ref,
            found=True,
            ready=False,
            checked=issuer.checked,
            detail=detail,
            token=issuer.identity_token,
            trust_anchor_pem=anchor,
        )
    signer = signer_for(issuer.spec)
    return IssuerView(
        ref,
        found=True,
        ready=True,
        checked=True,
        detail=detail,
        token=issuer.identity_token,
        identity=signer.identity(authority),
        policy=issuer.spec.policy,
        own_key_only=signer.own_key_only,
        refusal=signer.refusal(spec, f"{ref.kind} {ref.name!r}"),
        trust_anchor_pem=anchor,
        anchors=authority.trust_anchors if authority is not None else (),
        authority=authority,
        ca_since=issuer.ca_since,
        reissue_window=issuer.reissue_window,
        signs_from=issuer.replaced_root.next_step_at if issuer.replaced_root and issuer.holds_signing else None,
    )


# -- act -----------------------------------------------------------------------------------------------------


async def _act(op: Operator, rec: CertificateRecord, s: Snapshot, decision: Plan, seen: SeenSecret) -> bool | None:
    """Carry out the plan; returns whether the outcome waits on a timer (renewal, retry), or None to look again."""
    if isinstance(decision, Keep | Issue) and decision.takeover is not None:
        where = f"Secret {rec.namespace}/{s.spec.secret_name}"
        log.info("Certificate %s/%s: taking over %s (%s)", rec.namespace, rec.name, where, decision.takeover)
    if isinstance(decision, Keep):
        assert isinstance(s.secret, SecretData)
        await _keep(op, rec, s, s.secret, decision, seen)
        return True
    if isinstance(decision, Fail):
        return await _fail(op, rec, s.status, decision.failure, valid=decision.valid)
    if isinstance(decision, Issue):
        return await _issue(op, rec, s, decision, seen)
    if isinstance(decision, Wait):
        log.debug("Certificate %s/%s: waiting for the first check of %s", rec.namespace, rec.name, decision.issuer)
        return False  # the check changes the issuer's identity token, which wakes this Certificate
    if isinstance(decision, Resume):
        _observe_metrics(rec, s.spec, decision.not_after, decision.renewal_time, "True")
        op.schedule((Kind.CERTIFICATE, rec.namespace, rec.name), decision.renewal_time)
        return True
    if isinstance(decision, Stage):
        return await _issue(op, rec, s, decision.issue, seen, stage=decision)
    if isinstance(decision, Staged):
        return await _staged(op, rec, s, decision, seen)
    if isinstance(decision, Switch):
        assert isinstance(s.secret, SecretData)
        return await _switch(op, rec, s, s.secret, decision, seen)
    if isinstance(decision, Hold):
        waiting = CertificateReason.WAITING_FOR_TRUST
        conditions = [
            Condition("Ready", "False", waiting, decision.message),
            Condition("Issuing", "True", waiting, decision.message),
        ]
        await _write_status(op, rec, s.status, conditions, {})
        metrics.set_ready(rec.namespace, rec.name, "False")
        op.schedule((Kind.CERTIFICATE, rec.namespace, rec.name), decision.until)
        return True  # the switch changes the issuer's identity token, which wakes this Certificate
    raise AssertionError(f"unplanned outcome {decision!r}")


def _ref(rec: CertificateRecord) -> ObjectRef:
    return ObjectRef(kind="Certificate", namespace=rec.namespace, name=rec.name, uid=rec.uid)


# -- the Secret is good: repair metadata, publish status, set the timer -----------------------------------


async def _keep(
    op: Operator, rec: CertificateRecord, s: Snapshot, secret: SecretData, keep: Keep, seen: SeenSecret
) -> None:
    """The Secret is good: repair what drifted (metadata, ca.crt, our owner reference), publish, set the timer."""
    facts, renewal_time = keep.facts, keep.renewal_time
    if keep.repairs:
        annotations: dict[str, str | None] = {**keep.annotations}
        if keep.retire:
            annotations[RETIRE_AT] = annotations[SWITCHED_AT] = None
        updated = await resources.update_secret(
            op.api,
            secret.namespace,
            secret.name,
            resource_version=secret.resource_version,
            data=None if keep.ca_crt is None else {"ca.crt": keep.ca_crt},  # a merge patch: tls.crt and tls.key stay
            labels=keep.labels,
            annotations=annotations,
            owner=_ref(rec) if keep.add_owner else None,
        )
        op.secret_written(rec.namespace, s.spec.secret_name, updated.resource_version)
        seen.resource_version = updated.resource_version
        what = "ca.crt (the issuer's trust anchor changed)" if keep.ca_crt is not None else "metadata"
        if keep.retire:
            what = "ca.crt: the previous root is retired"
            metrics.set_rotation_step(rec.namespace, rec.name, None)
            await _event(
                op, rec, "Normal", CertificateReason.ROOT_RETIRED, f"the previous root left {s.where}'s ca.crt"
            )
        log.info("Certificate %s/%s: repaired Secret %s without re-issuing", rec.namespace, rec.name, what)
    ready = Condition(
        "Ready",
        "True",
        CertificateReason.READY,
        f"certificate is up to date and valid until {rfc3339(facts.not_after)}",
    )
    issuing = Condition("Issuing", "False", CertificateReason.UP_TO_DATE, f"next renewal at {rfc3339(renewal_time)}")
    if keep.deferred is not None:
        issuing = Condition("Issuing", "True", CertificateReason.REISSUE_SPREAD, keep.deferred)
    fields = _certificate_fields(facts, renewal_time, keep.revision)
    if all(s.status.get(k) == v for k, v in fields.items()):
        # Same certificate as the status already describes (e.g. after a restart): keep the conditions'
        # wording from the issuance instead of rewriting every Certificate once.
        ready = _same_status_condition(s.status, ready)
        issuing = _same_status_condition(s.status, issuing)
    assert seen.resource_version is not None  # the Secret as read, or as repaired just now
    # A deferred re-issue is not "found good": a restart must judge the Secret again, not resume from the status.
    fields["verified"] = None if keep.deferred else verified_status(s, seen.resource_version, s.issuer.token)
    await _write_status(op, rec, s.status, [ready, issuing], fields)
    _observe_metrics(rec, s.spec, facts.not_after, renewal_time, "True")
    wake = renewal_time if keep.wake_at is None else min(renewal_time, keep.wake_at)
    op.schedule((Kind.CERTIFICATE, rec.namespace, rec.name), wake)


# -- a root's rotation: staged, then switched (certificate_plan's module docs) ---------------------------


async def _staged(op: Operator, rec: CertificateRecord, s: Snapshot, staged: Staged, seen: SeenSecret) -> bool | None:
    if staged.postponed:
        assert isinstance(s.secret, SecretData)
        try:
            written = await resources.update_secret(
                op.api,
                rec.namespace,
                s.spec.secret_name,
                resource_version=s.secret.resource_version,
                data=None,
                labels={},
                annotations={SWITCH_AT: rfc3339(staged.switch_at)},
            )
        except ApiError as e:
            return await _secret_write_refused(op, rec, s, e, valid=True)
        op.secret_written(rec.namespace, s.spec.secret_name, written.resource_version)
        seen.resource_version = written.resource_version
        log.info(
            "Certificate %s/%s: %d trust set(s) lack the next root: its switch is postponed to %s",
            rec.namespace,
            rec.name,
            staged.pending,
            rfc3339(staged.switch_at),
        )
    waiting = f"; {staged.pending} trust set(s) do not have it yet" if staged.pending else ""
    if staged.pending is None:
        waiting = "; waiting for its issuers' check to see which trust sets have it"
    message = (
        f"next root (serial {staged.next_serial}) is in {s.where}'s ca.crt and reaches the certificates of its "
        f"issuers{waiting}; it replaces the current one at {rfc3339(staged.switch_at)}"
    )
    ready = Condition(
        "Ready", "True", CertificateReason.READY, f"certificate is valid until {rfc3339(staged.facts.not_after)}"
    )
    issuing = Condition("Issuing", "True", CertificateReason.ROOT_STAGED, message)
    await _write_status(op, rec, s.status, [ready, issuing], {})
    _observe_metrics(rec, s.spec, staged.facts.not_after, staged.renewal_time, "True")
    op.schedule((Kind.CERTIFICATE, rec.namespace, rec.name), staged.wake_at)
    metrics.set_rotation_step(rec.namespace, rec.name, "switch", staged.switch_at.timestamp())
    # While what the switch waits for is pending or unknown, any wake-up (an issuer check) looks again: not settled.
    return True if staged.pending == 0 else None


async def _switch(
    op: Operator, rec: CertificateRecord, s: Snapshot, secret: SecretData, switch: Switch, seen: SeenSecret
) -> bool | None:
    facts, revision = switch.facts, switch.revision
    passwords = await _keystore_passwords(op, rec.namespace, s.spec)
    if isinstance(passwords, Failure):
        return await _fail(op, rec, s.status, passwords, valid=True)
    switched_key = load_private_key(switch.key_pem) if s.spec.keystores else None
    labels, annotations = secret_metadata(s, facts, revision)
    try:
        written = await resources.update_secret(
            op.api,
            rec.namespace,
            s.spec.secret_name,
            resource_version=secret.resource_version,
            data={
                "tls.crt": switch.chain_pem,
                "tls.key": switch.key_pem,
                NEXT_CRT: None,
                NEXT_KEY: None,
                **additional_outputs(s.spec.additional_output_formats, switch.key_pem, switch.chain_pem),
                **_keystores(s.spec, switched_key, switch.chain_pem, passwords),
            },
            labels=labels,
            annotations={
                **annotations,
                SWITCH_AT: None,
                RETIRE_AT: rfc3339(switch.retire_at),
                SWITCHED_AT: rfc3339(op.now()),
            },
        )
    except ApiError as e:
        return await _secret_write_refused(op, rec, s, e, valid=True)
    op.secret_written(rec.namespace, s.spec.secret_name, written.resource_version)
    seen.resource_version = written.resource_version
    renewal_time = renewal_time_for(s, facts)
    message = (
        f"{CertificateReason.RENEWED} certificate serial {facts.serial_number} (revision {revision}): the staged "
        f"root replaced the previous one, which stays in ca.crt until {rfc3339(switch.retire_at)}"
    )
    ready = Condition(
        "Ready",
        "True",
        CertificateReason.RENEWED,
        f"certificate is up to date and valid until {rfc3339(facts.not_after)}",
    )
    issuing = Condition("Issuing", "False", CertificateReason.RENEWED, message)
    fields = _certificate_fields(facts, renewal_time, revision)
    fields["verified"] = verified_status(s, written.resource_version, s.issuer.token)
    await _write_status(op, rec, s.status, [ready, issuing], fields)
    # Looked at again where the retirement starts to watch for certificates left under the old root.
    op.schedule(
        (Kind.CERTIFICATE, rec.namespace, rec.name),
        min(renewal_time, watch_from(switch.retire_at, s.trust_propagation)),
    )
    metrics.issuances.labels(s.spec.issuer_ref.kind, CertificateReason.RENEWED).inc()
    _observe_metrics(rec, s.spec, facts.not_after, renewal_time, "True")
    log.info("Certificate %s/%s: %s", rec.namespace, rec.name, message)
    await _event(op, rec, "Normal", CertificateReason.ROOT_SWITCHED, message)
    metrics.set_rotation_step(rec.namespace, rec.name, "retire", switch.retire_at.timestamp())
    return True


def _certificate_fields(facts: CertificateFacts, renewal_time: datetime.datetime, revision: int) -> CertificateStatus:
    """The status fields that describe the certificate in the Secret (a success clears the failure fields)."""
    return {
        "notBefore": rfc3339(facts.not_before),
        "notAfter": rfc3339(facts.not_after),
        "renewalTime": rfc3339(renewal_time),
        "serialNumber": facts.serial_number,
        "revision": revision,
        "failedIssuanceAttempts": None,
        "lastFailureTime": None,
    }


def _same_status_condition(status: CertificateStatus, wanted: Condition) -> Condition:
    """The existing condition of ``wanted``'s type when it already has ``wanted``'s status, else ``wanted``."""
    for c in status.get("conditions") or []:
        if c.get("type") == wanted.type and c.get("status") == wanted.status:
            return Condition(wanted.type, wanted.status, str(c.get("reason", wanted.reason)), str(c.get("message", "")))
    return wanted


def _observe_metrics(
    rec: CertificateRecord,
    spec: CertificateSpec,
    not_after: datetime.datetime,
    renewal_time: datetime.datetime,
    ready: str,
) -> None:
    metrics.certificates.set_times(
        rec.namespace,
        rec.name,
        spec.issuer_ref.name,
        spec.issuer_ref.kind,
        expiration=not_after.timestamp(),
        renewal=renewal_time.timestamp(),
    )
    metrics.set_ready(rec.namespace, rec.name, ready)


# -- issuance ----------------------------------------------------------------------------------------------


async def _keystore_passwords(op: Operator, namespace: str, spec: CertificateSpec) -> dict[str, bytes] | Failure:
    """The password of each keystore spec.keystores asks for ({"pkcs12": ..., "jks": ...}), read from the Secret it
    names in the Certificate's namespace; a Failure that says which Secret and key when one cannot be read. Read at
    each issuance (the Secret is not watched): a changed password applies from the next issuance."""
    passwords: dict[str, bytes] = {}
    for kind, keystore in (("pkcs12", spec.keystores.pkcs12), ("jks", spec.keystores.jks)):
        if keystore is None:
            continue
        where = f"Secret {namespace}/{keystore.secret}"
        try:
            secret = await resources.read_secret(op.api, namespace, keystore.secret)
        except ApiError as e:
            return Failure(
                CertificateReason.KEYSTORE_PASSWORD_UNAVAILABLE, f"spec.keystores.{kind}: cannot read {where}: {e}"
            )
        value = secret.data.get(keystore.key) if secret is not None else None
        if not value:
            what = "does not exist" if secret is None else f"has no key {keystore.key!r} (or it is empty)"
            return Failure(
                CertificateReason.KEYSTORE_PASSWORD_UNAVAILABLE,
                f"spec.keystores.{kind}.passwordSecretRef: {where} {what}; nothing is issued until it does",
            )
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return Failure(
                CertificateReason.KEYSTORE_PASSWORD_UNAVAILABLE,
                f"spec.keystores.{kind}.passwordSecretRef: the password in {where} key {keystore.key!r} is not UTF-8",
                retry=False,
            )
        passwords[kind] = value
    return passwords


def _keystores(
    spec: CertificateSpec, key: PrivateKey | None, chain_pem: bytes, passwords: dict[str, bytes]
) -> dict[str, bytes | None]:
    """keystore.p12 and keystore.jks for what spec.keystores asks (None: remove the key from the Secret)."""
    p12, jks = spec.keystores.pkcs12, spec.keystores.jks
    if key is None or not spec.keystores:
        return dict.fromkeys(KEYSTORE_KEYS.values())
    chain = load_pem_chain(chain_pem)
    return {
        KEYSTORE_KEYS["pkcs12"]: None
        if p12 is None
        else pkcs12_keystore(key, chain, passwords["pkcs12"], alias=p12.alias),
        KEYSTORE_KEYS["jks"]: None if jks is None else jks_keystore(key, chain, passwords["jks"], alias=jks.alias),
    }


async def _issue(
    op: Operator, rec: CertificateRecord, s: Snapshot, issue: Issue, seen: SeenSecret, *, stage: Stage | None = None
) -> bool | None:
    """Sign (or reuse what an earlier pass signed), store key and certificate in one write, publish.

    ``stage``: a root's next one is stored beside the current one instead (next-tls.*, appended to ca.crt)."""
    started = time.perf_counter()
    spec, revision = s.spec, issue.revision
    if issue.renewal_time is not None:  # how late, compared with the renewal time
        metrics.renewal_lag.observe((s.now - issue.renewal_time).total_seconds())
    if isinstance(s.secret, UnreadSecret):
        log.debug(
            "Certificate %s/%s: renewing; Secret unchanged at version %s",
            rec.namespace,
            rec.name,
            s.secret.resource_version,
        )
    passwords = await _keystore_passwords(op, rec.namespace, spec)
    if isinstance(passwords, Failure):  # before anything is signed: nothing to keep meanwhile
        return await _fail(op, rec, s.status, passwords, valid=issue.still_valid)
    signed = issue.reuse
    if signed is not None:
        # Signed for this revision by an earlier pass whose Secret write failed: store that, sign nothing new.
        log.debug("Certificate %s/%s: reusing CertificateRequest %s", rec.namespace, rec.name, signed.request_name)
    else:
        rec.signed = None
        issuer = op.state.issuer_for(rec.namespace, spec.issuer_ref)
        if issuer is None or issuer.spec is None:  # gone since the snapshot: the next pass says so
            return None
        key = issue.key or await _new_private_key(op, spec)
        csr_pem = build_csr(key, spec)
        try:
            request_name = await _create_request(op, rec, revision, _request_spec(spec, csr_pem))
        except ApiError as e:
            failure = Failure(CertificateReason.REQUEST_FAILED, f"could not create a CertificateRequest: {e}")
            return await _fail(op, rec, s.status, failure, valid=issue.still_valid)
        request_key = (rec.namespace, request_name)
        op.state.inflight_requests.add(request_key)
        try:
            signing = SigningRequest(
                csr=parse_csr(csr_pem),
                duration=spec.duration,
                usages=spec.usages,
                is_ca=spec.is_ca,
                urls=issuer.spec.urls,
                name_constraints=spec.name_constraints,
            )
            issued = signer_for(issuer.spec).sign(SigningJob(signing, key, issuer.authority, s.now))
            await resources.patch_status(
                op.api, "CertificateRequest", rec.namespace, request_name, signed_request_status(issued, issuer, s.now)
            )
        except (ApiError, PKIError) as e:
            failure = Failure(
                CertificateReason.SIGNING_FAILED, f"signing CertificateRequest {request_name} failed: {e}"
            )
            return await _fail(op, rec, s.status, failure, valid=issue.still_valid)
        finally:
            op.state.inflight_requests.discard(request_key)
        signed = Signed(revision, rec.generation, issuer.identity_token, request_name, key, issued)
        rec.signed = signed
    key, issued, request_name = signed.key, signed.issued, signed.request_name

    facts = certificate_facts(issued.certificate)
    current = s.secret
    if stage is not None:
        assert isinstance(current, SecretData)
        return await _stage(op, rec, s, current, stage, signed, seen)
    labels, annotations = secret_metadata(s, facts, revision)
    key_pem = encode_private_key(key, spec.private_key.encoding)
    data: dict[str, bytes | None] = {
        "tls.crt": issued.chain_pem,
        "tls.key": key_pem,
        "ca.crt": issued.ca_pem,
        **additional_outputs(spec.additional_output_formats, key_pem, issued.chain_pem),
        **_keystores(spec, key, issued.chain_pem, passwords),
    }
    written_annotations: dict[str, str | None] = {**annotations}
    if isinstance(current, SecretData):  # a root replaced at once: no phase of an earlier rotation stays behind
        data.update({k: None for k in (NEXT_CRT, NEXT_KEY) if k in current.data})
        written_annotations.update({k: None for k in (SWITCH_AT, RETIRE_AT, SWITCHED_AT) if k in current.annotations})
    owner = _ref(rec) if spec.secret_deletion_policy == "Delete" else None
    try:
        if current is None:
            written = await resources.create_tls_secret(
                op.api,
                rec.namespace,
                spec.secret_name,
                data={k: v for k, v in data.items() if v is not None},
                labels=labels,
                annotations=annotations,
                owner=owner,
            )
        else:
            # An unread Secret: the last pass made sure of our owner reference (secretDeletionPolicy Delete), and
            # the write is guarded by the version it saw.
            has_owner = rec.uid in current.owner_uids if isinstance(current, SecretData) else True
            written = await resources.update_secret(
                op.api,
                rec.namespace,
                spec.secret_name,
                resource_version=current.resource_version,
                data=data,
                labels=labels,
                annotations=written_annotations,
                owner=None if has_owner else owner,
            )
    except ApiError as e:
        return await _secret_write_refused(op, rec, s, e, valid=issue.still_valid, existed=current is not None)
    rec.signed = None
    op.secret_written(rec.namespace, spec.secret_name, written.resource_version)
    seen.resource_version = written.resource_version

    renewal_time = renewal_time_for(s, facts)
    trigger = CertificateReason.RENEWED if issue.reason.code == RENEWING else CertificateReason.ISSUED
    message = (
        f"{trigger} certificate serial {facts.serial_number} (revision {revision}, CertificateRequest "
        f"{request_name}), valid until {rfc3339(facts.not_after)}; reason: {issue.reason.message}"
    )
    ready = Condition("Ready", "True", trigger, f"certificate is up to date and valid until {rfc3339(facts.not_after)}")
    issuing = Condition("Issuing", "False", trigger, message)
    fields = _certificate_fields(facts, renewal_time, revision)
    fields["verified"] = verified_status(s, written.resource_version, signed.issuer)
    if s.renew_request:
        fields["lastRenewRequest"] = s.renew_request  # honoured: once
    await _write_status(op, rec, s.status, [ready, issuing], fields)
    op.schedule((Kind.CERTIFICATE, rec.namespace, rec.name), renewal_time)
    metrics.issuances.labels(spec.issuer_ref.kind, trigger).inc()
    metrics.issuance_seconds.observe(time.perf_counter() - started)
    _observe_metrics(rec, spec, facts.not_after, renewal_time, "True")
    log.info("Certificate %s/%s: %s", rec.namespace, rec.name, message)
    await _event(op, rec, "Normal", trigger, message)
    if revision > spec.revision_history_limit:
        # Clean-up, not part of the issuance: it waits behind every renewal still queued.
        op.queue.add((Kind.PRUNE_REQUESTS, rec.namespace, rec.name), low=True)
    return True


async def _stage(
    op: Operator,
    rec: CertificateRecord,
    s: Snapshot,
    secret: SecretData,
    stage: Stage,
    signed: Signed,
    seen: SeenSecret,
) -> bool | None:
    """Store a root's next one beside it: next-tls.*, and ca.crt = the current root and the next one."""
    issued = signed.issued
    try:
        written = await resources.update_secret(
            op.api,
            rec.namespace,
            s.spec.secret_name,
            resource_version=secret.resource_version,
            data={
                NEXT_CRT: issued.chain_pem,
                NEXT_KEY: encode_private_key(signed.key, s.spec.private_key.encoding),
                "ca.crt": stage.current_pem + issued.certificate_pem,
            },
            labels={},
            annotations={SWITCH_AT: rfc3339(stage.switch_at), RETIRE_AT: None},
        )
    except ApiError as e:
        return await _secret_write_refused(op, rec, s, e, valid=True)
    rec.signed = None
    op.secret_written(rec.namespace, s.spec.secret_name, written.resource_version)
    seen.resource_version = written.resource_version
    message = (
        f"next root (serial {issued.serial_number}, CertificateRequest {signed.request_name}) added to {s.where}'s "
        f"ca.crt, so that every certificate it signs trusts it before it signs; it replaces the current root at "
        f"{rfc3339(stage.switch_at)}; reason: {stage.issue.reason.message}"
    )
    log.info("Certificate %s/%s: %s", rec.namespace, rec.name, message)
    honoured: CertificateStatus = {"lastRenewRequest": s.renew_request} if s.renew_request else {}
    await _write_status(
        op, rec, s.status, [Condition("Issuing", "True", CertificateReason.ROOT_STAGED, message)], honoured
    )
    await _event(op, rec, "Normal", CertificateReason.ROOT_STAGED, message)
    # Looked at again where the switch starts to watch for trust sets without the next root.
    op.schedule((Kind.CERTIFICATE, rec.namespace, rec.name), watch_from(stage.switch_at, s.trust_propagation))
    metrics.set_rotation_step(rec.namespace, rec.name, "switch", stage.switch_at.timestamp())
    return True


async def prune_requests(op: Operator, namespace: str, name: str) -> None:
    """Delete the Certificate's CertificateRequests beyond its revisionHistoryLimit (a low-priority key)."""
    rec = op.state.certificates.get((namespace, name))
    if rec is not None and rec.spec is not None:
        await _prune_requests(op, rec, rec.spec.revision_history_limit)


async def _secret_write_refused(
    op: Operator, rec: CertificateRecord, s: Snapshot, error: ApiError, *, valid: bool, existed: bool = True
) -> bool | None:
    """A Secret write the API server refused. A conflict, or not found for a Secret that existed: it changed or went
    away under us (or exists without our label), so start over from a fresh read. Anything else is a failure."""
    if error.conflict or (existed and error.not_found):
        op.state.secrets_to_read.add((rec.namespace, s.spec.secret_name))
        op.queue.add((Kind.CERTIFICATE, rec.namespace, rec.name))
        return None
    return await _fail(op, rec, s.status, _secret_write_failure(s.spec, rec.namespace, error), valid=valid)


def _secret_write_failure(spec: CertificateSpec, namespace: str, error: ApiError) -> Failure:
    """A refused Secret write, with what the user can change when the refusal comes from the spec."""
    message = f"could not write Secret {namespace}/{spec.secret_name}: {error}"
    if error.status in (400, 413, 422):  # the API server judged the Secret itself, not a passing failure
        message += (
            "; the Secret certmint would write is refused as it is: check spec.secretTemplate (label and "
            "annotation syntax, annotations at most 256 KiB in all) and spec.secretName; the signed certificate is "
            "kept and stored once the Secret is accepted"
        )
    return Failure(CertificateReason.SECRET_WRITE_FAILED, message)


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


async def _new_private_key(op: Operator, spec: CertificateSpec) -> PrivateKey:
    wanted = (spec.private_key.algorithm, spec.private_key.size)
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


def signed_request_status(
    issued: IssuedCertificate,
    issuer: IssuerRecord,
    now: datetime.datetime,
    current: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The status of a request just signed, over its ``current`` conditions: an Approved condition a person wrote
    (a Manual issuer) is kept; otherwise the policy's approval is recorded."""
    who = f"{issuer.kind} {issuer.name}"
    updates = [Condition("Ready", "True", "Issued", f"signed by {who}, serial {issued.serial_number}")]
    if condition_status(current, "Approved") != "True":
        updates.insert(0, Condition("Approved", "True", POLICY_ALLOWED, f"the request satisfies the policy of {who}"))
    conditions = merge_conditions(current, updates, now=now)
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


async def _fail(
    op: Operator, rec: CertificateRecord, status: CertificateStatus, failure: Failure, *, valid: bool
) -> bool:
    """Record a failed attempt; keep Ready=True only while the Secret still holds a valid, matching certificate."""
    attempts = int(status.get("failedIssuanceAttempts") or 0) + 1
    spec = rec.spec
    now = op.now()
    metrics.errors.labels("Certificate", failure.reason).inc()
    retry_note = ""
    if failure.retry and spec is not None:
        delay = retry_delay(spec.duration, attempts)
        if failure.retry_cap is not None:
            delay = min(delay, failure.retry_cap)
        op.schedule((Kind.CERTIFICATE, rec.namespace, rec.name), now + delay)
        retry_note = f"; retrying in {format_duration(delay)} (attempt {attempts})"
    else:
        op.queue.cancel_timer((Kind.CERTIFICATE, rec.namespace, rec.name))
    message = failure.message + retry_note
    conditions = [Condition("Issuing", "True", failure.reason, message)]
    if not valid:
        conditions.append(Condition("Ready", "False", failure.reason, message))
    previous_reason = _condition_reason(status, "Issuing")
    await _write_status(
        op,
        rec,
        status,
        conditions,
        {
            "failedIssuanceAttempts": attempts,
            "lastFailureTime": rfc3339(now),
            "verified": None,  # what failed is no longer what a pass found good
        },
    )
    metrics.set_ready(rec.namespace, rec.name, "True" if valid else "False")
    if previous_reason != failure.reason:  # one Event per new cause, not one per retry
        log.warning("Certificate %s/%s: %s", rec.namespace, rec.name, message)
        await _event(op, rec, "Warning", failure.reason, message)
    return failure.retry


def _condition_reason(status: CertificateStatus, type_: str) -> str | None:
    for c in status.get("conditions") or []:
        if c.get("type") == type_ and c.get("status") == "True":
            return str(c.get("reason"))
    return None


async def _write_status(
    op: Operator,
    rec: CertificateRecord,
    current: CertificateStatus,
    conditions: list[Condition],
    fields: CertificateStatus,
) -> None:
    written = await write_status(
        op.api,
        "Certificate",
        rec.namespace,
        rec.name,
        current,
        conditions,
        fields,
        now=op.now(),
        observed_generation=rec.generation,
    )
    if written is not None:
        rec.store_status(dict(written.get("status") or {}))
        rec.resource_version = written["metadata"]["resourceVersion"]


async def _event(op: Operator, rec: CertificateRecord, type_: str, reason: str, message: str) -> None:
    await op.post_event(_ref(rec), type_, reason, message)
