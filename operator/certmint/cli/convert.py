"""cert-manager manifests to certmint manifests: the conversion behind ``certmint convert``, without any I/O.

Plain dicts in (each input document with a label saying where it came from), plain dicts and findings out; reading
files, the cluster and printing are :mod:`certmint.cli.main`'s. Choices, all deliberate:

- Every field of cert-manager's ``cert-manager.io/v1`` Certificate, Issuer and ClusterIssuer (``selfSigned``,
  ``ca``) and CertificateRequest is either carried over (certmint uses cert-manager's names, so it keeps its path)
  or named by a :class:`Finding` on its path. Nothing is dropped silently; tests/cli/test_convert.py walks
  cert-manager's field list to hold us to it.
- A finding is an ``error`` when the certmint object would not ask for what the cert-manager one asked for (a field
  certmint refuses, an issuer type it does not have, an issuerRef to another group), and a ``note`` when the
  object converts faithfully but certmint behaves differently or something outside the manifest needs doing.
- An object with an error is **not written**: the output holds only objects that ask certmint for what
  cert-manager was asked for, so applying it never yields a weaker certificate. Fix the source and convert again.
- cert-manager defaults that differ from certmint's are written out, so that the certificate is the one
  cert-manager issued: ``privateKey.algorithm: RSA`` when unset, and cert-manager's default ``usages`` (minus what
  the key cannot do, which certmint refuses as the RFCs do).
- A converted spec is parsed by the operator's own parser (:mod:`certmint.core.spec`), so a value certmint would
  refuse is reported here, not at ``kubectl apply``.
- Documents that are not cert-manager resources (Secrets, Deployments, certmint objects...) are left out with a
  note; a ``List`` is read item by item. Server-populated metadata (status, uid, resourceVersion, managedFields,
  creationTimestamp, the kubectl last-applied annotation...) is never carried over.
- Nothing of a Secret is ever read or written: a literal keystore ``password`` is refused, never copied, and no
  finding repeats its value.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from certmint.core.spec import CertificateRequestSpec, CertificateSpec, IssuerSpec, SpecError
from certmint.pki.csr import parse_csr
from certmint.pki.keys import ECDSA, ED25519, RSA, PKIError
from certmint.pki.usages import ALL_USAGES, canonical_usages, usage_problems

JSON = dict[str, Any]

CERT_MANAGER_GROUP: Final = "cert-manager.io"
CERT_MANAGER_API_VERSION: Final = "cert-manager.io/v1"
CERTMINT_GROUP: Final = "certmint.dev"
API_VERSION: Final = "certmint.dev/v1alpha1"
KINDS: Final = ("Certificate", "Issuer", "ClusterIssuer", "CertificateRequest")
ISSUER_KINDS: Final = ("Issuer", "ClusterIssuer")

#: Metadata the API server (or kubectl) fills in: never part of what a user asked for.
SERVER_METADATA: Final = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
)
LAST_APPLIED: Final = "kubectl.kubernetes.io/last-applied-configuration"
#: The metadata a converted object keeps as it is.
KEPT_METADATA: Final = ("name", "generateName", "namespace", "labels", "annotations")

#: cert-manager's default usages (its API reference: "defaults to digital signature and key encipherment").
CERT_MANAGER_DEFAULT_USAGES: Final = ("digital signature", "key encipherment")
#: The usages certmint adds to every CA certificate (pki.usages.effective_usages).
CA_USAGES: Final = ("cert sign", "crl sign")
#: The signature algorithm a selfSigned issuer uses with each key (pki.keys.signature_hash), cert-manager's names.
SELF_SIGNED_ALGORITHM: Final = {
    (RSA, 2048): "SHA256WithRSA",
    (RSA, 3072): "SHA256WithRSA",
    (RSA, 4096): "SHA256WithRSA",
    (ECDSA, 256): "ECDSAWithSHA256",
    (ECDSA, 384): "ECDSAWithSHA384",
    (ECDSA, 521): "ECDSAWithSHA512",
    (ED25519, 0): "PureEd25519",
}
DEFAULT_SIZES: Final = {RSA: 2048, ECDSA: 256, ED25519: 0}

# The shapes of the sub-objects carried over as they are: their keys (a nested shape, or None for a value). A key
# outside the shape is an error, never copied into an object certmint's strict field validation would refuse.
_NAMES: Final = {"dnsDomains": None, "ipRanges": None, "emailAddresses": None, "uriDomains": None}
_SUBJECT: Final = dict.fromkeys(
    (
        "organizations",
        "organizationalUnits",
        "countries",
        "localities",
        "provinces",
        "streetAddresses",
        "postalCodes",
        "serialNumber",
    )
)
CARRIED_CERTIFICATE_FIELDS: Final[Mapping[str, Mapping[str, Any] | None]] = {
    "secretName": None,
    "commonName": None,
    "dnsNames": None,
    "ipAddresses": None,
    "uris": None,
    "emailAddresses": None,
    "subject": _SUBJECT,
    "duration": None,
    "renewBefore": None,
    "renewBeforePercentage": None,
    "isCA": None,
    "encodeUsagesInRequest": None,
    "revisionHistoryLimit": None,
    "secretTemplate": {"labels": None, "annotations": None},
    "additionalOutputFormats": {"type": None},
    "nameConstraints": {"critical": None, "permitted": _NAMES, "excluded": _NAMES},
}
#: The Certificate fields certmint refuses, and why (the words of its CRD's refusals).
REFUSED_CERTIFICATE_FIELDS: Final = {
    "literalSubject": "certmint builds the subject from commonName and subject, in its own order: write the "
    "literal subject's attributes there (its order is not kept)",
    "otherNames": "an issuer's policy cannot judge otherName SANs, so certmint does not sign them",
}
OTHER_ISSUER_TYPES: Final = {
    "acme": "ACME",
    "vault": "Vault",
    "venafi": "Venafi",
}
#: Set on a CertificateRequest by cert-manager's webhook from the requesting user.
REQUESTER_FIELDS: Final = ("username", "uid", "groups", "extra")


class Severity(StrEnum):
    ERROR = "error"  # not converted faithfully: the object is not written, the command exits 1
    NOTE = "note"  # converted faithfully; certmint differs here, or something outside the manifest needs doing


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    #: The field of the cert-manager object (``spec.keystores.pkcs12.password``), "" for the object as a whole.
    path: str
    message: str


@dataclass(slots=True)
class Document:
    """One input document and what became of it."""

    source: str
    original: Any
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None
    #: The certmint object; None when there is none (not a cert-manager resource, an issuer type certmint lacks).
    result: JSON | None = None
    findings: list[Finding] = field(default_factory=list)
    #: True for cert-manager resources (converted or not); False for documents left out as foreign.
    cert_manager: bool = False
    #: True for the cert-manager.io/v1 kinds this module converts.
    convertible: bool = False

    def error(self, path: str, message: str) -> None:
        self.findings.append(Finding(Severity.ERROR, path, message))

    def note(self, path: str, message: str) -> None:
        self.findings.append(Finding(Severity.NOTE, path, message))

    @property
    def faithful(self) -> bool:
        return not any(f.severity is Severity.ERROR for f in self.findings)

    @property
    def written(self) -> bool:
        return self.result is not None and self.faithful

    @property
    def label(self) -> str:
        """``Certificate default/web``, ``ClusterIssuer ca``, or the source for a document without a kind/name."""
        if not self.kind or not self.name:
            return self.source
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


@dataclass(frozen=True, slots=True)
class Conversion:
    documents: tuple[Document, ...]

    @property
    def objects(self) -> list[JSON]:
        """The certmint objects to write, in input order."""
        return [d.result for d in self.documents if d.written and d.result is not None]

    @property
    def faithful(self) -> bool:
        return all(d.faithful for d in self.documents)


# -- entry point ---------------------------------------------------------------------------------------------------


def convert(inputs: Iterable[tuple[str, Any]]) -> Conversion:
    """Convert documents (``(source, parsed YAML/JSON)`` pairs; a ``List`` is expanded) as a whole: a Certificate is
    judged with its issuer when the input has it (a CA issuer asked to sign a CA, a selfSigned issuer's signature
    algorithm)."""
    documents = [doc for source, obj in inputs for doc in _expand(source, obj)]
    issuers = {
        _issuer_key(d.kind, d.namespace, d.name): d
        for d in documents
        if d.cert_manager and d.kind in ISSUER_KINDS and d.name
    }
    for doc in documents:
        if doc.convertible and doc.kind in ISSUER_KINDS:
            _convert_issuer(doc)
    for doc in documents:
        if doc.convertible and doc.kind == "Certificate":
            _convert_certificate(doc, issuers)
        elif doc.convertible and doc.kind == "CertificateRequest":
            _convert_request(doc, issuers)
    for doc in documents:
        if doc.convertible and doc.kind in ("Certificate", "CertificateRequest"):
            _link_issuer(doc, issuers)
    return Conversion(tuple(documents))


def _issuer_key(kind: str | None, namespace: str | None, name: str | None) -> tuple[str, str | None, str]:
    return (kind or "Issuer", namespace if kind != "ClusterIssuer" else None, name or "")


def _expand(source: str, obj: Any) -> list[Document]:
    if obj is None:
        return []  # an empty document (a trailing ---)
    if not isinstance(obj, dict):
        doc = Document(source, obj)
        doc.note("", f"not a Kubernetes object ({type(obj).__name__}): left out")
        return [doc]
    kind = obj.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(obj.get("items"), list):
        return [d for i, item in enumerate(obj["items"]) for d in _expand(f"{source} items[{i}]", item)]
    raw_meta = obj.get("metadata")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    doc = Document(
        source,
        obj,
        kind=kind if isinstance(kind, str) else None,
        namespace=meta.get("namespace") if isinstance(meta.get("namespace"), str) else None,
        name=meta.get("name") if isinstance(meta.get("name"), str) else None,
    )
    raw_version = obj.get("apiVersion")
    api_version: str = raw_version if isinstance(raw_version, str) else ""
    group, _, version = api_version.rpartition("/")
    if group == CERT_MANAGER_GROUP and version != "v1":
        doc.cert_manager = True
        doc.error(
            "apiVersion",
            f"{api_version} is an old cert-manager API: convert the manifest to {CERT_MANAGER_API_VERSION} first "
            "(cert-manager's cmctl convert), then run this again",
        )
    elif api_version == CERT_MANAGER_API_VERSION and kind in KINDS:
        doc.cert_manager = doc.convertible = True
    elif api_version == CERT_MANAGER_API_VERSION:
        doc.cert_manager = True
        doc.error("kind", f"{kind!r} is not a cert-manager.io/v1 kind certmint knows ({', '.join(KINDS)})")
    elif group.endswith("." + CERT_MANAGER_GROUP):
        doc.note("", f"{api_version} {kind} is cert-manager's own machinery (certmint has no equivalent): left out")
    elif group == CERTMINT_GROUP:
        doc.note("", "already a certmint object: left out")
    else:
        doc.note("", f"not a cert-manager resource ({api_version or 'no apiVersion'} {kind or 'no kind'}): left out")
    return [doc]


# -- shared parts --------------------------------------------------------------------------------------------------


def _metadata(doc: Document) -> JSON:
    """The object's own metadata, without what the server filled in; cert-manager's annotations reported."""
    meta = doc.original.get("metadata")
    if not isinstance(meta, dict):
        doc.error("metadata", "missing: every object needs metadata.name")
        return {}
    out: JSON = {}
    for key, value in meta.items():
        path = f"metadata.{key}"
        if key in KEPT_METADATA and key != "annotations":
            out[key] = value
        elif key == "annotations" and isinstance(value, dict):
            kept = {}
            for name, text in value.items():
                if name == LAST_APPLIED:
                    continue
                domain = name.partition("/")[0]
                if "/" in name and (domain == CERT_MANAGER_GROUP or domain.endswith("." + CERT_MANAGER_GROUP)):
                    doc.note(f"{path}[{name}]", "a cert-manager annotation; certmint gives it no meaning: left out")
                else:
                    kept[name] = text
            if kept:
                out["annotations"] = kept
        elif key in SERVER_METADATA:
            continue
        elif key == "ownerReferences":
            owners = ", ".join(f"{o.get('kind')} {o.get('name')}" for o in value if isinstance(o, dict))
            doc.note(
                path,
                f"owned by {owners}: left out (owner references name objects by uid); the converted object "
                "stands alone",
            )
        elif key == "finalizers":
            doc.note(path, "finalizers are left out: certmint adds none to its objects")
        else:
            doc.error(path, "not object metadata certmint knows")
    if "name" not in out and "generateName" not in out:
        doc.error("metadata.name", "missing")
    return out


def _spec(doc: Document) -> dict[str, Any]:
    spec = doc.original.get("spec")
    if not isinstance(spec, dict):
        doc.error("spec", "missing or not an object")
        return {}
    return spec


def _carry(doc: Document, value: Any, shape: Mapping[str, Any] | None, path: str) -> Any:
    """``value`` as it is, minus any key outside ``shape`` (each an error)."""
    if shape is None:
        return value
    if isinstance(value, list):
        return [_carry(doc, item, shape, f"{path}[{i}]") for i, item in enumerate(value)]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if key in shape:
            out[key] = _carry(doc, item, shape[key], f"{path}.{key}")
        else:
            doc.error(f"{path}.{key}", "not a field of cert-manager's API that certmint knows: not converted")
    return out


def _issuer_ref(doc: Document, ref: Any, out: JSON) -> None:
    """issuerRef: certmint's issuers only (group certmint.dev); another group's issuer has no certmint counterpart."""
    path = "spec.issuerRef"
    if not isinstance(ref, dict) or not isinstance(ref.get("name"), str):
        doc.error(f"{path}.name", "missing: the issuer's name is required")
        return
    group = ref.get("group") or CERT_MANAGER_GROUP
    kind = ref.get("kind") or "Issuer"
    converted: JSON = {"name": ref["name"], "kind": kind, "group": CERTMINT_GROUP}
    if group != CERT_MANAGER_GROUP:
        doc.error(
            f"{path}.group",
            f"{group!r} is an external issuer ({kind} {ref['name']}), which certmint cannot use: certmint signs "
            "with its own Issuers and ClusterIssuers (selfSigned, ca) only",
        )
    elif kind not in ISSUER_KINDS:
        doc.error(f"{path}.kind", f"{kind!r} is not one of Issuer, ClusterIssuer")
    for key in ref:
        if key not in ("name", "kind", "group"):
            doc.error(f"{path}.{key}", "not a field of cert-manager's issuerRef: not converted")
    out["issuerRef"] = converted


def _parse_check(doc: Document, parse: Any, spec: JSON) -> None:
    """Run the operator's own parser over the converted spec: what certmint would refuse is an error here (once the
    conversion itself found none: the parser stops at the first problem, which would repeat one reported)."""
    if not doc.faithful:
        return
    try:
        parse(spec)
    except SpecError as e:
        doc.error(e.field or "spec", f"certmint would refuse it: {e}")


# -- issuers -------------------------------------------------------------------------------------------------------


def _convert_issuer(doc: Document) -> None:
    metadata = _metadata(doc)
    spec = _spec(doc)
    out: JSON = {}
    for key, value in spec.items():
        path = f"spec.{key}"
        if key == "selfSigned":
            out[key] = _carry(doc, value or {}, {"crlDistributionPoints": None}, path)
        elif key == "ca":
            out[key] = _carry(
                doc,
                value,
                {
                    "secretName": None,
                    "crlDistributionPoints": None,
                    "ocspServers": None,
                    "issuingCertificateURLs": None,
                },
                path,
            )
            if doc.kind == "ClusterIssuer":
                doc.note(
                    f"{path}.secretName",
                    "a certmint ClusterIssuer reads its CA Secret from the operator's namespace (certmint by "
                    "default), cert-manager from its cluster resource namespace (cert-manager by default): copy "
                    "the Secret there",
                )
        elif key in OTHER_ISSUER_TYPES:
            doc.error(
                path,
                f"{OTHER_ISSUER_TYPES[key]} issuers are not supported: certmint runs private CAs (selfSigned, ca); "
                "keep this issuer and its Certificates on cert-manager",
            )
            return  # no certmint object at all
        else:
            doc.error(path, "not a cert-manager issuer type certmint knows: not converted")
    if not any(k in out for k in ("selfSigned", "ca")):
        doc.error("spec", "no issuer type: cert-manager's selfSigned or ca is needed")
    _parse_check(doc, IssuerSpec.from_dict, out)
    doc.result = {"apiVersion": API_VERSION, "kind": doc.kind, "metadata": metadata, "spec": out}


# -- certificates --------------------------------------------------------------------------------------------------


def _private_key(doc: Document, value: Any) -> tuple[JSON, str, int]:
    """privateKey with cert-manager's default written out (RSA); returns it, the algorithm and the size."""
    path = "spec.privateKey"
    key: JSON = dict(value) if isinstance(value, dict) else {}
    for name in list(key):
        if name not in ("algorithm", "size", "encoding", "rotationPolicy"):
            doc.error(f"{path}.{name}", "not a field of cert-manager's privateKey: not converted")
            del key[name]
    if "algorithm" not in key:
        key["algorithm"] = RSA
        doc.note(
            f"{path}.algorithm",
            "not set: written as RSA, cert-manager's default (certmint's own default is ECDSA P-256; remove it to "
            "get that)",
        )
    algorithm = key["algorithm"]
    size = key.get("size") or DEFAULT_SIZES.get(algorithm, 0)
    if algorithm == ED25519 and "size" in key:
        del key["size"]
        doc.note(f"{path}.size", "left out: an Ed25519 key has one size (cert-manager ignores it too)")
        size = 0
    if algorithm == ED25519 and key.get("encoding") == "PKCS1":
        doc.error(f"{path}.encoding", "PKCS1 has no form for an Ed25519 key: use PKCS8 (or leave it unset)")
    if algorithm == RSA and size == 8192:
        doc.error(f"{path}.size", "RSA 8192 is not supported by certmint: use 2048, 3072 or 4096")
    return key, algorithm, size


