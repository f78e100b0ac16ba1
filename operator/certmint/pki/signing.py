"""Turning a verified CSR into a certificate, signed by a CA or by the request's own key.

Choices, all deliberate:

* notBefore is back-dated (backdate_for: 1% of the duration, at most one
  minute) so that a workload whose clock runs slightly behind the
  operator's does not reject a brand-new certificate; it is never earlier
  than the CA's own notBefore. Proportional, so that a one-minute
  certificate is not half back-dating (renewal maths works on the whole
  notBefore..notAfter span).
* notAfter is ``now + duration`` but never later than the CA's notAfter: a
  certificate cannot outlive its issuer, so the lifetime is silently
  truncated (the renewal logic then renews it in time, and the issuer's
  status shows the CA's expiry).
* Serial numbers are 159 random bits (positive, at most 20 octets, RFC 5280).
* The signature digest follows the signing key (see keys.signature_hash).
* Only the SANs and subject are taken from the CSR, and only as the values
  parse_csr validated and the policy judged: the subject is rebuilt with
  build_subject (Go's pkix order, default string types) and the SANs with
  subject_alternative_names, never copied from the CSR's encoding, so a
  second CN, an unusual attribute or a name the policy read differently
  cannot ride along. Every other extension is decided here, so a requester
  cannot smuggle in e.g. basicConstraints.
* tls.crt (``chain_pem``) = the leaf, then the issuing CA, then the
  certificates above it, leaving out the trust anchor when it is a
  self-signed root (clients must already have it, and RFC 8446 lets servers
  omit it). ca.crt (``ca_pem``) = the trust anchors a client should trust: that
  root, plus every other self-signed CA certificate the CA Secret's ca.crt holds
  and that is valid now (``SigningAuthority.trust_bundle_pem``; in ca.crt's
  order, the chain's root first when ca.crt lacks it). A root placed next to
  the current one in the CA Secret's ca.crt (the next one before a rotation,
  the previous one after it) so reaches every certificate's ca.crt without a
  re-issue.
* The chain above the CA is built, not copied (SigningAuthority.from_pem):
  from the rest of the CA Secret's tls.crt, completed from its ca.crt, each
  certificate the verified issuer of the one before (subject, key
  identifiers, signature), up to a self-signed root. So the anchor is right
  however the Secret was made: by certmint (an intermediate's tls.crt has no
  root, its ca.crt has it), by hand with the root in tls.crt, or with the
  root only in ca.crt. A certificate of tls.crt outside that chain, or a
  ca.crt none of whose certificates is in it, is refused (ChainInvalid).
  When nothing known is self-signed, the anchor is the top of what is known
  and ``chain_warning`` says how to complete it.
* Where relying parties find revocation data and the issuer's certificate
  (CRL Distribution Points; Authority Information Access for OCSP and CA
  Issuers) comes from the issuer's spec (``IssuerURLs``), never from a CSR.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AuthorityInformationAccessOID

from certmint.pki.constraints import NameConstraints
from certmint.pki.constraints import violations as name_violations
from certmint.pki.csr import CSRInfo, build_subject, subject_alternative_names
from certmint.pki.inspect import chain_above, load_pem_chain, self_signed, serial_hex
from certmint.pki.keys import (
    PKIError,
    PrivateKey,
    load_private_key,
    public_key_matches,
    same_public_key,
    supported_public_key,
)
from certmint.pki.keys import signature_hash as _signature_hash
from certmint.pki.names import Identity, quote
from certmint.pki.timestamps import rfc3339
from certmint.pki.usages import usage_extensions

MAX_BACKDATE: Final = timedelta(minutes=1)
#: Most certificates from a CA up to its trust anchor, both included (the issuer's status lists them).
MAX_CHAIN_LENGTH: Final = 8


def backdate_for(duration: timedelta) -> timedelta:
    """How far notBefore lies before the signing time: 1% of the duration, at most MAX_BACKDATE."""
    return min(MAX_BACKDATE, duration / 100)


class CAError(PKIError):
    """The CA key pair cannot sign; ``reason`` is a CamelCase code for the issuer's Ready condition."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class SigningAuthority:
    """A CA certificate with its key and the certificates above it, the issuer of each one first."""

    certificate: x509.Certificate
    key: PrivateKey
    chain: tuple[x509.Certificate, ...] = ()
    # Self-signed CA certificates of the CA Secret's ca.crt besides the chain's root, valid when loaded, in
    # ca.crt's order: trust anchors that certificates get in ca.crt too (see trust_anchors).
    other_anchors: tuple[x509.Certificate, ...] = ()
    # Where the chain's root stands among them (its place in ca.crt; 0 when ca.crt does not hold it).
    anchor_position: int = 0

    def name_constraint_violations(self, names: Identity) -> list[str]:
        """Each SAN of ``names`` outside the name constraints of this CA or one above it (pki.constraints)."""
        return name_violations(
            names.dns_names, names.ip_addresses, names.uris, names.email_addresses, (self.certificate, *self.chain)
        )

    @classmethod
    def from_pem(
        cls, tls_crt: bytes, tls_key: bytes, *, ca_crt: bytes | None = None, now: datetime
    ) -> SigningAuthority:
        """Load and validate a CA Secret: tls.crt (the CA first, then certificates above it in any
        order), tls.key, and ca.crt (optional: the root, or a bundle that holds it).

        The chain above the CA is built from the rest of tls.crt and from ca.crt (see the module docs).
        Raises CAError with reason Unparseable, KeyMismatch, NotACA, NotYetValid, Expired or ChainInvalid.
        """
        try:
            certs = load_pem_chain(tls_crt)
        except PKIError as exc:
            raise CAError("Unparseable", f"CA certificate (tls.crt) cannot be parsed: {exc}") from exc
        try:
            key = load_private_key(tls_key)
        except PKIError as exc:
            raise CAError("Unparseable", f"CA private key (tls.key) cannot be parsed: {exc}") from exc
        anchors: list[x509.Certificate] = []
        if ca_crt and ca_crt.strip():
            try:
                anchors = load_pem_chain(ca_crt)
            except PKIError as exc:
                raise CAError("Unparseable", f"CA trust anchor (ca.crt) cannot be parsed: {exc}") from exc
        ca = certs[0]
        if not public_key_matches(key, ca):
            _refuse_misordered(certs, key)
        above = _unique([c for c in certs[1:] if c != ca])
        known = above + [c for c in _unique(anchors) if c != ca and c not in above]
        chain, _ = chain_above(ca, known)
        top = chain[-1] if chain else ca
        listed = _unique(anchors)
        others = tuple(
            a
            for a in listed
            if a != top
            and self_signed(a)
            and _not_a_ca(a) is None
            and a.not_valid_before_utc <= now < a.not_valid_after_utc
        )
        position = sum(1 for a in listed[: listed.index(top)] if a in others) if top in listed else 0
        authority = cls(certificate=ca, key=key, chain=tuple(chain), other_anchors=others, anchor_position=position)
        authority.validate(now=now)
        authority.check_chain(outside_tls_crt=[c for c in above if c not in chain], anchors=anchors)
        return authority

    def check_chain(
        self, *, outside_tls_crt: Sequence[x509.Certificate] = (), anchors: Sequence[x509.Certificate] = ()
    ) -> None:
        """Raise CAError("ChainInvalid") when the chain cannot be served as it is.

        ``outside_tls_crt``: certificates of tls.crt that are not in the chain; ``anchors``: ca.crt's.
        """
        ca, top = quote(self.subject_text), self.trust_anchor
        path = " → ".join(quote(_name(c)) for c in (self.certificate, *self.chain))
        if outside_tls_crt:
            stray = quote(_name(outside_tls_crt[0]))
            raise CAError(
                "ChainInvalid",
                f"tls.crt holds {stray}, which is not in the chain of CA {ca} ({path}): tls.crt must hold the "
                "CA certificate first, then only the certificates above it (its issuer, that one's issuer, ...)",
            )
        if anchors and not any(a == self.certificate or a in self.chain for a in anchors):
            held = ", ".join(quote(_name(a)) for a in anchors)
            if self.anchored:
                wanted = f"the root of that chain, {quote(_name(top))}"
            else:
                wanted = f"the root that {quote(_name(top))} chains to (issued by {_issuer(top)})"
            raise CAError(
                "ChainInvalid",
                f"ca.crt holds {held}, which is not in the chain of CA {ca} ({path}): ca.crt must hold {wanted}",
            )
        length = len(self.chain) + 1
        if length > MAX_CHAIN_LENGTH:
            raise CAError("ChainInvalid", f"the chain of CA {ca} has {length} certificates, at most {MAX_CHAIN_LENGTH}")
        for cert in self.chain:
            problem = _not_a_ca(cert)
            if problem is not None:
                raise CAError("ChainInvalid", f"{quote(_name(cert))} in the chain of CA {ca} {problem}")

    def validate(self, *, now: datetime) -> None:
        """Raise CAError unless this key pair may sign certificates at ``now``."""
        cert = self.certificate
        name = self.subject_text
        if not public_key_matches(self.key, cert):
            raise CAError("KeyMismatch", f"CA key (tls.key) does not belong to CA certificate {quote(name)}")
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise CAError("NotACA", f"certificate {quote(name)} is not a CA (no basicConstraints CA:TRUE)")
        try:
            can_sign = cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
        except x509.ExtensionNotFound:
            can_sign = True  # no KeyUsage extension means every usage is allowed
        if not can_sign:
            raise CAError("NotACA", f"CA certificate {quote(name)} lacks the keyCertSign key usage")
        for each, what in ((cert, "CA certificate"), *((c, "certificate above the CA") for c in self.chain)):
            if now < each.not_valid_before_utc:
                since = rfc3339(each.not_valid_before_utc)
                raise CAError("NotYetValid", f"{what} {quote(_name(each))} is not valid before {since}")
            if now >= each.not_valid_after_utc:
                until = rfc3339(each.not_valid_after_utc)
                raise CAError("Expired", f"{what} {quote(_name(each))} expired at {until}")

    @functools.cached_property  # read on every reconcile of every certificate it signs
    def subject_text(self) -> str:
        """The CA's subject as an RFC 4514 string, for status and messages."""
        return self.certificate.subject.rfc4514_string()

    @functools.cached_property  # read on every reconcile of every certificate it signs
    def fingerprint_sha256(self) -> str:
        """SHA-256 of the CA certificate's DER as upper-case hex pairs joined by colons.

        Same text as ``openssl x509 -noout -fingerprint -sha256`` prints, so users can compare by eye.
        """
        return fingerprint_sha256(self.certificate)

    @property
    def not_before(self) -> datetime:
        """Start of the CA certificate's validity (UTC)."""
        return self.certificate.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        """End of the CA certificate's validity (UTC); no issued certificate outlives it."""
        return self.certificate.not_valid_after_utc

    @functools.cached_property  # read on every reconcile of every certificate it signs
    def subject_key_id(self) -> str:
        """Hex key id that issued certificates carry as their AuthorityKeyIdentifier."""
        return _issuer_key_identifier(self.certificate).digest.hex()

    @property
    def valid_until(self) -> datetime:
        """When the first certificate of the CA's chain (the CA included) expires: signing stops then."""
        return min(c.not_valid_after_utc for c in (self.certificate, *self.chain))

    @property
    def trust_anchor(self) -> x509.Certificate:
        """The top of the CA's chain: the certificate clients should trust (Secret key ca.crt)."""
        return self.chain[-1] if self.chain else self.certificate

    @functools.cached_property
    def trust_anchor_fingerprint(self) -> str:
        """fingerprint_sha256 of trust_anchor: certificates whose ca.crt is another one must get this one."""
        return fingerprint_sha256(self.trust_anchor)

    @functools.cached_property
    def anchored(self) -> bool:
        """Whether the chain ends at a self-signed root, as verifiers want their trust anchor."""
        return self_signed(self.trust_anchor)

    @functools.cached_property  # read on every signature
    def served_chain(self) -> tuple[x509.Certificate, ...]:
        """What follows the leaf in tls.crt: the CA and the certificates above it, without a self-signed root."""
        above = (self.certificate, *self.chain)
        return above[:-1] if self.anchored else above

    @property
    def chain_warning(self) -> str | None:
        """What to fix when the chain does not end at a self-signed root, else None."""
        if self.anchored:
            return None
        top = quote(_name(self.trust_anchor))
        return (
            f"the chain ends at {top}, which is not self-signed: add the root it chains to (issued by "
            f"{_issuer(self.trust_anchor)}) to the CA Secret's ca.crt; until then certificates get {top} as "
            "ca.crt, which most verifiers do not accept as a trust anchor"
        )

    @functools.cached_property  # read on every reconcile of every certificate it signs
    def trust_anchor_pem(self) -> bytes:
        """PEM of trust_anchor."""
        return self.trust_anchor.public_bytes(Encoding.PEM)

    @property
    def trust_anchors(self) -> tuple[x509.Certificate, ...]:
        """Every root certificates of this CA get in ca.crt: the chain's, and other_anchors, in ca.crt's order."""
        others = self.other_anchors
        return (*others[: self.anchor_position], self.trust_anchor, *others[self.anchor_position :])

    def keeping(self, roots: Sequence[x509.Certificate]) -> SigningAuthority:
        """This CA with ``roots`` among its trust anchors too, after the others: roots that certificates in use
        chain to although the CA Secret no longer holds them (a replaced CA Secret's previous root, until retired)."""
        extra = tuple(r for r in _unique(list(roots)) if r not in self.trust_anchors)
        return replace(self, other_anchors=(*self.other_anchors, *extra)) if extra else self

    @functools.cached_property  # read on every reconcile of every certificate it signs
    def trust_bundle_pem(self) -> bytes:
        """What certificates get in ca.crt: the PEM of each of trust_anchors, concatenated."""
        return b"".join(a.public_bytes(Encoding.PEM) for a in self.trust_anchors)

    @functools.cached_property
    def trust_bundle_fingerprint(self) -> str:
        """Changes when trust_bundle_pem does: trust_anchor_fingerprint while the chain's root is the only anchor
        (so nothing that recorded it before anchors became a set sees a change), else a SHA-256 of the bundle."""
        if not self.other_anchors:
            return self.trust_anchor_fingerprint
        return "bundle:" + hashlib.sha256(self.trust_bundle_pem).hexdigest()


