"""Reports of the CLI, built from API objects without any I/O, and their text for people, JSON or YAML for scripts.

Each command builds one report (a JSON-able dict whose shape docs/cli.md documents) with a ``*_report`` function,
then prints it with :func:`dump`: the human text is made from the report, never from the objects, so that what a
person reads and what a script parses cannot disagree.

Certificates are read with :mod:`certmint.pki.inspect`, as the operator reads them, so a serial number or a SAN looks
the same here, in status and in the Secret's annotations. Private keys are loaded only to compare their public half
with the certificate: nothing of a key, and no Secret value other than certificates, ever reaches a report.

"Chain verifies" means what the operator itself checks (``pki.inspect.issued_by``): each certificate of ``tls.crt``
is signed by the next (its AKI matching the next one's SKI where both are present), the last is a certificate of
``ca.crt`` or signed by one, and every certificate is within its validity now. It is not a full RFC 5280 path
validation (name constraints, policies and extended key usages are not judged).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import yaml
from cryptography import x509

from certmint.cli.convert import Conversion, Document
from certmint.cli.errors import CliError
from certmint.core.decisions import (
    CERTIFICATE_NAME,
    CERTIFICATE_UID,
    ISSUER_KIND,
    ISSUER_NAME,
    RENEW_REQUEST,
    REVISION,
    SERIAL_NUMBER,
)
from certmint.core.spec import CertificateRequestSpec, SpecError, format_duration
from certmint.pki.csr import build_subject, parse_csr
from certmint.pki.inspect import certificate_facts, issued_by, load_pem_chain, self_signed
from certmint.pki.keys import PKIError, load_private_key, public_key_matches
from certmint.pki.signing import fingerprint_sha256
from certmint.pki.timestamps import parse_rfc3339, rfc3339

JSON = dict[str, Any]
OUTPUTS = ("text", "json", "yaml")
#: How many of a Certificate's CertificateRequests and Events ``status`` shows (newest first).
MAX_REQUESTS = 5
MAX_EVENTS = 10


# -- certificates ------------------------------------------------------------------------------------------------


def certificate_entry(cert: x509.Certificate, now: datetime) -> JSON:
    """One certificate as the reports show it (the ``chain[]`` and ``trustAnchors[]`` items of docs/cli.md)."""
    facts = certificate_facts(cert)
    if now < facts.not_before:
        validity = "NotYetValid"
    elif now >= facts.not_after:
        validity = "Expired"
    else:
        validity = "Valid"
    return {
        "subject": facts.subject_text,
        "issuer": facts.issuer_text,
        "serialNumber": facts.serial_number,
        "notBefore": rfc3339(facts.not_before),
        "notAfter": rfc3339(facts.not_after),
        "validity": validity,
        "fingerprintSHA256": fingerprint_sha256(cert),
        "isCA": facts.is_ca,
        "selfSigned": self_signed(cert),
        "keyAlgorithm": facts.key_algorithm,
        "keySize": facts.key_size,
        "dnsNames": list(facts.dns_names),
        "ipAddresses": list(facts.ip_addresses),
        "uris": list(facts.uris),
        "emailAddresses": list(facts.email_addresses),
        "usages": sorted(facts.usages),
    }


def chain_problem(chain: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate], now: datetime) -> str | None:
    """Why ``chain`` (tls.crt: the leaf first) does not verify to one of ``anchors`` (ca.crt), or None when it does."""
    for i, cert in enumerate(chain):
        if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
            state = "expired" if now >= cert.not_valid_after_utc else "not valid yet"
            return f"tls.crt[{i}] ({cert.subject.rfc4514_string()}) is {state}"
    for i, (below, above) in enumerate(itertools.pairwise(chain)):
        if not issued_by(below, above):
            return f"tls.crt[{i + 1}] ({above.subject.rfc4514_string()}) did not sign tls.crt[{i}]"
    top = chain[-1]
    if any(top == a for a in anchors):
        return None
    signers = [a for a in anchors if issued_by(top, a)]
    if not signers:
        return (
            f"no certificate of ca.crt signed tls.crt[{len(chain) - 1}] "
            f"(issuer {top.issuer.rfc4514_string() or '(empty)'})"
        )
    if not any(a.not_valid_before_utc <= now < a.not_valid_after_utc for a in signers):
        return f"the ca.crt certificate that signed tls.crt[{len(chain) - 1}] is not valid now"
    return None


def _secret_data(secret: JSON) -> dict[str, bytes]:
    meta = secret.get("metadata") or {}
    where = f"Secret {meta.get('namespace')}/{meta.get('name')}"
    try:
        return {k: base64.b64decode(v or "", validate=True) for k, v in (secret.get("data") or {}).items()}
    except (binascii.Error, ValueError):
        raise CliError(f"{where}: its data is not base64 (not read from the API server?)") from None


def secret_report(secret: JSON, now: datetime) -> JSON:
    """Decode a TLS Secret: its chain, its key against the leaf, the chain against ca.crt, and certmint's marks.

    CliError (exit 1) for a Secret without ``tls.crt`` or whose ``tls.crt`` holds no readable certificate.
    """
    meta = secret.get("metadata") or {}
    name, namespace, type_ = meta.get("name"), meta.get("namespace"), secret.get("type") or "Opaque"
    where = f"Secret {namespace}/{name}"
    data = _secret_data(secret)
    if "tls.crt" not in data:
        keys = ", ".join(sorted(data)) or "none"
        raise CliError(f"{where} is not a TLS Secret: type {type_}, no tls.crt (its keys: {keys})")
    try:
        chain = load_pem_chain(data["tls.crt"])
    except PKIError as e:
        raise CliError(f"{where}: tls.crt holds no readable certificate: {e}") from None
    problems: list[str] = []
    key_matches: bool | None = None
    if "tls.key" in data:
        try:
            key_matches = public_key_matches(load_private_key(data["tls.key"], check_rsa=False), chain[0])
        except PKIError:
            key_matches = False
            problems.append("tls.key is not an unencrypted PEM private key of a supported type")
        else:
            if not key_matches:
                problems.append("tls.key does not match the certificate in tls.crt")
    anchors: list[x509.Certificate] = []
    verified: bool | None = None
    if data.get("ca.crt", b"").strip():
        try:
            anchors = load_pem_chain(data["ca.crt"])
        except PKIError as e:
            problems.append(f"ca.crt holds no readable certificate: {e}")
            verified = False
        else:
            reason = chain_problem(chain, anchors, now)
            verified = reason is None
            if reason:
                problems.append(f"the chain does not verify to ca.crt: {reason}")
    leaf = chain[0]
    if now >= leaf.not_valid_after_utc:
        problems.append(f"the certificate expired at {rfc3339(leaf.not_valid_after_utc)}")
    elif now < leaf.not_valid_before_utc:
        problems.append(f"the certificate is not valid before {rfc3339(leaf.not_valid_before_utc)}")
    annotations: Mapping[str, str] = meta.get("annotations") or {}
    labels: Mapping[str, str] = meta.get("labels") or {}
    certmint = _certmint_marks(annotations, labels)
    if certmint and certmint.get("serialNumber") and certmint["serialNumber"] != certificate_facts(leaf).serial_number:
        problems.append(
            f"annotation {SERIAL_NUMBER} says {certmint['serialNumber']}, the certificate's serial is "
            f"{certificate_facts(leaf).serial_number}"
        )
    return {
        "secret": {"namespace": namespace, "name": name, "type": type_, "keys": sorted(data)},
        "certmint": certmint,
        "chain": [certificate_entry(c, now) for c in chain],
        "trustAnchors": [certificate_entry(c, now) for c in anchors],
        "keyMatchesCertificate": key_matches,
        "chainVerified": verified,
        "problems": problems,
    }


def _certmint_marks(annotations: Mapping[str, str], labels: Mapping[str, str]) -> JSON | None:
    """What certmint's own annotations and label say about a Secret it wrote (None for a Secret it never wrote)."""
    certificate = annotations.get(CERTIFICATE_NAME) or labels.get(CERTIFICATE_NAME)
    if not certificate and not annotations.get(ISSUER_NAME):
        return None
    issuer = annotations.get(ISSUER_NAME)
    revision = annotations.get(REVISION)
    return {
        "certificate": certificate,
        "issuer": {"name": issuer, "kind": annotations.get(ISSUER_KIND) or "Issuer"} if issuer else None,
        "revision": int(revision) if revision and revision.isdigit() else None,
        "serialNumber": annotations.get(SERIAL_NUMBER),
        "createdByCertmint": bool(annotations.get(CERTIFICATE_UID)),
    }