def _usages(doc: Document, value: Any, *, algorithm: str | None, is_ca: bool, out: JSON) -> None:
    """usages: cert-manager's default written out when unset; what the key cannot do left out (certmint refuses it,
    as RFC 3279/5480/8813/8410 do), with a note; a CA gets cert sign and crl sign, as certmint adds them."""
    path = "spec.usages"
    if value is None or value == []:
        if is_ca:
            doc.note(
                path,
                "not set: a certmint CA gets digital signature, cert sign and crl sign; cert-manager's default is "
                "digital signature, key encipherment and cert sign (a CA key only signs)",
            )
            return
        if algorithm is None:
            return
        wanted = [u for u in CERT_MANAGER_DEFAULT_USAGES if not _forbidden(u, algorithm, is_ca)]
        out["usages"] = wanted
        dropped = (
            ""
            if len(wanted) == len(CERT_MANAGER_DEFAULT_USAGES)
            else (f" without key encipherment, which an {algorithm} key cannot do")
        )
        doc.note(
            path,
            f"not set: written as cert-manager's default, {' and '.join(wanted)}{dropped} (certmint's own default "
            "adds server auth and client auth; remove usages to get it)",
        )
        return
    if not isinstance(value, list) or not all(isinstance(u, str) for u in value):
        doc.error(path, "must be a list of usage names")
        return
    unknown = [u for u in value if u not in ALL_USAGES]
    if unknown:
        doc.error(path, f"{', '.join(map(repr, unknown))} not a usage certmint knows")
        return
    kept = [u for u in value if algorithm is None or not _forbidden(u, algorithm, is_ca)]
    removed = [u for u in value if u not in kept]
    if removed:
        doc.note(
            path,
            f"{', '.join(removed)} left out: "
            + "; ".join(usage_problems(removed, key_algorithm=algorithm, is_ca=is_ca) or ["not allowed"]),
        )
    if not kept:
        doc.error(path, "nothing is left that this key may be used for")
        return
    problems = usage_problems(kept, key_algorithm=algorithm, is_ca=is_ca)
    if problems:
        doc.error(path, "; ".join(problems))
    if is_ca and not set(CA_USAGES) <= canonical_usages(kept):
        doc.note(path, "certmint adds cert sign and crl sign to every CA certificate")
    out["usages"] = kept


