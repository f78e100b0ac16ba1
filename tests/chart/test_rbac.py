"""The chart's RBAC is enough and no more: the operator runs as the chart's ServiceAccount.

The chart is applied by an administrator; the operator then runs as a separate
process with a real bound token of the chart's ServiceAccount (TokenRequest API,
as the kubelet would project it) and with the environment the chart's Deployment
sets. It must issue certificates end to end without a single refused call, and the
same identity must be refused what its roles do not grant.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.chart.conftest import Installed, ensure_namespaces, install
from tests.controlplane.cluster import ControlPlane
from tests.controlplane.operator_process import OperatorProcess
from tests.integration.builders import GROUP, VERSION, Certmint, certificate, cluster_issuer
from tests.integration.kubeutil import wait_for
from tests.x509util import certificate_builder, common_name

pytestmark = pytest.mark.chart


# -- helpers -------------------------------------------------------------------------------------------------


def run_operator(cp: ControlPlane, installed: Installed) -> OperatorProcess:
    """The operator as the chart runs it: its ServiceAccount's token and the Deployment's environment."""
    env = installed.operator_env()
    env.pop("CERTMINT_HTTP_PORT")  # the test picks a free port instead of the pod's 8080
    env["POD_NAME"] = f"{installed.release}-0"  # the downward API's value in a pod
    log_dir = cp.workdir / "logs" / installed.release
    log_dir.mkdir(parents=True, exist_ok=True)
    proc = OperatorProcess(
        kubeconfig=installed.kubeconfig, log_dir=log_dir, namespace=installed.namespace, extra_env=env
    )
    proc.start()
    return proc


def wait_issued(cm: Certmint, name: str, namespace: str) -> x509.Certificate:
    cm.wait_ready("Certificate", name, namespace, timeout=60)
    secret = cm.secret(f"{name}-tls", namespace)
    assert secret is not None and secret.type == "kubernetes.io/tls"
    assert secret.data["tls.key"]
    return x509.load_pem_x509_certificate(base64.b64decode(secret.data["tls.crt"]))


def self_signed_ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA valid for a day, subject ``CN=<name> test CA``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = now - datetime.timedelta(minutes=1), now + datetime.timedelta(days=1)
    cert = (
        certificate_builder(common_name(f"{name} test CA"), key.public_key(), not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_ca_secret(api: client.ApiClient, namespace: str, name: str) -> None:
    """An administrator's own CA, in a kubernetes.io/tls Secret, for a CA ClusterIssuer."""
    cert, key = self_signed_ca(name)
    pem = serialization.Encoding.PEM
    data = {
        "tls.crt": cert.public_bytes(pem),
        "tls.key": key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    }
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name=name),
        type="kubernetes.io/tls",
        data={k: base64.b64encode(v).decode() for k, v in data.items()},
    )
    client.CoreV1Api(api).create_namespaced_secret(namespace, body)


# -- Bundles ---------------------------------------------------------------------------------------------------

CTB = ("certificates.k8s.io", "v1beta1", "clustertrustbundles")  # served by the test control plane (cluster.py)
TRUST_LABEL = "certmint-test/trust"


def bundle(name: str, sources: list[dict[str, Any]], selector: dict[str, Any]) -> dict[str, Any]:
    """A Bundle writing key ca.crt of a ConfigMap and of a Secret in every namespace ``selector`` matches."""
    target = {"configMap": {"key": "ca.crt"}, "secret": {"key": "ca.crt"}, "namespaceSelector": selector}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Bundle",
        "metadata": {"name": name},
        "spec": {"sources": sources, "target": target},
    }


def subjects(pem: str | bytes) -> list[str]:
    data = pem.encode() if isinstance(pem, str) else pem
    return [c.subject.rfc4514_string() for c in x509.load_pem_x509_certificates(data)]


def config_map_or_none(core: client.CoreV1Api, name: str, namespace: str) -> client.V1ConfigMap | None:
    try:
        return core.read_namespaced_config_map(name, namespace)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def labelled_namespace(api: client.ApiClient, name: str, labels: dict[str, str]) -> None:
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name, "labels": labels}})


def relabel(api: client.ApiClient, namespace: str, labels: dict[str, str | None]) -> None:
    client.CoreV1Api(api).patch_namespace(namespace, {"metadata": {"labels": labels}})