# -- Certificates ------------------------------------------------------------------------------------------------


def _conditions(obj: JSON) -> list[JSON]:
    return [
        {k: c.get(k) for k in ("type", "status", "reason", "message", "lastTransitionTime")}
        for c in (obj.get("status") or {}).get("conditions") or []
    ]


def _created(obj: JSON) -> str:
    return str((obj.get("metadata") or {}).get("creationTimestamp") or "")


def _event_time(event: JSON) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


_SPEC_FIELDS = (
    "secretName",
    "issuerRef",
    "commonName",
    "dnsNames",
    "ipAddresses",
    "uris",
    "emailAddresses",
    "duration",
    "renewBefore",
    "renewBeforePercentage",
    "isCA",
    "usages",
    "privateKey",
)
_STATUS_FIELDS = (
    "notBefore",
    "notAfter",
    "renewalTime",
    "revision",
    "serialNumber",
    "failedIssuanceAttempts",
    "lastFailureTime",
    "nextPrivateKeySecretName",
    "lastRenewRequest",
)


def certificate_report(
    certificate: JSON,
    *,
    secret: JSON | None,
    requests: Iterable[JSON],
    events: Iterable[JSON],
    issuer: JSON | None,
    now: datetime,
    read_errors: Sequence[str] = (),
    secret_error: str | None = None,
    issuer_readable: bool = True,
) -> JSON:
    """``status certificate``: the Certificate's conditions and status, its Secret decoded, its last requests and
    Events, and whether its issuer is Ready."""
    meta = certificate.get("metadata") or {}
    spec = certificate.get("spec") or {}
    status = certificate.get("status") or {}
    uid = meta.get("uid")
    ref = spec.get("issuerRef") or {}
    issuer_kind = ref.get("kind") or "Issuer"
    renew_value = (meta.get("annotations") or {}).get(RENEW_REQUEST)
    secret_part: JSON | None = None
    secret_problem: str | None = None
    if secret_error is not None:
        secret_problem = secret_error
    elif secret is None:
        secret_problem = f"Secret {meta.get('namespace')}/{spec.get('secretName')} does not exist"
    else:
        try:
            secret_part = secret_report(secret, now)
        except CliError as e:
            secret_problem = e.message
    owned = [r for r in requests if not uid or uid in _owner_uids(r)]
    owned.sort(key=lambda r: (_created(r), r["metadata"]["name"]), reverse=True)
    ordered_events = sorted(events, key=_event_time, reverse=True)
    issuer_ready = next((c for c in _conditions(issuer or {}) if c["type"] == "Ready"), None)
    return {
        "certificate": {"namespace": meta.get("namespace"), "name": meta.get("name"), "uid": uid},
        "spec": {k: spec[k] for k in _SPEC_FIELDS if k in spec},
        "conditions": _conditions(certificate),
        "status": {k: status[k] for k in _STATUS_FIELDS if k in status},
        "renewRequest": (
            {"value": renew_value, "honoured": renew_value == status.get("lastRenewRequest")} if renew_value else None
        ),
        "issuer": {
            "kind": issuer_kind,
            "name": ref.get("name"),
            "found": (issuer is not None) if issuer_readable else None,
            "ready": issuer_ready,
        },
        "secret": secret_part,
        "secretProblem": secret_problem,
        "requests": [
            {
                "name": r["metadata"]["name"],
                "created": _created(r),
                "revision": _int((r["metadata"].get("annotations") or {}).get(REVISION)),
                "conditions": _conditions(r),
            }
            for r in owned[:MAX_REQUESTS]
        ],
        "events": [
            {
                "type": e.get("type"),
                "reason": e.get("reason"),
                "message": e.get("message"),
                "count": e.get("count") or 1,
                "lastSeen": _event_time(e),
            }
            for e in ordered_events[:MAX_EVENTS]
        ],
        "readErrors": list(read_errors),
    }


