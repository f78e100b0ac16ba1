"""Static checks of the CustomResourceDefinitions in crds/ (no cluster needed).

What the API server itself checks (CEL compilation, cost estimates, structural
schema rules) is exercised by the integration tests against a real
kube-apiserver; these tests catch what it does not: missing descriptions
(``kubectl explain`` must be useful), rules without messages, drift between
the schemas that must stay identical, printer columns pointing at fields that
do not exist, and regular expressions that do not accept what the
descriptions promise.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from certmint.core.spec import APPROVALS, CA_NEEDS_SUBJECT, SubjectPolicy
from certmint.pki import usages
from certmint.pki.names import spiffe_id_problem

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"
GROUP = "certmint.dev"
VERSION = "v1alpha1"

Schema = dict[str, Any]

EXPECTED: dict[str, dict[str, Any]] = {
    "certmint.dev_issuers.yaml": {
        "kind": "Issuer",
        "plural": "issuers",
        "singular": "issuer",
        "scope": "Namespaced",
        "shortNames": ["iss"],
        "columns": ["Ready", "CA Secret", "CA Not After", "Status", "Age"],
    },
    "certmint.dev_clusterissuers.yaml": {
        "kind": "ClusterIssuer",
        "plural": "clusterissuers",
        "singular": "clusterissuer",
        "scope": "Cluster",
        "shortNames": ["ciss"],
        "columns": ["Ready", "CA Secret", "Pod Signer", "CA Not After", "Status", "Age"],
    },
    "certmint.dev_bundles.yaml": {
        "kind": "Bundle",
        "plural": "bundles",
        "singular": "bundle",
        "scope": "Cluster",
        "shortNames": ["cmbundle"],
        "columns": ["Ready", "Anchors", "Namespaces", "Fingerprint", "Status", "Age"],
    },
    "certmint.dev_certificates.yaml": {
        "kind": "Certificate",
        "plural": "certificates",
        "singular": "certificate",
        "scope": "Namespaced",
        "shortNames": ["cert", "certs"],
        "columns": ["Ready", "Secret", "Issuer", "Expires", "Renewal", "Status", "Age"],
    },
    "certmint.dev_certificaterequests.yaml": {
        "kind": "CertificateRequest",
        "plural": "certificaterequests",
        "singular": "certificaterequest",
        "scope": "Namespaced",
        "shortNames": ["cr", "crs"],
        "columns": ["Approved", "Denied", "Ready", "Issuer", "Status", "Age"],
    },
}

DURATION_RE = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
DNS1123_SUBDOMAIN_RE = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


# --------------------------------------------------------------------------- helpers


def load(name: str) -> dict[str, Any]:
    with (CRD_DIR / name).open(encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    assert len(docs) == 1, f"{name}: expected exactly one YAML document, found {len(docs)}"
    crd: dict[str, Any] = docs[0]
    return crd


def version_of(crd: dict[str, Any]) -> dict[str, Any]:
    versions = crd["spec"]["versions"]
    assert len(versions) == 1, "expected exactly one version"
    v: dict[str, Any] = versions[0]
    return v


def root_schema(crd: dict[str, Any]) -> Schema:
    schema: Schema = version_of(crd)["schema"]["openAPIV3Schema"]
    return schema


def walk(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Yield (path, node) for every schema node, depth first.

    Paths use kubectl-explain style: ``spec.dnsNames[]`` for list items and
    ``spec.secretTemplate.labels{}`` for map values.
    """
    yield path, schema
    for name, prop in (schema.get("properties") or {}).items():
        yield from walk(prop, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


def missing_descriptions(schema: Schema) -> list[str]:
    """Paths of properties (at any depth) without a non-empty description.

    The root ``metadata`` is exempt: the API server refuses a CRD whose root
    metadata schema says anything but ``type: object``.
    """
    missing = []
    for path, node in walk(schema):
        for name, prop in (node.get("properties") or {}).items():
            if path == "" and name == "metadata":
                continue
            desc = prop.get("description")
            if not isinstance(desc, str) or not desc.strip():
                missing.append(f"{path}.{name}" if path else name)
    return missing


def rules(schema: Schema) -> Iterator[tuple[str, Schema, dict[str, Any]]]:
    for path, node in walk(schema):
        for rule in node.get("x-kubernetes-validations") or []:
            yield path, node, rule


def unbounded(schema: Schema, path: str) -> list[str]:
    """Strings, lists and maps under ``schema`` without a size bound.

    The API server estimates the worst-case cost of every CEL rule from these
    bounds and refuses the CRD when the estimate is too high, so everything a
    rule can reach must be bounded. Enums and date-times have a fixed size.
    """
    found = []
    for sub, node in walk(schema, path):
        t = node.get("type")
        if t == "string" and "enum" not in node and node.get("format") != "date-time":
            if "maxLength" not in node:
                found.append(f"{sub} (string without maxLength)")
        elif t == "array" and "maxItems" not in node:
            found.append(f"{sub} (array without maxItems)")
        elif t == "object" and "additionalProperties" in node and "maxProperties" not in node:
            found.append(f"{sub} (map without maxProperties)")
    return found


def strip_docs(schema: Any) -> Any:
    """Deep copy of a schema without descriptions, for comparing structure."""
    if isinstance(schema, dict):
        return {k: strip_docs(v) for k, v in schema.items() if k != "description"}
    if isinstance(schema, list):
        return [strip_docs(v) for v in schema]
    return schema


def schema_at(schema: Schema, dotted: str) -> Schema | None:
    """Follow a simple JSONPath such as ``.status.conditions[?(@.type=="Ready")].status``."""
    node: Schema | None = schema
    plain = re.sub(r"\[[^\]]*\]", "[]", dotted)
    for part in plain.strip(".").split("."):
        if node is None:
            return None
        is_list = part.endswith("[]")
        name = part.removesuffix("[]")
        if name == "metadata" and node is schema:
            return {"type": "object"}  # built-in, not described by the CRD
        node = (node.get("properties") or {}).get(name)
        if node is not None and is_list:
            node = node.get("items")
    return node


def rule_fields(rule: str) -> set[str]:
    """Field names a rule reads directly off ``self``/``oldSelf``."""
    return set(re.findall(r"\b(?:self|oldSelf)\.([A-Za-z_][A-Za-z0-9_]*)", rule))


ALL = sorted(EXPECTED)


@pytest.fixture(params=ALL)
def crd_file(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


# --------------------------------------------------------------------------- the files


def test_crd_directory_holds_exactly_the_expected_files() -> None:
    assert sorted(p.name for p in CRD_DIR.glob("*.yaml")) == ALL


def test_identity(crd_file: str) -> None:
    crd = load(crd_file)
    want = EXPECTED[crd_file]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{want['plural']}.{GROUP}"
    spec = crd["spec"]
    assert spec["group"] == GROUP
    assert spec["scope"] == want["scope"]
    names = spec["names"]
    assert names["kind"] == want["kind"]
    assert names["listKind"] == want["kind"] + "List"
    assert names["plural"] == want["plural"]
    assert names["singular"] == want["singular"]
    assert names["shortNames"] == want["shortNames"]
    assert names["categories"] == ["certmint"]


def test_version_served_stored_with_status_subresource(crd_file: str) -> None:
    v = version_of(load(crd_file))
    assert v["name"] == VERSION
    assert v["served"] is True
    assert v["storage"] is True
    assert v["subresources"] == {"status": {}}


def test_short_names_unique_across_crds() -> None:
    seen: dict[str, str] = {}
    for name in ALL:
        names = load(name)["spec"]["names"]
        for n in [names["plural"], names["singular"], *names["shortNames"]]:
            assert n not in seen, f"{n!r} used by both {seen[n]} and {name}"
            seen[n] = name


# --------------------------------------------------------------------------- schema hygiene


def test_every_field_has_a_description(crd_file: str) -> None:
    schema = root_schema(load(crd_file))
    assert schema.get("description"), "the root schema (kubectl explain <kind>) needs a description"
    missing = missing_descriptions(schema)
    assert not missing, f"{crd_file}: fields without a description: {', '.join(missing)}"


def test_root_metadata_is_bare(crd_file: str) -> None:
    # Anything besides type: object (even a description) is refused by the API server.
    assert root_schema(load(crd_file))["properties"]["metadata"] == {"type": "object"}


def test_spec_is_required_and_status_exists(crd_file: str) -> None:
    schema = root_schema(load(crd_file))
    assert schema["type"] == "object"
    assert "spec" in schema.get("required", []), "spec must be required"
    assert set(schema["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}


def test_every_object_and_leaf_has_a_type(crd_file: str) -> None:
    # Structural schemas need a type everywhere (root metadata aside).
    untyped = [
        path or "<root>"
        for path, node in walk(root_schema(load(crd_file)))
        if "type" not in node and "x-kubernetes-int-or-string" not in node
    ]
    assert not untyped, f"{crd_file}: nodes without a type: {untyped}"


def test_every_cel_rule_has_a_message(crd_file: str) -> None:
    bad = []
    for path, _node, rule in rules(root_schema(load(crd_file))):
        where = f"{path or '<root>'}: {rule.get('rule')!r}"
        if not str(rule.get("rule", "")).strip():
            bad.append(f"{where} has an empty rule")
        if not str(rule.get("message", "")).strip():
            bad.append(f"{where} has no message")
        if "fieldPath" in rule and not rule["fieldPath"].startswith("."):
            bad.append(f"{where} fieldPath must start with '.'")
        if "reason" in rule and rule["reason"] not in {
            "FieldValueInvalid",
            "FieldValueForbidden",
            "FieldValueRequired",
            "FieldValueDuplicate",
        }:
            bad.append(f"{where} has an unknown reason")
    assert not bad, "\n".join(bad)


def test_spec_rule_messages_name_the_field(crd_file: str) -> None:
    bad = [
        f"{path}: {rule['message']!r}"
        for path, _node, rule in rules(root_schema(load(crd_file)))
        if path.startswith("spec") and "spec" not in rule["message"]
    ]
    assert not bad, f"messages should say which spec field is wrong: {bad}"


def test_cel_rules_only_read_declared_fields(crd_file: str) -> None:
    bad = []
    for path, node, rule in rules(root_schema(load(crd_file))):
        props = node.get("properties")
        if props is None:
            continue  # rule on a scalar or list: self is the value itself
        for name in rule_fields(rule["rule"]) - set(props):
            bad.append(f"{path}: rule reads undeclared field {name!r}: {rule['rule']!r}")
        fp = rule.get("fieldPath", "")
        if fp and fp.lstrip(".").split(".")[0] not in props:
            bad.append(f"{path}: fieldPath {fp!r} names no declared field")
    assert not bad, "\n".join(bad)


def test_everything_cel_can_reach_is_bounded(crd_file: str) -> None:
    schema = root_schema(load(crd_file))
    bad: list[str] = []
    for path, node, _rule in rules(schema):
        bad.extend(unbounded(node, path))
    assert not bad, f"{crd_file}: unbounded under CEL rules: {sorted(set(bad))}"


def test_defaults_satisfy_their_enums(crd_file: str) -> None:
    bad = []
    for path, node in walk(root_schema(load(crd_file))):
        if "default" not in node:
            continue
        default = node["default"]
        if "enum" in node and default not in node["enum"]:
            bad.append(f"{path}: default {default!r} not in enum")
        item_enum = (node.get("items") or {}).get("enum")
        if item_enum and any(v not in item_enum for v in default):
            bad.append(f"{path}: default {default!r} not in item enum")
        if node.get("pattern") and not re.fullmatch(node["pattern"], default):
            bad.append(f"{path}: default {default!r} does not match pattern")
    assert not bad, "\n".join(bad)


def test_patterns_compile(crd_file: str) -> None:
    bad = []
    for path, node in walk(root_schema(load(crd_file))):
        if "pattern" in node:
            try:
                re.compile(node["pattern"])
            except re.error as e:
                bad.append(f"{path}: {e}")
    assert not bad, "\n".join(bad)


# --------------------------------------------------------------------------- printer columns


def test_printer_columns(crd_file: str) -> None:
    crd = load(crd_file)
    columns = version_of(crd)["additionalPrinterColumns"]
    assert [c["name"] for c in columns] == EXPECTED[crd_file]["columns"]
    schema = root_schema(crd)
    for col in columns:
        assert col["type"] in {"string", "integer", "number", "boolean", "date"}, col
        where = f"column {col['name']}: {col['jsonPath']}"
        assert schema_at(schema, col["jsonPath"]) is not None, f"{where} is not in the schema"
        if col["name"] != "Age":
            assert col.get("description"), f"column {col['name']} needs a description"
        # kubectl renders future "date" cells as "<invalid>", so only
        # creationTimestamp may use that type.
        if col["type"] == "date":
            assert col["jsonPath"] == ".metadata.creationTimestamp", col
    assert columns[-1] == {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def test_schema_at_can_fail() -> None:
    schema = root_schema(load("certmint.dev_certificates.yaml"))
    assert schema_at(schema, ".spec.secretName") is not None
    assert schema_at(schema, '.status.conditions[?(@.type=="Ready")].status') is not None
    assert schema_at(schema, ".spec.nope") is None
    assert schema_at(schema, ".status.conditions[0].nope") is None


# --------------------------------------------------------------------------- shared shapes


def test_issuer_and_clusterissuer_differ_only_in_allowed_namespaces_and_pod_certificates() -> None:
    """A ClusterIssuer alone has policy.allowedNamespaces and podCertificates (a signer name is cluster-wide)."""
    ns = strip_docs(root_schema(load("certmint.dev_issuers.yaml")))
    cl = strip_docs(root_schema(load("certmint.dev_clusterissuers.yaml")))
    policy_props = cl["properties"]["spec"]["properties"]["policy"]["properties"]
    assert "allowedNamespaces" in policy_props
    assert "allowedNamespaces" not in ns["properties"]["spec"]["properties"]["policy"]["properties"]
    del policy_props["allowedNamespaces"]
    for part in ("spec", "status"):
        assert "podCertificates" not in ns["properties"][part]["properties"]
        del cl["properties"][part]["properties"]["podCertificates"]
    assert [r["rule"] for r in cl.pop("x-kubernetes-validations")] == [
        "!has(self.spec.podCertificates) || "
        "self.spec.podCertificates.signerName == 'certmint.dev/' + self.metadata.name"
    ]
    pod_rule = cl["properties"]["spec"]["x-kubernetes-validations"].pop()
    assert pod_rule["rule"] == "!has(self.podCertificates) || has(self.ca)"
    manual_pods = cl["properties"]["spec"]["x-kubernetes-validations"].pop()
    assert "podCertificates" in manual_pods["rule"] and "'Manual'" in manual_pods["rule"]
    assert ns == cl


def test_certificate_and_request_share_field_schemas() -> None:
    cert = root_schema(load("certmint.dev_certificates.yaml"))["properties"]["spec"]["properties"]
    req = root_schema(load("certmint.dev_certificaterequests.yaml"))["properties"]["spec"]["properties"]
    for field in ["issuerRef", "duration", "usages"]:
        assert cert[field] == req[field], f"spec.{field} differs between Certificate and CertificateRequest"
    assert strip_docs(cert["isCA"]) == strip_docs(req["isCA"])


def test_conditions_have_the_standard_shape_everywhere() -> None:
    shapes = []
    for name in ALL:
        cond = root_schema(load(name))["properties"]["status"]["properties"]["conditions"]
        assert cond["x-kubernetes-list-type"] == "map", name
        assert cond["x-kubernetes-list-map-keys"] == ["type"], name
        item = cond["items"]
        assert set(item["required"]) >= {"type", "status"}, name
        assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"], name
        assert item["properties"]["lastTransitionTime"]["format"] == "date-time", name
        assert item["properties"]["observedGeneration"]["format"] == "int64", name
        shapes.append(strip_docs(cond))
    assert all(s == shapes[0] for s in shapes), "conditions schemas differ between CRDs"


def test_issuer_status_fields() -> None:
    for name in ["certmint.dev_issuers.yaml", "certmint.dev_clusterissuers.yaml"]:
        status = root_schema(load(name))["properties"]["status"]["properties"]
        assert set(status) == {
            "conditions",
            "caSubject",
            "caFingerprint",
            "caNotAfter",
            "caChain",
            "trustAnchor",
            "trustAnchors",
            "rotation",
            "observedGeneration",
            *(["podCertificates"] if name == "certmint.dev_clusterissuers.yaml" else []),
        }
        assert status["caNotAfter"]["format"] == "date-time"
        assert {"subject", "fingerprint", "notAfter", "signsThisCA", "pem"} == set(
            status["trustAnchors"]["items"]["properties"]
        )
        assert status["caChain"]["items"]["properties"]["notAfter"]["format"] == "date-time"
        assert {"subject", "fingerprint"} <= set(status["trustAnchor"]["properties"])


def test_certificate_status_fields() -> None:
    status = root_schema(load("certmint.dev_certificates.yaml"))["properties"]["status"]["properties"]
    assert set(status) == {
        "conditions",
        "notBefore",
        "notAfter",
        "renewalTime",
        "revision",
        "serialNumber",
        "failedIssuanceAttempts",
        "lastFailureTime",
        "observedGeneration",
        "verified",
        "lastRenewRequest",
    }
    assert set(status["verified"]["required"]) == {"generation", "secretResourceVersion", "issuer"}
    for f in ["notBefore", "notAfter", "renewalTime", "lastFailureTime"]:
        assert status[f]["format"] == "date-time", f


def test_certificaterequest_status_fields_and_immutable_spec() -> None:
    schema = root_schema(load("certmint.dev_certificaterequests.yaml"))
    status = schema["properties"]["status"]["properties"]
    assert set(status) == {"conditions", "certificate", "ca", "notBefore", "notAfter", "failureTime"}
    spec_rules = [r["rule"] for r in schema["properties"]["spec"]["x-kubernetes-validations"]]
    assert "self == oldSelf" in spec_rules


# --------------------------------------------------------------------------- defaults and formats


def certificate_spec() -> Schema:
    spec: Schema = root_schema(load("certmint.dev_certificates.yaml"))["properties"]["spec"]
    return spec


def test_certificate_defaults() -> None:
    p = certificate_spec()["properties"]
    assert p["duration"]["default"] == "2160h"
    # No schema default for usages: the default depends on the key type, which the operator applies (issue 12).
    assert "default" not in p["usages"]
    assert p["usages"]["x-kubernetes-list-type"] == "set"
    assert p["isCA"]["default"] is False
    assert p["privateKey"]["default"] == {}
    pk = p["privateKey"]["properties"]
    assert pk["algorithm"]["default"] == "ECDSA"
    # No default encoding: PKCS1 for RSA and ECDSA, PKCS8 for Ed25519 (as cert-manager writes it unasked).
    assert "default" not in pk["encoding"]
    assert pk["rotationPolicy"]["default"] == "Always"
    assert "default" not in pk["size"], "size must stay absent so it can depend on the algorithm"
    assert p["revisionHistoryLimit"]["default"] == 3
    assert p["secretDeletionPolicy"]["default"] == "Retain"
    assert p["issuerRef"]["properties"]["kind"]["default"] == "Issuer"
    assert p["issuerRef"]["properties"]["group"]["default"] == GROUP


def test_issuer_policy_defaults_so_allow_ca_is_false() -> None:
    for name in ["certmint.dev_issuers.yaml", "certmint.dev_clusterissuers.yaml"]:
        policy = root_schema(load(name))["properties"]["spec"]["properties"]["policy"]
        assert policy["default"] == {}
        assert policy["properties"]["allowCA"]["default"] is False
        approval = policy["properties"]["approval"]
        assert (approval["default"], approval["enum"]) == ("Automatic", list(APPROVALS))


def duration_fields() -> list[tuple[str, str, Schema]]:
    out = []
    for name in ALL:
        for path, node in walk(root_schema(load(name))):
            if path.endswith(("duration", "Duration", "renewBefore")) and node.get("type") == "string":
                out.append((name, path, node))
    return out


def test_all_duration_fields_share_the_go_duration_pattern() -> None:
    fields = duration_fields()
    assert len(fields) == 7  # 2x2 policy bounds, cert duration+renewBefore, request duration
    for name, path, node in fields:
        assert node["pattern"] == DURATION_RE, f"{name}: {path}"
        assert node["maxLength"] <= 64, f"{name}: {path}"


def test_duration_calls_are_guarded_by_the_pattern(crd_file: str) -> None:
    # duration() on a malformed string is a runtime error that the API server
    # reports next to the pattern violation ("type conversion error ...
    # evaluating rule"); every call is therefore guarded by the same pattern.
    bad = []
    for path, _node, rule in rules(root_schema(load(crd_file))):
        for arg in re.findall(r"duration\((self(?:\.\w+)?)\)", rule["rule"]):
            if f"!{arg}.matches(r'{DURATION_RE}')" not in rule["rule"]:
                bad.append(f"{path}: duration({arg}) without a pattern guard")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("value", ["2160h", "1h30m", "10m", "1.5h", "90s", "500ms", "1µs", "2h45m30.5s"])
def test_duration_pattern_accepts(value: str) -> None:
    assert re.fullmatch(DURATION_RE, value)


@pytest.mark.parametrize("value", ["", "90d", "-1h", "1 h", "h", "1", "1H", "P1D", "1.h"])
def test_duration_pattern_rejects(value: str) -> None:
    assert not re.fullmatch(DURATION_RE, value)


def test_name_references_use_dns1123_subdomains() -> None:
    refs = [
        ("certmint.dev_certificates.yaml", "spec.secretName"),
        ("certmint.dev_certificates.yaml", "spec.issuerRef.name"),
        ("certmint.dev_certificaterequests.yaml", "spec.issuerRef.name"),
        ("certmint.dev_issuers.yaml", "spec.ca.secretName"),
        ("certmint.dev_clusterissuers.yaml", "spec.ca.secretName"),
    ]
    for name, dotted in refs:
        node = schema_at(root_schema(load(name)), dotted)
        assert node is not None, dotted
        assert node["pattern"] == DNS1123_SUBDOMAIN_RE, f"{name}: {dotted}"
        assert node["maxLength"] == 253, f"{name}: {dotted}"
    for ok in ["web-tls", "a", "web.tls-1"]:
        assert re.fullmatch(DNS1123_SUBDOMAIN_RE, ok)
    for bad in ["Web", "-web", "web-", "web_tls", "", "web..tls"]:
        assert not re.fullmatch(DNS1123_SUBDOMAIN_RE, bad)


def test_dns_name_pattern() -> None:
    pattern = certificate_spec()["properties"]["dnsNames"]["items"]["pattern"]
    for ok in ["web", "web.default.svc", "*.example.com", "a-b.c-d.e", "Web.Example.COM", "x" * 63]:
        assert re.fullmatch(pattern, ok), ok
    for bad in ["*", "*.", "a..b", "-a.b", "a-.b", "under_score.b", "a.*.b", "x" * 64, "a.b."]:
        assert not re.fullmatch(pattern, bad), bad


def test_private_key_size_enum_covers_exactly_the_algorithm_sizes() -> None:
    pk = certificate_spec()["properties"]["privateKey"]
    assert sorted(pk["properties"]["size"]["enum"]) == [256, 384, 521, 2048, 3072, 4096]
    text = " ".join(r["rule"] for r in pk["x-kubernetes-validations"])
    assert "[256, 384, 521]" in text
    assert "[2048, 3072, 4096]" in text


def test_key_usage_enum_is_cert_manager_compatible() -> None:
    usages = certificate_spec()["properties"]["usages"]
    enum = usages["items"]["enum"]
    assert len(enum) == len(set(enum)) == 23
    assert usages["maxItems"] == len(enum)
    assert usages["minItems"] == 1
    assert {"digital signature", "key encipherment", "server auth", "client auth", "cert sign"} <= set(enum)


# --------------------------------------------------------------------------- the checkers themselves


def test_missing_descriptions_reports_paths() -> None:
    schema = copy.deepcopy(root_schema(load("certmint.dev_certificates.yaml")))
    del schema["properties"]["spec"]["properties"]["privateKey"]["properties"]["size"]["description"]
    schema["properties"]["status"]["properties"]["conditions"]["items"]["properties"]["reason"]["description"] = "  "
    assert missing_descriptions(schema) == ["spec.privateKey.size", "status.conditions[].reason"]


def test_unbounded_reports_paths() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "string"},
            "b": {"type": "array", "items": {"type": "string", "maxLength": 3}},
            "c": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 1}},
            "d": {"type": "string", "enum": ["x"]},
            "e": {"type": "string", "format": "date-time"},
        },
    }
    assert unbounded(schema, "spec") == [
        "spec.a (string without maxLength)",
        "spec.b (array without maxItems)",
        "spec.c (map without maxProperties)",
    ]


