"""Typed, validated views of the custom resources' ``spec`` dicts.

The CRD schema (defaults, enums, CEL rules) is the first line of defence; the
parsers here apply the same defaults again and check what the API server
cannot (IP syntax, key size per algorithm, renewBefore against duration...),
so the rest of the operator works with frozen dataclasses that are known to
be sensible. Every problem is a SpecError whose message starts with the field
path, ready for a status condition.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from fractions import Fraction
from types import MappingProxyType
from typing import Any, ClassVar, Final, TypeVar

from certmint.core.outputs import OUTPUT_KEYS
from certmint.pki.constraints import NameConstraints, NameSet
from certmint.pki.keys import ECDSA, ED25519, KEY_SIZES, PKCS1, PKCS8, RSA
from certmint.pki.names import (
    SUBJECT_ATTRIBUTES,
    Identity,
    SubjectAttribute,
    SubjectNames,
    canonical_dns_name,
    check_common_name,
    check_email_address,
    check_text_attribute,
    check_uri,
    dedupe,
    normalize_ip_address,
)
from certmint.pki.names import quote as _q
from certmint.pki.signing import IssuerURLs
from certmint.pki.usages import (
    EXTENDED_KEY_USAGES,
    KEY_USAGES,
    SIGNING_KEY_DEFAULT_USAGES,
    default_usages,
    is_legacy_default,
    usage_problems,
)

__all__ = [
    "DEFAULT_DURATION",
    "DEFAULT_USAGES",
    "EXTENDED_KEY_USAGES",
    "KEY_USAGES",
    "CertificateRequestSpec",
    "CertificateSpec",
    "IssuerRef",
    "IssuerSpec",
    "KeySpec",
    "Policy",
    "SpecError",
    "SubjectPolicy",
    "SubjectSpec",
    "format_duration",
    "parse_duration",
]

#: cert-manager's default lifetime: 90 days.
DEFAULT_DURATION: Final = timedelta(hours=2160)
#: The usages of a Certificate that sets none, with the default key (ECDSA) and not a CA; the default depends on
#: the key type and isCA (pki.usages.default_usages).
DEFAULT_USAGES: Final = SIGNING_KEY_DEFAULT_USAGES
DEFAULT_KEY_SIZES: Final = {ECDSA: 256, RSA: 2048, ED25519: 0}
ISSUER_KINDS: Final = ("Issuer", "ClusterIssuer")

#: The subject block of a Certificate is the PKI layer's SubjectNames (pki must not import core).
SubjectSpec = SubjectNames


class SpecError(ValueError):
    """A spec value the operator cannot work with; the message starts with the field path."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _fail(path: str, problem: str) -> SpecError:
    return SpecError(f"{path}: {problem}", field=path)


# --- durations ---------------------------------------------------------------------------------

