"""What a root rotation's steps wait for, counted over the operator's state: trust sets that lack the next root
(before the switch), certificates still under the previous root (before the retirement).

Both a root CA Certificate of certmint's (controller.certificates) and an issuer whose CA Secret a person replaced
(controller.issuers) ask, for the issuers on one CA Secret. Each count decodes those certificates' statuses, so it
runs only while a step is due.
"""

from __future__ import annotations

from certmint.controller.certificate_plan import CertificateReason, issuer_digest
from certmint.controller.runtime import Operator
from certmint.controller.state import Kind
from certmint.pki.signing import fingerprint_sha256

REISSUE_SPREAD = CertificateReason.REISSUE_SPREAD


def pending_reissues(op: Operator, namespace: str, secret_name: str) -> int:
    """How many certificates of the issuers on CA Secret ``namespace/secret_name`` wait for their spread re-issue
    after a CA change (still signed by the previous root)."""
    pending = 0
    for issuer in op.state.issuers_with_ca_secret(namespace, secret_name, op.settings.namespace):
        for key in op.state.certificates_using(issuer):
            rec = op.state.certificates.get(key)
            conditions = rec.read_status().get("conditions") or [] if rec is not None else []
            pending += any(
                c.get("type") == "Issuing" and c.get("status") == "True" and c.get("reason") == REISSUE_SPREAD
                for c in conditions
            )
    return pending


def pending_announcements(op: Operator, namespace: str, secret_name: str) -> int | None:
    """How many trust sets of the issuers on CA Secret ``namespace/secret_name`` do not hold those issuers' current
    anchors yet: certificates whose last good pass (status.verified) was under other anchors, and Bundles that have
    not written them everywhere. None while an issuer on it is not checked (after a restart) or not ready: what its
    anchors are is not known."""
    pending = 0
    for key in op.state.issuers_with_ca_secret(namespace, secret_name, op.settings.namespace):
        issuer = op.state.issuers.get(key)
        if issuer is None:
            continue
        digest = issuer_digest(issuer.identity_token)
        authority = issuer.authority
        if digest is None or authority is None:
            return None
        for cert in op.state.certificates_using(key):
            rec = op.state.certificates.get(cert)
            verified = rec.read_status().get("verified") if rec is not None else None
            pending += verified is not None and verified.get("issuer") != digest
        if key[0] is Kind.CLUSTER_ISSUER:
            wanted = {fingerprint_sha256(a) for a in authority.trust_anchors}
            for name in op.state.bundles_using_issuer(key[2]):
                status = op.state.bundles[name].status
                have = {a.get("fingerprint") for a in status.get("anchors") or []}
                # (a namespace whose target is someone else's never gets it: it does not hold the rotation up)
                everywhere = all(
                    (t.get("inSync") or 0) + (t.get("conflicts") or 0) >= (t.get("namespaces") or 0)
                    for t in status.get("targets") or []
                )
                pending += not (wanted <= have and everywhere)
    return pending