def wait_bundle_event(api: client.ApiClient, name: str, reason: str) -> None:
    """An Event about Bundle ``name``, in whichever namespace it was posted (kubectl describe looks in all:
    Kubernetes accepts a core/v1 Event about a cluster-scoped object only in namespace default)."""
    selector = f"involvedObject.kind=Bundle,involvedObject.name={name},reason={reason}"
    core = client.CoreV1Api(api)
    wait_for(lambda: core.list_event_for_all_namespaces(field_selector=selector).items, f"Event {reason} about {name}")


def refused(call: Any, *args: Any, **kwargs: Any) -> bool:
    """True when the API server answers 403 Forbidden; any other answer is a failure of the test."""
    try:
        call(*args, **kwargs)
    except ApiException as e:
        if e.status == 403:
            return True
        raise
    return False


def assert_no_refused_calls(proc: OperatorProcess) -> None:
    log = proc.log_path.read_text()
    # kopf logs refusals as APIForbiddenError / "Not enough permissions"; certmint's client as "403 Forbidden".
    for sign in ("Forbidden", "forbidden", "Not enough permissions"):
        assert sign not in log, f"the operator was refused something ({sign!r}); log: {proc.log_path}"


# -- cluster-wide mode ---------------------------------------------------------------------------------------

Running = tuple[Installed, OperatorProcess]


