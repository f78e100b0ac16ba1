"""Bundle: which trust anchors go where, decided without Kubernetes.

A Bundle (cluster-scoped) names sources of trust anchors (an issuer's anchors, including the next or
previous root while a rotation overlaps them; a key of a Secret or ConfigMap in the operator's namespace;
inline PEM) and a target: one key of a ConfigMap (optionally also of a Secret) named after the Bundle, in
every namespace its selector matches. This module parses the spec, assembles the anchors (or says why it
cannot: then the targets keep their last good content) and plans the writes per namespace; the controller
(controller.bundles) gathers the inputs and carries the plan out.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from certmint.core.spec import SpecError
from certmint.pki.inspect import certificate_pem, load_pem_chain
from certmint.pki.keys import PKIError
from certmint.pki.signing import fingerprint_sha256
from certmint.pki.timestamps import rfc3339

#: Source kinds, as the CRD names them (exactly one per source).
ISSUER, SECRET, CONFIG_MAP, INLINE = "issuer", "secret", "configMap", "inline"
SOURCE_KINDS: Final = (ISSUER, SECRET, CONFIG_MAP, INLINE)
SELECTOR_OPERATORS: Final = ("In", "NotIn", "Exists", "DoesNotExist")


def _fail(path: str, problem: str) -> SpecError:
    return SpecError(f"{path}: {problem}", field=path)


def _text(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(path, "is required and must be a non-empty string")
    return value


@dataclass(frozen=True, slots=True)
class BundleSource:
    """One source: ``kind`` is one of SOURCE_KINDS; ``name`` the issuer, Secret or ConfigMap; ``key`` the data
    key of a Secret or ConfigMap; ``pem`` the inline PEM."""

    kind: str
    name: str = ""
    key: str = ""
    pem: str = ""

    def describe(self) -> str:
        match self.kind:
            case "issuer":
                return f"ClusterIssuer {self.name}"
            case "secret":
                return f"Secret {self.name} key {self.key}"
            case "configMap":
                return f"ConfigMap {self.name} key {self.key}"
            case _:
                return "inline PEM"

    @classmethod
    def from_dict(cls, value: Any, path: str) -> BundleSource:
        if not isinstance(value, Mapping):
            raise _fail(path, "must be an object")
        given = [k for k in SOURCE_KINDS if value.get(k) not in (None, "")]
        if len(given) != 1:
            raise _fail(path, f"exactly one of {', '.join(SOURCE_KINDS)} must be set, got {len(given)}")
        kind = given[0]
        if kind == INLINE:
            return cls(INLINE, pem=_text(value[INLINE], f"{path}.inline"))
        ref = value[kind]
        if not isinstance(ref, Mapping):
            raise _fail(f"{path}.{kind}", "must be an object")
        name = _text(ref.get("name"), f"{path}.{kind}.name")
        if kind == ISSUER:
            issuer_kind = ref.get("kind", "ClusterIssuer")
            if issuer_kind != "ClusterIssuer":
                raise _fail(
                    f"{path}.issuer.kind", f"must be ClusterIssuer (a Bundle is cluster-wide), got {issuer_kind!r}"
                )
            return cls(ISSUER, name=name)
        return cls(kind, name=name, key=_text(ref.get("key"), f"{path}.{kind}.key"))


@dataclass(frozen=True, slots=True)
class SelectorRequirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A Kubernetes label selector (matchLabels and matchExpressions, all ANDed); empty matches everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[SelectorRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels):
            return False
        for r in self.expressions:
            present = r.key in labels
            match r.operator:
                case "In":
                    ok = present and labels[r.key] in r.values
                case "NotIn":
                    ok = not present or labels[r.key] not in r.values
                case "Exists":
                    ok = present
                case _:  # DoesNotExist
                    ok = not present
            if not ok:
                return False
        return True

    @classmethod
    def from_dict(cls, value: Any, path: str) -> LabelSelector:
        if value is None:
            return cls()
        if not isinstance(value, Mapping):
            raise _fail(path, "must be an object")
        labels = value.get("matchLabels") or {}
        if not isinstance(labels, Mapping) or not all(isinstance(v, str) for v in labels.values()):
            raise _fail(f"{path}.matchLabels", "must map label keys to string values")
        expressions = []
        for i, e in enumerate(value.get("matchExpressions") or []):
            where = f"{path}.matchExpressions[{i}]"
            if not isinstance(e, Mapping):
                raise _fail(where, "must be an object")
            op = e.get("operator")
            if op not in SELECTOR_OPERATORS:
                raise _fail(f"{where}.operator", f"must be one of {', '.join(SELECTOR_OPERATORS)}, got {op!r}")
            raw = e.get("values") or []
            if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
                raise _fail(f"{where}.values", "must be a list of strings")
            values = tuple(raw)
            if op in ("In", "NotIn") and not values:
                raise _fail(f"{where}.values", f"must not be empty for {op}")
            if op in ("Exists", "DoesNotExist") and values:
                raise _fail(f"{where}.values", f"must be empty for {op}")
            expressions.append(SelectorRequirement(_text(e.get("key"), f"{where}.key"), op, values))
        return cls(tuple(sorted(labels.items())), tuple(expressions))


@dataclass(frozen=True, slots=True)
class BundleSpec:
    sources: tuple[BundleSource, ...]
    config_map_key: str
    secret_key: str | None = None
    namespace_selector: LabelSelector = field(default_factory=LabelSelector)
    cluster_trust_bundle: bool = True

    @property
    def issuers(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sources if s.kind == ISSUER)

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> BundleSpec:
        sources = spec.get("sources")
        if not isinstance(sources, list) or not sources:
            raise _fail("spec.sources", "needs at least one source")
        target = spec.get("target")
        if not isinstance(target, Mapping):
            raise _fail("spec.target", "is required")
        config_map = target.get("configMap")
        if not isinstance(config_map, Mapping):
            raise _fail("spec.target.configMap", "is required")
        secret = target.get("secret")
        if secret is not None and not isinstance(secret, Mapping):
            raise _fail("spec.target.secret", "must be an object")
        ctb = spec.get("clusterTrustBundle") or {}
        if not isinstance(ctb, Mapping):
            raise _fail("spec.clusterTrustBundle", "must be an object")
        return cls(
            sources=tuple(BundleSource.from_dict(s, f"spec.sources[{i}]") for i, s in enumerate(sources)),
            config_map_key=_text(config_map.get("key"), "spec.target.configMap.key"),
            secret_key=_text(secret.get("key"), "spec.target.secret.key") if secret is not None else None,
            namespace_selector=LabelSelector.from_dict(
                target.get("namespaceSelector"), "spec.target.namespaceSelector"
            ),
            cluster_trust_bundle=ctb.get("publish", "IfServed") != "Never",
        )


# -- assembling the anchors ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Anchor:
    certificate: x509.Certificate
    source: str  # BundleSource.describe() of the first source that gave it

    def status(self) -> dict[str, str]:
        return {
            "subject": self.certificate.subject.rfc4514_string(),
            "fingerprint": fingerprint_sha256(self.certificate),
            "notAfter": rfc3339(self.certificate.not_valid_after_utc),
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class Assembled:
    """The trust anchors of every source, each once, in source order, as the PEM the targets hold."""

    anchors: tuple[Anchor, ...]
    pem: str
    digest: str  # sha256 of ``pem``, 16 hex digits: what a target's content is compared by


def content_digest(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()[:16]


def assemble(
    found: Sequence[tuple[BundleSource, bytes | None, str | None]], now: datetime.datetime
) -> Assembled | list[str]:
    """The anchors of ``found`` (each source with its PEM, or the problem that kept it from giving one), or the
    problems. A source that is missing, is not PEM, holds a certificate that is not a CA or has expired makes
    the whole Bundle wait: writing the others alone would take that source's anchors away from every
    workload. The caller keeps the targets as they are and reports the problems."""
    problems: list[str] = []
    anchors: list[Anchor] = []
    seen: set[bytes] = set()
    for source, pem, problem in found:
        where = source.describe()
        if pem is None:
            problems.append(f"{where}: {problem or 'gave nothing'}")
            continue
        try:
            certs = load_pem_chain(pem)
        except PKIError as e:
            problems.append(f"{where}: {e}")
            continue
        for cert in certs:
            subject = cert.subject.rfc4514_string() or "(empty subject)"
            if not _is_ca(cert):
                problems.append(f"{where}: {subject} is not a CA certificate (basicConstraints CA:TRUE)")
            elif cert.not_valid_after_utc <= now:
                problems.append(f"{where}: {subject} expired at {rfc3339(cert.not_valid_after_utc)}")
            else:
                der = cert.fingerprint(hashes.SHA256())
                if der not in seen:
                    seen.add(der)
                    anchors.append(Anchor(cert, where))
    if problems:
        return problems
    pem_text = "".join(certificate_pem(a.certificate).decode() for a in anchors)
    return Assembled(tuple(anchors), pem_text, content_digest(pem_text))


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


# -- planning the targets --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TargetFacts:
    """A target object found in a namespace: its resourceVersion, the digest of the Bundle's key in it (None:
    the key is missing), and whether it is this Bundle's own (its owner reference names the Bundle's UID)."""

    resource_version: str
    digest: str | None
    owned: bool


@dataclass(frozen=True, slots=True)
class TargetPlan:
    create: tuple[str, ...] = ()  # namespaces
    update: tuple[tuple[str, str], ...] = ()  # (namespace, resourceVersion)
    delete: tuple[tuple[str, str], ...] = ()  # ours, in a namespace the selector no longer matches
    conflicts: tuple[str, ...] = ()  # a target of that name exists and is not ours: never overwritten
    in_sync: int = 0

    @property
    def writes(self) -> int:
        return len(self.create) + len(self.update) + len(self.delete)


def plan_targets(matched: Iterable[str], existing: Mapping[str, TargetFacts], digest: str | None) -> TargetPlan:
    """The writes that bring every matched namespace's target to ``digest`` (None: the anchors cannot be
    assembled now, so nothing is created or changed; what is there stays), and remove ours from namespaces
    no longer matched."""
    create, update, conflicts = [], [], []
    in_sync = 0
    wanted = set(matched)
    for ns in sorted(wanted):
        facts = existing.get(ns)
        if facts is None:
            if digest is not None:
                create.append(ns)
        elif not facts.owned:
            conflicts.append(ns)
        elif digest is not None and facts.digest == digest:
            in_sync += 1
        elif digest is not None:
            update.append((ns, facts.resource_version))
    delete = tuple(
        (ns, facts.resource_version) for ns, facts in sorted(existing.items()) if ns not in wanted and facts.owned
    )
    return TargetPlan(tuple(create), tuple(update), delete, tuple(conflicts), in_sync)
