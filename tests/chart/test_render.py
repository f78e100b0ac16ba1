"""The chart renders, lints, is deterministic, documents its values and grants exactly the intended rules.

These need helm only; test_apply.py sends the same renders to a real API server.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import CHART, REPO, documents, render, run_helm, values_file
from tests.chart.value_sets import NAMES, value_sets

pytestmark = pytest.mark.chart
RELEASE, NAMESPACE = "cm", "certmint-system"


@pytest.mark.parametrize("name", NAMES)
def test_helm_lint_strict(helm: Path, name: str) -> None:
    path = values_file(value_sets(RELEASE)[name])
    try:
        proc = run_helm(helm, "lint", "--strict", str(CHART), "--namespace", NAMESPACE, "--values", str(path))
    finally:
        path.unlink()
    assert "0 chart(s) failed" in proc.stdout, proc.stdout


@pytest.mark.parametrize("name", NAMES)
def test_rendering_is_deterministic(helm: Path, name: str) -> None:
    values = value_sets(RELEASE)[name]
    assert render(helm, RELEASE, NAMESPACE, values) == render(helm, RELEASE, NAMESPACE, values)


def test_templates_use_no_nondeterministic_functions() -> None:
    """Rendering twice in one second cannot catch `now | date "2006-01-02"`; reading the templates can."""
    banned = re.compile(r"\b(now|rand[A-Za-z]*|uuidv4|gen(CA|PrivateKey|SelfSignedCert|SignedCert)\w*|lookup)\b")
    for path in sorted((CHART / "templates").iterdir()):
        actions = re.findall(r"{{(.*?)}}", path.read_text(), flags=re.S)
        used = {m.group(0) for action in actions for m in banned.finditer(re.sub(r"/\*.*?\*/", "", action, flags=re.S))}
        assert not used, f"{path.name} uses {used}: its output would change on every render (GitOps tools see drift)"


def test_chart_crds_are_the_repository_crds() -> None:
    """crds/ is the single source; the chart ships a generated copy (make chart-crds) that must not drift."""
    source = {p.name: p.read_bytes() for p in sorted((REPO / "crds").glob("*.yaml"))}
    copy = {p.name: p.read_bytes() for p in sorted((CHART / "files" / "crds").glob("*.yaml"))}
    assert source, "no CRDs in crds/"
    assert copy.keys() == source.keys(), "run `make chart-crds`: the chart's CRD files differ from crds/"
    stale = [name for name in source if copy[name] != source[name]]
    assert not stale, f"run `make chart-crds`: {stale} differ from crds/"


def test_rendered_crds_are_the_source_plus_labels(helm: Path) -> None:
    rendered = {d["metadata"]["name"]: d for d in documents(render(helm, RELEASE, NAMESPACE)) if _is_crd(d)}
    for path in sorted((REPO / "crds").glob("*.yaml")):
        source = yaml.safe_load(path.read_text())
        got = rendered.pop(source["metadata"]["name"])
        assert got["spec"] == source["spec"], path.name
        assert got["metadata"]["labels"].items() >= source["metadata"]["labels"].items()
        assert got["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert got["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert not rendered, f"CRDs rendered that crds/ does not have: {list(rendered)}"


def test_packaged_chart_carries_the_crds(helm: Path, tmp_path: Path) -> None:
    """`helm package` keeps files/crds (a symlink out of the chart would not survive this)."""
    run_helm(helm, "package", str(CHART), "--destination", str(tmp_path))
    (package,) = tmp_path.glob("certmint-*.tgz")
    proc = run_helm(helm, "template", RELEASE, str(package), "--namespace", NAMESPACE)
    assert len([d for d in documents(proc.stdout) if _is_crd(d)]) == len(list((REPO / "crds").glob("*.yaml")))


def test_crds_keep_and_enabled_switches(helm: Path) -> None:
    not_kept = [d for d in documents(render(helm, RELEASE, NAMESPACE, {"crds": {"keep": False}})) if _is_crd(d)]
    assert len(not_kept) == len(list((REPO / "crds").glob("*.yaml")))
    assert all("annotations" not in d["metadata"] for d in not_kept)
    assert not [d for d in documents(render(helm, RELEASE, NAMESPACE, {"crds": {"enabled": False}})) if _is_crd(d)]


def _is_crd(doc: dict[str, Any]) -> bool:
    return bool(doc["kind"] == "CustomResourceDefinition")


# -- values: documented, schema-checked, combinations validated ----------------------------------------------


def test_every_value_is_commented() -> None:
    """Each leaf in values.yaml carries a `# --` comment, on itself or on the object value it belongs to."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    key_line = re.compile(r"^(\s*)([A-Za-z][A-Za-z0-9]*):(.*)$")
    documented_at: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    undocumented = []
    for i, line in enumerate(lines):
        m = key_line.match(line)
        if not m:
            continue
        indent, key, rest = len(m.group(1)), m.group(2), m.group(3).strip()
        while documented_at and documented_at[-1][0] >= indent:
            documented_at.pop()
        j = i - 1
        comment: list[str] = []
        while j >= 0 and lines[j].strip().startswith("#"):
            comment.append(lines[j])
            j -= 1
        documented = any("# --" in c for c in comment) or any(d for _, d in documented_at)
        is_section = rest == "" and not documented
        if not documented and not is_section:
            undocumented.append(f"values.yaml:{i + 1}: {key}")
        documented_at.append((indent, documented))
    assert not undocumented, "values without a `# --` comment:\n" + "\n".join(undocumented)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCont": 2}, "additional properties 'replicaCont' not allowed"),
        ({"replicaCount": "two"}, "replicaCount"),
        ({"image": {"digest": "latest"}}, "digest"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "watchNamespaces"),
        ({"replicaCount": 2, "leaderElection": {"enabled": False}}, "needs leaderElection.enabled=true"),
        ({"leaderElection": {"renewSeconds": 15}}, "renewSeconds must be below"),
        ({"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}}, "needs metrics.service"),
        ({"clusterIssuer": {"create": True, "ca": {"secretName": "x"}}}, "exactly one of"),
        ({"clusterIssuer": {"create": True, "selfSigned": False}}, "exactly one of"),
        ({"serviceAccount": {"create": False}}, "serviceAccount.name is required"),
        ({"watchNamespaces": ["a", "a"]}, "watchNamespaces"),
        ({"podCertificates": {"enabled": "yes"}}, "podCertificates/enabled"),
        ({"podCertificates": {"signerName": "x"}}, "additional properties 'signerName' not allowed"),
    ],
)
def test_invalid_values_are_rejected_with_a_reason(helm: Path, values: dict[str, Any], message: str) -> None:
    path = values_file(values)
    try:
        proc = run_helm(helm, "template", "x", str(CHART), "--values", str(path), check=False)
    finally:
        path.unlink()
    assert proc.returncode != 0, f"{values} rendered:\n{proc.stdout[:500]}"
    assert message in proc.stderr, proc.stderr


