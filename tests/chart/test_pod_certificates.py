"""Pod certificates with the chart's RBAC (podCertificates.enabled): enough to sign, and no more.

As in test_rbac.py, an administrator applies the chart and the operator runs with a real bound token of the chart's
ServiceAccount and the Deployment's environment. The API server checks a signer twice, beyond RBAC on the request
itself: a PodCertificateRequest's status may change only for a user who may "sign" for its signer, and a
ClusterTrustBundle linked to a signer may be created or changed only by one who may "attest" for it (both
cluster-scoped checks on the resource "signers", by the signer's name and then by "<domain>/*"). kubectl auth can-i
cannot ask about "signers"; SelfSubjectAccessReviews, sent with the ServiceAccount's token, can.

The control plane serves certificates.k8s.io/v1beta1 PodCertificateRequests (tests/controlplane/cluster.py). The
PodCertificateRequests here are created by the administrator, not by a kubelet: the API server then checks only
their syntax and the key's proof (pod, ServiceAccount and node may be made up).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.chart.conftest import CHART, Installed, ensure_namespaces, install, run_helm
from tests.chart.test_rbac import assert_no_refused_calls, make_ca_secret, refused, run_operator, self_signed_ca
from tests.controlplane.cluster import ControlPlane
from tests.controlplane.operator_process import OperatorProcess
from tests.integration.builders import Certmint, cluster_issuer
from tests.integration.kubeutil import wait_for

pytestmark = pytest.mark.chart

CERTS = "certificates.k8s.io"
PCR = (CERTS, "v1beta1", "podcertificaterequests")
CTB = (CERTS, "v1beta1", "clustertrustbundles")
RELEASE = "rbac-pods"
APPS = "rbac-pods-apps"
ISSUER = "rbac-pods-mesh"  # its signer: certmint.dev/rbac-pods-mesh (the CRD insists on certmint.dev/<name>)
TRUST_DOMAIN = "pods.example"
MERGE_PATCH = "application/merge-patch+json"


# -- helpers -------------------------------------------------------------------------------------------------


def stub_request(key: ec.EllipticCurvePrivateKey) -> str:
    """spec.stubPKCS10Request as the kubelet makes it: an empty CSR signed by the pod's key, DER, base64."""
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    return base64.b64encode(csr.public_bytes(serialization.Encoding.DER)).decode()


def pod_certificate_request(name: str, signer: str, *, service_account: str = "web") -> dict[str, Any]:
    """A PodCertificateRequest for a 1-hour certificate (the shortest the API allows) in namespace APPS."""
    return {
        "apiVersion": f"{CERTS}/v1beta1",
        "kind": "PodCertificateRequest",
        "metadata": {"name": name, "namespace": APPS},
        "spec": {
            "signerName": signer,
            "podName": f"{name}-pod",
            "podUID": str(uuid.uuid4()),
            "serviceAccountName": service_account,
            "serviceAccountUID": str(uuid.uuid4()),
            "nodeName": "node-1",
            "nodeUID": str(uuid.uuid4()),
            "maxExpirationSeconds": 3600,
            "stubPKCS10Request": stub_request(ec.generate_private_key(ec.SECP256R1())),
        },
    }


def denied(message: str) -> dict[str, Any]:
    """A final status that needs no certificate; changing a request's status at all needs "sign"."""
    condition = {
        "type": "Denied",
        "status": "True",
        "reason": "ChartTest",
        "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    return {"status": {"conditions": [condition]}}


def api_message(e: ApiException) -> str:
    return str(json.loads(e.body or "{}").get("message", e.body))


def may(sa: client.ApiClient, verb: str, resource: str, *, name: str = "", namespace: str = "") -> bool:
    """A SelfSubjectAccessReview, sent as the ServiceAccount itself."""
    attributes = client.V1ResourceAttributes(
        group=CERTS, resource=resource, verb=verb, name=name or None, namespace=namespace or None
    )
    review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=attributes))
    result = client.AuthorizationV1Api(sa).create_self_subject_access_review(review)
    return bool(result.status.allowed)


def may_for_signer(sa: client.ApiClient, verb: str, signer: str) -> bool:
    """What the API server asks before a status change ("sign") or a signer-linked ClusterTrustBundle ("attest"):
    the verb on signers/<signer>, cluster-wide, else on signers/<domain>/* (pkg/certauthorization)."""
    domain = signer.split("/", 1)[0]
    return may(sa, verb, "signers", name=signer) or may(sa, verb, "signers", name=f"{domain}/*")


def trust_bundle(name: str, signer: str) -> dict[str, Any]:
    anchor, _ = self_signed_ca(name)
    pem = anchor.public_bytes(serialization.Encoding.PEM).decode()
    return {
        "apiVersion": f"{CERTS}/v1beta1",
        "kind": "ClusterTrustBundle",
        "metadata": {"name": name},
        "spec": {"signerName": signer, "trustBundle": pem},
    }