def _forbidden(usage: str, algorithm: str, is_ca: bool) -> bool:
    """True when certmint refuses ``usage`` for this key (the RFCs' reasons); 'encipher only'/'decipher only' are
    judged with the key agreement they need."""
    probe = [usage, "key agreement"] if usage in ("encipher only", "decipher only") else [usage]
    if not is_ca and usage in CA_USAGES:
        return True
    return bool(usage_problems(probe, key_algorithm=algorithm, is_ca=is_ca))


def _keystores(doc: Document, value: Any, out: JSON) -> None:
    path = "spec.keystores"
    if not isinstance(value, dict):
        doc.error(path, "must be an object with pkcs12 and/or jks")
        return
    converted: JSON = {}
    for kind, store in value.items():
        where = f"{path}.{kind}"
        if kind not in ("pkcs12", "jks") or not isinstance(store, dict):
            doc.error(where, "not a keystore type certmint knows (pkcs12, jks): not converted")
            continue
        item: JSON = {}
        for key, setting in store.items():
            if key in ("create", "passwordSecretRef") or (key == "alias" and kind == "jks"):
                item[key] = _carry(
                    doc, setting, {"name": None, "key": None} if key == "passwordSecretRef" else None, f"{where}.{key}"
                )
            elif key == "password":
                doc.error(
                    f"{where}.password",
                    "a literal password is not supported: put it in a Secret in the Certificate's namespace and "
                    "name it with passwordSecretRef {name, key} (its value is not repeated here)",
                )
            elif key == "profile" and kind == "pkcs12":
                if setting == "Modern2023":
                    doc.note(
                        f"{where}.profile", "left out: certmint always writes this profile (PBES2/AES-256, SHA-256 MAC)"
                    )
                else:
                    doc.error(
                        f"{where}.profile",
                        f"{setting!r} is not supported: certmint writes only a modern PKCS#12 (PBES2/AES-256, "
                        "SHA-256 MAC; cert-manager's Modern2023), which OpenSSL 3 and Java 8u301+ read",
                    )
            else:
                doc.error(f"{where}.{key}", "not a keystore field certmint knows: not converted")
        if store.get("create") and kind == "pkcs12" and "profile" not in store:
            doc.note(
                f"{where}.profile",
                "not set: cert-manager writes LegacyRC2 then, certmint a modern PKCS#12 (PBES2/AES-256; OpenSSL 3 "
                "and Java 8u301+ read it)",
            )
        if store.get("create"):
            truststore = "truststore.p12" if kind == "pkcs12" else "truststore.jks"
            doc.note(
                f"{where}.create",
                f"certmint writes no {truststore}: the trust anchors stay in ca.crt (updated in place when the root "
                "rotates)",
            )
        converted[kind] = item
    out["keystores"] = converted