@dataclass(frozen=True)
class IssuerURLs:
    """Where relying parties find an issuer's CRLs (the CRL Distribution Points extension, RFC 5280 4.2.1.13), its
    OCSP responders and its own certificate (Authority Information Access, 4.2.2.1), written into every certificate
    it signs. Empty: none of these extensions."""

    crl_distribution_points: tuple[str, ...] = ()
    ocsp_servers: tuple[str, ...] = ()
    issuing_certificate_urls: tuple[str, ...] = ()

    def extensions(self) -> list[x509.ExtensionType]:
        found: list[x509.ExtensionType] = []
        if self.crl_distribution_points:
            points = [
                x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)
                for url in self.crl_distribution_points
            ]
            found.append(x509.CRLDistributionPoints(points))
        access = [
            x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(url))
            for url in self.ocsp_servers
        ] + [
            x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(url))
            for url in self.issuing_certificate_urls
        ]
        if access:
            found.append(x509.AuthorityInformationAccess(access))
        return found


@dataclass(frozen=True)
class SigningRequest:
    """A verified CSR plus what the issuer decided about it (``urls``: the issuer's, see IssuerURLs)."""

    csr: CSRInfo
    duration: timedelta
    usages: tuple[str, ...]
    is_ca: bool
    urls: IssuerURLs = IssuerURLs()
    name_constraints: NameConstraints | None = None  # for a CA certificate: what may be signed below it


