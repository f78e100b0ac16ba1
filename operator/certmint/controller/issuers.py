"""Issuer / ClusterIssuer reconciler: is the CA usable? Publish the answer in status and in memory."""

from __future__ import annotations

import dataclasses
import datetime
import logging
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from certmint import metrics
from certmint.controller.runtime import Operator
from certmint.controller.signers import Verdict, signer_for
from certmint.controller.state import IssuerRecord, Kind
from certmint.controller.status import write_status
from certmint.controller.trust_sets import pending_announcements, pending_reissues
from certmint.core.ca_rotation import (
    IMMEDIATE,
    ROOT_REPLACEMENT,
    ReplacedRoot,
    anchors_from_status,
    follow,
    next_step,
    switched,
    watch_from,
)
from certmint.core.conditions import Condition, rfc3339
from certmint.core.policy import isolation_condition
from certmint.kube import resources
from certmint.kube.client import ApiError, ApiUnavailable
from certmint.kube.resources import ObjectRef
from certmint.pki.signing import SigningAuthority, fingerprint_sha256

log = logging.getLogger("certmint.issuers")

#: The label on a pod signer's ClusterTrustBundle (its value: the ClusterIssuer's name).
ISSUER_LABEL = "certmint.dev/issuer"


async def reconcile_issuer(op: Operator, kind: Kind, namespace: str, name: str) -> None:
    key = (kind, namespace, name)
    rec = op.state.issuers.get(key)
    if rec is None:
        op.queue.cancel_timer(key)
        op.enqueue_dependents_of_issuer(key)  # their issuer is gone: they must say so
        metrics.set_issuer_rotation_step(kind.value, namespace, name, None)
        return
    before = rec.identity_token
    now = op.now()
    verdict = await _check(op, rec, now)
    wake = await _replaced_root_step(op, rec, now) if rec.replaced_root is not None else None
    if rec.identity_token != before:
        log.info("%s %s: ready=%s (%s)", kind, _display(rec), rec.ready, rec.reason)
        op.enqueue_dependents_of_issuer(key)
        if rec.spec is not None and rec.spec.ca_secret_name is not None:
            # The root Certificate whose Secret this is: its rotation steps wait on what this check tells.
            for cert in op.state.certificates_with_secret(ca_secret_namespace(op, rec), rec.spec.ca_secret_name):
                op.queue.add((Kind.CERTIFICATE, *cert))
    pods = await _publish_pod_trust(op, rec) if rec.kind is Kind.CLUSTER_ISSUER else None
    await _publish(op, rec, now, pods)
    if rec.spec is not None:
        interval = datetime.timedelta(seconds=op.settings.issuer_recheck_seconds)
        recheck = signer_for(rec.spec).recheck_at(verdict, now, interval)
        if recheck is not None:
            op.schedule(key, recheck)
    if wake is not None:
        op.schedule(key, wake)
    replaced = rec.replaced_root
    step = None if replaced is None else "switch" if replaced.holds_signing else "retire"
    when = replaced.next_step_at.timestamp() if replaced is not None else 0.0
    metrics.set_issuer_rotation_step(kind.value, namespace, name, step, when)


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
    authority = verdict.authority
    if authority is not None and rec.spec is not None and rec.spec.ca_secret_name is not None:
        authority = await _follow_replaced_root(op, rec, authority, now)
    previous = rec.authority.fingerprint_sha256 if rec.authority is not None else None
    if authority is not None and authority.fingerprint_sha256 != previous:
        # From the switch the CA Secret records (a restart in the middle of a rotation keeps its spread), else now.
        rec.ca_since = min(verdict.ca_since, now) if verdict.ca_since is not None else now
        _set_reissue_window(op, rec)
    if rec.replaced_root is not None:
        # Certificates under the previous root are re-issued over the window that starts at the switch.
        replaced = rec.replaced_root
        rec.ca_since = replaced.next_step_at if replaced.holds_signing else replaced.since
    rec.rotation = rec.replaced_root.to_status() if rec.replaced_root is not None else verdict.rotation
    rec.ready, rec.reason, rec.message, rec.authority, rec.checked = (
        verdict.ready,
        verdict.reason,
        verdict.message,
        authority,
        True,
    )
    return verdict


def _set_reissue_window(op: Operator, rec: IssuerRecord) -> None:
    dependents = len(op.state.certificates_using((rec.kind, rec.namespace, rec.name)))
    rec.reissue_window = max(
        datetime.timedelta(seconds=op.settings.trust_propagation_seconds),
        datetime.timedelta(seconds=dependents / op.settings.rotation_reissue_rate),
    )