class TestClusterWide:
    """One operator, cluster-wide. Stopped before the namespaced one starts: ClusterIssuers are shared."""

    @pytest.fixture(scope="class")
    @classmethod
    def running(cls, control_plane: ControlPlane, api: client.ApiClient, helm: Path) -> Iterator[Running]:
        installed = install(control_plane, api, helm, "rbac-cluster")
        ensure_namespaces(control_plane, ["rbac-cluster-apps"])
        proc = run_operator(control_plane, installed)
        yield installed, proc
        proc.stop()

    def test_issues_end_to_end(self, api: client.ApiClient, running: Running) -> None:
        installed, proc = running
        ns, apps = installed.namespace, "rbac-cluster-apps"
        # A self-signed root, a CA issuer backed by the root's Secret in the operator namespace, a workload leaf.
        cm = Certmint(api)
        cm.create(cluster_issuer("rbac-cluster-selfsigned"))
        root_spec = {"isCA": True, "commonName": "rbac root", "dnsNames": []}
        cm.create(certificate("root", ns, issuer_name="rbac-cluster-selfsigned", **root_spec))
        root = wait_issued(cm, "root", ns)
        cm.create(cluster_issuer("rbac-cluster-ca", ca_secret="root-tls"))
        cm.wait_ready("ClusterIssuer", "rbac-cluster-ca", timeout=60)
        cm.create(certificate("web", apps, issuer_name="rbac-cluster-ca", dnsNames=[f"web.{apps}.svc"]))
        leaf = wait_issued(cm, "web", apps)
        assert leaf.issuer == root.subject

        lease = client.CoordinationV1Api(api).read_namespaced_lease("certmint-operator", ns)
        assert lease.spec.holder_identity == "rbac-cluster-0"
        events = client.CoreV1Api(api).list_namespaced_event(apps).items
        assert any(e.involved_object.name == "web" for e in events), "no Event about the Certificate was posted"
        assert_no_refused_calls(proc)

    def test_distributes_a_bundle(self, api: client.ApiClient, running: Running) -> None:
        """A Bundle from the CA ClusterIssuer's anchors, a CA Secret and a ConfigMap in the release namespace, to
        a ConfigMap and a Secret in a labelled namespace and as a ClusterTrustBundle; a new anchor patches all
        three; then the namespace stops matching and the ConfigMap goes (the Secret stays: certmint may not
        delete Secrets)."""
        installed, proc = running
        ns, trust, name = installed.namespace, "rbac-cluster-trust", "rbac-cluster-trust"
        core, custom, cm = client.CoreV1Api(api), client.CustomObjectsApi(api), Certmint(api)
        partner, _ = self_signed_ca("rbac-cluster partner")
        partner_pem = partner.public_bytes(serialization.Encoding.PEM).decode()
        core.create_namespaced_config_map(
            ns, {"metadata": {"name": "partner-roots"}, "data": {"roots.pem": partner_pem}}
        )
        labelled_namespace(api, trust, {TRUST_LABEL: "cluster"})
        sources = [
            {"issuer": {"name": "rbac-cluster-ca"}},  # made by test_issues_end_to_end, on Secret root-tls
            {"secret": {"name": "root-tls", "key": "ca.crt"}},  # the same root again: listed once
            {"configMap": {"name": "partner-roots", "key": "roots.pem"}},
        ]
        cm.create(bundle(name, sources, {"matchLabels": {TRUST_LABEL: "cluster"}}))
        try:
            cm.wait_ready("Bundle", name, timeout=60)
            expected = ["CN=rbac root", "CN=rbac-cluster partner test CA"]
            target = config_map_or_none(core, name, trust)
            assert target is not None and subjects(target.data["ca.crt"]) == expected
            pem = target.data["ca.crt"]
            assert base64.b64decode(core.read_namespaced_secret(name, trust).data["ca.crt"]).decode() == pem
            ctb = custom.get_cluster_custom_object(*CTB, name)
            assert ctb["spec"]["trustBundle"] == pem
            assert cm.get("Bundle", name)["status"]["clusterTrustBundle"]["state"] == "Published"
            wait_bundle_event(api, name, "AnchorsUpdated")

            # One more anchor (a spec change wakes the Bundle at once): every target is patched in place.
            more, _ = self_signed_ca("rbac-cluster next")
            more_source = {"inline": more.public_bytes(serialization.Encoding.PEM).decode()}
            cm.patch("Bundle", name, None, {"spec": {"sources": [*sources, more_source]}})
            expected.append("CN=rbac-cluster next test CA")

            def all_updated() -> bool:
                in_config_map = (core.read_namespaced_config_map(name, trust).data or {})["ca.crt"]
                in_secret = base64.b64decode(core.read_namespaced_secret(name, trust).data["ca.crt"]).decode()
                in_ctb = custom.get_cluster_custom_object(*CTB, name)["spec"]["trustBundle"]
                return subjects(in_config_map) == expected and in_secret == in_config_map == in_ctb

            wait_for(all_updated, "the new anchor in the ConfigMap, the Secret and the ClusterTrustBundle")
            patched = config_map_or_none(core, name, trust)
            assert patched is not None and patched.metadata.uid == target.metadata.uid, "patched, not replaced"

            relabel(api, trust, {TRUST_LABEL: None})
            wait_for(lambda: config_map_or_none(core, name, trust) is None, f"ConfigMap {trust}/{name} deleted")
            assert core.read_namespaced_secret(name, trust).data["ca.crt"], "a Secret target is never deleted"
            assert_no_refused_calls(proc)
        finally:
            cm.delete("Bundle", name)  # the namespaced operator, later, sees every Bundle

    def test_is_refused_the_rest(self, running: Running) -> None:
        installed, _ = running
        ns, apps = installed.namespace, "rbac-cluster-apps"
        sa = config.new_client_from_config(config_file=str(installed.kubeconfig))
        core, custom, leases = client.CoreV1Api(sa), client.CustomObjectsApi(sa), client.CoordinationV1Api(sa)
        # Allowed, as a check that the identity works at all:
        secret = core.read_namespaced_secret("web-tls", apps)
        source = core.read_namespaced_config_map("partner-roots", ns)  # a Bundle's source (test_distributes_a_bundle)
        # Refused:
        assert refused(core.delete_namespaced_secret, "web-tls", apps)
        assert refused(core.replace_namespaced_secret, "web-tls", apps, secret)
        assert refused(core.delete_namespaced_secret, "rbac-cluster-trust", "rbac-cluster-trust")  # a Bundle's
        # ConfigMaps: patched, never replaced; deleted one at a time (a Bundle's own, by resourceVersion).
        assert refused(core.replace_namespaced_config_map, "partner-roots", ns, source)
        assert refused(core.delete_collection_namespaced_config_map, apps)
        # ClusterTrustBundles: created and patched, never replaced or deleted. (Reading them is every
        # ServiceAccount's right: Kubernetes binds system:cluster-trust-bundle-discovery to all of them.)
        ctb = {"apiVersion": "certificates.k8s.io/v1beta1", "kind": "ClusterTrustBundle", "metadata": {"name": "x"}}
        assert refused(custom.replace_cluster_custom_object, *CTB, "x", {**ctb, "spec": {"trustBundle": "x"}})
        assert refused(custom.delete_cluster_custom_object, *CTB, "rbac-cluster-trust")
        # Bundles are the users': status only.
        trust = bundle("x", [{"inline": "x"}], {})
        assert refused(custom.create_cluster_custom_object, GROUP, VERSION, "bundles", trust)
        assert refused(custom.patch_cluster_custom_object, GROUP, VERSION, "bundles", "x", {"spec": trust["spec"]})
        assert refused(custom.delete_cluster_custom_object, GROUP, VERSION, "bundles", "x")
        # Namespaces: their labels are read, never changed.
        assert refused(core.patch_namespace, apps, {"metadata": {"labels": {TRUST_LABEL: "cluster"}}})
        assert refused(core.delete_namespace, apps)
        assert refused(core.list_namespaced_pod, apps)
        assert refused(core.list_event_for_all_namespaces)
        patch = {"spec": {"dnsNames": ["changed.example"]}}
        assert refused(custom.patch_namespaced_custom_object, GROUP, VERSION, apps, "certificates", "web", patch)
        assert refused(custom.delete_namespaced_custom_object, GROUP, VERSION, apps, "certificates", "web")
        assert refused(custom.create_cluster_custom_object, GROUP, VERSION, "clusterissuers", cluster_issuer("x"))
        assert refused(custom.delete_cluster_custom_object, GROUP, VERSION, "clusterissuers", "rbac-cluster-ca")
        assert refused(leases.delete_namespaced_lease, "certmint-operator", ns)
        assert refused(leases.read_namespaced_lease, "someone-elses-lease", ns)
        assert refused(leases.list_namespaced_lease, ns)
        assert refused(leases.create_namespaced_lease, apps, {"metadata": {"name": "x"}, "spec": {}})
        assert refused(client.RbacAuthorizationV1Api(sa).list_cluster_role)