def _owner_uids(obj: JSON) -> set[str]:
    return {o.get("uid") for o in (obj.get("metadata") or {}).get("ownerReferences") or []}


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


# -- check -------------------------------------------------------------------------------------------------------

#: The resources of certmint.dev the operator serves (crds/), by the version the CLI speaks.
EXPECTED_VERSION = "v1alpha1"
EXPECTED_RESOURCES = ("bundles", "certificaterequests", "certificates", "clusterissuers", "issuers")


def _deployment_entry(deployment: JSON) -> JSON:
    meta = deployment.get("metadata") or {}
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    container = next((c for c in containers if c.get("name") == "operator"), containers[0] if containers else {})
    image = str(container.get("image") or "")
    tag = image.rsplit("@", 1)[0].rsplit("/", 1)[-1].partition(":")[2] or None
    available: JSON = next((c for c in status.get("conditions") or [] if c.get("type") == "Available"), {})
    return {
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "version": (meta.get("labels") or {}).get("app.kubernetes.io/version") or tag,
        "image": image or None,
        "replicas": spec.get("replicas", 1),
        "readyReplicas": status.get("readyReplicas") or 0,
        "available": available.get("status") == "True",
    }


def _lease_entry(lease: JSON | None, namespace: str, now: datetime) -> JSON | None:
    """The leader Lease: who holds it, and whether it was renewed within its duration (the holder is alive)."""
    if lease is None:
        return None
    spec = lease.get("spec") or {}
    renewed = spec.get("renewTime")
    duration = spec.get("leaseDurationSeconds")
    age: float | None = None
    if renewed:
        try:
            age = (now - parse_rfc3339(renewed)).total_seconds()
        except ValueError:
            age = None
    held = bool(spec.get("holderIdentity")) and age is not None and duration is not None and age <= float(duration)
    return {
        "namespace": namespace,
        "holder": spec.get("holderIdentity"),
        "renewTime": renewed,
        "held": held,
    }


