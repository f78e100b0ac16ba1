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


def make_ca_secret(api: client.ApiClient, namespace: str, name: str) -> None:
    """An administrator's own CA, in a kubernetes.io/tls Secret, for a CA ClusterIssuer."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = now - datetime.timedelta(minutes=1), now + datetime.timedelta(days=1)
    cert = (
        certificate_builder(common_name(f"{name} test CA"), key.public_key(), not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
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

    def test_is_refused_the_rest(self, running: Running) -> None:
        installed, _ = running
        ns, apps = installed.namespace, "rbac-cluster-apps"
        sa = config.new_client_from_config(config_file=str(installed.kubeconfig))
        core, custom, leases = client.CoreV1Api(sa), client.CustomObjectsApi(sa), client.CoordinationV1Api(sa)
        # Allowed, as a check that the identity works at all:
        secret = core.read_namespaced_secret("web-tls", apps)
        # Refused:
        assert refused(core.delete_namespaced_secret, "web-tls", apps)
        assert refused(core.replace_namespaced_secret, "web-tls", apps, secret)
        assert refused(core.list_namespaced_config_map, apps)
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
        assert refused(core.list_namespaced_config_map, "rbac-ns-team-a")
