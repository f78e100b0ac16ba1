"""The ca issuer kind: a CA certificate and key in a Secret sign every certificate."""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from certmint.controller.signers.base import Refusal, SigningJob, Verdict
from certmint.core.conditions import parse_rfc3339, rfc3339
from certmint.core.decisions import ROOT_RETIRE_AT, ROOT_SWITCH_AT, ROOT_SWITCHED_AT, IssuerIdentity
from certmint.core.spec import CertificateSpec, IssuerSpec
from certmint.kube import resources
from certmint.kube.client import KubeClient
from certmint.pki.keys import PKIError
from certmint.pki.signing import CAError, IssuedCertificate, SigningAuthority, sign


class CA:
    kind = "ca"
    own_key_only = False

    async def check(
        self, api: KubeClient, spec: IssuerSpec, *, secret_namespace: str, cluster_scoped: bool, now: datetime.datetime
    ) -> Verdict:
        secret_name = spec.ca_secret_name or ""
        secret = await resources.read_secret(api, secret_namespace, secret_name)
        where = f"Secret {secret_namespace}/{secret_name}"
        if secret is None:
            hint = " (ClusterIssuer CA Secrets live in the operator's namespace)" if cluster_scoped else ""
            return Verdict(False, "CASecretNotFound", f"{where} does not exist{hint}")
        missing = [k for k in ("tls.crt", "tls.key") if not secret.data.get(k)]
        if missing:
            return Verdict(False, "CASecretInvalid", f"{where} has no {' or '.join(missing)}")
        try:
            authority = SigningAuthority.from_pem(
                secret.data["tls.crt"], secret.data["tls.key"], ca_crt=secret.data.get("ca.crt"), now=now
            )
        except CAError as e:
            return Verdict(False, f"CA{e.reason}", f"{where}: {e}")
        message = f"signing with CA {authority.subject_text}, valid until {rfc3339(authority.not_after)}"
        if authority.chain_warning is not None:
            message += f"; {where}: {authority.chain_warning}"
        switched = secret.annotations.get(ROOT_SWITCHED_AT)
        try:
            since = parse_rfc3339(switched) if switched else None
        except ValueError:
            since = None
        return Verdict(True, "KeyPairVerified", message, authority, _rotation(secret.annotations), since)

    def recheck_at(
        self, verdict: Verdict, now: datetime.datetime, interval: datetime.timedelta
    ) -> datetime.datetime | None:
        # The Secret watch reports changes to the CA Secret; the recheck is for time: the CA expiring.
        recheck = now + interval
        if verdict.authority is not None:
            recheck = min(recheck, verdict.authority.valid_until)
        return recheck

    def identity(self, authority: SigningAuthority | None) -> IssuerIdentity:
        if authority is None:
            raise PKIError("a ca issuer without a verified CA has no identity")
        return IssuerIdentity(
            self_signed=False,
            subject_key_id=authority.subject_key_id,
            subject_text=authority.subject_text,
            not_after=authority.not_after,
        )

    def refusal(self, spec: CertificateSpec, issuer: str) -> Refusal | None:
        return None

    def sign(self, job: SigningJob) -> IssuedCertificate:
        if job.authority is None:  # reconcilers sign only with a ready issuer, whose verdict carries the CA
            raise PKIError("the ca issuer has no verified CA")
        return sign(job.request, job.authority, now=job.now)


def _rotation(annotations: Mapping[str, str]) -> dict[str, str] | None:
    """status.rotation of a ca issuer whose CA Secret is a certmint root in rotation (certificate_plan's phases)."""
    if ROOT_SWITCH_AT in annotations:
        return {"phase": "NextRootStaged", "nextStepAt": annotations[ROOT_SWITCH_AT]}
    if ROOT_RETIRE_AT in annotations:
        return {"phase": "PreviousRootRetiring", "nextStepAt": annotations[ROOT_RETIRE_AT]}
    return None
