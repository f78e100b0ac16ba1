"""Does a Certificate need (re-)issuing? A chain of pure checks over gathered state, cert-manager style.

issuance_reason() walks the checks in order and returns the first reason to
issue, or None when the Secret's content is good. The same answer drives
"should we issue?" and "is it Ready?". Secret metadata (labels and
annotations) is not part of that answer: drift there is repaired in place by
the caller using desired_secret_metadata() and metadata_drift(), without a
new certificate.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from certmint.core.outputs import keystores_difference, outputs_difference
from certmint.core.policy import RequestedIdentity
from certmint.core.spec import CertificateSpec, format_duration
from certmint.pki.inspect import CertificateFacts, certificate_facts, load_pem_chain
from certmint.pki.keys import PKIError, load_private_key, public_key_matches
from certmint.pki.names import Identity, normalize_dns_name, normalize_ip_address, quote
from certmint.pki.signing import backdate_for
from certmint.pki.timestamps import rfc3339
from certmint.pki.usages import LEGACY_DEFAULT_USAGES, effective_usages

# Reason codes (CamelCase, for status conditions and events).
DOES_NOT_EXIST: Final = "DoesNotExist"
MISSING_DATA: Final = "MissingData"
INVALID_KEY_PAIR: Final = "InvalidKeyPair"
INVALID_CERTIFICATE: Final = "InvalidCertificate"
SPEC_CHANGED: Final = "SpecChanged"
INCORRECT_ISSUER: Final = "IncorrectIssuer"
EXPIRED: Final = "Expired"
RENEWING: Final = "Renewing"
MANUALLY_TRIGGERED: Final = "ManuallyTriggered"  # a person asked for it (RENEW_REQUEST on the Certificate)
#: A Certificate annotation: a new value asks for one re-issue now (the spec untouched); status.lastRenewRequest
#: records the value honoured. For a root CA Certificate this starts a rotation (controller.certificate_plan).
RENEW_REQUEST: Final = "certmint.dev/renew-request"

# Secret metadata keys owned by the operator.
CERTIFICATE_NAME: Final = "certmint.dev/certificate-name"
ISSUER_NAME: Final = "certmint.dev/issuer-name"
ISSUER_KIND: Final = "certmint.dev/issuer-kind"
SERIAL_NUMBER: Final = "certmint.dev/serial-number"
NOT_AFTER: Final = "certmint.dev/not-after"
COMMON_NAME: Final = "certmint.dev/common-name"
ALT_NAMES: Final = "certmint.dev/alt-names"
IP_SANS: Final = "certmint.dev/ip-sans"
URI_SANS: Final = "certmint.dev/uri-sans"
#: Set by certmint when it creates a Secret: the UID of the Certificate it was created for. Only a
#: principal that may write the Secret can set it, so a Certificate cannot make certmint claim a
#: Secret it did not create (see secret_ownership).
CERTIFICATE_UID: Final = "certmint.dev/certificate-uid"
#: The Certificate's status.revision of the certificate in the Secret: a crash between the Secret
#: write and the status write must not make the next issuance reuse that revision.
REVISION: Final = "certmint.dev/certificate-revision"
#: Set by a person on an existing Secret to hand it over to the Certificate it names.
HANDOVER_TO: Final = "certmint.dev/handover-to"
#: A root CA Certificate's Secret during a rotation (controller.certificate_plan): when the staged next root
#: becomes the key pair, and when the previous root leaves ca.crt (RFC 3339).
ROOT_SWITCH_AT: Final = "certmint.dev/root-switch-at"
ROOT_RETIRE_AT: Final = "certmint.dev/root-retire-at"
#: When the root switched (kept with ROOT_RETIRE_AT): certificates under the previous root are re-issued spread
#: from then, by whichever process runs the rotation.
ROOT_SWITCHED_AT: Final = "certmint.dev/root-switched-at"

#: Certificate times have one-second resolution; lifetimes compare within this.
_LIFETIME_TOLERANCE: Final = timedelta(seconds=2)
_MAX_LABEL_VALUE: Final = 63


@dataclass(frozen=True)
class Reason:
    """Why a certificate must be issued: a CamelCase code and a sentence a person can act on."""

    code: str
    message: str


@dataclass(frozen=True)
class SecretSnapshot:
    """What the Certificate's Secret holds right now (decoded data, not base64).

    ``namespace`` (optional) only makes messages read "Secret ns/name".
    """

    exists: bool
    certificate_pem: bytes | None
    key_pem: bytes | None
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    namespace: str = ""
    #: The additional output keys it holds (core.outputs.OUTPUT_KEYS); None: not judged (a staged next root).
    outputs: Mapping[str, bytes] | None = None


@dataclass(frozen=True)
class IssuerIdentity:
    """The issuer the Certificate points at now, as far as matching certificates is concerned.

    ``subject_key_id``: hex SubjectKeyIdentifier of the CA (unused for
    self-signed, where the certificate must be signed by its own key).
    ``subject_text`` (RFC 4514) is compared when a certificate carries no
    AuthorityKeyIdentifier. ``not_after``, the CA's expiry, lets the duration
    check tell a truncated certificate from a spec change; without it a
    certificate shorter than the spec's duration is assumed truncated.
    """

    self_signed: bool
    subject_key_id: str | None
    subject_text: str | None = None
    not_after: datetime | None = None


def issuance_reason(
    spec: CertificateSpec,
    secret: SecretSnapshot,
    issuer: IssuerIdentity | None,
    *,
    now: datetime,
    renewal_time: datetime | None,
) -> Reason | None:
    """The first reason to issue, or None when the Secret's key pair is good for ``spec``.

    Order: Secret missing; tls.crt/tls.key missing; key or certificate
    unparseable; key not matching the certificate; certificate not matching
    the spec; additional outputs not as the spec asks; issued by another issuer (skipped when ``issuer`` is None, e.g.
    not ready); expired; ``renewal_time`` reached (skipped when it is None;
    see certmint.core.renewal for the vocabulary).
    """
    where = _secret_text(spec, secret)
    facts = _load(secret, where)
    if isinstance(facts, Reason):
        return facts
    differences = spec_differences(spec, facts, issuer)
    if differences:
        return Reason(
            SPEC_CHANGED, f"the certificate in Secret {where} does not match the spec: " + "; ".join(differences)
        )
    if secret.outputs is not None and secret.key_pem is not None and secret.certificate_pem is not None:
        outputs = outputs_difference(
            spec.additional_output_formats, secret.key_pem, secret.certificate_pem, secret.outputs
        )
        if outputs is None:
            keystores = spec.keystores
            outputs = keystores_difference(
                {"pkcs12": keystores.pkcs12 is not None, "jks": keystores.jks is not None}, secret.outputs
            )
        if outputs is not None:
            return Reason(SPEC_CHANGED, f"the Secret {where} does not match the spec: {outputs}")
    wrong_issuer = issuer_difference(spec, secret.annotations, facts, issuer)
    if wrong_issuer is not None:
        return Reason(INCORRECT_ISSUER, f"the certificate in Secret {where} {wrong_issuer}")
    if now >= facts.not_after:
        return Reason(EXPIRED, f"the certificate in Secret {where} expired at {rfc3339(facts.not_after)}")
    if renewal_time is not None and now >= renewal_time:
        return renewal_reason(renewal_time, facts.not_after)
    return None


def renewal_reason(renewal_time: datetime, not_after: datetime) -> Reason:
    """The Reason (RENEWING) to issue when a valid certificate's renewal time has come."""
    return Reason(
        RENEWING,
        f"renewal time {rfc3339(renewal_time)} reached; the current certificate expires at {rfc3339(not_after)}",
    )