def test_rule_fields() -> None:
    assert rule_fields("has(self.a) && duration(self.b) < duration(oldSelf.c) || x.self") == {"a", "b", "c"}


# --------------------------------------------------------------------------- names a policy can judge (issue 11)

SPIFFE_EXAMPLES = [
    ("spiffe://cluster.local/ns/default/sa/web", True),
    ("spiffe://example.org/a.b-c_D/0", True),
    ("spiffe://a_b.example-1.org/x/.../y", True),
    ("https://example.com/a/../b", True),  # not a SPIFFE ID: other rules apply
    ("spiffe://", False),
    ("spiffe://cluster.local", False),
    ("spiffe://cluster.local/", False),
    ("spiffe:///ns/a", False),
    ("spiffe://Cluster.local/ns/a", False),
    ("spiffe://cluster.local/ns/a/", False),
    ("spiffe://cluster.local/ns//a", False),
    ("spiffe://cluster.local/ns/../a", False),
    ("spiffe://cluster.local/./a", False),
    ("spiffe://cluster.local/ns/..", False),
    ("spiffe://cluster.local:8443/ns/a", False),
    ("spiffe://user@cluster.local/ns/a", False),
    ("spiffe://cluster.local/ns/a?x=1", False),
    ("spiffe://cluster.local/ns/a#x", False),
    ("spiffe://cluster.local/ns/a%2Fb", False),
    ("SPIFFE://cluster.local/ns/a", False),
    ("Spiffe://cluster.local/ns/a", False),
    ("spiffe:cluster.local/ns/a", False),
]