def _convert_certificate(doc: Document, issuers: Mapping[tuple[str, str | None, str], Document]) -> None:
    metadata = _metadata(doc)
    spec = _spec(doc)
    out: JSON = {}
    is_ca = bool(spec.get("isCA"))
    key, algorithm, size = _private_key(doc, spec.get("privateKey"))
    for name, value in spec.items():
        path = f"spec.{name}"
        if name in CARRIED_CERTIFICATE_FIELDS:
            out[name] = _carry(doc, value, CARRIED_CERTIFICATE_FIELDS[name], path)
        elif name == "issuerRef":
            _issuer_ref(doc, value, out)
        elif name in ("privateKey", "usages"):
            pass  # below, once the key is known
        elif name == "keystores":
            _keystores(doc, value, out)
        elif name in REFUSED_CERTIFICATE_FIELDS:
            doc.error(path, f"not supported: {REFUSED_CERTIFICATE_FIELDS[name]}")
        elif name == "signatureAlgorithm":
            _signature_algorithm(doc, value, spec, issuers, algorithm, size)
        else:
            doc.error(path, "not a field of cert-manager's Certificate that certmint knows: not converted")
    out["privateKey"] = key
    _usages(doc, spec.get("usages"), algorithm=algorithm, is_ca=is_ca, out=out)
    _parse_check(doc, CertificateSpec.from_dict, out)
    doc.result = {"apiVersion": API_VERSION, "kind": "Certificate", "metadata": metadata, "spec": _ordered(out, spec)}