def _secret_text(spec: CertificateSpec, secret: SecretSnapshot) -> str:
    return f"{secret.namespace}/{spec.secret_name}" if secret.namespace else spec.secret_name


def _load(secret: SecretSnapshot, where: str) -> CertificateFacts | Reason:
    """The certificate's facts, or why the Secret holds no usable, matching key pair."""
    if not secret.exists:
        return Reason(DOES_NOT_EXIST, f"Secret {where} does not exist")
    parts = (("tls.crt", secret.certificate_pem), ("tls.key", secret.key_pem))
    missing = [key for key, value in parts if not value]
    if missing or secret.certificate_pem is None or secret.key_pem is None:
        return Reason(MISSING_DATA, f"Secret {where} is missing {' and '.join(missing)}")
    try:
        key = load_private_key(secret.key_pem, check_rsa=False)  # only its public half is compared
    except PKIError as exc:
        return Reason(INVALID_KEY_PAIR, f"Secret {where} has an unusable tls.key: {exc}")
    try:
        cert = load_pem_chain(secret.certificate_pem)[0]
    except PKIError as exc:
        return Reason(INVALID_CERTIFICATE, f"Secret {where} has an unusable tls.crt: {exc}")
    if not public_key_matches(key, cert):
        message = f"Secret {where}: tls.key is not the private key of the certificate in tls.crt"
        return Reason(INVALID_KEY_PAIR, message)
    return certificate_facts(cert)