def _spiffe_rule() -> dict[str, Any]:
    node = certificate_spec()["properties"]["uris"]["items"]
    found = [r for r in node["x-kubernetes-validations"] if "spiffe" in r["rule"]]
    assert len(found) == 1
    return found[0]


def _evaluate_spiffe_rule(rule: str, uri: str) -> bool:
    """The CEL rule evaluated with Python's re: it only combines self.matches() with !, && and ||."""
    patterns = re.findall(r"self\.matches\('([^']*)'\)", rule)
    assert len(patterns) == 3, rule
    is_spiffe, shape, dot_segment = (re.search(p, uri) is not None for p in patterns)  # CEL matches() = search
    return not is_spiffe or (shape and not dot_segment)


@pytest.mark.parametrize(("uri", "valid"), SPIFFE_EXAMPLES)
def test_spiffe_rule_agrees_with_the_operator(uri: str, valid: bool) -> None:
    rule = _spiffe_rule()
    assert _evaluate_spiffe_rule(rule["rule"], uri) is valid
    operator_valid = not uri.lower().startswith("spiffe:") or spiffe_id_problem(uri) is None
    assert operator_valid is valid
    assert "spec.uris" in rule["message"] and "'" not in rule["message"]


def test_policy_schema_has_the_fields_the_parser_reads() -> None:
    for name in ["certmint.dev_issuers.yaml", "certmint.dev_clusterissuers.yaml"]:
        policy = root_schema(load(name))["properties"]["spec"]["properties"]["policy"]["properties"]
        assert policy["allowedCommonNames"]["type"] == "array"
        subject = policy["allowedSubject"]
        assert subject["type"] == "object"
        assert set(subject["properties"]) == set(SubjectPolicy.FIELDS)
        assert "default" not in subject, "absent must stay distinguishable from {}"