def issued_condition(obj: dict[str, Any]) -> dict[str, Any] | None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] in ("Issued", "Denied", "Failed")), None)


# -- the operator as the chart runs it -----------------------------------------------------------------------

Running = tuple[Installed, OperatorProcess]


class TestPodCertificates:
    """One cluster-wide operator with podCertificates.enabled. ClusterIssuers are shared with test_rbac.py's
    operators, which run one at a time: this one is stopped, and its ClusterIssuer deleted, when the class ends."""

    @pytest.fixture(scope="class")
    @classmethod
    def running(cls, control_plane: ControlPlane, api: client.ApiClient, helm: Path) -> Iterator[Running]:
        installed = install(control_plane, api, helm, RELEASE, {"podCertificates": {"enabled": True}})
        assert installed.operator_env()["CERTMINT_POD_CERTIFICATES"] == "true"
        ensure_namespaces(control_plane, [APPS])
        make_ca_secret(api, installed.namespace, "mesh-ca")
        proc = run_operator(control_plane, installed)
        try:
            yield installed, proc
        finally:
            proc.stop()
            try:
                Certmint(api).delete("ClusterIssuer", ISSUER)
            except ApiException as e:
                if e.status != 404:
                    raise

    @pytest.fixture(scope="class")
    @classmethod
    def sa(cls, running: Running) -> client.ApiClient:
        """An API client with the chart ServiceAccount's token."""
        return config.new_client_from_config(config_file=str(running[0].kubeconfig))

    def test_signs_and_publishes_trust_end_to_end(self, api: client.ApiClient, running: Running) -> None:
        """A CA ClusterIssuer with podCertificates: its request is Issued with the attested SPIFFE ID, its anchors are
        published as a ClusterTrustBundle linked to its signer (create needs "attest"), and nothing was refused."""
        _, proc = running
        signer = f"certmint.dev/{ISSUER}"
        cm, custom = Certmint(api), client.CustomObjectsApi(api)
        issuer = cluster_issuer(ISSUER, ca_secret="mesh-ca")
        issuer["spec"]["podCertificates"] = {"signerName": signer, "trustDomain": TRUST_DOMAIN}
        cm.create(issuer)
        cm.wait_ready("ClusterIssuer", ISSUER, timeout=60)

        request = pod_certificate_request("web-1", signer)
        custom.create_namespaced_custom_object(*PCR[:2], APPS, PCR[2], request)
        answered = wait_for(
            lambda: issued_condition(custom.get_namespaced_custom_object(*PCR[:2], APPS, PCR[2], "web-1")),
            "PodCertificateRequest web-1 answered",
            timeout=60,
        )
        assert answered["type"] == "Issued", answered
        status = custom.get_namespaced_custom_object(*PCR[:2], APPS, PCR[2], "web-1")["status"]
        leaf = x509.load_pem_x509_certificates(status["certificateChain"].encode())[0]
        uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert uris.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://{TRUST_DOMAIN}/ns/{APPS}/sa/web"]
        assert leaf.issuer.rfc4514_string() == "CN=mesh-ca test CA"

        ctb_name = f"{signer.replace('/', ':')}:anchors"
        published = wait_for(
            lambda: (
                ((cm.get("ClusterIssuer", ISSUER).get("status") or {}).get("podCertificates") or {}).get("state")
                == "Published"
            ),
            "the ClusterIssuer's anchors published as a ClusterTrustBundle",
            timeout=60,
        )
        assert published
        ctb = custom.get_cluster_custom_object(*CTB, ctb_name)
        assert ctb["spec"]["signerName"] == signer
        assert x509.load_pem_x509_certificates(ctb["spec"]["trustBundle"].encode())[0].subject == leaf.issuer
        assert_no_refused_calls(proc)

    def test_may_sign_and_attest_for_certmint_signers_only(self, sa: client.ApiClient) -> None:
        for verb in ("sign", "attest"):
            assert may_for_signer(sa, verb, "certmint.dev/mesh"), verb
            assert not may_for_signer(sa, verb, "other.example/x"), verb
            assert not may_for_signer(sa, verb, "kubernetes.io/kube-apiserver-client"), verb
            assert not may_for_signer(sa, verb, "certmint.dev.evil.example/mesh"), verb
        # The grant is the literal resource name "certmint.dev/*", which the API server's second check asks for;
        # RBAC itself matches resource names exactly.
        assert may(sa, "sign", "signers", name="certmint.dev/*")
        assert not may(sa, "sign", "signers", name="certmint.dev/mesh")
        assert not may(sa, "approve", "signers", name="certmint.dev/*")

    def test_may_answer_but_never_create_requests(self, sa: client.ApiClient) -> None:
        assert may(sa, "patch", "podcertificaterequests/status", namespace=APPS)
        assert may(sa, "list", "podcertificaterequests")  # every namespace: one watch for the cluster
        assert may(sa, "watch", "podcertificaterequests")
        for verb in ("create", "update", "delete", "deletecollection"):
            assert not may(sa, verb, "podcertificaterequests", namespace=APPS), verb
        assert not may(sa, "update", "podcertificaterequests/status", namespace=APPS)  # merge patch only
        # For real: the API server refuses to let it forge a request.
        custom = client.CustomObjectsApi(sa)
        forged = pod_certificate_request("forged", "certmint.dev/mesh", service_account="admin")
        assert refused(custom.create_namespaced_custom_object, *PCR[:2], APPS, PCR[2], forged)

    def test_status_patch_with_its_token(self, api: client.ApiClient, sa: client.ApiClient) -> None:
        """Requests made by the administrator: the operator's ServiceAccount may answer one for a certmint.dev
        signer (no ClusterIssuer has that name, so the operator leaves it alone) and is refused another signer's."""
        admin, custom = client.CustomObjectsApi(api), client.CustomObjectsApi(sa)
        for name, signer in (("ours", "certmint.dev/mesh"), ("theirs", "other.example/x")):
            admin.create_namespaced_custom_object(*PCR[:2], APPS, PCR[2], pod_certificate_request(name, signer))

        custom.patch_namespaced_custom_object_status(
            *PCR[:2], APPS, PCR[2], "ours", denied("answered by the chart's ServiceAccount"), _content_type=MERGE_PATCH
        )
        assert issued_condition(admin.get_namespaced_custom_object(*PCR[:2], APPS, PCR[2], "ours")) is not None

        with pytest.raises(ApiException) as caught:
            custom.patch_namespaced_custom_object_status(
                *PCR[:2], APPS, PCR[2], "theirs", denied("must not be written"), _content_type=MERGE_PATCH
            )
        # RBAC lets the patch through (patch on podcertificaterequests/status); the status strategy's sign check
        # refuses it, as 422 Invalid with a Forbidden cause.
        assert caught.value.status == 422, caught.value.body
        assert 'is not permitted to "sign" for signer "other.example/x"' in api_message(caught.value)
        assert issued_condition(admin.get_namespaced_custom_object(*PCR[:2], APPS, PCR[2], "theirs")) is None

    def test_attests_trust_bundles_for_certmint_signers_only(self, api: client.ApiClient, sa: client.ApiClient) -> None:
        admin, custom = client.CustomObjectsApi(api), client.CustomObjectsApi(sa)
        ours = trust_bundle("certmint.dev:mesh:chart-test", "certmint.dev/mesh")
        custom.create_cluster_custom_object(*CTB, ours)
        try:
            with pytest.raises(ApiException) as caught:
                custom.create_cluster_custom_object(*CTB, trust_bundle("other.example:x:chart-test", "other.example/x"))
            assert caught.value.status == 403, caught.value.body
            assert 'not permitted to attest for signerName "other.example/x"' in api_message(caught.value)
            assert refused(custom.delete_cluster_custom_object, *CTB, ours["metadata"]["name"])
        finally:
            admin.delete_cluster_custom_object(*CTB, ours["metadata"]["name"])


