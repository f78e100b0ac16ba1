"""Reading certificates back into plain facts that can be compared with a spec.

Decisions ("does the Secret still match the Certificate?"), status fields and
Secret annotations all read certificates through certificate_facts(), so they
agree on normalisation: SAN tuples are normalised (see certmint.pki.names)
and sorted, usages use cert-manager's canonical names.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from certmint.pki.constraints import NameConstraints
from certmint.pki.csr import common_name_of, split_general_names
from certmint.pki.keys import PKIError, describe_public_key
from certmint.pki.names import Identity, SubjectNames
from certmint.pki.usages import certificate_usages


@dataclass(frozen=True, slots=True)
class CertificateFacts(Identity):
    """Everything the lifecycle logic needs to know about an issued certificate: its identity (SANs sorted), and
    the rest."""

    usages: frozenset[str]
    is_ca: bool
    key_algorithm: str
    key_size: int
    serial_number: str
    not_before: datetime
    not_after: datetime
    issuer_key_id: str | None
    subject_key_id: str | None
    issuer_text: str
    subject_text: str = ""
    name_constraints: NameConstraints | None = None

    @property
    def self_issued(self) -> bool:
        """Issuer and subject are the same name (true for roots and self-signed leaves)."""
        return self.issuer_text == self.subject_text


def serial_hex(serial: int) -> str:
    """Lower-case hex without leading zeros or colons: the form status.serialNumber and annotations use."""
    return format(serial, "x")


def certificate_facts(cert: x509.Certificate) -> CertificateFacts:
    """Facts about a parsed certificate; never raises for a certificate cryptography could load."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns, ips, uris, emails = split_general_names(sans)
    except (x509.ExtensionNotFound, PKIError):
        dns, ips, uris, emails = (), (), (), ()
    algorithm, size = describe_public_key(cert.public_key())
    return CertificateFacts(
        common_name=common_name_of(cert.subject),
        dns_names=tuple(sorted(dns)),
        ip_addresses=tuple(sorted(ips)),
        uris=tuple(sorted(uris)),
        email_addresses=tuple(sorted(emails)),
        usages=certificate_usages(cert),
        is_ca=_is_ca(cert),
        key_algorithm=algorithm,
        key_size=size,
        serial_number=serial_hex(cert.serial_number),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        issuer_key_id=authority_key_id(cert),
        subject_key_id=subject_key_id(cert),
        issuer_text=cert.issuer.rfc4514_string(),
        subject_text=cert.subject.rfc4514_string(),
        subject=subject_names(cert.subject),
        name_constraints=NameConstraints.of(cert),
    )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def subject_key_id(cert: x509.Certificate) -> str | None:
    """Lower-case hex SubjectKeyIdentifier, or None when the extension is absent."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()
    except x509.ExtensionNotFound:
        return None


def authority_key_id(cert: x509.Certificate) -> str | None:
    """Lower-case hex AuthorityKeyIdentifier key id, or None when absent."""
    try:
        key_id = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        return None
    return key_id.hex() if key_id is not None else None


def subject_names(name: x509.Name) -> SubjectNames:
    """The non-CN attributes of a name, in the order they appear."""

    def values(oid: x509.ObjectIdentifier) -> tuple[str, ...]:
        attributes = name.get_attributes_for_oid(oid)
        return tuple(a.value.decode() if isinstance(a.value, bytes) else a.value for a in attributes)

    return SubjectNames.from_values(lambda a: values(a.oid))


def load_pem_chain(pem: bytes) -> list[x509.Certificate]:
    """All certificates of a PEM bundle in order; PKIError when there are none or one is broken."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise PKIError(f"not a PEM certificate bundle: {exc}") from exc
    if not certs:
        raise PKIError("no certificate found in PEM data")
    return certs


def certificate_pem(cert: x509.Certificate) -> bytes:
    """PEM text of one certificate."""
    return cert.public_bytes(Encoding.PEM)


def issued_by(cert: x509.Certificate, candidate: x509.Certificate) -> bool:
    """Whether ``candidate`` issued ``cert``: its subject is cert's issuer, its SubjectKeyIdentifier is
    cert's AuthorityKeyIdentifier (when both are present) and its key verifies cert's signature."""
    if cert.issuer != candidate.subject:
        return False
    wanted, offered = authority_key_id(cert), subject_key_id(candidate)
    if wanted is not None and offered is not None and wanted != offered:
        return False
    try:
        cert.verify_directly_issued_by(candidate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def leads_to(chain: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate], now: datetime) -> bool:
    """Whether a served chain (a leaf, then the CAs above it) leads to one of ``anchors``: each certificate issued by
    the next one, every CA above the leaf valid at ``now``, and the last one issued by an anchor (or one itself)."""
    for below, above in itertools.pairwise(chain):
        if not above.not_valid_before_utc <= now < above.not_valid_after_utc or not issued_by(below, above):
            return False
    return bool(chain) and any(chain[-1] == a or issued_by(chain[-1], a) for a in anchors)


def self_signed(cert: x509.Certificate) -> bool:
    """Signed by its own key under its own name: a root a verifier can take as its trust anchor."""
    return issued_by(cert, cert)


def chain_above(cert: x509.Certificate, candidates: list[x509.Certificate]) -> tuple[list[x509.Certificate], bool]:
    """The certificates above ``cert``, each the issuer of the one before, taken from ``candidates``.

    Returns the chain (``cert`` itself not included) and whether it ends at a self-signed
    certificate; otherwise it ends where no candidate issued the last certificate. Where several
    candidates issued a certificate, a self-signed one is taken first (the chain ends there), then
    the first in ``candidates``' order. A certificate is used at most once.
    """
    chain: list[x509.Certificate] = []
    current = cert
    used = {cert}
    while not self_signed(current):
        issuers = [c for c in candidates if c not in used and issued_by(current, c)]
        if not issuers:
            return chain, False
        current = next((c for c in issuers if self_signed(c)), issuers[0])
        chain.append(current)
        used.add(current)
    return chain, True