def _signature_algorithm(
    doc: Document,
    value: Any,
    spec: Mapping[str, Any],
    issuers: Mapping[tuple[str, str | None, str], Document],
    algorithm: str,
    size: int,
) -> None:
    """certmint picks the signature algorithm from the signing key: fine when that is what was asked, which is
    known only for a selfSigned issuer of the input (it signs with the certificate's own key)."""
    path = "spec.signatureAlgorithm"
    issuer = _issuer_of(doc, spec, issuers)
    spec_of_issuer = issuer.original.get("spec") if issuer is not None else None
    self_signed = isinstance(spec_of_issuer, dict) and "selfSigned" in spec_of_issuer
    if self_signed and SELF_SIGNED_ALGORITHM.get((algorithm, size)) == value:
        doc.note(path, f"left out: certmint signs with {value} anyway (a selfSigned issuer with this key)")
        return
    doc.error(
        path,
        "not supported: certmint picks the signature algorithm from the issuer's key (SHA-256 for RSA and P-256, "
        "SHA-384 for P-384, SHA-512 for P-521, Ed25519); remove the field if that suits",
    )


def _ordered(out: JSON, original: Mapping[str, Any]) -> JSON:
    """The converted spec in the original's field order, fields written by the conversion last."""
    ordered = {k: out[k] for k in original if k in out}
    ordered.update((k, v) for k, v in out.items() if k not in ordered)
    return ordered


