"""Certificate usages by their cert-manager names, and the X.509 extensions they become.

Users write usages as cert-manager does ("server auth", "digital signature").
Two names are aliases ("signing" = "digital signature", "s/mime" = "email
protection"), so comparisons between a spec and an issued certificate always
go through canonical_usages(); effective_usages() adds what signing itself
adds (cert sign / crl sign for CAs) so an issued CA never looks like a spec change.

Which key usages a certificate may carry depends on its key and on whether it
is a CA (RFC 5280, RFC 3279 for RSA, RFC 5480 and RFC 8813 for ECDSA, RFC 8410
and RFC 9295 for Ed25519): default_usages() picks a sound default for each,
and usage_problems() names every combination those RFCs forbid, so it is
refused instead of signed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from certmint.pki.keys import ECDSA, ED25519, RSA, PKIError

#: KeyUsage bit (cryptography's keyword argument name) per canonical name.
_KEY_USAGE_FLAGS: Final[dict[str, str]] = {
    "digital signature": "digital_signature",
    "content commitment": "content_commitment",
    "key encipherment": "key_encipherment",
    "data encipherment": "data_encipherment",
    "key agreement": "key_agreement",
    "cert sign": "key_cert_sign",
    "crl sign": "crl_sign",
    "encipher only": "encipher_only",
    "decipher only": "decipher_only",
}

_EXTENDED_KEY_USAGE_OIDS: Final[dict[str, ObjectIdentifier]] = {
    "any": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "ipsec end system": ObjectIdentifier("1.3.6.1.5.5.7.3.5"),
    "ipsec tunnel": ObjectIdentifier("1.3.6.1.5.5.7.3.6"),
    "ipsec user": ObjectIdentifier("1.3.6.1.5.5.7.3.7"),
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "microsoft sgc": ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"),
    "netscape sgc": ObjectIdentifier("2.16.840.1.113730.4.1"),
}

_ALIASES: Final[dict[str, str]] = {"signing": "digital signature", "s/mime": "email protection"}

#: Every accepted KeyUsage name, aliases included.
KEY_USAGES: Final = frozenset(_KEY_USAGE_FLAGS) | {"signing"}
#: Every accepted ExtendedKeyUsage name, aliases included.
EXTENDED_KEY_USAGES: Final = frozenset(_EXTENDED_KEY_USAGE_OIDS) | {"s/mime"}
ALL_USAGES: Final = KEY_USAGES | EXTENDED_KEY_USAGES

_NAME_BY_EKU_OID: Final = {oid: name for name, oid in _EXTENDED_KEY_USAGE_OIDS.items()}


def canonical_usages(usages: Iterable[str]) -> frozenset[str]:
    """Map aliases to their canonical name; PKIError for a name that is not a usage."""
    unknown = sorted(set(usages) - ALL_USAGES)
    if unknown:
        raise PKIError(f"unknown usage(s) {', '.join(map(repr, unknown))}")
    return frozenset(_ALIASES.get(usage, usage) for usage in usages)


def effective_usages(usages: Iterable[str], *, is_ca: bool) -> frozenset[str]:
    """The canonical usages an issued certificate really carries.

    A CA always gets "cert sign" and "crl sign": it must be able to sign leaves,
    and certmint will later publish CRLs signed by its CAs.
    """
    result = canonical_usages(usages)
    if is_ca:
        result |= {"cert sign", "crl sign"}
    return result


def usage_extensions(usages: Iterable[str], *, is_ca: bool) -> list[tuple[x509.ExtensionType, bool]]:
    """(extension, critical) pairs for KeyUsage (critical) and ExtendedKeyUsage (not critical).

    Either is omitted when no usage of its kind is requested: an empty KeyUsage
    is invalid, and a missing ExtendedKeyUsage means "unrestricted" to clients.
    """
    names = effective_usages(usages, is_ca=is_ca)
    extensions: list[tuple[x509.ExtensionType, bool]] = []
    flags = {flag: name in names for name, flag in _KEY_USAGE_FLAGS.items()}
    if any(flags.values()):
        if (flags["encipher_only"] or flags["decipher_only"]) and not flags["key_agreement"]:
            raise PKIError('usages "encipher only" and "decipher only" need "key agreement" too')
        extensions.append((x509.KeyUsage(**flags), True))
    oids = [oid for name, oid in _EXTENDED_KEY_USAGE_OIDS.items() if name in names]
    if oids:
        extensions.append((x509.ExtendedKeyUsage(oids), False))
    return extensions


def certificate_usages(cert: x509.Certificate) -> frozenset[str]:
    """Canonical usage names found in a certificate; unknown EKUs appear as dotted OIDs."""
    names: set[str] = set()
    try:
        key_usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        pass
    else:
        for name, flag in _KEY_USAGE_FLAGS.items():
            if flag in ("encipher_only", "decipher_only") and not key_usage.key_agreement:
                continue  # cryptography refuses to read these bits without key agreement
            if getattr(key_usage, flag):
                names.add(name)
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        pass
    else:
        names.update(_NAME_BY_EKU_OID.get(oid, oid.dotted_string) for oid in eku)
    return frozenset(names)


# --- defaults and the combinations the RFCs forbid ----------------------------------------------

#: What the CRDs used to default ``usages`` to, whatever the key: the API server stored it in every object created
#: before the defaults depended on the key type. Exactly this set (any order) is read as "not set"
#: (is_legacy_default), so those objects get the default for their key instead of being refused or re-judged.
LEGACY_DEFAULT_USAGES: Final = ("digital signature", "key encipherment", "server auth", "client auth")

#: A CA certificate's default: it signs certificates and CRLs, and no extended key usage constrains what it signs.
CA_DEFAULT_USAGES: Final = ("digital signature", "cert sign", "crl sign")
#: RSA leaves: "key encipherment" serves TLS 1.2's RSA key exchange, which only an RSA key can do.
RSA_DEFAULT_USAGES: Final = ("digital signature", "key encipherment", "server auth", "client auth")
#: ECDSA and Ed25519 leaves sign and never encrypt (RFC 8813, RFC 8410): mTLS needs only "digital signature".
SIGNING_KEY_DEFAULT_USAGES: Final = ("digital signature", "server auth", "client auth")

#: Why a combination is refused: the same words as the CRDs' CEL messages after "spec.usages: " (tests/unit/test_crds.py
#: checks), so admission and the operator's Ready condition say the same thing.
NEEDS_KEY_AGREEMENT: Final = "'encipher only' and 'decipher only' need 'key agreement' as well (RFC 5280)"
ENCIPHER_AND_DECIPHER_ONLY: Final = (
    "'encipher only' and 'decipher only' exclude each other; ask for at most one of them (RFC 5480)"
)
CA_ONLY: Final = (
    "'cert sign' and 'crl sign' are only allowed with isCA: true (RFC 5280: a certificate that signs "
    "certificates or CRLs is a CA)"
)
RSA_FORBIDDEN: Final = "'key agreement', 'encipher only' and 'decipher only' are not allowed with an RSA key (RFC 3279)"
RSA_CA_FORBIDDEN: Final = (
    "'key encipherment' and 'data encipherment' are not allowed on an RSA CA certificate (RFC 3279): a CA key "
    "only signs; leave usages unset for the CA default"
)
ECDSA_FORBIDDEN: Final = (
    "'key encipherment' and 'data encipherment' are not allowed with an ECDSA key (RFC 8813): it signs and never "
    "encrypts; leave usages unset for the ECDSA default"
)
ED25519_FORBIDDEN: Final = (
    "'key encipherment', 'data encipherment', 'key agreement', 'encipher only' and 'decipher only' are not "
    "allowed with an Ed25519 key (RFC 8410): it only signs; leave usages unset for the Ed25519 default"
)
#: Every refusal, each with the usages it forbids and when: (message, usages, key algorithm or None, CA or None).
_RULES: Final[tuple[tuple[str, frozenset[str], str | None, bool | None], ...]] = (
    (CA_ONLY, frozenset({"cert sign", "crl sign"}), None, False),
    (RSA_FORBIDDEN, frozenset({"key agreement", "encipher only", "decipher only"}), RSA, None),
    (RSA_CA_FORBIDDEN, frozenset({"key encipherment", "data encipherment"}), RSA, True),
    (ECDSA_FORBIDDEN, frozenset({"key encipherment", "data encipherment"}), ECDSA, None),
    (
        ED25519_FORBIDDEN,
        frozenset({"key encipherment", "data encipherment", "key agreement", "encipher only", "decipher only"}),
        ED25519,
        None,
    ),
)


def is_legacy_default(usages: Iterable[str]) -> bool:
    """True for exactly the set of LEGACY_DEFAULT_USAGES (as the API server stored it): read it as "not set"."""
    listed = list(usages)
    return len(listed) == len(LEGACY_DEFAULT_USAGES) and set(listed) == set(LEGACY_DEFAULT_USAGES)


def default_usages(key_algorithm: str, *, is_ca: bool) -> tuple[str, ...]:
    """The usages a certificate gets when none are asked for, by its key type and whether it is a CA."""
    if is_ca:
        return CA_DEFAULT_USAGES
    return RSA_DEFAULT_USAGES if key_algorithm == RSA else SIGNING_KEY_DEFAULT_USAGES


def usage_problems(usages: Iterable[str], *, key_algorithm: str | None, is_ca: bool) -> list[str]:
    """Why these usages cannot be signed for this key, one sentence each (empty when they can).

    ``key_algorithm`` None checks only what does not depend on the key (a CertificateRequest before its CSR is
    read). Unknown names raise PKIError (canonical_usages). What stays allowed is what the RFCs list: RSA leaves
    digital signature, content commitment, key and data encipherment (RFC 3279 2.3.1); ECDSA leaves digital
    signature, content commitment, key agreement with at most one of encipher/decipher only (RFC 5480 3, RFC 8813);
    Ed25519 leaves digital signature and content commitment (RFC 8410 5, RFC 9295); a CA adds cert sign and crl
    sign (minus the encipherments for RSA, RFC 3279's SHOULD NOT that zlint reports).
    """
    names = canonical_usages(usages)
    problems = []
    if ("encipher only" in names or "decipher only" in names) and "key agreement" not in names:
        problems.append(NEEDS_KEY_AGREEMENT)
    if "encipher only" in names and "decipher only" in names:
        problems.append(ENCIPHER_AND_DECIPHER_ONLY)
    for message, forbidden, algorithm, ca in _RULES:
        if algorithm is not None and algorithm != key_algorithm:
            continue
        if ca is not None and ca != is_ca:
            continue
        if names & forbidden:
            problems.append(message)
    return problems


def resolve_usages(requested: Iterable[str], *, key_algorithm: str, is_ca: bool) -> tuple[str, ...]:
    """The usages to sign: ``requested`` if any (and not the legacy default), else default_usages().

    PKIError naming every forbidden combination (usage_problems) instead of a certificate that breaks an RFC.
    """
    listed = tuple(requested)
    if not listed or is_legacy_default(listed):
        return default_usages(key_algorithm, is_ca=is_ca)
    problems = usage_problems(listed, key_algorithm=key_algorithm, is_ca=is_ca)
    if problems:
        raise PKIError("; ".join(problems))
    return listed
