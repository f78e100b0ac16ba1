"""Bundles against the real API server (issue 14, item 3): trust anchors to selected namespaces and as a
ClusterTrustBundle; what is not the Bundle's is never overwritten; a bad source changes nothing.

The session's operator runs with the cluster-wide defaults; each test makes its own namespaces, labelled so
that only its own Bundle selects them.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.integration.builders import Certmint, ca_chain, unique
from tests.integration.conftest import OPERATOR_NAMESPACE
from tests.integration.kubeutil import wait_for
from tests.x509util import certificate_builder, common_name

pytestmark = pytest.mark.integration

LABEL = "certmint-test/bundle"


def ca_pem(name: str, *, days: float = 1) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        certificate_builder(
            common_name(name),
            key.public_key(),
            now - datetime.timedelta(days=2),
            now + datetime.timedelta(days=days),
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.PEM).decode()


def bundle(name: str, sources: list[dict[str, Any]], selector: dict[str, Any], **target: Any) -> dict[str, Any]:
    return {
        "apiVersion": "certmint.dev/v1alpha1",
        "kind": "Bundle",
        "metadata": {"name": name},
        "spec": {
            "sources": sources,
            "target": {"configMap": {"key": "ca.crt"}, "namespaceSelector": selector, **target},
        },
    }


def subjects(pem: str) -> list[str]:
    return [c.subject.rfc4514_string() for c in x509.load_pem_x509_certificates(pem.encode())]


class Cluster:
    def __init__(self, api: client.ApiClient) -> None:
        self.cm = Certmint(api)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.bundles: list[str] = []

    def create(self, body: dict[str, Any]) -> None:
        """Create a Bundle, deleted again when the module ends (the operator of the session keeps running:
        a Bundle left behind would read its sources at every restart a later test counts)."""
        self.cm.create(body)
        self.bundles.append(body["metadata"]["name"])

    def namespace(self, prefix: str, labels: dict[str, str]) -> str:
        name = unique(prefix)
        self.core.create_namespace({"metadata": {"name": name, "labels": labels}})
        return name

    def label(self, namespace: str, labels: dict[str, str | None]) -> None:
        self.core.patch_namespace(namespace, {"metadata": {"labels": labels}})

    def config_map(self, name: str, namespace: str) -> client.V1ConfigMap | None:
        try:
            return self.core.read_namespaced_config_map(name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def anchors_in(self, name: str, namespace: str) -> str | None:
        found = self.config_map(name, namespace)
        return None if found is None else (found.data or {}).get("ca.crt")

    def cluster_trust_bundle(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(
                self.custom.get_cluster_custom_object("certificates.k8s.io", "v1beta1", "clustertrustbundles", name)
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.cm.get("Bundle", name).get("status") or {})


@pytest.fixture(scope="module")
def cluster(api: client.ApiClient, operator: object) -> Iterator[Cluster]:
    made = Cluster(api)
    yield made
    for name in made.bundles:
        made.cm.delete("Bundle", name)


@pytest.fixture(scope="module")
def root(cluster: Cluster) -> str:
    """A CA ClusterIssuer on a certmint root Certificate in the operator's namespace."""
    return ca_chain(cluster.cm, unique("bundle-root"), OPERATOR_NAMESPACE)


@pytest.fixture
def team() -> Iterator[str]:
    yield unique("team")


def issuer_anchors(cluster: Cluster, issuer: str) -> list[str]:
    return [a["subject"] for a in cluster.cm.get("ClusterIssuer", issuer)["status"]["trustAnchors"]]


def test_anchors_reach_selected_namespaces_and_a_cluster_trust_bundle(cluster: Cluster, root: str, team: str) -> None:
    extra = ca_pem(f"{team} partner CA")
    a = cluster.namespace("bundle-a", {LABEL: team})
    b = cluster.namespace("bundle-b", {LABEL: team})
    other = cluster.namespace("bundle-other", {})
    name = unique("trust")
    cluster.create(bundle(name, [{"issuer": {"name": root}}, {"inline": extra}], {"matchLabels": {LABEL: team}}))
    cluster.cm.wait_ready("Bundle", name, timeout=30)
    expected = [*issuer_anchors(cluster, root), f"CN={team} partner CA"]
    for ns in (a, b):
        pem = cluster.anchors_in(name, ns)
        assert pem is not None and subjects(pem) == expected, ns
    assert cluster.config_map(name, other) is None
    ctb = cluster.cluster_trust_bundle(name)
    assert ctb is not None and subjects(ctb["spec"]["trustBundle"]) == expected
    status = cluster.status(name)
    assert status["anchorCount"] == 2
    assert status["targets"][0] == {"kind": "ConfigMap", "namespaces": 2, "inSync": 2, "conflicts": 0}
    assert status["clusterTrustBundle"]["state"] == "Published"

    # A namespace that starts matching gets it; one that stops matching loses it; an edit is put right.
    cluster.label(other, {LABEL: team})
    wait_for(lambda: cluster.anchors_in(name, other), f"ConfigMap {name} in newly selected {other}", timeout=20)
    cluster.label(a, {LABEL: None})
    wait_for(lambda: cluster.config_map(name, a) is None, f"ConfigMap {name} removed from {a}", timeout=20)
    cluster.core.patch_namespaced_config_map(name, b, {"data": {"ca.crt": extra}})
    wait_for(lambda: cluster.anchors_in(name, b) != extra, f"ConfigMap {name} in {b} put right", timeout=20)
    assert subjects(cluster.anchors_in(name, b) or "") == expected


