"""Issuer / ClusterIssuer reconciler: is the CA usable? Publish the answer in status and in memory."""

from __future__ import annotations

import datetime
import logging
from typing import Any

from certmint.controller.runtime import Operator
from certmint.controller.signers import Verdict, signer_for
from certmint.controller.state import IssuerRecord, Kind
from certmint.controller.status import write_status
from certmint.core.conditions import Condition, rfc3339
from certmint.core.policy import isolation_condition
from certmint.pki.signing import SigningAuthority, fingerprint_sha256

log = logging.getLogger("certmint.issuers")


async def reconcile_issuer(op: Operator, kind: Kind, namespace: str, name: str) -> None:
    key = (kind, namespace, name)
    rec = op.state.issuers.get(key)
    if rec is None:
        op.queue.cancel_timer(key)
        op.enqueue_dependents_of_issuer(key)  # their issuer is gone: they must say so
        return
    before = rec.identity_token
    now = op.now()
    verdict = await _check(op, rec, now)
    if rec.identity_token != before:
        log.info("%s %s: ready=%s (%s)", kind, _display(rec), rec.ready, rec.reason)
        op.enqueue_dependents_of_issuer(key)
        if rec.spec is not None and rec.spec.ca_secret_name is not None:
            # The root Certificate whose Secret this is: its rotation steps wait on what this check tells.
            for cert in op.state.certificates_with_secret(ca_secret_namespace(op, rec), rec.spec.ca_secret_name):
                op.queue.add((Kind.CERTIFICATE, *cert))
    await _publish(op, rec, now)
    if rec.spec is not None:
        interval = datetime.timedelta(seconds=op.settings.issuer_recheck_seconds)
        recheck = signer_for(rec.spec).recheck_at(verdict, now, interval)
        if recheck is not None:
            op.schedule(key, recheck)


def _display(rec: IssuerRecord) -> str:
    return f"{rec.namespace}/{rec.name}" if rec.namespace else rec.name


def ca_secret_namespace(op: Operator, rec: IssuerRecord) -> str:
    return op.settings.namespace if rec.kind is Kind.CLUSTER_ISSUER else rec.namespace


async def _check(op: Operator, rec: IssuerRecord, now: datetime.datetime) -> Verdict:
    # Computed first, then applied at once: certificates reconciled while the CA Secret is being read
    # must see the old verdict or the new one, never "ready without a CA".
    if rec.spec is None:
        verdict = Verdict(False, "InvalidSpec", rec.spec_error or "invalid spec")
    else:
        verdict = await signer_for(rec.spec).check(
            op.api,
            rec.spec,
            secret_namespace=ca_secret_namespace(op, rec),
            cluster_scoped=rec.kind is Kind.CLUSTER_ISSUER,
            now=now,
        )
    previous = rec.authority.fingerprint_sha256 if rec.authority is not None else None
    if verdict.authority is not None and verdict.authority.fingerprint_sha256 != previous:
        # From the switch the CA Secret records (a restart in the middle of a rotation keeps its spread), else now.
        rec.ca_since = min(verdict.ca_since, now) if verdict.ca_since is not None else now
        dependents = len(op.state.certificates_using((rec.kind, rec.namespace, rec.name)))
        rec.reissue_window = max(
            datetime.timedelta(seconds=op.settings.trust_propagation_seconds),
            datetime.timedelta(seconds=dependents / op.settings.rotation_reissue_rate),
        )
    rec.rotation = verdict.rotation
    rec.ready, rec.reason, rec.message, rec.authority, rec.checked = (
        verdict.ready,
        verdict.reason,
        verdict.message,
        verdict.authority,
        True,
    )
    return verdict


async def _publish(op: Operator, rec: IssuerRecord, now: datetime.datetime) -> None:
    conditions = [Condition("Ready", "True" if rec.ready else "False", rec.reason, rec.message)]
    if rec.kind is Kind.CLUSTER_ISSUER and rec.spec is not None:
        # A shared CA whose policy lets namespaces obtain each other's names: legal, but never silent.
        conditions.append(isolation_condition(rec.spec))
    authority = rec.authority
    fields: dict[str, Any] = {
        "caSubject": authority.subject_text if authority else None,
        "caFingerprint": authority.fingerprint_sha256 if authority else None,
        "caNotAfter": rfc3339(authority.not_after) if authority else None,
        "caChain": chain_status(authority) if authority else None,
        "trustAnchor": anchor_status(authority) if authority else None,
        "trustAnchors": anchors_status(authority) if authority else None,
        "rotation": rec.rotation,
    }
    written = await write_status(
        op.api,
        rec.kind,
        rec.namespace or None,
        rec.name,
        rec.status,
        conditions,
        fields,
        now=now,
        observed_generation=rec.generation,
    )
    if written is not None:
        rec.status = dict(written.get("status") or {})
        rec.resource_version = written["metadata"]["resourceVersion"]


def chain_status(authority: SigningAuthority) -> list[dict[str, str]]:
    """status.caChain: the CA, then each certificate above it up to the trust anchor."""
    return [
        {
            "subject": cert.subject.rfc4514_string(),
            "fingerprint": fingerprint_sha256(cert),
            "notAfter": rfc3339(cert.not_valid_after_utc),
        }
        for cert in (authority.certificate, *authority.chain)
    ]


def anchors_status(authority: SigningAuthority) -> list[dict[str, Any]]:
    """status.trustAnchors: every root its certificates get in ca.crt, in that order (the chain's root, and the
    other self-signed CA certificates of the CA Secret's ca.crt: a root being rotated in or out)."""
    return [
        {
            "subject": anchor.subject.rfc4514_string(),
            "fingerprint": fingerprint_sha256(anchor),
            "notAfter": rfc3339(anchor.not_valid_after_utc),
            "signsThisCA": anchor == authority.trust_anchor,
        }
        for anchor in authority.trust_anchors
    ]


def anchor_status(authority: SigningAuthority) -> dict[str, Any]:
    """status.trustAnchor: what certificates get as ca.crt, and whether it is a self-signed root."""
    anchor = authority.trust_anchor
    return {
        "subject": anchor.subject.rfc4514_string(),
        "fingerprint": authority.trust_anchor_fingerprint,
        "selfSigned": authority.anchored,
    }
