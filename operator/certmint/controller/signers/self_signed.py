"""The selfSigned issuer kind: each certificate is signed by its own key, so it is its own issuer."""

from __future__ import annotations

import datetime

from certmint.controller.signers.base import Refusal, SigningJob, Verdict
from certmint.core.decisions import IssuerIdentity
from certmint.core.spec import CertificateSpec, IssuerSpec
from certmint.kube.client import KubeClient
from certmint.pki.keys import PKIError
from certmint.pki.signing import IssuedCertificate, SigningAuthority, self_sign


class SelfSigned:
    kind = "selfSigned"
    own_key_only = True

    async def check(
        self, api: KubeClient, spec: IssuerSpec, *, secret_namespace: str, cluster_scoped: bool, now: datetime.datetime
    ) -> Verdict:
        return Verdict(True, "SelfSigned", "signs each certificate with its own key")

    def recheck_at(
        self, verdict: Verdict, now: datetime.datetime, interval: datetime.timedelta
    ) -> datetime.datetime | None:
        return None  # nothing outside the spec can change its verdict

    def identity(self, authority: SigningAuthority | None) -> IssuerIdentity:
        return IssuerIdentity(self_signed=True, subject_key_id=None)

    def refusal(self, spec: CertificateSpec, issuer: str) -> Refusal | None:
        if spec.has_subject:
            return None
        return Refusal(
            "EmptySubject",
            f"{issuer} is selfSigned: the certificate is its own issuer and X.509 (RFC 5280) requires a non-empty "
            "issuer name: set spec.commonName or spec.subject",
        )

    def sign(self, job: SigningJob) -> IssuedCertificate:
        if job.key is None:  # the CertificateRequest reconciler refuses these first (own_key_only)
            raise PKIError("a selfSigned issuer needs the certificate's own private key")
        return self_sign(job.request, job.key, now=job.now)
