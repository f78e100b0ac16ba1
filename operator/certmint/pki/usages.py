"""Certificate usages by their cert-manager names, and the X.509 extensions they become.

Users write usages as cert-manager does ("server auth", "digital signature").
Two names are aliases ("signing" = "digital signature", "s/mime" = "email
protection"), so comparisons between a spec and an issued certificate always
go through canonical_usages(); effective_usages() adds what signing itself
adds (cert sign / crl sign for CAs) so an issued CA never looks like a spec change.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from certmint.pki.keys import PKIError

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