@dataclass(frozen=True)
class IssuedCertificate:
    """A new certificate and the PEM texts destined for the Secret (see the module docs)."""

    certificate: x509.Certificate
    certificate_pem: bytes
    chain_pem: bytes
    ca_pem: bytes
    serial_number: str
    not_before: datetime
    not_after: datetime


def sign(request: SigningRequest, authority: SigningAuthority, *, now: datetime) -> IssuedCertificate:
    """Issue a certificate for the request, signed by the CA (validated again at ``now``)."""
    authority.validate(now=now)
    duration = _positive(request.duration)
    not_before = max(now - backdate_for(duration), authority.not_before)
    not_after = min(now + duration, authority.not_after)
    return _signed_by(request, authority, not_before, not_after)


def sign_within(
    request: SigningRequest, authority: SigningAuthority, *, not_before: datetime, not_after: datetime, now: datetime
) -> IssuedCertificate:
    """Issue a certificate valid exactly from ``not_before`` to ``not_after`` (whole seconds: what a caller with its
    own lifetime rules decided, a PodCertificateRequest's), which must lie within the CA's validity."""
    authority.validate(now=now)
    if not authority.not_before <= not_before < not_after <= authority.not_after:
        raise PKIError(
            f"validity {rfc3339(not_before)} to {rfc3339(not_after)} is not within the CA's, "
            f"{rfc3339(authority.not_before)} to {rfc3339(authority.not_after)}"
        )
    return _signed_by(request, authority, not_before, not_after)