def spec_differences(spec: CertificateSpec, facts: CertificateFacts, issuer: IssuerIdentity | None = None) -> list[str]:
    """Every way the certificate differs from what the spec asks for, as short phrases.

    Names compare as sets (order and case of DNS names do not matter);
    usages compare after alias resolution and with what a CA always gets.
    """
    diffs: list[str] = []
    if (spec.common_name or None) != facts.common_name:
        diffs.append(f"commonName is {_show(facts.common_name)}, spec wants {_show(spec.common_name)}")
    wanted_sets = {
        "dnsNames": ({normalize_dns_name(n) for n in spec.dns_names}, set(facts.dns_names)),
        "ipAddresses": ({_ip(ip) for ip in spec.ip_addresses}, set(facts.ip_addresses)),
        "uris": (set(spec.uris), set(facts.uris)),
        "emailAddresses": (set(spec.email_addresses), set(facts.email_addresses)),
        "usages": (_wanted_usages(spec, facts), set(facts.usages)),
    }
    for label, (wanted, actual) in wanted_sets.items():
        if wanted != actual:
            diffs.append(f"{label} are [{_items(actual)}], spec wants [{_items(wanted)}]")
    if spec.is_ca != facts.is_ca:
        diffs.append(f"isCA is {str(facts.is_ca).lower()}, spec wants {str(spec.is_ca).lower()}")
    key_now = (facts.key_algorithm, facts.key_size)
    key_wanted = (spec.private_key.algorithm, spec.private_key.size)
    if key_now != key_wanted:
        diffs.append(f"private key is {_key_text(*key_now)}, spec wants {_key_text(*key_wanted)}")
    if spec.subject != facts.subject:
        diffs.append("subject attributes (organizations, countries, ...) differ from spec.subject")
    if spec.is_ca and spec.name_constraints != facts.name_constraints:
        now_text = facts.name_constraints.describe() if facts.name_constraints else "none"
        spec_text = spec.name_constraints.describe() if spec.name_constraints else "none"
        diffs.append(f"name constraints are {now_text}, spec wants {spec_text}")
    lifetime_diff = _lifetime_difference(spec.duration, facts, issuer)
    if lifetime_diff:
        diffs.append(lifetime_diff)
    return diffs


def _wanted_usages(spec: CertificateSpec, facts: CertificateFacts) -> set[str]:
    """The usages the certificate should carry.

    When the spec leaves usages to the default, a certificate issued with the default of earlier certmint
    versions (key encipherment and both EKUs, for every key type and for CAs) still matches: an upgrade must
    not re-issue every ECDSA leaf and every CA at once (a CA with rotationPolicy Always would get a new key).
    The key type's default applies from the next renewal on.
    """
    if spec.usages_defaulted:
        legacy = set(effective_usages(LEGACY_DEFAULT_USAGES, is_ca=spec.is_ca))
        if set(facts.usages) == legacy:
            return legacy
    return set(effective_usages(spec.usages, is_ca=spec.is_ca))


def _lifetime_difference(duration: timedelta, facts: CertificateFacts, issuer: IssuerIdentity | None) -> str | None:
    """Did spec.duration change since issuance?

    Signing makes a certificate valid from ``now - backdate_for(duration)``
    to ``now + duration``, so its lifetime lies between ``duration`` and
    ``duration + backdate`` (a young CA can cut the back-dating short).
    A shorter lifetime is also fine when the CA's expiry truncated it.
    """
    lifetime = facts.not_after - facts.not_before
    if duration - _LIFETIME_TOLERANCE <= lifetime <= duration + backdate_for(duration) + _LIFETIME_TOLERANCE:
        return None
    if lifetime < duration and _maybe_truncated(facts, issuer):
        return None
    return f"lifetime is {format_duration(lifetime)}, spec.duration is {format_duration(duration)}"