# --------------------------------------------------------------------------- usages by key type (issue 12)


def _spec_rule_messages(name: str) -> dict[str, str]:
    """message (folded to single spaces) -> rule, for the spec-level CEL rules of one CRD."""
    spec = root_schema(load(name))["properties"]["spec"]
    return {" ".join(r["message"].split()): " ".join(r["rule"].split()) for r in spec["x-kubernetes-validations"]}


USAGE_MESSAGES = {
    usages.NEEDS_KEY_AGREEMENT: ["encipher only", "decipher only", "key agreement"],
    usages.ENCIPHER_AND_DECIPHER_ONLY: ["encipher only", "decipher only"],
    usages.CA_ONLY: ["cert sign", "crl sign"],
    usages.RSA_FORBIDDEN: ["'RSA'", "key agreement", "encipher only", "decipher only"],
    usages.RSA_CA_FORBIDDEN: ["'RSA'", "self.isCA", "key encipherment", "data encipherment"],
    usages.ECDSA_FORBIDDEN: ["'ECDSA'", "key encipherment", "data encipherment"],
    usages.ED25519_FORBIDDEN: ["'Ed25519'", "key encipherment", "data encipherment", "key agreement"],
}
KEY_INDEPENDENT = [usages.NEEDS_KEY_AGREEMENT, usages.ENCIPHER_AND_DECIPHER_ONLY, usages.CA_ONLY]