def _signed_by(
    request: SigningRequest, authority: SigningAuthority, not_before: datetime, not_after: datetime
) -> IssuedCertificate:
    outside = authority.name_constraint_violations(request.csr)
    if outside:  # the callers judged this already; a verifier would reject such a certificate
        raise PKIError("; ".join(outside))
    cert = _build_and_sign(
        request,
        issuer=authority.certificate.subject,
        authority_key_id=x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            _issuer_key_identifier(authority.certificate)
        ),
        signing_key=authority.key,
        not_before=not_before,
        not_after=not_after,
    )
    chain_pem = b"".join(c.public_bytes(Encoding.PEM) for c in (cert, *authority.served_chain))
    return _issued(cert, chain_pem=chain_pem, ca_pem=authority.trust_bundle_pem)


def self_sign(request: SigningRequest, key: PrivateKey, *, now: datetime) -> IssuedCertificate:
    """Issue a certificate signed by its own key; it is its own trust anchor (ca.crt = the certificate)."""
    if not same_public_key(key.public_key(), request.csr.public_key):
        raise PKIError("the private key given for self-signing does not match the CSR's public key")
    ski = x509.SubjectKeyIdentifier.from_public_key(request.csr.public_key)
    duration = _positive(request.duration)
    cert = _build_and_sign(
        request,
        issuer=build_subject(request.csr.common_name, request.csr.subject),
        authority_key_id=x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
        signing_key=key,
        not_before=now - backdate_for(duration),
        not_after=now + duration,
    )
    pem = cert.public_bytes(Encoding.PEM)
    return _issued(cert, chain_pem=pem, ca_pem=pem)


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """Upper-case, colon-separated SHA-256 fingerprint of a certificate (openssl's format)."""
    digest = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _positive(duration: timedelta) -> timedelta:
    if duration <= timedelta(0):
        raise PKIError(f"certificate duration must be positive, got {duration}")
    return duration