# -- the Deployment ------------------------------------------------------------------------------------------


def _deployment(helm: Path, values: dict[str, Any] | None = None) -> dict[str, Any]:
    (deployment,) = [d for d in documents(render(helm, RELEASE, NAMESPACE, values)) if d["kind"] == "Deployment"]
    return deployment


def test_deployment_is_hardened(helm: Path) -> None:
    pod = _deployment(helm)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert "memory" in container["resources"]["limits"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {v["name"] for v in pod["volumes"]} == {"tmp"}


def test_deployment_environment(helm: Path) -> None:
    container = _deployment(helm)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["CERTMINT_NAMESPACE"]["value"] == NAMESPACE
    assert env["CERTMINT_HTTP_PORT"]["value"] == "8080"
    assert env["CERTMINT_LEADER_ELECTION"]["value"] == "true"
    assert "CERTMINT_WATCH_NAMESPACES" not in env
    assert "args" not in container
    namespaced = _deployment(helm, value_sets(RELEASE)["namespaced"])["spec"]["template"]["spec"]["containers"][0]
    watch = {e["name"]: e.get("value") for e in namespaced["env"]}["CERTMINT_WATCH_NAMESPACES"]
    assert watch == f"{RELEASE}-team-a,{RELEASE}-team-b"


def test_every_object_has_the_recommended_labels(helm: Path) -> None:
    for name in NAMES:
        for doc in documents(render(helm, RELEASE, NAMESPACE, value_sets(RELEASE)[name])):
            labels = doc["metadata"].get("labels", {})
            for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version"):
                assert key in labels, f"{name}: {doc['kind']}/{doc['metadata']['name']} lacks {key}"
            assert labels["app.kubernetes.io/managed-by"] == "Helm"
            assert labels["helm.sh/chart"] == "certmint-0.1.0"


# -- RBAC: exactly the intended rules ------------------------------------------------------------------------

# (scope, apiGroup, resource, verb, resourceName); scope is "cluster" or a namespace.
Grant = tuple[str, str, str, str, str]


def operator_grants(docs: list[dict[str, Any]], service_account: str, namespace: str) -> set[Grant]:
    """Every (scope, group, resource, verb, name) the chart grants to the operator's ServiceAccount."""
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs}
    grants: set[Grant] = set()
    for binding in docs:
        if binding["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        subject = {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}
        if subject not in binding["subjects"]:
            continue
        scope = binding["metadata"].get("namespace") or "cluster"
        ref = binding["roleRef"]
        role = roles[(ref["kind"], None if ref["kind"] == "ClusterRole" else scope, ref["name"])]
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for name in rule.get("resourceNames", ["*"]):
                            grants.add((scope, group, resource, verb, name))
    return grants


def _expand(scope: str, group: str, resources: list[str], verbs: list[str], name: str = "*") -> set[Grant]:
    return {(scope, group, r, v, name) for r in resources for v in verbs}


def expected_grants(
    scopes: list[str], namespace: str, *, leader_election: bool = True, pod_certificates: bool = False
) -> set[Grant]:
    """The operator's API calls (operator/certmint/kube/resources.py, leader.py, and kopf's watches)."""
    kinds = ["certificates", "issuers", "certificaterequests"]
    grants: set[Grant] = set()
    for scope in scopes:
        grants |= _expand(scope, "certmint.dev", kinds, ["get", "list", "watch"])
        grants |= _expand(scope, "certmint.dev", [f"{k}/status" for k in kinds], ["patch"])
        grants |= _expand(scope, "certmint.dev", ["certificaterequests"], ["create", "delete"])
        grants |= _expand(scope, "", ["secrets"], ["get", "list", "watch", "create", "patch"])
        grants |= _expand(scope, "", ["events"], ["create"])
        grants |= _expand(scope, "", ["configmaps"], ["get", "list", "watch", "create", "patch", "delete"])  # Bundles
    grants |= _expand("cluster", "certmint.dev", ["clusterissuers", "bundles"], ["get", "list", "watch"])
    grants |= _expand("cluster", "certmint.dev", ["clusterissuers/status", "bundles/status"], ["patch"])
    grants |= _expand("cluster", "apiextensions.k8s.io", ["customresourcedefinitions"], ["list", "watch"])
    grants |= _expand("cluster", "", ["namespaces"], ["list", "watch"])  # Bundles' namespace selectors
    grants |= _expand("cluster", "certificates.k8s.io", ["clustertrustbundles"], ["get", "create", "patch"])
    if scopes != ["cluster"] and namespace not in scopes:
        grants |= _expand(namespace, "", ["secrets"], ["get"])  # ClusterIssuer CA Secrets, Bundle source Secrets
        grants |= _expand(namespace, "", ["configmaps"], ["get"])  # Bundle source ConfigMaps
    if scopes != ["cluster"] and "default" not in scopes:
        grants |= _expand("default", "", ["events"], ["create"])  # Events about Bundles (cluster-scoped)
    if leader_election:
        grants |= _expand(namespace, "coordination.k8s.io", ["leases"], ["create"])
        grants |= _expand(namespace, "coordination.k8s.io", ["leases"], ["get", "patch"], "certmint-operator")
    if pod_certificates:  # cluster-scoped in both modes: the API server's sign and attest checks are
        grants |= POD_CERTIFICATE_GRANTS
    return grants


# Exactly what podCertificates.enabled adds: watch every request, answer with one status patch, sign and attest for
# certmint's signer names only (ClusterTrustBundles: the Bundles' get/create/patch grant, not repeated).
POD_CERTIFICATE_GRANTS: set[Grant] = (
    _expand("cluster", "certificates.k8s.io", ["podcertificaterequests"], ["get", "list", "watch"])
    | _expand("cluster", "certificates.k8s.io", ["podcertificaterequests/status"], ["patch"])
    | _expand("cluster", "certificates.k8s.io", ["signers"], ["sign", "attest"], "certmint.dev/*")
)
PODS_ON = {"podCertificates": {"enabled": True}}


def test_cluster_wide_rbac_is_exactly_the_operators_calls(helm: Path) -> None:
    docs = documents(render(helm, RELEASE, NAMESPACE))
    assert operator_grants(docs, "cm-certmint", NAMESPACE) == expected_grants(["cluster"], NAMESPACE)


def test_namespaced_rbac_grants_nothing_namespaced_cluster_wide(helm: Path) -> None:
    values = value_sets(RELEASE)["namespaced"]
    docs = documents(render(helm, RELEASE, NAMESPACE, values))
    grants = operator_grants(docs, "cm-certmint", NAMESPACE)
    assert grants == expected_grants(values["watchNamespaces"], NAMESPACE)
    cluster_resources = {g[2] for g in grants if g[0] == "cluster"}
    assert cluster_resources == {
        "clusterissuers",
        "clusterissuers/status",
        "bundles",
        "bundles/status",
        "clustertrustbundles",
        "customresourcedefinitions",
        "namespaces",
    }


def test_namespaced_rbac_covering_the_release_namespace_needs_no_extra_role(helm: Path) -> None:
    values = {"watchNamespaces": [NAMESPACE, "apps"]}
    docs = documents(render(helm, RELEASE, NAMESPACE, values))
    assert operator_grants(docs, "cm-certmint", NAMESPACE) == expected_grants([NAMESPACE, "apps"], NAMESPACE)
    assert not [d for d in docs if d["metadata"]["name"].endswith("-ca-secrets")]


def test_no_leader_election_no_lease_rules(helm: Path) -> None:
    docs = documents(render(helm, RELEASE, NAMESPACE, {"leaderElection": {"enabled": False}}))
    grants = operator_grants(docs, "cm-certmint", NAMESPACE)
    assert grants == expected_grants(["cluster"], NAMESPACE, leader_election=False)


def test_user_roles_aggregate_into_view_and_edit(helm: Path) -> None:
    docs = {d["metadata"]["name"]: d for d in documents(render(helm, RELEASE, NAMESPACE)) if d["kind"] == "ClusterRole"}
    view, edit = docs["cm-certmint-view"], docs["cm-certmint-edit"]
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in edit["metadata"]["labels"]
    assert {v for r in view["rules"] for v in r["verbs"]} == {"get", "list", "watch"}
    assert "clusterissuers" not in {res for r in edit["rules"] for res in r["resources"]}
    off = documents(render(helm, RELEASE, NAMESPACE, {"rbac": {"aggregateToDefaultRoles": False}}))
    assert not [d for d in off if d["metadata"]["name"] in ("cm-certmint-view", "cm-certmint-edit")]


# -- pod certificates ----------------------------------------------------------------------------------------


def test_pod_certificate_rules_only_when_enabled(helm: Path) -> None:
    off = operator_grants(documents(render(helm, RELEASE, NAMESPACE)), "cm-certmint", NAMESPACE)
    assert not {g for g in off if g[2] in ("signers", "podcertificaterequests", "podcertificaterequests/status")}
    on = operator_grants(documents(render(helm, RELEASE, NAMESPACE, PODS_ON)), "cm-certmint", NAMESPACE)
    assert on == expected_grants(["cluster"], NAMESPACE, pod_certificates=True)
    assert on - off == POD_CERTIFICATE_GRANTS


def test_pod_certificate_rules_are_cluster_wide_in_namespaced_mode(helm: Path) -> None:
    """A RoleBinding cannot grant sign or attest (the API server checks them without a namespace): a ClusterRole
    even when the rest is namespaced."""
    values = {**value_sets(RELEASE)["namespaced"], **PODS_ON}
    grants = operator_grants(documents(render(helm, RELEASE, NAMESPACE, values)), "cm-certmint", NAMESPACE)
    assert grants == expected_grants(values["watchNamespaces"], NAMESPACE, pod_certificates=True)


def test_pod_certificate_role_is_exactly_these_rules(helm: Path) -> None:
    """The rules as written, resourceNames included: a sign rule without resourceNames would sign for any signer
    (kubernetes.io/kube-apiserver-client included)."""
    docs = documents(render(helm, RELEASE, NAMESPACE, PODS_ON))
    (role,) = [
        d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "cm-certmint-pod-certificates"
    ]
    group = ["certificates.k8s.io"]
    assert role["rules"] == [
        {"apiGroups": group, "resources": ["podcertificaterequests"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": group, "resources": ["podcertificaterequests/status"], "verbs": ["patch"]},
        {
            "apiGroups": group,
            "resources": ["signers"],
            "resourceNames": ["certmint.dev/*"],
            "verbs": ["sign", "attest"],
        },
    ]
    (binding,) = [
        d for d in docs if d["kind"] == "ClusterRoleBinding" and d["metadata"]["name"] == role["metadata"]["name"]
    ]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "cm-certmint", "namespace": NAMESPACE}]


@pytest.mark.parametrize("name", ["defaults", "namespaced"])
def test_nothing_may_create_pod_certificate_requests(helm: Path, name: str) -> None:
    """Whoever may create a PodCertificateRequest (other than a node) can name any pod and ServiceAccount, and
    certmint would sign that identity: no role of the chart grants it, to the operator or to users, not even through
    a wildcard."""
    docs = documents(render(helm, RELEASE, NAMESPACE, {**value_sets(RELEASE)[name], **PODS_ON}))
    for role in docs:
        if role["kind"] not in ("ClusterRole", "Role"):
            continue
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"], role["metadata"]["name"]
            if {"certificates.k8s.io", "*"} & set(rule["apiGroups"]) and "podcertificaterequests" in rule["resources"]:
                assert not {"create", "update", "delete", "deletecollection"} & set(rule["verbs"]), rule


def test_pod_certificates_environment(helm: Path) -> None:
    def env(values: dict[str, Any] | None) -> dict[str, str]:
        container = _deployment(helm, values)["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value") for e in container["env"]}

    assert env(None)["CERTMINT_POD_CERTIFICATES"] == "false"
    assert env(PODS_ON)["CERTMINT_POD_CERTIFICATES"] == "true"