def test_a_target_that_is_not_the_bundles_is_never_overwritten(cluster: Cluster, root: str, team: str) -> None:
    name = unique("trust")
    mine = cluster.namespace("bundle-mine", {LABEL: team})
    theirs = cluster.namespace("bundle-theirs", {LABEL: team})
    user_data = {"ca.crt": "the user's own data", "other": "kept"}
    # Same name, and even the Bundle label: neither makes it the Bundle's (no owner reference to it).
    cluster.core.create_namespaced_config_map(
        theirs, {"metadata": {"name": name, "labels": {"certmint.dev/bundle": name}}, "data": user_data}
    )
    before = cluster.config_map(name, theirs)
    assert before is not None
    cluster.create(bundle(name, [{"issuer": {"name": root}}], {"matchLabels": {LABEL: team}}))
    cluster.cm.wait_condition("Bundle", name, None, "Ready", "False", timeout=30, reason="TargetConflict")
    assert cluster.anchors_in(name, mine) is not None
    after = cluster.config_map(name, theirs)
    assert after is not None and after.data == user_data
    assert after.metadata.resource_version == before.metadata.resource_version
    target = cluster.status(name)["targets"][0]
    assert target["conflicts"] == 1 and target["conflictingNamespaces"] == [theirs]


@pytest.mark.parametrize(
    "bad_source",
    [
        {"secret": {"name": "no-such-secret", "key": "ca.crt"}},
        {"inline": "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"},
        {"inline": "expired"},  # replaced below by an expired CA
        {"issuer": {"name": "no-such-issuer"}},
    ],
    ids=["missing-secret", "garbage-pem", "expired", "missing-issuer"],
)
def test_a_bad_source_changes_nothing_and_says_why(
    cluster: Cluster, root: str, team: str, bad_source: dict[str, Any]
) -> None:
    if bad_source.get("inline") == "expired":
        bad_source = {"inline": ca_pem(f"{team} old CA", days=-1)}
    name = unique("trust")
    ns = cluster.namespace("bundle-bad", {LABEL: team})
    cluster.create(bundle(name, [{"issuer": {"name": root}}], {"matchLabels": {LABEL: team}}))
    cluster.cm.wait_ready("Bundle", name, timeout=30)
    before = cluster.config_map(name, ns)
    assert before is not None
    good = cluster.status(name)["fingerprint"]
    cluster.cm.patch("Bundle", name, None, {"spec": {"sources": [{"issuer": {"name": root}}, bad_source]}})
    c = cluster.cm.wait_condition("Bundle", name, None, "Ready", "False", timeout=30, reason="SourceUnusable")
    assert "keep their last good anchors" in c["message"]
    after = cluster.config_map(name, ns)
    assert after is not None and after.metadata.resource_version == before.metadata.resource_version
    assert cluster.status(name)["fingerprint"] == good
    ctb = cluster.cluster_trust_bundle(name)
    assert ctb is not None and ctb["spec"]["trustBundle"] == (before.data or {})["ca.crt"]


def test_a_source_configmap_in_the_operators_namespace(cluster: Cluster, team: str) -> None:
    name = unique("trust")
    pem = ca_pem(f"{team} corporate root")
    cluster.core.create_namespaced_config_map(
        OPERATOR_NAMESPACE, {"metadata": {"name": name}, "data": {"roots.pem": pem}}
    )
    ns = cluster.namespace("bundle-cm", {LABEL: team})
    cluster.create(
        bundle(
            name,
            [{"configMap": {"name": name, "key": "roots.pem"}}],
            {"matchLabels": {LABEL: team}},
            secret={"key": "ca.crt"},
        )
    )
    cluster.cm.wait_ready("Bundle", name, timeout=30)
    assert cluster.anchors_in(name, ns) == pem
    secret = cluster.cm.secret_data(name, ns)
    assert secret["ca.crt"].decode() == pem


def test_admission_refuses_a_source_with_two_kinds(cluster: Cluster) -> None:
    body = bundle(unique("trust"), [{"issuer": {"name": "x"}, "inline": "y"}], {})
    with pytest.raises(ApiException) as refused:
        cluster.cm.create(body)
    assert refused.value.status == 422
    assert "exactly one of issuer, secret, configMap or inline" in str(refused.value.body)