def _maybe_truncated(facts: CertificateFacts, issuer: IssuerIdentity | None) -> bool:
    """Could the CA's own expiry have shortened this certificate? Unknown counts as yes (no re-issue)."""
    if issuer is None:
        return True
    if issuer.self_signed:
        return False
    return issuer.not_after is None or facts.not_after >= issuer.not_after - _LIFETIME_TOLERANCE


def issuer_difference(
    spec: CertificateSpec,
    annotations: Mapping[str, str],
    facts: CertificateFacts,
    issuer: IssuerIdentity | None,
) -> str | None:
    """Why the certificate does not come from the issuer the spec names now, or None.

    The Secret's issuer annotations catch a changed issuerRef; the
    AuthorityKeyIdentifier catches a different CA key (or a self-signed
    certificate where a CA is wanted, and the reverse).
    """
    ref = spec.issuer_ref
    named = (annotations.get(ISSUER_KIND, ref.kind), annotations.get(ISSUER_NAME, ref.name))
    if named != (ref.kind, ref.name):
        return f"was issued by {named[0]} {quote(named[1])}, spec.issuerRef is {ref.kind} {quote(ref.name)}"
    if issuer is None:
        return None
    if issuer.self_signed:
        own_key = facts.issuer_key_id is None or facts.issuer_key_id == facts.subject_key_id
        if not (facts.self_issued and own_key):
            return f"is signed by {quote(facts.issuer_text)}, but the issuer is selfSigned"
        return None
    if facts.issuer_key_id is not None and issuer.subject_key_id is not None:
        if facts.issuer_key_id != issuer.subject_key_id:
            return (
                f"was signed by CA key {facts.issuer_key_id} ({quote(facts.issuer_text)}), "
                f"but the issuer's CA key is now {issuer.subject_key_id}"
            )
    elif issuer.subject_text is not None and facts.issuer_text != issuer.subject_text:
        return f"was signed by {quote(facts.issuer_text)}, the issuer's CA is {quote(issuer.subject_text)}"
    return None


# --- Secret metadata ------------------------------------------------------------------------------


