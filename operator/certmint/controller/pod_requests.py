"""PodCertificateRequest reconciler: answer a pod's request for a certificate from the ClusterIssuer it names.

gather (the request as its watch delivered it, the issuer's record) → plan (core.pod_certificates.judge, pure)
→ act (sign, then one status write: Issued, Denied or Failed). The answer is final for the API server, and for
the kubelet, which never asks again for that pod after a Denied or Failed one; so:

- an issuer that does not exist or is not ready (its CA Secret missing, a rotation holding signing) leaves the
  request unanswered: its check wakes the request when it can sign, before the kubelet's 10-minute patience or
  the controller-manager's 15-minute cleanup run out;
- a write that fails for a passing reason is retried; one the API server refuses as final (the request answered or
  deleted meanwhile) ends there.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time
from typing import Any

from certmint import metrics
from certmint.controller.runtime import Operator
from certmint.controller.state import Kind
from certmint.core.conditions import rfc3339
from certmint.core.pod_certificates import DENIED, ISSUED, POLICY_VIOLATION, Grant, Refusal, judge, parse_request
from certmint.kube import resources
from certmint.kube.client import ApiError
from certmint.pki.keys import PKIError
from certmint.pki.signing import sign_within

log = logging.getLogger("certmint.pod_requests")

#: A request whose issuer cannot sign yet is looked at again at least this often (its check also wakes it).
RETRY: datetime.timedelta = datetime.timedelta(seconds=30)


async def reconcile_pod_request(op: Operator, namespace: str, name: str) -> None:
    key = (Kind.POD_REQUEST, namespace, name)
    obj = op.state.pod_requests.get((namespace, name))
    if obj is None:
        op.queue.cancel_timer(key)
        return
    now = op.now()
    signer_name = str(obj["spec"].get("signerName"))
    issuer = op.state.pod_signer(signer_name)
    if issuer is None or not issuer.ready or issuer.authority is None or issuer.spec is None or issuer.holds_signing:
        why = "no ClusterIssuer enables it" if issuer is None else f"ClusterIssuer {issuer.name} cannot sign now"
        log.debug("PodCertificateRequest %s/%s: signer %s: %s; waiting", namespace, name, signer_name, why)
        op.schedule(key, now + RETRY)
        return
    pods = issuer.spec.pod_certificates
    assert pods is not None  # pod_signer returns only issuers that enable it
    started = time.perf_counter()
    parsed = parse_request(obj)
    if isinstance(parsed, Refusal):
        answer: Grant | Refusal = parsed
    else:
        answer = judge(
            parsed,
            pods,
            issuer.spec.policy,
            now=now,
            ca_not_before=issuer.authority.not_before,
            ca_not_after=issuer.authority.valid_until,
            jitter_fraction=op.settings.jitter_fraction,
        )
    if isinstance(answer, Grant):
        outside = issuer.authority.name_constraint_violations(answer.request.csr)
        if outside:
            answer = Refusal(DENIED, POLICY_VIOLATION, f"signer {signer_name} refuses: " + "; ".join(outside))
    if isinstance(answer, Grant):
        try:
            request = dataclasses.replace(answer.request, urls=issuer.spec.urls)
            issued = sign_within(
                request, issuer.authority, not_before=answer.not_before, not_after=answer.not_after, now=now
            )
        except PKIError as exc:  # the CA changed under us: the next pass judges again
            log.warning("PodCertificateRequest %s/%s: not signed: %s", namespace, name, exc)
            op.schedule(key, now + RETRY)
            return
        status: dict[str, Any] = {
            "conditions": [_condition(ISSUED, "Issued", f"signed by {issuer.name}: {answer.spiffe_id}", now)],
            "certificateChain": issued.chain_pem.decode(),
            "notBefore": rfc3339(issued.not_before),
            "notAfter": rfc3339(issued.not_after),
            "beginRefreshAt": rfc3339(answer.begin_refresh_at),
        }
    else:
        status = {"conditions": [_condition(answer.type, answer.reason, answer.message, now)]}
    try:
        written = await resources.answer_pod_certificate_request(op.api, namespace, name, status)
    except ApiError as e:
        if e.status in (404, 409, 422):  # deleted, or answered meanwhile (the status is final then)
            log.info("PodCertificateRequest %s/%s: not answered: %s", namespace, name, e)
            op.state.pod_requests.pop((namespace, name), None)
            return
        metrics.errors.labels("PodCertificateRequest", "StatusWriteFailed").inc()
        log.warning("PodCertificateRequest %s/%s: status write failed: %s; retrying", namespace, name, e)
        op.schedule(key, now + RETRY)
        return
    op.state.pod_requests.pop((namespace, name), None)  # answered: nothing more to do for it
    op.state.pod_requests_answered[(namespace, name)] = str(written["metadata"]["resourceVersion"])
    if isinstance(answer, Grant):
        metrics.issuances.labels("PodCertificateRequest", ISSUED).inc()
        metrics.issuance_seconds.observe(time.perf_counter() - started)
        log.info(
            "PodCertificateRequest %s/%s: issued %s until %s", namespace, name, answer.spiffe_id, status["notAfter"]
        )
    else:
        log.info(
            "PodCertificateRequest %s/%s: %s (%s): %s", namespace, name, answer.type, answer.reason, answer.message
        )


def _condition(type_: str, reason: str, message: str, now: datetime.datetime) -> dict[str, Any]:
    return {"type": type_, "status": "True", "reason": reason, "message": message, "lastTransitionTime": rfc3339(now)}