# -- namespaced mode -----------------------------------------------------------------------------------------


class TestNamespaced:
    """One operator that watches only rbac-ns-team-a; rbac-ns-team-b exists and is none of its business."""

    @pytest.fixture(scope="class")
    @classmethod
    def running(cls, control_plane: ControlPlane, api: client.ApiClient, helm: Path) -> Iterator[Running]:
        installed = install(control_plane, api, helm, "rbac-ns", {"watchNamespaces": ["rbac-ns-team-a"]})
        ensure_namespaces(control_plane, ["rbac-ns-team-b"])
        assert installed.operator_env()["CERTMINT_WATCH_NAMESPACES"] == "rbac-ns-team-a"
        make_ca_secret(api, installed.namespace, "team-ca")
        proc = run_operator(control_plane, installed)
        yield installed, proc
        proc.stop()

    def test_issues_in_its_namespace(self, api: client.ApiClient, running: Running) -> None:
        _, proc = running
        # A CA ClusterIssuer whose CA Secret is in the release namespace, which is not watched: read by name only.
        cm, team_a = Certmint(api), "rbac-ns-team-a"
        cm.create(cluster_issuer("rbac-ns-ca", ca_secret="team-ca"))
        cm.wait_ready("ClusterIssuer", "rbac-ns-ca", timeout=60)
        cm.create(certificate("api", team_a, issuer_name="rbac-ns-ca", dnsNames=[f"api.{team_a}.svc"]))
        leaf = wait_issued(cm, "api", team_a)
        assert leaf.issuer.rfc4514_string() == "CN=team-ca test CA"
        cm.create(cluster_issuer("rbac-ns-selfsigned"))
        self_spec = {"commonName": "self", "dnsNames": [f"self.{team_a}.svc"]}
        cm.create(certificate("self", team_a, issuer_name="rbac-ns-selfsigned", **self_spec))
        wait_issued(cm, "self", team_a)
        assert_no_refused_calls(proc)

    def test_distributes_a_bundle_in_its_namespace(self, api: client.ApiClient, running: Running) -> None:
        """A Bundle whose selector matches a watched and an unwatched namespace writes only to the watched one,
        reads its source ConfigMap by name in the release namespace, and removes its ConfigMap when the watched
        namespace stops matching."""
        installed, proc = running
        team_a, team_b, name = "rbac-ns-team-a", "rbac-ns-team-b", "rbac-ns-trust"
        core, custom, cm = client.CoreV1Api(api), client.CustomObjectsApi(api), Certmint(api)
        partner, _ = self_signed_ca("rbac-ns partner")
        source = {"name": "team-roots"}
        core.create_namespaced_config_map(
            installed.namespace,
            {"metadata": source, "data": {"roots.pem": partner.public_bytes(serialization.Encoding.PEM).decode()}},
        )
        for ns in (team_a, team_b):
            relabel(api, ns, {TRUST_LABEL: "ns"})
        sources = [{"issuer": {"name": "rbac-ns-ca"}}, {"configMap": {**source, "key": "roots.pem"}}]
        cm.create(bundle(name, sources, {"matchLabels": {TRUST_LABEL: "ns"}}))
        try:
            cm.wait_ready("Bundle", name, timeout=60)
            target = config_map_or_none(core, name, team_a)
            assert target is not None
            assert subjects(target.data["ca.crt"]) == ["CN=team-ca test CA", "CN=rbac-ns partner test CA"]
            assert config_map_or_none(core, name, team_b) is None, "a namespace it does not watch is not its"
            status = cm.get("Bundle", name)["status"]
            assert status["targets"][0] == {"kind": "ConfigMap", "namespaces": 1, "inSync": 1, "conflicts": 0}
            assert custom.get_cluster_custom_object(*CTB, name)["spec"]["trustBundle"] == target.data["ca.crt"]
            wait_bundle_event(api, name, "AnchorsUpdated")

            relabel(api, team_a, {TRUST_LABEL: None})
            wait_for(lambda: config_map_or_none(core, name, team_a) is None, f"ConfigMap {team_a}/{name} deleted")
            assert_no_refused_calls(proc)
        finally:
            cm.delete("Bundle", name)

    def test_cannot_touch_other_namespaces(self, api: client.ApiClient, running: Running) -> None:
        installed, _ = running
        make_ca_secret(api, "rbac-ns-team-b", "team-b-secret")
        sa = config.new_client_from_config(config_file=str(installed.kubeconfig))
        core, custom = client.CoreV1Api(sa), client.CustomObjectsApi(sa)
        # Allowed: its namespace's Secrets, and the named CA Secret in the release namespace.
        core.list_namespaced_secret("rbac-ns-team-a")
        core.read_namespaced_secret("team-ca", installed.namespace)
        # Refused: a namespace it does not watch, and anything cluster-wide a namespaced operator must not see.
        assert refused(core.read_namespaced_secret, "team-b-secret", "rbac-ns-team-b")
        assert refused(core.list_namespaced_secret, "rbac-ns-team-b")
        assert refused(core.list_secret_for_all_namespaces)
        assert refused(core.list_namespaced_secret, installed.namespace)  # CA Secrets: get by name only
        assert refused(core.read_namespaced_secret, "anything", "kube-system")
        assert refused(custom.list_cluster_custom_object, GROUP, VERSION, "certificates")
        assert refused(custom.list_namespaced_custom_object, GROUP, VERSION, "rbac-ns-team-b", "certificates")
        assert refused(core.delete_namespaced_secret, "api-tls", "rbac-ns-team-a")
        event = {"metadata": {"generateName": "x."}, "involvedObject": {"name": "x"}, "reason": "X", "message": "x"}
        assert refused(core.create_namespaced_event, "rbac-ns-team-b", event)
        # ConfigMaps: a watched namespace's (Bundle targets) and, by name, the release namespace's (sources).
        core.list_namespaced_config_map("rbac-ns-team-a")
        core.read_namespaced_config_map("team-roots", installed.namespace)
        assert refused(core.list_namespaced_config_map, "rbac-ns-team-b")
        assert refused(core.read_namespaced_config_map, "anything", "rbac-ns-team-b")
        config_map = {"metadata": {"name": "x"}, "data": {"ca.crt": "x"}}
        assert refused(core.create_namespaced_config_map, "rbac-ns-team-b", config_map)
        assert refused(core.create_namespaced_config_map, installed.namespace, config_map)
        assert refused(core.list_namespaced_config_map, installed.namespace)
        assert refused(core.list_config_map_for_all_namespaces)