def _build_and_sign(
    request: SigningRequest,
    *,
    issuer: x509.Name,
    authority_key_id: x509.AuthorityKeyIdentifier,
    signing_key: PrivateKey,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    csr = request.csr
    subject = build_subject(csr.common_name, csr.subject)  # from the judged values, never the CSR's own name
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(csr.public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=request.is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key), critical=False)
        .add_extension(authority_key_id, critical=False)
    )
    for extension, critical in usage_extensions(request.usages, is_ca=request.is_ca):
        builder = builder.add_extension(extension, critical=critical)
    for extension in request.urls.extensions():
        builder = builder.add_extension(extension, critical=False)
    if request.name_constraints is not None:
        nc = request.name_constraints
        builder = builder.add_extension(nc.extension(), critical=nc.critical)
    sans = subject_alternative_names(csr.dns_names, csr.ip_addresses, csr.uris, csr.email_addresses)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=len(subject) == 0)
    try:
        return builder.sign(signing_key, _signature_hash(signing_key))
    except ValueError as exc:
        raise PKIError(f"the certificate cannot be signed: {exc}") from exc


def _issued(cert: x509.Certificate, *, chain_pem: bytes, ca_pem: bytes) -> IssuedCertificate:
    return IssuedCertificate(
        certificate=cert,
        certificate_pem=cert.public_bytes(Encoding.PEM),
        chain_pem=chain_pem,
        ca_pem=ca_pem,
        serial_number=serial_hex(cert.serial_number),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def _issuer_key_identifier(ca: x509.Certificate) -> x509.SubjectKeyIdentifier:
    """The key id issued certificates name as their authority: the CA's SKI, else derived from its key."""
    try:
        return ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(supported_public_key(ca.public_key()))


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def _issuer(cert: x509.Certificate) -> str:
    return quote(cert.issuer.rfc4514_string())


def _unique(certs: list[x509.Certificate]) -> list[x509.Certificate]:
    return list(dict.fromkeys(certs))


def _not_a_ca(cert: x509.Certificate) -> str | None:
    """Why a certificate above the CA cannot issue, or None. A self-signed root without
    basicConstraints (an X.509 v1 root) is accepted, as verifiers accept it as a trust anchor."""
    try:
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return "is not a CA (basicConstraints CA:FALSE)"
    except x509.ExtensionNotFound:
        if not self_signed(cert):
            return "is not a CA (no basicConstraints CA:TRUE)"
    try:
        if not cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign:
            return "lacks the keyCertSign key usage"
    except x509.ExtensionNotFound:
        pass
    return None


def _refuse_misordered(certs: list[x509.Certificate], key: PrivateKey) -> None:
    """tls.key does not belong to tls.crt's first certificate: say so, pointing at the one it belongs to."""
    for position, cert in enumerate(certs[1:], start=2):
        if public_key_matches(key, cert):
            raise CAError(
                "KeyMismatch",
                f"CA key (tls.key) belongs to {quote(_name(cert))}, certificate {position} of tls.crt, not to the "
                f"first one, {quote(_name(certs[0]))}: tls.crt must start with the CA certificate, then the "
                "certificates above it",
            )