async def _follow_replaced_root(
    op: Operator, rec: IssuerRecord, authority: SigningAuthority, now: datetime.datetime
) -> SigningAuthority:
    """The CA a ``ca`` issuer signs with and the anchors it hands on, after its CA Secret read as ``authority``: a
    root that replaced the one signed under so far starts the phases of core.ca_rotation."""
    if not rec.status_read:  # this process's first check: take over what the status recorded
        rec.status_read = True
        rec.replaced_root = ReplacedRoot.from_status(rec.status.get("rotation"))
        if rec.authority is None and not rec.last_anchors:
            anchors, signing = anchors_from_status(rec.status.get("trustAnchors"))
            rec.last_anchors, rec.last_root = anchors, anchors[signing] if signing >= 0 else None
    ongoing = rec.replaced_root
    replaced = follow(
        ongoing,
        previous_anchors=rec.last_anchors,
        previous_root=rec.last_root,
        authority=authority,
        now=now,
        propagation=datetime.timedelta(seconds=op.settings.trust_propagation_seconds),
    )
    if replaced is not None and rec.replace_immediately:
        log.warning(
            "%s %s: its CA Secret holds a new root and annotation %s=%s: signing under it at once, the previous "
            "root is no longer a trust anchor",
            rec.kind,
            _display(rec),
            ROOT_REPLACEMENT,
            IMMEDIATE,
        )
        replaced = None
    if replaced is not None and (ongoing is None or ongoing.root != replaced.root):
        secret = f"{ca_secret_namespace(op, rec)}/{rec.spec.ca_secret_name if rec.spec else ''}"
        if replaced.holds_signing:
            message = (
                f"CA Secret {secret} holds a CA under a new root (SHA-256 {replaced.root}): it joins every trust set "
                f"beside the previous root, and nothing is signed under it before {rfc3339(replaced.next_step_at)}"
            )
        else:
            message = (
                f"CA Secret {secret} holds a CA under a root already announced (SHA-256 {replaced.root}): signing "
                f"under it; the previous root stays a trust anchor until at least {rfc3339(replaced.next_step_at)}"
            )
        log.info("%s %s: %s", rec.kind, _display(rec), message)
        ref = ObjectRef(kind=rec.kind.value, namespace=rec.namespace or None, name=rec.name, uid=rec.uid)
        await op.post_event(ref, "Normal", "RootStaged" if replaced.holds_signing else "RootSwitched", message)
    if ongoing is not None and replaced is None:
        rec.ca_since = now  # the rotation ended early (annotated Immediate, its kept roots expired): signing now
    rec.replaced_root = replaced
    rec.secret_authority = authority
    kept = authority.keeping(replaced.kept) if replaced is not None else authority
    rec.last_anchors, rec.last_root = kept.trust_anchors, kept.trust_anchor
    return kept


async def _replaced_root_step(op: Operator, rec: IssuerRecord, now: datetime.datetime) -> datetime.datetime | None:
    """Take the replaced root's next step when it is due (the switch, then the retirement), else say when to look
    again. Its state is published with the status (status.rotation)."""
    replaced, secret_authority = rec.replaced_root, rec.secret_authority
    if replaced is None or secret_authority is None or rec.spec is None or rec.spec.ca_secret_name is None:
        return None
    if not rec.ready:
        return None  # its Secret is not usable now: no step (the Secret watch wakes the issuer when it is again)
    propagation = datetime.timedelta(seconds=op.settings.trust_propagation_seconds)
    secret_namespace, secret_name = ca_secret_namespace(op, rec), rec.spec.ca_secret_name
    step = f"{replaced.phase}:{replaced.root}"
    if replaced.holds_signing:
        pending = pending_announcements(op, secret_namespace, secret_name)
    else:
        pending = pending_reissues(op, secret_namespace, secret_name)
    if pending != 0:
        rec.clear_since = None
    elif rec.clear_since is None or rec.clear_since[0] != step:
        rec.clear_since = (step, now)
    clear_since = rec.clear_since[1] if rec.clear_since is not None else None
    due = next_step(now, propagation, replaced.next_step_at, pending, clear_since)
    ref = ObjectRef(kind=rec.kind.value, namespace=rec.namespace or None, name=rec.name, uid=rec.uid)
    if due is None and replaced.holds_signing:
        rec.replaced_root = switched(replaced, now, propagation)
        rec.ca_since = now
        _set_reissue_window(op, rec)
        rec.rotation = rec.replaced_root.to_status()
        message = (
            f"signing under the new root of its CA Secret {secret_namespace}/{secret_name} now that every trust set "
            f"holds it; certificates signed under the previous root are re-issued from now on, and that root stays "
            f"a trust anchor until at least {rfc3339(rec.replaced_root.next_step_at)}"
        )
        log.info("%s %s: %s", rec.kind, _display(rec), message)
        await op.post_event(ref, "Normal", "RootSwitched", message)
        return watch_from(rec.replaced_root.next_step_at, propagation)
    if due is None:
        rec.replaced_root, rec.rotation = None, None
        rec.authority = secret_authority
        rec.last_anchors, rec.last_root = secret_authority.trust_anchors, secret_authority.trust_anchor
        message = "the previous root left the trust anchors: no certificate signed under it is left"
        log.info("%s %s: %s", rec.kind, _display(rec), message)
        await op.post_event(ref, "Normal", "RootRetired", message)
        return None
    at, wake = due
    if at != replaced.next_step_at:
        rec.replaced_root = dataclasses.replace(replaced, next_step_at=at)
        if replaced.holds_signing:
            rec.ca_since = at
        log.info(
            "%s %s: %s trust set(s) or certificate(s) pending: the %s is postponed to %s",
            rec.kind,
            _display(rec),
            pending,
            "switch" if replaced.holds_signing else "retirement",
            rfc3339(at),
        )
    rec.rotation = {**(rec.replaced_root or replaced).to_status(), "message": _waiting_for(replaced, pending)}
    return wake