# -- certificate requests ------------------------------------------------------------------------------------------


def _csr_key(doc: Document, request: Any) -> str | None:
    """The CSR's key algorithm (what certmint's usage rules depend on), None when it cannot be read (an error)."""
    if not isinstance(request, str):
        doc.error("spec.request", "missing: the PEM CSR (or base64 of it) is required")
        return None
    text = request
    if "-----BEGIN" not in text:
        try:
            text = base64.b64decode("".join(text.split()), validate=True).decode("ascii")
        except (binascii.Error, UnicodeDecodeError):
            doc.error("spec.request", "neither a PEM CSR nor base64 of one")
            return None
    try:
        return parse_csr(text.encode()).key_algorithm
    except PKIError as e:
        doc.error("spec.request", f"certmint cannot sign it: {e}")
        return None


def _convert_request(doc: Document, issuers: Mapping[tuple[str, str | None, str], Document]) -> None:
    metadata = _metadata(doc)
    original_meta = doc.original.get("metadata") or {}
    owners = [
        o
        for o in original_meta.get("ownerReferences") or []
        if isinstance(o, dict)
        and o.get("kind") == "Certificate"
        and str(o.get("apiVersion", "")).startswith(CERT_MANAGER_GROUP + "/")
    ]
    if owners:
        doc.findings.clear()
        doc.note(
            "",
            f"made by cert-manager for Certificate {owners[0].get('name')}: left out (certmint makes its own "
            "requests for a converted Certificate)",
        )
        return
    spec = _spec(doc)
    out: JSON = {}
    is_ca = bool(spec.get("isCA"))
    algorithm = _csr_key(doc, spec.get("request"))
    for name, value in spec.items():
        path = f"spec.{name}"
        if name in ("request", "duration", "isCA"):
            out[name] = value
        elif name == "issuerRef":
            _issuer_ref(doc, value, out)
        elif name == "usages":
            pass
        elif name in REQUESTER_FIELDS:
            doc.note(path, "set by cert-manager's webhook from the requesting user; certmint keeps no such field")
        else:
            doc.error(path, "not a field of cert-manager's CertificateRequest that certmint knows: not converted")
    _usages(doc, spec.get("usages"), algorithm=algorithm, is_ca=is_ca, out=out)
    doc.note(
        "",
        "certmint signs this request anew: a new certificate, in the converted object's status.certificate (PEM text;"
        " cert-manager's is base64)",
    )
    _parse_check(doc, CertificateRequestSpec.from_dict, out)
    doc.result = {
        "apiVersion": API_VERSION,
        "kind": "CertificateRequest",
        "metadata": metadata,
        "spec": _ordered(out, spec),
    }