_NANOS_PER_UNIT: Final = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign, as Go accepts
    "\u03bcs": 1_000,  # Greek small letter mu, as Go accepts
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_duration(text: str, *, field: str = "duration") -> timedelta:
    """Parse Go's duration syntax ("90s", "1h30m", "1.5h", "500ms"), as Kubernetes users write it.

    Negative durations are refused: no certmint field has a use for them.
    Precision below a microsecond is truncated (timedelta's resolution).
    """
    if not isinstance(text, str):
        raise _fail(field, f'{_q(text)} is not a duration string like "1h30m"')
    body = text.strip()
    if body.startswith("-"):
        raise _fail(field, f'{_q(text)} is negative; durations must be positive like "1h30m"')
    body = body.removeprefix("+")
    if body == "0":
        return timedelta(0)
    nanos = Fraction(0)
    position = 0
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if match is None:
            break
        nanos += Fraction(match.group(1)) * _NANOS_PER_UNIT[match.group(2)]
        position = match.end()
    if not body or position != len(body):
        raise _fail(field, f'{_q(text)} is not a duration like "1h30m" (units: h, m, s, ms, us, ns)')
    return timedelta(microseconds=int(nanos // 1000))


def format_duration(duration: timedelta) -> str:
    """Compact Go-style text that parse_duration reads back exactly: "2160h", "1h30m", "1.5s", "500ms".

    Zero parts are left out (unlike Go's "1h30m0s"), which reads better in status fields.
    """
    micros = duration // timedelta(microseconds=1)
    if micros < 0:
        return "-" + format_duration(-duration)
    if micros == 0:
        return "0s"
    if micros < 1_000:
        return f"{micros}us"
    if micros < 1_000_000:
        return _decimal(micros, 1_000) + "ms"
    hours, rest = divmod(micros, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    parts.append(_decimal(rest, 1_000_000) + "s" if rest else "")
    return "".join(parts)


def _decimal(value: int, scale: int) -> str:
    whole, fraction = divmod(value, scale)
    if not fraction:
        return str(whole)
    digits = len(str(scale)) - 1
    return f"{whole}.{fraction:0{digits}d}".rstrip("0")


# --- small typed readers for untyped dicts ------------------------------------------------------


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(path, f"must be an object, got {type(value).__name__}")
    return value


def _string(value: Any, path: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _fail(path, f"must be a string, got {_q(value)}")
    return value


def _required_string(value: Any, path: str) -> str:
    text = _string(value, path)
    if text is None:
        raise _fail(path, "is required")
    return text


def _strings(value: Any, path: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise _fail(path, "must be a list of strings")
    return tuple(value)


def _integer(value: Any, path: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, f"must be an integer, got {_q(value)}")
    return value


def _boolean(value: Any, path: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _fail(path, f"must be true or false, got {_q(value)}")
    return value


def _string_map(value: Any, path: str) -> Mapping[str, str]:
    items = _mapping(value, path)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in items.items()):
        raise _fail(path, "must map strings to strings")
    return MappingProxyType(dict(items)) if items else _NO_STRINGS


_NO_STRINGS: Final[Mapping[str, str]] = MappingProxyType({})
_SHARED_LIMIT: Final = 4096
_shared_values: dict[Any, Any] = {}
_H = TypeVar("_H")


def shared(value: _H) -> _H:
    """The first-seen instance equal to an immutable ``value``, so that 10,000 parsed specs hold one copy
    of the issuer reference, key spec, subject, duration and usages they have in common instead of 10,000
    (about 500 bytes each). At most _SHARED_LIMIT distinct values are kept; later ones are not shared."""
    if value is None:
        return value
    found = _shared_values.get(value)
    if found is not None:
        return found  # type: ignore[no-any-return]
    if len(_shared_values) < _SHARED_LIMIT:
        _shared_values[value] = value
    return value


#: The longest lifetime (and policy bound) any field accepts, as the CRDs' CEL rules say.
MAX_DURATION: Final = timedelta(hours=87600)


def _optional_duration(value: Any, path: str, *, maximum: timedelta | None = None) -> timedelta | None:
    if value is None or value == "":
        return None
    duration = parse_duration(value, field=path)
    if maximum is not None and duration > maximum:
        raise _fail(path, f"must be at most {format_duration(maximum)} (10 years)")
    return duration


def _lifetime_duration(value: Any, path: str) -> timedelta:
    """A certificate lifetime: DEFAULT_DURATION when absent, longer than zero and at most MAX_DURATION."""
    duration = _optional_duration(value, path, maximum=MAX_DURATION)
    if duration is None:
        return DEFAULT_DURATION
    if duration <= timedelta(0):
        raise _fail(path, "must be longer than zero")
    return duration


# --- shared pieces ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuerRef:
    """Which issuer signs: an ``Issuer`` in the same namespace or a ``ClusterIssuer``."""

    name: str
    kind: str = "Issuer"

    @classmethod
    def from_dict(cls, ref: Any, path: str = "spec.issuerRef") -> IssuerRef:
        """Parse ``issuerRef``; ``group`` is accepted and ignored (always certmint.dev)."""
        ref = _mapping(ref, path)
        name = _required_string(ref.get("name"), f"{path}.name")
        kind = _string(ref.get("kind"), f"{path}.kind") or "Issuer"
        if kind not in ISSUER_KINDS:
            raise _fail(f"{path}.kind", f"{_q(kind)} is not one of Issuer, ClusterIssuer")
        return cls(name=name, kind=kind)


@dataclass(frozen=True, slots=True)
class KeySpec:
    """The private key to generate. Ed25519 reports size 0 and is always PKCS8 (PKCS1 has no Ed25519 form)."""

    algorithm: str = ECDSA
    size: int = 256
    encoding: str = PKCS1
    rotation_policy: str = "Always"

    @classmethod
    def from_dict(cls, key: Any, path: str = "spec.privateKey") -> KeySpec:
        """Parse ``privateKey`` with cert-manager's fields; the default is ECDSA P-256 (fast, small).

        The encoding defaults to PKCS1 for RSA and ECDSA and to PKCS8 for Ed25519 (as cert-manager writes it
        unasked). For Ed25519 any size is ignored and the encoding is PKCS8: the CRD refuses PKCS1 there, and
        should such an object slip through (an older CRD) it still gets the only encoding that can hold the key.
        """
        key = _mapping(key, path)
        algorithm = _string(key.get("algorithm"), f"{path}.algorithm") or ECDSA
        if algorithm not in KEY_SIZES:
            raise _fail(f"{path}.algorithm", f"{_q(algorithm)} is not one of ECDSA, RSA, Ed25519")
        size = _integer(key.get("size"), f"{path}.size")
        if algorithm == ED25519 or not size:
            size = DEFAULT_KEY_SIZES[algorithm]
        if size not in KEY_SIZES[algorithm]:
            allowed = ", ".join(map(str, sorted(KEY_SIZES[algorithm])))
            raise _fail(f"{path}.size", f"{size} is not a valid {algorithm} key size (use {allowed})")
        encoding = _string(key.get("encoding"), f"{path}.encoding") or (PKCS8 if algorithm == ED25519 else PKCS1)
        if encoding not in (PKCS1, PKCS8):
            raise _fail(f"{path}.encoding", f"{_q(encoding)} is not one of PKCS1, PKCS8")
        if algorithm == ED25519:
            encoding = PKCS8
        rotation = _string(key.get("rotationPolicy"), f"{path}.rotationPolicy") or "Always"
        if rotation not in ("Always", "Never"):
            raise _fail(f"{path}.rotationPolicy", f"{_q(rotation)} is not one of Always, Never")
        return cls(algorithm=algorithm, size=size, encoding=encoding, rotation_policy=rotation)


def _subject(value: Any, path: str) -> SubjectNames:
    subject = _mapping(value, path)

    def values(attribute: SubjectAttribute) -> tuple[str, ...]:
        if not attribute.single:
            return _attributes(subject, attribute.key, path)
        text = _string(subject.get(attribute.key), f"{path}.{attribute.key}")
        if text is None:
            return ()
        return (_attribute(text, f"{path}.{attribute.key}"),)

    names = SubjectNames.from_values(values)
    for country in names.countries:
        if len(country) != 2:
            raise _fail(f"{path}.countries", f"{_q(country)} is not a two-letter country code")
    return names


def _attributes(subject: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
    """A list of subject attribute values, each one the CSR path would accept too (names.check_text_attribute)."""
    values = _strings(subject.get(key), f"{path}.{key}")
    for index, value in enumerate(values):
        _attribute(value, f"{path}.{key}[{index}]")
    return values


def _attribute(value: str, path: str) -> str:
    try:
        return check_text_attribute(value)
    except ValueError as exc:
        raise _fail(path, f"{_q(value)} is not accepted: {exc}") from None


def _usages(value: Any, path: str, *, key_algorithm: str | None, is_ca: bool) -> tuple[str, ...] | None:
    """The requested usages, or None when none are: unset, empty, or exactly the old CRD default.

    The CRDs used to default usages to ["digital signature", "key encipherment", "server auth", "client auth"]
    whatever the key, and the API server stored that list in every object created then; reading it as "not set"
    gives those objects the default for their key type (pki.usages.LEGACY_DEFAULT_USAGES) instead of refusing an
    ECDSA one for "key encipherment". Combinations the RFCs forbid for the key (when known) are refused.
    """
    usages = _strings(value, path)
    for usage in usages:
        if usage not in KEY_USAGES | EXTENDED_KEY_USAGES:
            raise _fail(path, f'{_q(usage)} is not a usage (e.g. "server auth", "digital signature")')
    if not usages or is_legacy_default(usages):
        return None
    problems = usage_problems(usages, key_algorithm=key_algorithm, is_ca=is_ca)
    if problems:
        raise _fail(path, "; ".join(problems))
    return dedupe(usages)


#: Admission's message (the Certificate CRD's CEL rule) and the parser's, for a CA without a subject.
CA_NEEDS_SUBJECT: Final = (
    "spec.commonName or spec.subject must be set when spec.isCA is true: a CA's subject is the issuer name of "
    "every certificate it signs, and X.509 (RFC 5280) requires it to be non-empty"
)


def _dns_names(value: Any, path: str) -> tuple[str, ...]:
    """Canonical, lower-cased DNS names (names.canonical_dns_name: the same rule the CSR path applies)."""
    names = []
    for index, raw in enumerate(_strings(value, path)):
        try:
            names.append(canonical_dns_name(raw))
        except ValueError as exc:
            raise _fail(
                f"{path}[{index}]",
                f"{_q(raw)} is not a DNS name: {exc} (letters, digits, '-' per label, optional leading '*.')",
            ) from None
    return dedupe(names)


def _ip_addresses(value: Any, path: str) -> tuple[str, ...]:
    """Canonical addresses. Refused like the CRD refuses them: an IPv4-mapped IPv6 address (::ffff:10.0.0.1)
    would be signed as a 16-byte SAN that clients comparing with the IPv4 address do not match, and a
    policy's IPv4 ranges would not judge it; an IPv6 zone (fe80::1%eth0) has no place in a certificate."""
    addresses = []
    for index, raw in enumerate(_strings(value, path)):
        try:
            address = ipaddress.ip_address(raw.strip())
        except ValueError:
            raise _fail(f"{path}[{index}]", f"{_q(raw)} is not an IPv4 or IPv6 address") from None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            raise _fail(
                f"{path}[{index}]",
                f"{_q(raw)} is an IPv4-mapped IPv6 address, which is not accepted: write {address.ipv4_mapped}",
            )
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
            raise _fail(f"{path}[{index}]", f"{_q(raw)} has a zone (%{address.scope_id}); write the address alone")
        addresses.append(normalize_ip_address(raw))
    return dedupe(addresses)


def _checked_names(value: Any, path: str, check: Callable[[str], str]) -> tuple[str, ...]:
    """Strings that ``check`` accepts, without duplicates; its ValueError completes a sentence about the value.

    The checks are the CSR path's (certmint.pki.names): URIs absolute and a spiffe:// URI a valid SPIFFE ID
    (check_uri), email addresses ASCII local@domain (check_email_address).
    """
    values = _strings(value, path)
    for index, text in enumerate(values):
        try:
            check(text)
        except ValueError as exc:
            raise _fail(f"{path}[{index}]", f"{_q(text)} {exc}") from None
    return dedupe(values)


# --- Certificate --------------------------------------------------------------------------------


#: cert-manager Certificate fields certmint refuses (the CRD does too), and why.
_UNSUPPORTED: Final = {
    "literalSubject": "use commonName and subject",
    "signatureAlgorithm": "the issuer's key decides it",
    "otherNames": "an issuer's policy cannot judge otherName SANs",
}


@dataclass(frozen=True, slots=True)
class Keystore:
    """One keystore to write: its password is ``key`` of the Secret ``secret`` in the Certificate's namespace."""

    secret: str
    key: str
    alias: str = "certificate"


@dataclass(frozen=True, slots=True)
class Keystores:
    """spec.keystores (cert-manager's): a PKCS#12 and/or a JKS keystore of the key and chain, each with a password."""

    pkcs12: Keystore | None = None
    jks: Keystore | None = None

    def __bool__(self) -> bool:
        return self.pkcs12 is not None or self.jks is not None

    @classmethod
    def from_dict(cls, value: Any, path: str = "spec.keystores") -> Keystores:
        d = _mapping(value, path)
        found: dict[str, Keystore | None] = {}
        for kind in ("pkcs12", "jks"):
            where = f"{path}.{kind}"
            item = _mapping(d.get(kind), where)
            if "password" in item:  # never echoed: it is a secret
                raise _fail(
                    f"{where}.password",
                    "is not supported by certmint: put the password in a Secret and name it with passwordSecretRef",
                )
            profile = item.get("profile") if kind == "pkcs12" else None
            if profile is not None and profile != "Modern2023":
                raise _fail(
                    f"{where}.profile",
                    "only Modern2023 is supported: certmint writes PBES2 with AES-256 and a SHA-256 MAC, not the "
                    "legacy RC2 or DES encryption",
                )
            if not _boolean(item.get("create"), f"{where}.create"):
                found[kind] = None
                continue
            ref = _mapping(item.get("passwordSecretRef"), f"{where}.passwordSecretRef")
            if not ref:
                raise _fail(f"{where}.passwordSecretRef", "is required: the Secret and key that hold the password")
            alias = _string(item.get("alias"), f"{where}.alias") or "certificate"
            found[kind] = Keystore(
                secret=_required_string(ref.get("name"), f"{where}.passwordSecretRef.name"),
                key=_required_string(ref.get("key"), f"{where}.passwordSecretRef.key"),
                alias=alias,
            )
        return cls(pkcs12=found["pkcs12"], jks=found["jks"])


@dataclass(frozen=True, slots=True)
class CertificateSpec(Identity):
    """A parsed ``Certificate.spec``: the identity it asks for (SANs normalised: lower-case DNS, canonical IPs,
    without duplicates), and how and where to issue it."""

    secret_name: str
    issuer_ref: IssuerRef
    duration: timedelta = DEFAULT_DURATION
    renew_before: timedelta | None = None
    renew_before_percentage: int | None = None
    usages: tuple[str, ...] = DEFAULT_USAGES
    is_ca: bool = False
    private_key: KeySpec = field(default_factory=KeySpec)
    #: True when spec.usages was not set (or is the old CRD default): ``usages`` is then the default for the key
    #: type, and a certificate issued with the old default (pki.usages.LEGACY_DEFAULT_USAGES) is what that spec
    #: asked for when it was issued.
    usages_defaulted: bool = False
    secret_labels: Mapping[str, str] = field(default_factory=lambda: _NO_STRINGS)
    secret_annotations: Mapping[str, str] = field(default_factory=lambda: _NO_STRINGS)
    revision_history_limit: int = 3
    secret_deletion_policy: str = "Retain"
    #: spec.additionalOutputFormats' types (core.outputs), in the spec's order.
    additional_output_formats: tuple[str, ...] = ()
    #: spec.nameConstraints of a CA certificate (pki.constraints): what may be signed under it.
    name_constraints: NameConstraints | None = None
    #: spec.keystores: the PKCS#12 and JKS files to write (core.outputs.KEYSTORE_KEYS), each with its password.
    keystores: Keystores = field(default_factory=Keystores)

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> CertificateSpec:
        """Parse and validate a Certificate's spec; raises SpecError naming the field."""
        spec = _mapping(spec, "spec")
        for name, why in _UNSUPPORTED.items():
            if spec.get(name) is not None:
                raise _fail(f"spec.{name}", f"is not supported by certmint: {why} (see docs/migration.md)")
        secret_name = _required_string(spec.get("secretName"), "spec.secretName")
        common_name = _string(spec.get("commonName"), "spec.commonName")
        if common_name is not None and len(common_name) > 64:
            raise _fail("spec.commonName", "is longer than 64 characters (the X.509 limit); use dnsNames")
        if common_name is not None:
            try:
                check_common_name(common_name)
            except ValueError as exc:
                raise _fail("spec.commonName", f"{_q(common_name)} {exc}") from None
        dns_names = _dns_names(spec.get("dnsNames"), "spec.dnsNames")
        ip_addresses = _ip_addresses(spec.get("ipAddresses"), "spec.ipAddresses")
        uris = _checked_names(spec.get("uris"), "spec.uris", check_uri)
        emails = _checked_names(spec.get("emailAddresses"), "spec.emailAddresses", check_email_address)
        if not (common_name or dns_names or ip_addresses or uris or emails):
            raise _fail("spec", "set at least one of commonName, dnsNames, ipAddresses, uris, emailAddresses")
        duration, renew_before, percentage = _lifetime(spec)
        template = _mapping(spec.get("secretTemplate"), "spec.secretTemplate")
        history = _integer(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
        if history is not None and history < 1:
            raise _fail("spec.revisionHistoryLimit", f"{history} must be at least 1")
        deletion = _string(spec.get("secretDeletionPolicy"), "spec.secretDeletionPolicy") or "Retain"
        if deletion not in ("Retain", "Delete"):
            raise _fail("spec.secretDeletionPolicy", f"{_q(deletion)} is not one of Retain, Delete")
        subject = _subject(spec.get("subject"), "spec.subject")
        is_ca = _boolean(spec.get("isCA"), "spec.isCA")
        if is_ca and not (common_name or subject != SubjectNames()):
            raise SpecError(CA_NEEDS_SUBJECT, field="spec.commonName")
        private_key = KeySpec.from_dict(spec.get("privateKey"))
        name_constraints = _name_constraints(spec.get("nameConstraints"))
        if name_constraints is not None and not is_ca:
            raise _fail("spec.nameConstraints", "only a CA certificate (spec.isCA: true) carries name constraints")
        usages = _usages(spec.get("usages"), "spec.usages", key_algorithm=private_key.algorithm, is_ca=is_ca)
        return cls(
            secret_name=secret_name,
            issuer_ref=shared(IssuerRef.from_dict(spec.get("issuerRef"))),
            common_name=common_name,
            dns_names=dns_names,
            ip_addresses=ip_addresses,
            uris=uris,
            email_addresses=emails,
            subject=shared(subject),
            duration=shared(duration),
            renew_before=shared(renew_before),
            renew_before_percentage=percentage,
            usages=shared(usages or default_usages(private_key.algorithm, is_ca=is_ca)),
            is_ca=is_ca,
            private_key=shared(private_key),
            usages_defaulted=usages is None,
            secret_labels=_template_map(template.get("labels"), "spec.secretTemplate.labels"),
            secret_annotations=_template_map(template.get("annotations"), "spec.secretTemplate.annotations"),
            revision_history_limit=3 if history is None else history,
            secret_deletion_policy=deletion,
            additional_output_formats=_output_formats(spec.get("additionalOutputFormats")),
            name_constraints=name_constraints,
            keystores=Keystores.from_dict(spec.get("keystores")),
        )


def _name_constraints(value: Any, path: str = "spec.nameConstraints") -> NameConstraints | None:
    """cert-manager's nameConstraints: critical, permitted and excluded {dnsDomains, ipRanges, emailAddresses,
    uriDomains}; at least one name in one of them."""
    if value is None:
        return None
    d = _mapping(value, path)

    def side(key: str) -> NameSet:
        names = _mapping(d.get(key), f"{path}.{key}")
        where = f"{path}.{key}"
        ranges = _optional_strings(names, "ipRanges", where) or ()
        return NameSet(
            dns_domains=_optional_strings(names, "dnsDomains", where) or (),
            ip_ranges=tuple(_cidr(r, f"{where}.ipRanges[{i}]") for i, r in enumerate(ranges)),
            email_addresses=_optional_strings(names, "emailAddresses", where) or (),
            uri_domains=_optional_strings(names, "uriDomains", where) or (),
        )

    permitted, excluded = side("permitted"), side("excluded")
    if not permitted and not excluded:
        raise _fail(path, "names no permitted or excluded name; remove it, or list names")
    for label, names in (("permitted", permitted), ("excluded", excluded)):
        for name in (*names.dns_domains, *names.email_addresses, *names.uri_domains):
            if not name or any(c.isspace() for c in name):
                raise _fail(f"{path}.{label}", f"{_q(name)} is not a domain, address or host")
    return NameConstraints(permitted, excluded, critical=_boolean(d.get("critical"), f"{path}.critical"))


def _output_formats(value: Any, path: str = "spec.additionalOutputFormats") -> tuple[str, ...]:
    """The types of additionalOutputFormats ([{type: CombinedPEM}, {type: DER}]), each at most once."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _fail(path, "must be a list of {type: CombinedPEM | DER}")
    formats: list[str] = []
    for i, item in enumerate(value):
        kind = _required_string(_mapping(item, f"{path}[{i}]").get("type"), f"{path}[{i}].type")
        if kind not in OUTPUT_KEYS:
            raise _fail(f"{path}[{i}].type", f"{_q(kind)} is not one of {', '.join(OUTPUT_KEYS)}")
        if kind in formats:
            raise _fail(f"{path}[{i}].type", f"{_q(kind)} is listed twice")
        formats.append(kind)
    return tuple(formats)


#: Label and annotation keys under this DNS name (or a subdomain of it) belong to the operator.
RESERVED_KEY_DOMAIN: Final = "certmint.dev"


def _template_map(value: Any, path: str) -> Mapping[str, str]:
    """secretTemplate labels or annotations, none of them under the operator's reserved certmint.dev/ prefix.

    The operator's own keys mark a Secret as certmint's and name its Certificate; a template that could set
    them (even if overridden later) would let a spec imitate that marker, so it is refused, as the CRD does.
    """
    items = _string_map(value, path)
    reserved = [key for key in items if _is_reserved_key(key)]
    if reserved:
        raise _fail(
            path,
            f"must not set {', '.join(reserved)}: keys under {RESERVED_KEY_DOMAIN}/ and its subdomains "
            "are reserved for the operator",
        )
    return items


def _is_reserved_key(key: str) -> bool:
    # The CRD's rule, plus case-insensitivity: k.startsWith('certmint.dev/') || k.contains('.certmint.dev/')
    key = key.lower()
    return key.startswith(RESERVED_KEY_DOMAIN + "/") or f".{RESERVED_KEY_DOMAIN}/" in key


def _lifetime(spec: Mapping[str, Any]) -> tuple[timedelta, timedelta | None, int | None]:
    """duration, renewBefore, renewBeforePercentage, checked against each other."""
    duration = _lifetime_duration(spec.get("duration"), "spec.duration")
    renew_before = _optional_duration(spec.get("renewBefore"), "spec.renewBefore")
    percentage = _integer(spec.get("renewBeforePercentage"), "spec.renewBeforePercentage")
    if renew_before is not None and percentage is not None:
        raise _fail("spec", "set renewBefore or renewBeforePercentage, not both")
    if renew_before is not None and renew_before >= duration:
        raise _fail(
            "spec.renewBefore",
            f"{format_duration(renew_before)} must be shorter than spec.duration {format_duration(duration)}",
        )
    if percentage is not None and not 0 < percentage < 100:
        raise _fail("spec.renewBeforePercentage", f"{percentage} must be between 1 and 99")
    return duration, renew_before, percentage


# --- CertificateRequest -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CertificateRequestSpec:
    """A parsed ``CertificateRequest.spec``. The CSR itself is verified later by pki.csr.parse_csr."""

    request_pem: bytes
    issuer_ref: IssuerRef
    duration: timedelta = DEFAULT_DURATION
    #: () when not set (or the old CRD default): the signer picks the default for the CSR's key type
    #: (pki.usages.resolve_usages), which only the CSR tells.
    usages: tuple[str, ...] = ()
    is_ca: bool = False

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> CertificateRequestSpec:
        """Parse the spec; the CSR's signature and contents are checked later by pki.csr.parse_csr."""
        spec = _mapping(spec, "spec")
        is_ca = _boolean(spec.get("isCA"), "spec.isCA")
        return cls(
            request_pem=_request_pem(spec.get("request")),
            issuer_ref=IssuerRef.from_dict(spec.get("issuerRef")),
            duration=_lifetime_duration(spec.get("duration"), "spec.duration"),
            usages=_usages(spec.get("usages"), "spec.usages", key_algorithm=None, is_ca=is_ca) or (),
            is_ca=is_ca,
        )


#: base64 of the first 33 bytes of a CSR's PEM header: how every cert-manager spec.request (base64 of the PEM) starts.
_BASE64_CSR_PREFIX: Final = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0t"


def _request_pem(value: Any) -> bytes:
    """The CSR as PEM bytes: PEM text, or base64 of it as cert-manager's manifests carry it."""
    text = _required_string(value, "spec.request")
    if text.startswith(_BASE64_CSR_PREFIX):
        try:
            text = base64.b64decode("".join(text.split()), validate=True).decode("ascii")
        except (binascii.Error, UnicodeDecodeError):
            raise _fail("spec.request", "looks like base64 of a PEM CSR but does not decode as one") from None
    if "-----BEGIN CERTIFICATE REQUEST-----" not in text:
        raise _fail(
            "spec.request", "must be PEM text starting with -----BEGIN CERTIFICATE REQUEST----- (or base64 of it)"
        )
    return text.encode()


# --- Issuer policy ------------------------------------------------------------------------------


def _plural(attribute: SubjectAttribute, name: str) -> str:
    """allowedSubject holds a list of patterns for every kind, so the serial number's name takes an "s"."""
    return f"{name}s" if attribute.single else name


@dataclass(frozen=True, slots=True)
class SubjectPolicy:
    """``policy.allowedSubject``: patterns per subject attribute kind; a kind left out allows none of its kind.

    Matching is case-sensitive (an organisation is a group name to many
    consumers: "system:masters" is not "System:Masters"); ``*`` matches one
    or more characters; ``{namespace}`` stands for the requesting namespace.
    """

    countries: tuple[str, ...] = ()
    organizations: tuple[str, ...] = ()
    organizational_units: tuple[str, ...] = ()
    localities: tuple[str, ...] = ()
    provinces: tuple[str, ...] = ()
    street_addresses: tuple[str, ...] = ()
    postal_codes: tuple[str, ...] = ()
    serial_numbers: tuple[str, ...] = ()

    #: CRD field name -> attribute name, in the order messages list them (pki.names.SUBJECT_ATTRIBUTES).
    FIELDS: ClassVar[Mapping[str, str]] = MappingProxyType(
        {_plural(a, a.key): _plural(a, a.field) for a in SUBJECT_ATTRIBUTES}
    )

    @staticmethod
    def key(attribute: SubjectAttribute) -> str:
        """The ``allowedSubject`` field for a kind of subject attribute (``serialNumbers`` for the serial number)."""
        return _plural(attribute, attribute.key)

    def patterns(self, attribute: SubjectAttribute) -> tuple[str, ...]:
        """The patterns for a kind of subject attribute."""
        patterns: tuple[str, ...] = getattr(self, _plural(attribute, attribute.field))
        return patterns

    @classmethod
    def from_dict(cls, value: Any, path: str) -> SubjectPolicy:
        """Parse ``allowedSubject``; unknown keys are refused, so a typo cannot silently allow nothing."""
        d = _mapping(value, path)
        unknown = [key for key in d if key not in cls.FIELDS]
        if unknown:
            known = ", ".join(cls.FIELDS)
            raise _fail(path, f"unknown field {_q(unknown[0])} (known: {known})")
        return cls(**{attr: _strings(d.get(key), f"{path}.{key}") for key, attr in cls.FIELDS.items()})


#: spec.policy.approval: sign what the policy allows at once, or only once a person approved it.
AUTOMATIC: Final = "Automatic"
MANUAL: Final = "Manual"
APPROVALS: Final = (AUTOMATIC, MANUAL)


@dataclass(frozen=True, slots=True)
class Policy:
    """What an issuer is willing to sign. Checked by certmint.core.policy.check_policy.

    For every ``allowed_*`` list, None (the field is absent) means *no
    restriction* while an empty tuple means *nothing of this kind is allowed*,
    as the CRD documents. Patterns (see certmint.core.policy for the matcher):

    * ``allowedDNSNames``: case-insensitive; ``*`` matches one or more
      characters, dots included ("*.svc.cluster.local" matches
      "web.ns.svc.cluster.local").
    * The common name is always judged: an IP address by ``allowedIPRanges``;
      otherwise it must equal a requested SAN, or match
      ``allowedCommonNames`` when that is set (case-insensitive, ``*`` = one
      or more characters), or else match ``allowedDNSNames``. So a CN cannot
      smuggle in a name that TLS clients would accept as a host name.
    * ``allowedSubject`` (SubjectPolicy): absent = any subject attributes;
      present = each attribute value must match a pattern of its kind.
    * ``allowedURIs``: ``*`` matches one or more characters other than "/",
      i.e. exactly one path segment.
    * ``{namespace}`` in DNS and URI patterns stands for the requesting
      namespace, binding e.g. SPIFFE IDs to it:
      "spiffe://cluster.local/ns/{namespace}/sa/*".
    * ``allowedEmailAddresses``: case-insensitive; ``*`` matches one or more characters.
    * ``allowedIPRanges``: CIDRs (a host address with bits set is widened to its network).
    * ``allowedNamespaces`` (ClusterIssuer only): names or patterns, ``*`` = one or more characters.
    * ``allow_ca``: sign isCA requests; a selfSigned issuer always may.
    * ``approval``: ``Automatic`` signs what the policy allows at once; ``Manual`` signs a CertificateRequest the
      policy allows only once a person has set its Approved condition (``certmint approve``), and refuses
      Certificates (which renew on their own, with no one to approve each renewal).
    """

    allowed_dns_names: tuple[str, ...] | None = None
    allowed_uris: tuple[str, ...] | None = None
    allowed_ip_ranges: tuple[str, ...] | None = None
    allowed_email_addresses: tuple[str, ...] | None = None
    min_duration: timedelta | None = None
    max_duration: timedelta | None = None
    allowed_key_algorithms: tuple[str, ...] | None = None
    allowed_namespaces: tuple[str, ...] | None = None
    allow_ca: bool = False
    allowed_common_names: tuple[str, ...] | None = None
    allowed_subject: SubjectPolicy | None = None
    approval: str = AUTOMATIC

    @property
    def manual_approval(self) -> bool:
        return self.approval == MANUAL

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, path: str = "spec.policy") -> Policy:
        """Parse an issuer's ``policy``; None or {} is the unrestricted policy (isCA still refused)."""
        d = _mapping(d, path)
        ranges = _optional_strings(d, "allowedIPRanges", path)
        if ranges is not None:
            ranges = tuple(_cidr(cidr, f"{path}.allowedIPRanges[{i}]") for i, cidr in enumerate(ranges))
        algorithms = _optional_strings(d, "allowedKeyAlgorithms", path)
        for algorithm in algorithms or ():
            if algorithm not in KEY_SIZES:
                raise _fail(f"{path}.allowedKeyAlgorithms", f"{_q(algorithm)} is not ECDSA, RSA or Ed25519")
        min_duration = _optional_duration(d.get("minDuration"), f"{path}.minDuration", maximum=MAX_DURATION)
        max_duration = _optional_duration(d.get("maxDuration"), f"{path}.maxDuration", maximum=MAX_DURATION)
        if min_duration is not None and max_duration is not None and min_duration > max_duration:
            raise _fail(f"{path}.minDuration", "must not be longer than maxDuration")
        approval = _string(d.get("approval"), f"{path}.approval") or AUTOMATIC
        if approval not in APPROVALS:
            raise _fail(f"{path}.approval", f"{_q(approval)} is not one of {', '.join(APPROVALS)}")
        return cls(
            allowed_dns_names=_optional_strings(d, "allowedDNSNames", path),
            allowed_uris=_optional_strings(d, "allowedURIs", path),
            allowed_ip_ranges=ranges,
            allowed_email_addresses=_optional_strings(d, "allowedEmailAddresses", path),
            min_duration=min_duration,
            max_duration=max_duration,
            allowed_key_algorithms=algorithms,
            allowed_namespaces=_optional_strings(d, "allowedNamespaces", path),
            allow_ca=_boolean(d.get("allowCA"), f"{path}.allowCA"),
            allowed_common_names=_optional_strings(d, "allowedCommonNames", path),
            allowed_subject=(
                None
                if d.get("allowedSubject") is None
                else SubjectPolicy.from_dict(d["allowedSubject"], f"{path}.allowedSubject")
            ),
            approval=approval,
        )


def _optional_strings(d: Mapping[str, Any], key: str, path: str) -> tuple[str, ...] | None:
    """None when the key is absent (no restriction), else the list, possibly empty (nothing allowed)."""
    value = d.get(key)
    return None if value is None else _strings(value, f"{path}.{key}")


def _cidr(text: str, path: str) -> str:
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        raise _fail(path, f"{_q(text)} is not a CIDR like 10.0.0.0/8 or fd00::/8") from None


# --- Issuer / ClusterIssuer ---------------------------------------------------------------------


#: A pod-certificate signer's name is certmint's domain and the ClusterIssuer's name (the CRD checks it too).
SIGNER_DOMAIN: Final = "certmint.dev"
_TRUST_DOMAIN: Final = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?")


@dataclass(frozen=True, slots=True)
class PodCertificates:
    """spec.podCertificates of a ClusterIssuer: the signer name pods ask for, the SPIFFE trust domain, and the
    ServiceAccounts (namespace/name patterns) whose pods may get a certificate (None: every one); the kubelet is told
    to refresh when ``refresh_before_percentage`` percent of the lifetime is left (None: a third)."""

    signer_name: str
    trust_domain: str
    allowed_service_accounts: tuple[str, ...] | None = None
    refresh_before_percentage: int | None = None

    @classmethod
    def from_dict(cls, value: Any, path: str = "spec.podCertificates") -> PodCertificates:
        d = _mapping(value, path)
        signer = _required_string(d.get("signerName"), f"{path}.signerName")
        if not signer.startswith(f"{SIGNER_DOMAIN}/") or len(signer) == len(SIGNER_DOMAIN) + 1:
            raise _fail(f"{path}.signerName", f"{_q(signer)} must be {SIGNER_DOMAIN}/ followed by the issuer's name")
        domain = _required_string(d.get("trustDomain"), f"{path}.trustDomain")
        if len(domain) > 255 or not _TRUST_DOMAIN.fullmatch(domain):
            raise _fail(
                f"{path}.trustDomain",
                f"{_q(domain)} is not a SPIFFE trust domain (lower case letters, digits, dots and hyphens)",
            )
        accounts = _optional_strings(d, "allowedServiceAccounts", path)
        for i, pattern in enumerate(accounts or ()):
            if pattern.count("/") != 1 or pattern.startswith("/") or pattern.endswith("/"):
                raise _fail(f"{path}.allowedServiceAccounts[{i}]", f"{_q(pattern)} is not namespace/name")
        percentage = _integer(d.get("refreshBeforePercentage"), f"{path}.refreshBeforePercentage")
        if percentage is not None and not 1 <= percentage <= 99:
            raise _fail(f"{path}.refreshBeforePercentage", f"{percentage} must be between 1 and 99")
        return cls(
            signer_name=signer,
            trust_domain=domain,
            allowed_service_accounts=accounts,
            refresh_before_percentage=percentage,
        )


@dataclass(frozen=True, slots=True)
class IssuerSpec:
    """A parsed Issuer/ClusterIssuer spec. ``signer`` is the issuer kind the spec selects, "selfSigned" or "ca"
    (controller.signers.KINDS); not to be confused with the object's kind, Issuer or ClusterIssuer."""

    signer: str
    ca_secret_name: str | None = None
    policy: Policy = field(default_factory=Policy)
    pod_certificates: PodCertificates | None = None
    urls: IssuerURLs = field(default_factory=IssuerURLs)

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> IssuerSpec:
        """Exactly one of ``selfSigned: {}`` or ``ca: {secretName}`` must be set; ``podCertificates`` only with ca."""
        spec = _mapping(spec, "spec")
        kinds = [kind for kind in ("selfSigned", "ca") if spec.get(kind) is not None]
        if len(kinds) != 1:
            raise _fail("spec", "set exactly one of selfSigned or ca")
        policy = Policy.from_dict(spec.get("policy"))
        pods = spec.get("podCertificates")
        if policy.manual_approval and kinds[0] == "selfSigned":
            raise _fail(
                "spec.policy.approval",
                "Manual needs spec.ca: a selfSigned issuer signs only Certificates, which are not approved by hand",
            )
        if policy.manual_approval and pods is not None:
            raise _fail(
                "spec.policy.approval",
                "Manual cannot be used with spec.podCertificates: the kubelet refreshes pod certificates with no "
                "one to approve them",
            )
        if kinds[0] == "selfSigned":
            self_signed = _mapping(spec["selfSigned"], "spec.selfSigned")
            urls = IssuerURLs(crl_distribution_points=_urls(self_signed, "crlDistributionPoints", "spec.selfSigned"))
            if pods is not None:
                raise _fail(
                    "spec.podCertificates",
                    "needs spec.ca: a selfSigned issuer signs with the certificate's own key, which the kubelet "
                    "keeps on the node",
                )
            return cls(signer="selfSigned", policy=policy, urls=urls)
        ca = _mapping(spec["ca"], "spec.ca")
        secret_name = _required_string(ca.get("secretName"), "spec.ca.secretName")
        urls = IssuerURLs(
            crl_distribution_points=_urls(ca, "crlDistributionPoints", "spec.ca"),
            ocsp_servers=_urls(ca, "ocspServers", "spec.ca"),
            issuing_certificate_urls=_urls(ca, "issuingCertificateURLs", "spec.ca"),
        )
        return cls(
            signer="ca",
            ca_secret_name=secret_name,
            policy=policy,
            pod_certificates=PodCertificates.from_dict(pods) if pods is not None else None,
            urls=urls,
        )


#: An absolute URL: a scheme, "://", then no white space (the CRD's pattern too).
_URL: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[!-~]+")
MAX_URLS: Final = 8
MAX_URL_LENGTH: Final = 2048


def _urls(d: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
    """A list of absolute URLs (CRL, OCSP, CA certificate locations) for the issuer's certificates; empty if absent."""
    urls = _optional_strings(d, key, path) or ()
    if len(urls) > MAX_URLS:
        raise _fail(f"{path}.{key}", f"at most {MAX_URLS} URLs, got {len(urls)}")
    for i, url in enumerate(urls):
        if len(url) > MAX_URL_LENGTH or not _URL.fullmatch(url):
            raise _fail(
                f"{path}.{key}[{i}]",
                f"{_q(url[:100])} is not an absolute URL (scheme://..., printable ASCII, at most "
                f"{MAX_URL_LENGTH} characters)",
            )
    return urls