def _waiting_for(replaced: ReplacedRoot, pending: int | None) -> str:
    """status.rotation.message: what the next step waits for, in words."""
    if replaced.holds_signing:
        if pending is None:
            return (
                "waiting for the first check of the issuers on the CA Secret to see which trust sets hold the new root"
            )
        if pending:
            return f"{pending} trust set(s) (certificates' ca.crt, Bundles) do not hold the new root yet"
        return "every trust set holds the new root; the switch comes half a propagation time after they all had it"
    if pending:
        return f"{pending} certificate(s) signed under the previous root are still to be re-issued"
    return "no certificate under the previous root is left; it is retired half a propagation time after that"


async def _publish_pod_trust(op: Operator, rec: IssuerRecord) -> dict[str, Any] | None:
    """status.podCertificates of a ClusterIssuer that signs pod certificates: its signer name, and its trust anchors
    (with a rotation's overlap) published as a ClusterTrustBundle linked to that signer, which pods mount with a
    ``clusterTrustBundle: {signerName, labelSelector: {}}`` projected volume. None when it does not sign them."""
    pods = rec.spec.pod_certificates if rec.spec is not None else None
    if pods is None:
        return None
    status: dict[str, Any] = {"signerName": pods.signer_name}
    if not op.settings.pod_certificates:
        return {**status, "state": "Disabled", "message": "the operator runs without CERTMINT_POD_CERTIFICATES"}
    authority = rec.authority
    if authority is None:
        return {**status, "state": "NotReady", "message": "the issuer cannot sign: nothing is published"}
    name = f"{pods.signer_name.replace('/', ':')}:anchors"
    fingerprint = authority.trust_bundle_fingerprint
    published = rec.status.get("podCertificates") or {}
    if published.get("state") == "Published" and published.get("anchorsFingerprint") == fingerprint:
        return dict(published)  # (each check would otherwise read the ClusterTrustBundle)
    pem = authority.trust_bundle_pem.decode()
    try:
        version = await resources.cluster_trust_bundle_version(op.api)
        if version is None:
            return {**status, "state": "NotServed", "message": "the API server does not serve ClusterTrustBundles"}
        found = await resources.read_cluster_trust_bundle(op.api, version, name)
        owner = ObjectRef(kind=rec.kind.value, namespace=None, name=rec.name, uid=rec.uid)
        if found is None:
            await resources.create_cluster_trust_bundle(
                op.api, version, name, pem=pem, owner=owner, signer_name=pods.signer_name, label=ISSUER_LABEL
            )
        elif rec.uid not in resources.owner_uids(found):
            message = f"ClusterTrustBundle {name} exists and is not this ClusterIssuer's: left as it is"
            return {**status, "clusterTrustBundle": name, "state": "Conflict", "message": message}
        elif (found.get("spec") or {}).get("trustBundle") != pem:
            rv = found["metadata"]["resourceVersion"]
            await resources.update_cluster_trust_bundle(op.api, version, name, resource_version=rv, pem=pem)
    except (ApiError, ApiUnavailable) as e:
        return {**status, "clusterTrustBundle": name, "state": "Failed", "message": str(e)[:500]}
    return {
        **status,
        "clusterTrustBundle": name,
        "state": "Published",
        "message": "",
        "anchorsFingerprint": fingerprint,
    }


async def _publish(op: Operator, rec: IssuerRecord, now: datetime.datetime, pods: dict[str, Any] | None) -> None:
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
        "podCertificates": pods,
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
    other self-signed CA certificates of the CA Secret's ca.crt: a root being rotated in or out; a replaced CA
    Secret's previous root, kept until retired), with its PEM: what a restarted operator compares the CA Secret
    with."""
    return [
        {
            "subject": anchor.subject.rfc4514_string(),
            "fingerprint": fingerprint_sha256(anchor),
            "notAfter": rfc3339(anchor.not_valid_after_utc),
            "signsThisCA": anchor == authority.trust_anchor,
            "pem": anchor.public_bytes(Encoding.PEM).decode(),
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