# What `helm template --api-versions` adds to Helm's built-in capabilities (group/versions only, no kinds): a
# cluster's discovery lists every kind, v1/Namespace always.
CLUSTER_WITHOUT_PCR = ["v1/Namespace", "certificates.k8s.io/v1beta1/ClusterTrustBundle"]
CLUSTER_WITH_PCR = [*CLUSTER_WITHOUT_PCR, "certificates.k8s.io/v1beta1/PodCertificateRequest"]


def _template(helm: Path, values: dict[str, Any], api_versions: list[str]) -> tuple[int, str]:
    path = values_file(values)
    flags = [f"--api-versions={v}" for v in api_versions]
    try:
        proc = run_helm(helm, "template", RELEASE, str(CHART), "--values", str(path), *flags, check=False)
    finally:
        path.unlink()
    return proc.returncode, proc.stderr


def test_pod_certificates_fail_on_a_cluster_without_the_api(helm: Path) -> None:
    code, stderr = _template(helm, PODS_ON, CLUSTER_WITHOUT_PCR)
    assert code != 0
    assert "does not serve certificates.k8s.io/v1beta1 PodCertificateRequests" in stderr, stderr
    assert "--feature-gates=PodCertificateRequest=true" in stderr
    assert "--runtime-config=certificates.k8s.io/v1beta1/podcertificaterequests=true" in stderr
    assert _template(helm, PODS_ON, CLUSTER_WITH_PCR) == (0, "")
    assert _template(helm, {}, CLUSTER_WITHOUT_PCR)[0] == 0, "asked only when enabled"


def test_pod_certificates_render_offline_without_the_check(helm: Path) -> None:
    """An offline helm template (and helm lint, which takes no --api-versions) knows no cluster: it renders."""
    assert _template(helm, PODS_ON, [])[0] == 0
    assert _template(helm, PODS_ON, ["certificates.k8s.io/v1beta1/PodCertificateRequest"])[0] == 0