# -- the capability check, against the real API server --------------------------------------------------------


def _probe_chart(tmp_path: Path) -> Path:
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    checks = ["v1/Namespace", "certificates.k8s.io/v1beta1/PodCertificateRequest"]
    lines = [f'# {c} {{{{ .Capabilities.APIVersions.Has "{c}" }}}}' for c in checks]
    (chart / "templates" / "probe.yaml").write_text("\n".join(lines) + "\n")
    return chart


def test_a_render_against_a_cluster_knows_its_kinds(control_plane: ControlPlane, helm: Path, tmp_path: Path) -> None:
    """What the chart's check relies on: Helm's capabilities from a cluster list kinds (v1/Namespace here), its
    built-in ones do not, so an offline render skips the check and a render against a cluster runs it."""
    probe = _probe_chart(tmp_path)
    offline = run_helm(helm, "template", "probe", str(probe)).stdout
    assert "# v1/Namespace false" in offline
    online = run_helm(helm, "template", "probe", str(probe), "--validate", kubeconfig=control_plane.admin_kubeconfig)
    assert "# v1/Namespace true" in online.stdout
    assert "# certificates.k8s.io/v1beta1/PodCertificateRequest true" in online.stdout


def test_chart_renders_against_a_cluster_that_serves_the_api(control_plane: ControlPlane, helm: Path) -> None:
    """`helm template --validate` (the install's capabilities and validation, nothing written) with pod certificates:
    this API server serves PodCertificateRequests, so the check passes. (CRDs off: test_apply.py's copies exist.)"""
    proc = run_helm(
        helm,
        "template",
        "validate-pods",
        str(CHART),
        "--namespace",
        "validate-pods",
        "--validate",
        "--set",
        "podCertificates.enabled=true",
        "--set",
        "crds.enabled=false",
        kubeconfig=control_plane.admin_kubeconfig,
    )
    assert "name: validate-pods-certmint-pod-certificates" in proc.stdout