def desired_secret_metadata(
    spec: CertificateSpec,
    *,
    certificate_name: str,
    certificate_uid: str,
    issuer_name: str,
    issuer_kind: str,
    facts: CertificateFacts | None,
    revision: int | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """(labels, annotations) the Secret must carry; the operator's keys win over secretTemplate.

    The ``certmint.dev/certificate-name`` label is what the operator's
    server-side label selector watches. A Certificate name longer than a label
    value may be (63) is shortened with a hash suffix; the annotation of the
    same name always holds the full name. SAN annotations are always present
    (empty when there are none) so that a stale value is overwritten.
    """
    labels = {**spec.secret_labels, CERTIFICATE_NAME: certificate_label_value(certificate_name)}
    annotations = {
        **spec.secret_annotations,
        CERTIFICATE_NAME: certificate_name,
        CERTIFICATE_UID: certificate_uid,
        ISSUER_NAME: issuer_name,
        ISSUER_KIND: issuer_kind,
    }
    if revision is not None:
        annotations[REVISION] = str(revision)
    if facts is not None:
        annotations |= {
            SERIAL_NUMBER: facts.serial_number,
            NOT_AFTER: rfc3339(facts.not_after),
            COMMON_NAME: facts.common_name or "",
            ALT_NAMES: ",".join(facts.dns_names),
            IP_SANS: ",".join(facts.ip_addresses),
            URI_SANS: ",".join(facts.uris),
        }
    return labels, annotations


def stored_revision(status_revision: object, annotations: Mapping[str, str]) -> int:
    """The revision of the certificate in the Secret: the status's, unless the Secret records a later one."""
    try:
        in_secret = int(annotations.get(REVISION) or 0)
    except ValueError:
        in_secret = 0
    try:
        in_status = int(str(status_revision or 0))
    except ValueError:
        in_status = 0
    return max(in_status, in_secret, 1)


def certificate_label_value(name: str) -> str:
    """A valid label value naming the Certificate: the name itself, or a prefix plus a hash when too long."""
    if len(name) <= _MAX_LABEL_VALUE:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    prefix = name[: _MAX_LABEL_VALUE - len(digest) - 1].rstrip("-.")
    return f"{prefix}-{digest}"


class Ownership(enum.Enum):
    """Whose Secret is it, as far as one Certificate is concerned (see secret_ownership)."""

    OURS = "Ours"  # certmint created it for this Certificate, or a person handed it over
    IN_USE = "SecretInUse"  # certmint's, for another Certificate of the namespace
    NOT_OWNED = "SecretNotOwned"  # not certmint's: never written, labelled or owner-referenced


@dataclass(frozen=True)
class SecretClaim:
    """Whether a Certificate may write into an existing Secret, and why."""

    ownership: Ownership
    #: the other Certificate's name, for IN_USE
    other: str | None = None
    #: how the claim was made when it is not (yet) marked with this Certificate's UID:
    #: "handover", "previous" (certmint's Secret of a deleted Certificate of the same name),
    #: "legacy" (written by a certmint without UID marks: its certificate is the one in our status)
    via: str | None = None


def secret_ownership(
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    *,
    certificate_name: str,
    certificate_uid: str,
    secret_serial: str | None,
    status_serial: str | None,
) -> SecretClaim:
    """May the Certificate ``certificate_name``/``certificate_uid`` write into this existing Secret?

    certmint writes only into a Secret it created — marked at creation with the Certificate's UID
    in ``certmint.dev/certificate-uid``, which only someone who may write the Secret can set — or
    one a person explicitly handed over with ``certmint.dev/handover-to: <certificate name>``.
    A Secret certmint created for a Certificate of the same name that was deleted since (the
    Certificate re-applied from Git) is still certmint's, as is one written by a certmint that did
    not mark UIDs yet when its certificate is the one this Certificate's status records. Anything
    else is not touched: a user's TLS Secret, a ServiceAccount token, a Secret labelled by hand.
    """
    uid = annotations.get(CERTIFICATE_UID)
    if uid == certificate_uid:
        return SecretClaim(Ownership.OURS)
    if annotations.get(HANDOVER_TO) == certificate_name:
        return SecretClaim(Ownership.OURS, via="handover")
    named = annotations.get(CERTIFICATE_NAME) or labels.get(CERTIFICATE_NAME)
    is_our_name = named is not None and named in (certificate_name, certificate_label_value(certificate_name))
    if uid:  # created by certmint
        if is_our_name:
            return SecretClaim(Ownership.OURS, via="previous")
        return SecretClaim(Ownership.IN_USE, other=named or "(unknown)")
    # Without the UID mark a label proves nothing (whoever may edit the Secret may set it), so a label
    # naming another Certificate makes it "not ours", not "another Certificate's".
    legacy = is_our_name and labels.get(CERTIFICATE_NAME) is not None
    if legacy and secret_serial is not None and secret_serial == status_serial:
        return SecretClaim(Ownership.OURS, via="legacy")
    return SecretClaim(Ownership.NOT_OWNED)


def metadata_drift(
    current_labels: Mapping[str, str],
    current_annotations: Mapping[str, str],
    desired_labels: Mapping[str, str],
    desired_annotations: Mapping[str, str],
) -> tuple[dict[str, str], dict[str, str]] | None:
    """The labels and annotations to set (missing or different), or None when nothing drifted.

    Keys that others added are left alone: the Secret is shared territory
    (reloaders, backup tools, GitOps annotations).
    """
    labels = {k: v for k, v in desired_labels.items() if current_labels.get(k) != v}
    annotations = {k: v for k, v in desired_annotations.items() if current_annotations.get(k) != v}
    if not labels and not annotations:
        return None
    return labels, annotations


# --- spec to request ------------------------------------------------------------------------------


def requested_identity(spec: CertificateSpec) -> RequestedIdentity:
    """What a Certificate asks its issuer to certify, for check_policy: the spec's identity, which its CSR carries."""
    return RequestedIdentity(spec, duration=spec.duration, key_algorithm=spec.private_key.algorithm, is_ca=spec.is_ca)


def certificate_template(spec: CertificateSpec) -> Identity:
    """The identity a Certificate's CSR asks for: the spec is one, so ``build_csr(key, spec)`` says the same.

    Kept for existing callers; it copies nothing.
    """
    return spec


# --- helpers --------------------------------------------------------------------------------------


def _ip(text: str) -> str:
    try:
        return normalize_ip_address(text)
    except ValueError:
        return text


def _show(value: str | None) -> str:
    return "unset" if value is None else quote(value)


def _items(values: set[str]) -> str:
    return ", ".join(sorted(values))


def _key_text(algorithm: str, size: int) -> str:
    return f"{algorithm} {size}" if size else algorithm
