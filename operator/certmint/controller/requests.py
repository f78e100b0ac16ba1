"""CertificateRequest reconciler, for requests that workloads create with their own CSR.

Requests created by the certificate reconciler are signed inline by it; this
reconciler still picks up any of them that a crash left unsigned, so no
request stays pending forever. The policy check is the same pure function the
Certificate path uses: one place for policy.

Manual approval (core.approval): under an issuer whose ``policy.approval`` is
Manual, a request the policy allows waits (Ready=False, WaitingForApproval)
until a person writes Approved or Denied on its status; that write is a watch
event, which brings the request back here. The policy is judged again when
the approved request is signed. Status writes carry the resourceVersion they
were decided on, so a person's decision made meanwhile is never overwritten.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from certmint import metrics
from certmint.controller.certificates import signed_request_status
from certmint.controller.runtime import Operator
from certmint.controller.signers import SigningJob, signer_for
from certmint.controller.state import Kind, RequestRecord
from certmint.controller.status import write_status
from certmint.core.approval import DENIED_REASON, FAILED, WAITING_FOR_APPROVAL, Stage, denied_by_person, stage
from certmint.core.conditions import Condition, rfc3339
from certmint.core.policy import RequestedIdentity, check_policy
from certmint.core.renewal import retry_delay
from certmint.core.spec import CertificateRequestSpec
from certmint.kube import resources
from certmint.kube.client import ApiError
from certmint.pki.csr import CSRInfo, UnjudgeableRequest, parse_csr
from certmint.pki.keys import PKIError
from certmint.pki.signing import SigningRequest
from certmint.pki.usages import resolve_usages

log = logging.getLogger("certmint.requests")


async def reconcile_request(op: Operator, namespace: str, name: str) -> None:
    rec = op.state.requests.get((namespace, name))
    if rec is None or (namespace, name) in op.state.inflight_requests:
        return
    now = op.now()
    conditions = rec.status.get("conditions") or []
    refused = denied_by_person(conditions)
    if refused is not None:  # a person's decision, final: nothing is judged or signed
        why = refused.get("message") or refused.get("reason") or "denied"
        await _finish(op, rec, now, [Condition("Ready", "False", DENIED_REASON, f"denied: {why}; nothing was signed")])
        return
    if rec.spec is None:
        await _finish(op, rec, now, [Condition("InvalidRequest", "True", "InvalidSpec", rec.spec_error or "invalid")])
        return
    spec = rec.spec
    try:
        csr = parse_csr(spec.request_pem)
    except UnjudgeableRequest as e:
        # Well-formed, but asking for what no policy can judge: denied, whatever the issuer.
        message = f"spec.request: {e}; nothing was signed"
        metrics.errors.labels("CertificateRequest", "Denied").inc()
        denied = Condition("Denied", "True", "UnjudgeableRequest", message)
        await _finish(op, rec, now, [denied, Condition("Ready", "False", "Denied", message)])
        return
    except PKIError as e:
        await _finish(op, rec, now, [Condition("InvalidRequest", "True", "InvalidCSR", f"spec.request: {e}")])
        return
    judged = judge_request(spec, csr)
    if isinstance(judged, Condition):
        await _finish(op, rec, now, [judged])
        return
    usages = judged
    issuer = op.state.issuer_for(namespace, spec.issuer_ref)
    ref = spec.issuer_ref
    if issuer is None or not issuer.ready or issuer.spec is None:
        why = "does not exist" if issuer is None else f"is not ready: {issuer.message}"
        await _set(op, rec, now, [Condition("Ready", "False", "Pending", f"{ref.kind} {ref.name!r} {why}")], {})
        # The issuer becoming ready wakes this request; the timer is only a safety net.
        op.schedule((Kind.REQUEST, namespace, name), now + retry_delay(spec.duration, 1))
        return
    if issuer.replaced_root is not None and issuer.holds_signing and now < issuer.replaced_root.next_step_at:
        until = rfc3339(issuer.replaced_root.next_step_at)
        why = (
            f"{ref.kind} {ref.name!r} signs under the new root of its CA Secret only once every trust set holds it, "
            f"from {until}"
        )
        await _set(op, rec, now, [Condition("Ready", "False", "Pending", why)], {})
        # The switch changes the issuer's identity, which wakes this request; the timer is only a safety net.
        op.schedule((Kind.REQUEST, namespace, name), issuer.replaced_root.next_step_at)
        return
    signer = signer_for(issuer.spec)
    if signer.own_key_only:
        await _finish(
            op,
            rec,
            now,
            [
                Condition(
                    "InvalidRequest",
                    "True",
                    "SelfSignedNeedsKey",
                    f"a {signer.kind} issuer signs with the certificate's own private key, which a CertificateRequest "
                    "does not carry; use a Certificate, or a ca issuer",
                )
            ],
        )
        return
    # The signer builds the certificate from these same values (csr), so what is judged is what is signed.
    requested = RequestedIdentity.of_csr(csr, duration=spec.duration, is_ca=spec.is_ca)
    violations = check_policy(
        issuer.spec.policy,
        requested,
        namespace=namespace,
        cluster_scoped_issuer=ref.kind == "ClusterIssuer",
        self_signed=False,
    )
    if issuer.authority is not None:
        violations = [*violations, *issuer.authority.name_constraint_violations(csr)]
    approved = stage(conditions) is Stage.APPROVED
    if violations:
        message = f"{ref.kind} {ref.name!r} refuses: " + "; ".join(violations)
        metrics.errors.labels("CertificateRequest", "Denied").inc()
        if approved:
            # Approved, then the policy changed: the API keeps Approved final and never beside Denied.
            message = f"approved, but {message}; nothing was signed"
            await _finish(op, rec, now, [Condition("Ready", "False", FAILED, message)])
            return
        await _finish(
            op,
            rec,
            now,
            [Condition("Denied", "True", "PolicyViolation", message), Condition("Ready", "False", "Denied", message)],
        )
        return
    if issuer.spec.policy.manual_approval and not approved:
        # No timer: the person's decision is a watch event on this request.
        message = (
            f"{ref.kind} {ref.name!r} allows this request and signs it once a person approves it: "
            f"certmint approve {name} -n {namespace} (or certmint deny {name} -n {namespace})"
        )
        await _set(op, rec, now, [Condition("Ready", "False", WAITING_FOR_APPROVAL, message)], {})
        return
    request = SigningRequest(csr=csr, duration=spec.duration, usages=usages, is_ca=spec.is_ca, urls=issuer.spec.urls)
    issued = signer.sign(SigningJob(request, None, issuer.authority, now))
    try:
        await resources.patch_status(
            op.api,
            "CertificateRequest",
            namespace,
            name,
            signed_request_status(issued, issuer, now, conditions),
            resource_version=rec.resource_version,
        )
    except ApiError as e:
        if e.conflict:  # changed since (a person's deny?): its watch event brings it back
            log.info("CertificateRequest %s/%s changed while it was signed; judged again", namespace, name)
            return
        if not e.not_found:
            raise
    op.state.requests.pop((namespace, name), None)
    metrics.issuances.labels(ref.kind, "Request").inc()
    log.info("CertificateRequest %s/%s: signed serial %s", namespace, name, issued.serial_number)


def judge_request(spec: CertificateRequestSpec, csr: CSRInfo) -> tuple[str, ...] | Condition:
    """The usages to sign (spec.usages, or the default for the CSR's key type), or why no issuer may sign this.

    Whatever the issuer, a CA needs a subject (it is the issuer name of everything the CA signs, RFC 5280), and
    the usages must suit the CSR's key (pki.usages.usage_problems): an InvalidRequest condition otherwise.
    """
    if spec.is_ca and not csr.has_subject:
        return Condition(
            "InvalidRequest",
            "True",
            "EmptySubject",
            "spec.request: the CSR's subject is empty and spec.isCA is true: a CA's subject is the issuer name of "
            "every certificate it signs, and X.509 (RFC 5280) requires it to be non-empty; put a common name "
            "(or other subject attributes) in the CSR",
        )
    try:
        return resolve_usages(spec.usages, key_algorithm=csr.key_algorithm, is_ca=spec.is_ca)
    except PKIError as e:
        return Condition(
            "InvalidRequest", "True", "InvalidUsages", f"spec.usages: {e} (the CSR's key is {csr.key_algorithm})"
        )


async def _finish(op: Operator, rec: RequestRecord, now: datetime.datetime, conditions: list[Condition]) -> None:
    if await _set(op, rec, now, conditions, {"failureTime": rfc3339(now)}):
        op.state.requests.pop((rec.namespace, rec.name), None)


async def _set(
    op: Operator, rec: RequestRecord, now: datetime.datetime, conditions: list[Condition], fields: dict[str, Any]
) -> bool:
    """Write over the version judged; False when the request changed since (its watch event brings it back)."""
    try:
        written = await write_status(
            op.api,
            "CertificateRequest",
            rec.namespace,
            rec.name,
            rec.status,
            conditions,
            fields,
            now=now,
            resource_version=rec.resource_version,
        )
    except ApiError as e:
        if not e.conflict:
            raise
        log.info("CertificateRequest %s/%s changed while it was judged; judged again", rec.namespace, rec.name)
        return False
    if written is not None:
        rec.status = dict(written.get("status") or {})
        rec.resource_version = written["metadata"]["resourceVersion"]
    return True