# -- across documents ----------------------------------------------------------------------------------------------


def _issuer_of(
    doc: Document, spec: Mapping[str, Any], issuers: Mapping[tuple[str, str | None, str], Document]
) -> Document | None:
    ref = spec.get("issuerRef")
    if not isinstance(ref, dict) or (ref.get("group") or CERT_MANAGER_GROUP) != CERT_MANAGER_GROUP:
        return None
    kind = ref.get("kind") or "Issuer"
    found = issuers.get(_issuer_key(kind, doc.namespace, ref.get("name")))
    # An Issuer written without a namespace (kustomize or `kubectl apply -n` sets it) serves the Certificates of
    # the namespace it is applied to.
    return found or issuers.get(_issuer_key(kind, None, ref.get("name")))


def _link_issuer(doc: Document, issuers: Mapping[tuple[str, str | None, str], Document]) -> None:
    """What a Certificate or request needs of its issuer: a certmint counterpart, and leave to sign it if a CA."""
    if doc.result is None:
        return
    spec = doc.original.get("spec") or {}
    issuer = _issuer_of(doc, spec, issuers)
    ref = spec.get("issuerRef") or {}
    if issuer is None:
        if spec.get("isCA") and (ref.get("group") or CERT_MANAGER_GROUP) == CERT_MANAGER_GROUP:
            doc.note(
                "spec.isCA",
                f"a CA: if its issuer {ref.get('kind') or 'Issuer'} {ref.get('name')} is a ca issuer, it must allow "
                "CA certificates in certmint (spec.policy.allowCA: true; cert-manager has no such policy)",
            )
        return
    if issuer.result is None:
        doc.error(
            "spec.issuerRef",
            f"its issuer {issuer.label} has no certmint equivalent: keep this {doc.kind} on cert-manager, or point it "
            "at a certmint issuer",
        )
        return
    if not issuer.written:
        doc.note("spec.issuerRef", f"its issuer {issuer.label} is not converted yet (see its errors)")
    issuer_spec = issuer.result["spec"]
    if doc.kind == "CertificateRequest" and "selfSigned" in issuer_spec:
        doc.error(
            "spec.issuerRef",
            f"its issuer {issuer.label} is selfSigned, which in certmint cannot sign a bare request (it needs the "
            "private key, which cert-manager reads from the Secret its cert-manager.io/private-key-secret-name "
            "annotation names): use a Certificate, or a ca issuer",
        )
    if (
        doc.kind == "Certificate"
        and "selfSigned" in issuer_spec
        and not spec.get("commonName")
        and not any((spec.get("subject") or {}).values())
    ):
        doc.error(
            "spec.subject",
            "neither commonName nor subject: a certificate from a certmint selfSigned issuer is its own issuer, and "
            "X.509 needs that name non-empty (cert-manager issues it with an empty subject); set commonName",
        )
    if spec.get("isCA") and "ca" in issuer_spec:
        policy = issuer_spec.setdefault("policy", {})
        if not policy.get("allowCA"):
            policy["allowCA"] = True
            issuer.note(
                "spec.policy.allowCA",
                f"set to true: it signs the CA {doc.label} (cert-manager's CA issuers sign CAs unasked; certmint's "
                "only when allowed)",
            )