def test_certificate_usage_rules_say_what_the_operator_says() -> None:
    """Each refusal of pki.usages.usage_problems is a CEL rule with the same words, so kubectl and the Ready
    condition agree; the rule reads the fields and usages its message names."""
    rules = _spec_rule_messages("certmint.dev_certificates.yaml")
    for message, words in USAGE_MESSAGES.items():
        rule = rules.get(f"spec.usages: {message}")
        assert rule is not None, f"no CEL rule says {message!r}"
        assert all(word in rule for word in words), (message, rule)


def test_certificate_request_has_the_usage_rules_that_need_no_key() -> None:
    """A CertificateRequest's key is inside its CSR, out of CEL's reach: the key-independent rules only."""
    rules = _spec_rule_messages("certmint.dev_certificaterequests.yaml")
    assert {m.removeprefix("spec.usages: ") for m in rules if m.startswith("spec.usages: ")} == set(KEY_INDEPENDENT)


def test_old_default_usages_are_exempt_at_admission_exactly_as_the_operator_reads_them() -> None:
    """Objects created before issue 12 store the old default list; the key-dependent rules that it would break
    let exactly that set through (the operator reads it as "not set"), in the set's own words."""
    legacy = "[" + ", ".join(f"'{u}'" for u in usages.LEGACY_DEFAULT_USAGES) + "]"
    exemption = f"(size(self.usages) == 4 && self.usages.all(u, u in {legacy}))"
    rules = _spec_rule_messages("certmint.dev_certificates.yaml")
    for message in (usages.RSA_CA_FORBIDDEN, usages.ECDSA_FORBIDDEN, usages.ED25519_FORBIDDEN):
        assert exemption in rules[f"spec.usages: {message}"], message
    for message in [*KEY_INDEPENDENT, usages.RSA_FORBIDDEN]:
        assert "self.usages.all" not in rules[f"spec.usages: {message}"], "the old default breaks none of these"
        assert not usages.usage_problems(usages.LEGACY_DEFAULT_USAGES, key_algorithm="RSA", is_ca=False)


def test_a_ca_needs_a_subject_at_admission() -> None:
    rules = _spec_rule_messages("certmint.dev_certificates.yaml")
    rule = rules[" ".join(CA_NEEDS_SUBJECT.split())]
    assert "self.isCA" in rule and "has(self.commonName)" in rule
    subject = certificate_spec()["properties"]["subject"]["properties"]
    for attribute in subject:
        assert f"self.subject.{attribute}" in rule, f"a CA whose subject is only {attribute} would be refused"