def check_report(
    *,
    served: Mapping[str, Sequence[str]],
    deployments: Sequence[JSON],
    lease: JSON | None,
    lease_namespace: str,
    cli_version: str,
    now: datetime,
    read_errors: Sequence[str] = (),
) -> JSON:
    """``check``: is certmint's API served, is its operator installed and running, which version; ``problems`` lists
    what is wrong (the command exits 1 when it is not empty)."""
    problems: list[str] = []
    resources = set(served.get(EXPECTED_VERSION) or ())
    missing = [r for r in EXPECTED_RESOURCES if r not in resources]
    if not served:
        problems.append("the API group certmint.dev is not served: the CRDs are not installed (crds/ or the chart)")
    elif missing:
        problems.append(f"certmint.dev/{EXPECTED_VERSION} does not serve {', '.join(missing)}: apply crds/ again")
    entries = [_deployment_entry(d) for d in deployments]
    lease_entry = _lease_entry(lease, lease_namespace, now)
    if not entries:
        if lease_entry and lease_entry["held"]:
            pass  # an operator runs (it renews its Lease) outside a Deployment of the chart, e.g. `make run`
        else:
            problems.append(
                "no operator Deployment found (labels app.kubernetes.io/part-of=certmint,"
                "app.kubernetes.io/component=operator) and no operator holds the Lease "
                f"{lease_namespace}/certmint-operator"
            )
    for d in entries:
        if d["readyReplicas"] < 1:
            problems.append(f"Deployment {d['namespace']}/{d['name']} has no ready replica (0/{d['replicas']})")
    if len(entries) > 1:
        problems.append(f"{len(entries)} operator Deployments found: run one certmint per cluster")
    return {
        "cliVersion": cli_version,
        "api": {
            "group": "certmint.dev",
            "versions": {v: list(r) for v, r in sorted(served.items())},
            "missing": missing if served else list(EXPECTED_RESOURCES),
        },
        "operator": {"deployments": entries, "lease": lease_entry},
        "problems": problems,
        "readErrors": list(read_errors),
    }


