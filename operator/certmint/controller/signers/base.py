"""What every issuer kind provides: a readiness verdict, its identity for matching certificates, and signing.

The Certificate, CertificateRequest and issuer reconcilers talk to a kind only through :class:`Signer`,
so a new kind (ACME, an external signer, the pod-certificate signer) is one module plus one line in
``signers.KINDS``; none of the reconcilers changes.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Protocol

from certmint.core.decisions import IssuerIdentity
from certmint.core.spec import CertificateSpec, IssuerSpec
from certmint.kube.client import KubeClient
from certmint.pki.keys import PrivateKey
from certmint.pki.signing import IssuedCertificate, SigningAuthority, SigningRequest


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether an issuer can sign now (reason and message for its Ready condition), and with what CA."""

    ready: bool
    reason: str
    message: str
    authority: SigningAuthority | None = None
    rotation: dict[str, str] | None = None  # the CA Secret's root rotation in progress: status.rotation
    ca_since: datetime.datetime | None = None  # when the CA became the signing one, if the CA Secret says


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a kind cannot sign a certificate whatever its policy says (reason, message for a condition)."""

    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class SigningJob:
    """What a kind signs with: the judged request, the certificate's own private key when certmint holds it
    (a Certificate; None for a CertificateRequest's bare CSR), the issuer's verified CA (None unless its kind
    has one), and the time."""

    request: SigningRequest
    key: PrivateKey | None
    authority: SigningAuthority | None
    now: datetime.datetime


class Signer(Protocol):
    """One issuer kind. Implementations are stateless: what an issuer learnt lives in its record."""

    @property
    def kind(self) -> str:
        """The spec field that selects this kind (``selfSigned``, ``ca``)."""

    @property
    def own_key_only(self) -> bool:
        """Signs each certificate with that certificate's own key: a CSR alone cannot be signed, and nothing
        it signs is trusted beyond its holder (so a policy's allowCA does not apply)."""

    async def check(
        self, api: KubeClient, spec: IssuerSpec, *, secret_namespace: str, cluster_scoped: bool, now: datetime.datetime
    ) -> Verdict:
        """Can the issuer sign? Reads what the kind needs (a CA Secret); never writes."""

    def recheck_at(
        self, verdict: Verdict, now: datetime.datetime, interval: datetime.timedelta
    ) -> datetime.datetime | None:
        """When to look at the issuer again without an event (a CA can expire), or None."""

    def identity(self, authority: SigningAuthority | None) -> IssuerIdentity:
        """What a certificate signed by this issuer must match (see core.decisions.issuance_reason)."""

    def refusal(self, spec: CertificateSpec, issuer: str) -> Refusal | None:
        """A Certificate this kind cannot sign as specified (``issuer``: "ClusterIssuer 'name'"), or None."""

    def sign(self, job: SigningJob) -> IssuedCertificate:
        """Sign ``job.request`` (see :class:`SigningJob`)."""