# -- text --------------------------------------------------------------------------------------------------------


def relative(moment: str | None, now: datetime) -> str:
    """``in 39m`` / ``3h ago`` for an RFC 3339 time, kubectl's short units; "" for none."""
    if not moment:
        return ""
    try:
        delta = round((parse_rfc3339(moment) - now).total_seconds())
    except ValueError:
        return ""
    text = short_duration(abs(delta))
    return f"in {text}" if delta > 0 else f"{text} ago"


def short_duration(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 2 * 3600:
        return f"{s // 60}m"
    if s < 2 * 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def _table(rows: Sequence[tuple[str, ...]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _names(entry: JSON) -> list[tuple[str, str]]:
    pairs = [("DNS names", "dnsNames"), ("IP addresses", "ipAddresses"), ("URIs", "uris"), ("Emails", "emailAddresses")]
    return [(label, ", ".join(entry[key])) for label, key in pairs if entry.get(key)]


def _yes_no(value: bool | None, none: str) -> str:
    return none if value is None else ("yes" if value else "NO")


def _certificate_lines(entry: JSON, now: datetime, indent: str = "  ") -> list[str]:
    fields: list[tuple[str, str]] = [("Subject", entry["subject"] or "(empty)"), *_names(entry)]
    fields += [
        ("Issuer", entry["issuer"] or "(empty)"),
        ("Not before", f"{entry['notBefore']} ({relative(entry['notBefore'], now)})"),
        ("Not after", f"{entry['notAfter']} ({relative(entry['notAfter'], now)})"),
        ("Serial", entry["serialNumber"]),
        ("Key", f"{entry['keyAlgorithm']} {entry['keySize']}" + (", CA" if entry["isCA"] else "")),
        ("SHA-256", entry["fingerprintSHA256"]),
    ]
    if entry["validity"] != "Valid":
        fields.append(("Validity", entry["validity"].upper()))
    width = max(len(k) for k, _ in fields) + 1
    return [f"{indent}{(k + ':').ljust(width)} {v}" for k, v in fields]


def secret_text(report: JSON, now: datetime) -> str:
    s = report["secret"]
    lines = [f"Secret {s['namespace']}/{s['name']}  (type {s['type']}; keys {', '.join(s['keys'])})"]
    mark = report["certmint"]
    if mark:
        issuer = mark["issuer"]
        by = f"{issuer['kind']} {issuer['name']}" if issuer else "an unknown issuer"
        revision = f", revision {mark['revision']}" if mark["revision"] is not None else ""
        lines.append(f"  certmint: Certificate {mark['certificate'] or '?'}{revision}, signed through {by}")
    else:
        lines.append("  certmint: no certmint annotations (not written by certmint)")
    lines.append(
        f"  Key matches certificate: {_yes_no(report['keyMatchesCertificate'], 'no tls.key')}   "
        f"Chain verifies to ca.crt: {_yes_no(report['chainVerified'], 'no ca.crt')}"
    )
    for i, entry in enumerate(report["chain"]):
        lines += ["", f"tls.crt[{i}]" + (" (leaf)" if i == 0 else ""), *_certificate_lines(entry, now)]
    for i, entry in enumerate(report["trustAnchors"]):
        lines += ["", f"ca.crt[{i}]", *_certificate_lines(entry, now)]
    lines += _problem_lines(report["problems"])
    return "\n".join(lines)


def _problem_lines(problems: Sequence[str]) -> list[str]:
    return ["", "Problems:", *(f"  - {p}" for p in problems)] if problems else []


def certificate_text(report: JSON, now: datetime) -> str:
    c, status = report["certificate"], report["status"]
    ready = next((x for x in report["conditions"] if x["type"] == "Ready"), None)
    head = f"Certificate {c['namespace']}/{c['name']}"
    head += f"  Ready={ready['status']} ({ready['reason']})" if ready else "  Ready: not reported yet"
    lines = [head]
    if ready and ready.get("message"):
        lines.append(f"  {ready['message']}")
    issuer = report["issuer"]
    issuer_state = "NOT FOUND" if issuer["found"] is False else "not readable"
    if issuer["found"]:
        r = issuer["ready"]
        issuer_state = f"Ready={r['status']} ({r['reason']})" if r else "Ready not reported"
    fields = [
        ("Issuer", f"{issuer['kind']} {issuer['name']}: {issuer_state}"),
        ("Secret", str(report["spec"].get("secretName"))),
    ]
    if "revision" in status:
        fields.append(("Revision", f"{status['revision']}, serial {status.get('serialNumber', '?')}"))
    if status.get("notAfter"):
        fields.append(("Expires", f"{status['notAfter']} ({relative(status['notAfter'], now)})"))
    if status.get("renewalTime"):
        fields.append(("Renewal", f"{status['renewalTime']} ({relative(status['renewalTime'], now)})"))
    if status.get("failedIssuanceAttempts"):
        fields.append(("Failures", f"{status['failedIssuanceAttempts']}, last at {status.get('lastFailureTime', '?')}"))
    if report["renewRequest"]:
        rr = report["renewRequest"]
        fields.append(("Renew request", f"{rr['value']} ({'honoured' if rr['honoured'] else 'pending'})"))
    width = max(len(k) for k, _ in fields) + 1
    lines += [f"  {(k + ':').ljust(width)} {v}" for k, v in fields]
    if report["conditions"]:
        rows: list[tuple[str, ...]] = [("TYPE", "STATUS", "REASON", "SINCE", "MESSAGE")]
        rows += [
            (
                x["type"],
                x["status"],
                x.get("reason") or "",
                relative(x.get("lastTransitionTime"), now),
                x.get("message") or "",
            )
            for x in report["conditions"]
        ]
        lines += ["", "Conditions:", *_table(rows)]
    lines.append("")
    if report["secret"]:
        sec = report["secret"]
        lines.append(
            f"Certificate in Secret {sec['secret']['name']} "
            f"(key matches: {_yes_no(sec['keyMatchesCertificate'], 'no tls.key')}; "
            f"chain verifies to ca.crt: {_yes_no(sec['chainVerified'], 'no ca.crt')}):"
        )
        lines += _certificate_lines(sec["chain"][0], now)
        lines += [f"  ! {p}" for p in sec["problems"]]
    else:
        lines.append(f"Secret: {report['secretProblem']}")
    if report["requests"]:
        rows = [("NAME", "AGE", "APPROVED", "READY", "MESSAGE")]
        for r in report["requests"]:
            conds = {x["type"]: x for x in r["conditions"]}
            ready_c = conds.get("Ready") or conds.get("Denied") or conds.get("InvalidRequest") or {}
            approved = (
                "Denied"
                if (conds.get("Denied") or {}).get("status") == "True"
                else ((conds.get("Approved") or {}).get("status") or "-")
            )
            rows.append(
                (
                    r["name"],
                    relative(r["created"], now).removesuffix(" ago"),
                    approved,
                    (conds.get("Ready") or {}).get("status") or "-",
                    ready_c.get("message") or "",
                )
            )
        lines += ["", "CertificateRequests (newest first):", *_table(rows)]
    else:
        lines += ["", "CertificateRequests: none"]
    if report["events"]:
        rows = [("LAST SEEN", "TYPE", "REASON", "MESSAGE")]
        rows += [
            (
                relative(e["lastSeen"], now).removesuffix(" ago"),
                e.get("type") or "",
                e.get("reason") or "",
                (e.get("message") or "") + (f" (x{e['count']})" if e["count"] > 1 else ""),
            )
            for e in report["events"]
        ]
        lines += ["", "Events (newest first):", *_table(rows)]
    else:
        lines += ["", "Events: none"]
    lines += _read_error_lines(report["readErrors"])
    return "\n".join(lines)


def _read_error_lines(errors: Sequence[str]) -> list[str]:
    return ["", "Not shown (could not be read):", *(f"  - {e}" for e in errors)] if errors else []


def check_text(report: JSON, now: datetime) -> str:
    api = report["api"]
    lines = [f"certmint CLI {report['cliVersion']}"]
    if api["versions"]:
        for version, resources in api["versions"].items():
            lines.append(f"API certmint.dev/{version}: serves {', '.join(resources) or 'nothing'}")
    else:
        lines.append("API certmint.dev: not served")
    for d in report["operator"]["deployments"]:
        lines.append(
            f"Operator Deployment {d['namespace']}/{d['name']}: {d['readyReplicas']}/{d['replicas']} ready, "
            f"version {d['version'] or '?'} (image {d['image'] or '?'})"
        )
    lease = report["operator"]["lease"]
    if lease:
        state = "held" if lease["held"] else "NOT renewed"
        lines.append(
            f"Leader Lease {lease['namespace']}/certmint-operator: {state} by {lease['holder'] or 'nobody'}, "
            f"renewed {relative(lease['renewTime'], now) or 'never'}"
        )
    lines += _read_error_lines(report["readErrors"])
    lines += _problem_lines(report["problems"]) or ["", "OK"]
    return "\n".join(lines)


def renew_text(report: JSON) -> str:
    lines = [
        f"renewal requested: Certificate {r['namespace']}/{r['name']} ({RENEW_REQUEST}={r['value']})"
        + (" - a CA: renewing it rotates the CA of its issuers (docs/ca-rotation.md)" if r["isCA"] else "")
        for r in report["requested"]
    ]
    return "\n".join(lines) if lines else "no Certificate matched: nothing requested"


# -- approve / deny ----------------------------------------------------------------------------------------------


def requested_identity(spec: Mapping[str, Any]) -> JSON | None:
    """What a CertificateRequest asks for, read from its CSR as the operator reads it (None: not readable)."""
    try:
        parsed = CertificateRequestSpec.from_dict(spec)
        csr = parse_csr(parsed.request_pem)
    except (SpecError, PKIError, ValueError):
        return None
    return {
        "subject": build_subject(csr.common_name, csr.subject).rfc4514_string(),
        "dnsNames": list(csr.dns_names),
        "ipAddresses": list(csr.ip_addresses),
        "uris": list(csr.uris),
        "emailAddresses": list(csr.email_addresses),
        "keyAlgorithm": csr.key_algorithm,
        "keySize": csr.key_size,
        "duration": spec.get("duration") or format_duration(parsed.duration),
        "isCA": parsed.is_ca,
    }


def decision_report(request: Mapping[str, Any], decided: str) -> JSON:
    """The ``approve``/``deny`` report of a request as written: ``decided`` is the condition type written."""
    meta, spec = request["metadata"], request.get("spec") or {}
    conditions = (request.get("status") or {}).get("conditions") or []
    condition = next(c for c in conditions if c.get("type") == decided)
    ref = spec.get("issuerRef") or {}
    return {
        "certificateRequest": {"namespace": meta["namespace"], "name": meta["name"], "uid": meta.get("uid")},
        "decision": decided,
        "condition": {k: condition.get(k) for k in ("type", "status", "reason", "message", "lastTransitionTime")},
        "issuerRef": {"kind": ref.get("kind") or "Issuer", "name": ref.get("name")},
        "requested": requested_identity(spec),
    }


def decision_text(report: JSON) -> str:
    request, condition = report["certificateRequest"], report["condition"]
    ref = report["issuerRef"]
    what = f"CertificateRequest {request['namespace']}/{request['name']}"
    if report["decision"] == "Approved":
        head = f"approved: {what} ({condition['reason']}); {ref['kind']} {ref['name']} signs it next"
    else:
        head = f"denied: {what} ({condition['reason']}); it will never be signed"
    lines = [head]
    requested = report["requested"]
    if requested is not None:
        names = [
            *requested["dnsNames"],
            *requested["ipAddresses"],
            *requested["uris"],
            *requested["emailAddresses"],
        ]
        lines.append(f"  Subject:  {requested['subject'] or '(empty)'}")
        lines.append(f"  Names:    {', '.join(names) or '(none)'}")
        lines.append(
            f"  Key:      {requested['keyAlgorithm']} {requested['keySize']}; duration {requested['duration']}"
            + ("; a CA" if requested["isCA"] else "")
        )
    return "\n".join(lines)


def dump(report: JSON, output: str, text: Callable[[JSON], str]) -> str:
    """The report in the chosen output: ``text`` (by ``text(report)``), ``json`` or ``yaml``."""
    if output == "json":
        return json.dumps(report, indent=2)
    if output == "yaml":
        return yaml.safe_dump(report, sort_keys=False, default_flow_style=False).rstrip("\n")
    return text(report)


# -- convert -----------------------------------------------------------------------------------------------------


def convert_report(conversion: Conversion, read_errors: Sequence[str] = ()) -> JSON:
    """The report of ``convert`` (docs/cli.md): which objects were converted, which not, which left out, every
    finding, and what could not be read from the cluster."""

    def entry(doc: Document) -> JSON:
        return {"source": doc.source, "kind": doc.kind, "namespace": doc.namespace, "name": doc.name}

    cert_manager = [d for d in conversion.documents if d.cert_manager]
    return {
        "faithful": conversion.faithful,
        "converted": [entry(d) for d in cert_manager if d.written],
        "notConverted": [entry(d) for d in cert_manager if not d.faithful],
        "leftOut": [entry(d) for d in conversion.documents if d.faithful and not d.written],
        "findings": [
            {
                "severity": str(f.severity),
                "object": doc.label,
                "source": doc.source,
                "path": f.path,
                "message": f.message,
            }
            for doc in conversion.documents
            for f in doc.findings
        ],
        "readErrors": list(read_errors),
    }


def convert_text(report: JSON) -> str:
    """One line per finding (``error: Certificate default/web: spec.literalSubject: why``), then a summary."""
    lines = []
    for f in report["findings"]:
        where = f"{f['object']}: {f['path']}" if f["path"] else f["object"]
        lines.append(f"{f['severity']}: {where}: {f['message']}")
    lines.extend(f"note: not read: {e}" for e in report["readErrors"])
    counts = [f"{len(report['converted'])} converted"]
    if report["notConverted"]:
        counts.append(f"{len(report['notConverted'])} not converted (see the errors)")
    if report["leftOut"]:
        counts.append(f"{len(report['leftOut'])} left out")
    verdict = "everything converted faithfully" if report["faithful"] else "NOT everything converted faithfully"
    lines.append(f"{', '.join(counts)}: {verdict}")
    return "\n".join(lines)


def convert_output(objects: Sequence[JSON], output: str) -> str:
    """The certmint objects: YAML documents, or a JSON ``v1`` List (both as ``kubectl apply -f`` reads them)."""
    if output == "json":
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}, indent=2) + "\n"
    if not objects:
        return ""
    return yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False, explicit_start=True)
