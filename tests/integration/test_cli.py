"""The ``certmint`` CLI against the real control plane and the session's operator, run as a user runs it.

Every command is a subprocess (``python -m certmint.cli``, and once ``kubectl certmint`` through kubectl's plugin
lookup) with a kubeconfig; the tests read what it printed and its exit code, and check against the API what it
claims or asked for.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from kubernetes import client
from kubernetes.client.rest import ApiException

from certmint.pki.signing import fingerprint_sha256
from tests.controlplane.cluster import ControlPlane, free_port, kubeconfig_text
from tests.controlplane.operator_process import OperatorProcess
from tests.integration.builders import (
    Certmint,
    ca_chain,
    certificate,
    condition_of,
    leaf,
    resource,
    serial_hex,
    unique,
)
from tests.integration.conftest import OPERATOR_NAMESPACE, REPO, api_for
from tests.integration.kubeutil import wait_for
from tests.unit.builders import build_ca

pytestmark = pytest.mark.integration

CLI_TIMEOUT_S = 60


class Cli:
    """Runs the CLI as a separate process with a kubeconfig, as a user's shell would."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig

    def __call__(self, *args: str, kubeconfig: Path | None = None, env: dict[str, str] | None = None) -> Result:
        environ = {**os.environ, "KUBECONFIG": str(kubeconfig or self.kubeconfig), **(env or {})}
        environ.pop("CERTMINT_CLI_DEBUG", None)
        proc = subprocess.run(
            [sys.executable, "-m", "certmint.cli", *args],
            env=environ,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def json(self) -> Any:
        assert self.code in (0, 1), self
        return json.loads(self.out)

    def one_line_error(self) -> str:
        """The error line; fails unless stderr is exactly one line, without a traceback, and stdout is empty."""
        assert self.out == "", self
        assert "Traceback" not in self.err, self
        assert len(self.err.strip().splitlines()) == 1, self
        return self.err.strip()

    def __repr__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


@pytest.fixture(scope="module")
def cli(control_plane: ControlPlane, operator: OperatorProcess) -> Cli:
    return Cli(control_plane.admin_kubeconfig)


@pytest.fixture(scope="module")
def ns(cm: Certmint) -> str:
    return cm.namespace(unique("cli"))


@pytest.fixture(scope="module")
def web(cm: Certmint, ca_issuer: str, ns: str) -> dict[str, Any]:
    """A Ready Certificate under the module's CA ClusterIssuer, with its Issued Event posted."""
    name = unique("web")
    cm.create(
        certificate(
            name,
            ns,
            issuer_name=ca_issuer,
            dnsNames=[f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"],
            uris=[f"spiffe://cluster.local/ns/{ns}/sa/web"],
            duration="2h",
        )
    )
    ready = cm.wait_ready("Certificate", name, ns)
    selector = f"involvedObject.kind=Certificate,involvedObject.name={name}"
    wait_for(
        lambda: [e for e in cm.core.list_namespaced_event(ns, field_selector=selector).items if e.reason == "Issued"],
        f"the Issued Event of Certificate {ns}/{name}",
    )
    return ready


def squeezed(text: str) -> list[str]:
    """The lines of a text output with runs of spaces made one (column widths vary with the content)."""
    return [" ".join(line.split()) for line in text.splitlines()]


def name_of(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["name"])


def serial_in_secret(cm: Certmint, cert: dict[str, Any]) -> str:
    return serial_hex(leaf(cm.secret_data(cert["spec"]["secretName"], cert["metadata"]["namespace"])))


# -- status certificate ------------------------------------------------------------------------------------------


def test_status_tells_the_whole_story_of_a_certificate_on_one_screen(
    cli: Cli, cm: Certmint, ca_issuer: str, ns: str, web: dict[str, Any]
) -> None:
    name, status = name_of(web), web["status"]
    result = cli("status", "certificate", name, "-n", ns)

    assert result.code == 0, result
    lines = squeezed(result.out)
    assert lines[0] == f"Certificate {ns}/{name} Ready=True (Issued)"
    for expected in (
        f"Issuer: ClusterIssuer {ca_issuer}: Ready=True (",
        f"Revision: {status['revision']}, serial {status['serialNumber']}",
        f"Renewal: {status['renewalTime']} (in ",
        "Subject: (empty)",  # no commonName asked for: the names are SANs only
        f"DNS names: {name}.{ns}.svc, {name}.{ns}.svc.cluster.local",
        f"URIs: spiffe://cluster.local/ns/{ns}/sa/web",
        f"Issuer: CN={ca_issuer} CA",
        f"Serial: {serial_in_secret(cm, web)}",
        "Key: ECDSA 256",
        f"Certificate in Secret {web['spec']['secretName']} (key matches: yes; chain verifies to ca.crt: yes):",
        f"{name}-{status['revision']} ",  # its CertificateRequest: NAME AGE APPROVED READY
    ):
        assert any(line.startswith(expected) for line in lines), (expected, result.out)
    request_line = next(line for line in lines if line.startswith(f"{name}-{status['revision']} "))
    assert request_line.split()[2:4] == ["True", "True"]
    assert any(line.split()[1:3] == ["Normal", "Issued"] for line in lines), result.out
    assert "PRIVATE KEY" not in result.out


def test_status_as_json_has_the_documented_shape(cli: Cli, cm: Certmint, ns: str, web: dict[str, Any]) -> None:
    name = name_of(web)
    report = cli("status", "certificate", name, "-n", ns, "-o", "json").json()

    assert set(report) == {
        "certificate",
        "spec",
        "conditions",
        "status",
        "renewRequest",
        "issuer",
        "secret",
        "secretProblem",
        "requests",
        "events",
        "readErrors",
    }
    assert report["certificate"] == {"namespace": ns, "name": name, "uid": web["metadata"]["uid"]}
    assert {"type": "Ready", "status": "True"}.items() <= next(
        c for c in report["conditions"] if c["type"] == "Ready"
    ).items()
    assert report["status"]["serialNumber"] == report["secret"]["chain"][0]["serialNumber"] == serial_in_secret(cm, web)
    assert report["secret"]["keyMatchesCertificate"] is True
    assert report["secret"]["chainVerified"] is True
    assert report["secret"]["certmint"]["certificate"] == name
    assert report["requests"][0]["name"] == f"{name}-{web['status']['revision']}"
    assert {"type": "Ready", "status": "True"}.items() <= next(
        c for c in report["requests"][0]["conditions"] if c["type"] == "Ready"
    ).items()
    assert "Issued" in [e["reason"] for e in report["events"]]
    assert (report["secretProblem"], report["readErrors"], report["renewRequest"]) == (None, [], None)

    as_yaml = yaml.safe_load(cli("status", "certificate", name, "-n", ns, "-o", "yaml").out)
    assert as_yaml["certificate"] == report["certificate"]
    assert set(as_yaml) == set(report)


def test_status_of_an_unknown_certificate_or_in_the_wrong_namespace_exits_1(
    cli: Cli, cm: Certmint, ns: str, web: dict[str, Any]
) -> None:
    unknown = cli("status", "certificate", "no-such-cert", "-n", ns)
    assert unknown.code == 1
    assert unknown.one_line_error() == f"certmint: error: Certificate {ns}/no-such-cert not found"

    other = cm.namespace(unique("cli-other"))
    wrong = cli("status", "certificate", name_of(web), "-n", other)
    assert wrong.code == 1
    assert wrong.one_line_error() == f"certmint: error: Certificate {other}/{name_of(web)} not found"

    no_namespace = cli("status", "certificate", name_of(web))  # the context's namespace: default
    assert no_namespace.code == 1
    assert no_namespace.one_line_error() == (
        f"certmint: error: Certificate default/{name_of(web)} not found "
        "(namespace default from the kubeconfig context; pass -n NAMESPACE?)"
    )


def test_status_for_a_user_who_may_read_certificates_only_shows_what_it_can(
    cli: Cli, control_plane: ControlPlane, api: client.ApiClient, ns: str, web: dict[str, Any]
) -> None:
    rbac = client.RbacAuthorizationV1Api(api)
    role = unique("cert-reader")
    rbac.create_namespaced_role(
        ns,
        {
            "metadata": {"name": role},
            "rules": [{"apiGroups": ["certmint.dev"], "resources": ["certificates"], "verbs": ["get"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        ns,
        {
            "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}],
        },
    )
    bob = control_plane.kubeconfig_for("bob")

    def shown() -> dict[str, Any] | None:  # RBAC takes effect through the API server's informer: soon, not at once
        result = cli("status", "certificate", name_of(web), "-n", ns, "-o", "json", kubeconfig=bob)
        return result.json() if result.code == 0 else None

    report = wait_for(shown, "bob's status of the Certificate")
    assert report["secret"] is None
    assert report["secretProblem"].startswith(f"cannot read Secret {ns}/{web['spec']['secretName']}: forbidden")
    assert any(e.startswith(f"cannot list CertificateRequests in {ns}: forbidden") for e in report["readErrors"])
    assert not any("Secret" in e for e in report["readErrors"])  # said once, as the Secret's problem
    assert report["issuer"]["found"] is None  # a ClusterIssuer bob may not read is not "not found"
    assert report["conditions"]

    text = cli("status", "certificate", name_of(web), "-n", ns, kubeconfig=bob)
    assert text.code == 0
    assert "Not shown (could not be read):" in text.out
    assert f"ClusterIssuer {web['spec']['issuerRef']['name']}: not readable" in text.out


# -- inspect secret ----------------------------------------------------------------------------------------------


def test_inspect_decodes_a_certmint_secret(
    cli: Cli, cm: Certmint, ca_issuer: str, ns: str, web: dict[str, Any]
) -> None:
    secret_name = web["spec"]["secretName"]
    data = cm.secret_data(secret_name, ns)
    chain = x509.load_pem_x509_certificates(data["tls.crt"])
    anchor = x509.load_pem_x509_certificate(data["ca.crt"])

    report = cli("inspect", "secret", secret_name, "-n", ns, "-o", "json").json()
    assert set(report) == {
        "secret",
        "certmint",
        "chain",
        "trustAnchors",
        "keyMatchesCertificate",
        "chainVerified",
        "problems",
    }
    assert report["problems"] == []
    assert (report["keyMatchesCertificate"], report["chainVerified"]) == (True, True)
    assert [c["fingerprintSHA256"] for c in report["chain"]] == [fingerprint_sha256(c) for c in chain]
    assert [c["fingerprintSHA256"] for c in report["trustAnchors"]] == [fingerprint_sha256(anchor)]
    assert report["certmint"]["certificate"] == name_of(web)
    assert report["certmint"]["issuer"] == {"name": ca_issuer, "kind": "ClusterIssuer"}
    assert report["certmint"]["revision"] == web["status"]["revision"]
    assert report["certmint"]["createdByCertmint"] is True

    text = cli("inspect", "secret", secret_name, "-n", ns)
    assert text.code == 0
    lines = squeezed(text.out)
    revision = web["status"]["revision"]
    assert (
        f"certmint: Certificate {name_of(web)}, revision {revision}, signed through ClusterIssuer {ca_issuer}" in lines
    )
    assert "Key matches certificate: yes Chain verifies to ca.crt: yes" in lines
    expected_headings = ["tls.crt[0] (leaf)", *(f"tls.crt[{i}]" for i in range(1, len(chain))), "ca.crt[0]"]
    assert [line for line in lines if "crt[" in line] == expected_headings
    assert base64.b64encode(data["tls.key"]).decode()[:40] not in text.out
    assert "PRIVATE KEY" not in text.out


def test_inspect_a_secret_that_is_not_tls_exits_1_with_its_keys_only(cli: Cli, cm: Certmint, ns: str) -> None:
    name = unique("db")
    cm.core.create_namespaced_secret(
        ns, {"metadata": {"name": name}, "type": "Opaque", "stringData": {"password": "s3cret-value"}}
    )
    result = cli("inspect", "secret", name, "-n", ns)

    assert result.code == 1
    assert result.one_line_error() == (
        f"certmint: error: Secret {ns}/{name} is not a TLS Secret: type Opaque, no tls.crt (its keys: password)"
    )
    assert "s3cret" not in result.err


def test_inspect_a_hand_made_secret_with_a_wrong_key_reports_the_problem_and_exits_1(
    cli: Cli, cm: Certmint, ns: str
) -> None:
    name = unique("byhand")
    now = datetime.now(UTC)
    valid = {"not_before": now - timedelta(hours=1), "not_after": now + timedelta(days=1)}
    cert, other = build_ca("hand made", **valid), build_ca("someone else", **valid)
    cm.core.create_namespaced_secret(
        ns,
        {
            "metadata": {"name": name},
            "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": cert.cert_pem.decode(), "tls.key": other.key_pem.decode()},
        },
    )
    result = cli("inspect", "secret", name, "-n", ns, "-o", "json")

    assert result.code == 1
    report = result.json()
    assert report["keyMatchesCertificate"] is False
    assert report["problems"] == ["tls.key does not match the certificate in tls.crt"]
    assert report["certmint"] is None
    assert report["chain"][0]["subject"] == "CN=hand made"


def test_inspect_an_unknown_secret_exits_1(cli: Cli, ns: str) -> None:
    result = cli("inspect", "secret", "no-such-secret", "-n", ns)

    assert result.code == 1
    assert result.one_line_error() == f"certmint: error: Secret {ns}/no-such-secret not found"


# -- renew -------------------------------------------------------------------------------------------------------


def reissued(cm: Certmint, cert: dict[str, Any], value: str) -> dict[str, Any]:
    """The Certificate once the operator has honoured ``value`` and is Ready with a new serial."""
    before = cert["status"]["serialNumber"]

    def done() -> dict[str, Any] | None:
        now = cm.get("Certificate", name_of(cert), cert["metadata"]["namespace"])
        status = now.get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
        if (
            status.get("lastRenewRequest") == value
            and status.get("serialNumber") != before
            and ready.get("status") == "True"
        ):
            return now
        return None

    return wait_for(done, f"Certificate {name_of(cert)} re-issued for renew request {value}", timeout=60)


def test_renew_re_issues_once_with_a_new_serial_and_leaves_the_spec_alone(
    cli: Cli, cm: Certmint, ca_issuer: str, ns: str
) -> None:
    name = unique("renew")
    cm.create(certificate(name, ns, issuer_name=ca_issuer, duration="2h"))
    cert = cm.wait_ready("Certificate", name, ns)

    result = cli("renew", name, "-n", ns, "-o", "json")
    assert result.code == 0, result
    [requested] = result.json()["requested"]
    value = requested["value"]
    assert requested == {"namespace": ns, "name": name, "value": value, "isCA": False}
    assert cm.get("Certificate", name, ns)["metadata"]["annotations"]["certmint.dev/renew-request"] == value

    after = reissued(cm, cert, value)
    assert after["metadata"]["generation"] == cert["metadata"]["generation"]  # the spec untouched
    assert after["spec"] == cert["spec"]
    assert after["status"]["revision"] == cert["status"]["revision"] + 1
    assert serial_in_secret(cm, after) == after["status"]["serialNumber"]

    text = cli("renew", name, "-n", ns)
    assert text.code == 0
    assert text.out.startswith(f"renewal requested: Certificate {ns}/{name} (certmint.dev/renew-request=")


def test_renew_by_label_selector_and_all_renew_exactly_the_chosen_certificates(
    cli: Cli, cm: Certmint, ca_issuer: str
) -> None:
    ns = cm.namespace(unique("cli-renew"))
    chosen = [unique("a"), unique("b")]
    other = unique("c")
    for name in chosen:
        cm.create(certificate(name, ns, issuer_name=ca_issuer, duration="2h", labels={"app": "shop"}))
    cm.create(certificate(other, ns, issuer_name=ca_issuer, duration="2h", labels={"app": "other"}))
    certs = {n: cm.wait_ready("Certificate", n, ns) for n in [*chosen, other]}

    by_label = cli("renew", "-l", "app=shop", "-n", ns, "-o", "json")
    assert by_label.code == 0, by_label
    requested = by_label.json()["requested"]
    assert sorted(r["name"] for r in requested) == sorted(chosen)
    for name in chosen:
        reissued(cm, certs[name], requested[0]["value"])
    untouched = cm.get("Certificate", other, ns)
    assert untouched["status"]["serialNumber"] == certs[other]["status"]["serialNumber"]
    assert "lastRenewRequest" not in untouched["status"]

    everything = cli("renew", "--all", "-n", ns, "-o", "json")
    assert everything.code == 0, everything
    assert sorted(r["name"] for r in everything.json()["requested"]) == sorted([*chosen, other])
    reissued(cm, certs[other], everything.json()["requested"][0]["value"])


def test_renew_of_nothing_exits_1(cli: Cli, cm: Certmint, ns: str) -> None:
    unknown = cli("renew", "no-such-cert", "-n", ns)
    assert unknown.code == 1
    assert unknown.one_line_error() == f"certmint: error: Certificate {ns}/no-such-cert not found"

    none = cli("renew", "-l", "app=nobody", "-n", ns)
    assert none.code == 1
    assert (
        none.one_line_error()
        == f"certmint: error: no Certificate in namespace {ns} with labels app=nobody: nothing requested"
    )


def test_as_a_kubectl_plugin(control_plane: ControlPlane, ns: str, web: dict[str, Any], tmp_path: Path) -> None:
    """kubectl finds ``kubectl-certmint`` on PATH and runs it for ``kubectl certmint``, as pip's console script."""
    plugin = tmp_path / "kubectl-certmint"
    plugin.write_text(f"#!{sys.executable}\nimport sys\nfrom certmint.cli.main import main\nsys.exit(main())\n")
    plugin.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}",
        "KUBECONFIG": str(control_plane.admin_kubeconfig),
    }
    kubectl = str(control_plane.bin_dir / "kubectl")
    ok = subprocess.run(
        [kubectl, "certmint", "status", "certificate", name_of(web), "-n", ns],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"Certificate {ns}/{name_of(web)}  Ready=True")

    bad = subprocess.run(
        [kubectl, "certmint", "inspect", "secret", "no-such-secret", "-n", ns],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert bad.returncode == 1
    assert bad.stderr.startswith(f"kubectl certmint: error: Secret {ns}/no-such-secret not found")


# -- approve / deny ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manual_issuer(cm: Certmint) -> str:
    """A CA ClusterIssuer whose policy asks for manual approval and allows each namespace's own Service names."""
    return ca_chain(
        cm,
        unique("manual"),
        OPERATOR_NAMESPACE,
        policy={"approval": "Manual", "allowedDNSNames": ["*.{namespace}.svc"]},
    )


def csr_for(*dns_names: str) -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    built = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, built.public_bytes(serialization.Encoding.PEM).decode()


def certificate_request(name: str, ns: str, issuer_name: str, pem: str) -> dict[str, Any]:
    spec = {"request": pem, "issuerRef": {"name": issuer_name, "kind": "ClusterIssuer"}, "duration": "1h"}
    return resource("CertificateRequest", name, spec, ns)


def waiting(cm: Certmint, name: str, ns: str) -> dict[str, Any]:
    """The request once certmint's policy has allowed it and it waits for a person."""
    return cm.wait_condition("CertificateRequest", name, ns, "Ready", "False", reason="WaitingForApproval")


def test_approve_lets_certmint_sign_a_request_that_waited_for_it(
    cli: Cli, cm: Certmint, manual_issuer: str, ns: str
) -> None:
    name = unique("approve-me")
    key, pem = csr_for(f"worker.{ns}.svc")
    cm.create(certificate_request(name, ns, manual_issuer, pem))
    ready = waiting(cm, name, ns)
    assert f"certmint approve {name} -n {ns}" in ready["message"]
    assert "certificate" not in cm.get("CertificateRequest", name, ns).get("status", {})
    assert cm.condition("CertificateRequest", name, ns, "Approved") is None

    result = cli("approve", name, "-n", ns, "--message", "ticket OPS-1", "-o", "json")
    assert result.code == 0, result
    report = result.json()
    assert set(report) == {"certificateRequest", "decision", "condition", "issuerRef", "requested"}
    assert report["decision"] == "Approved"
    assert {"type": "Approved", "status": "True", "reason": "ApprovedByUser", "message": "ticket OPS-1"}.items() <= (
        report["condition"].items()
    )
    assert report["issuerRef"] == {"kind": "ClusterIssuer", "name": manual_issuer}
    assert report["requested"]["dnsNames"] == [f"worker.{ns}.svc"]

    signed = cm.wait_ready("CertificateRequest", name, ns)
    approved = condition_of(signed, "Approved")
    assert approved is not None and (approved["reason"], approved["message"]) == ("ApprovedByUser", "ticket OPS-1")
    leaf_cert = x509.load_pem_x509_certificates(signed["status"]["certificate"].encode())[0]
    assert leaf_cert.public_key().public_numbers() == key.public_key().public_numbers()
    leaf_cert.verify_directly_issued_by(x509.load_pem_x509_certificate(signed["status"]["ca"].encode()))
    sans = leaf_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [f"worker.{ns}.svc"]

    again = cli("approve", name, "-n", ns)
    assert again.code == 1
    assert (
        again.one_line_error()
        == f"certmint: error: cannot approve CertificateRequest {ns}/{name}: it is already issued"
    )


def test_deny_is_final_and_nothing_is_ever_signed(cli: Cli, cm: Certmint, manual_issuer: str, ns: str) -> None:
    name = unique("deny-me")
    _, pem = csr_for(f"worker.{ns}.svc")
    cm.create(certificate_request(name, ns, manual_issuer, pem))
    waiting(cm, name, ns)

    result = cli("deny", name, "-n", ns, "--reason", "NotExpected", "--message", "nobody asked for it")
    assert result.code == 0, result
    assert result.out.splitlines()[0] == (
        f"denied: CertificateRequest {ns}/{name} (NotExpected); it will never be signed"
    )
    ready = cm.wait_condition("CertificateRequest", name, ns, "Ready", "False", reason="Denied")
    assert "nobody asked for it" in ready["message"]
    obj = cm.get("CertificateRequest", name, ns)
    denied = condition_of(obj, "Denied")
    assert denied is not None and (denied["status"], denied["reason"]) == ("True", "NotExpected")
    assert "certificate" not in obj["status"]

    approve = cli("approve", name, "-n", ns)
    assert approve.code == 1
    assert approve.one_line_error() == (
        f"certmint: error: cannot approve CertificateRequest {ns}/{name}: it is already denied, which is final"
    )
    # The API server itself keeps Denied final: not even an admin's direct write makes it Approved.
    with pytest.raises(ApiException) as err:
        cm.custom.patch_namespaced_custom_object_status(
            "certmint.dev",
            "v1alpha1",
            ns,
            "certificaterequests",
            name,
            {"status": {"conditions": [{**denied, "type": "Approved"}]}},
        )
    assert err.value.status == 422
    assert "certificate" not in cm.get("CertificateRequest", name, ns)["status"]


def test_approve_and_deny_of_what_cannot_be_decided_exit_1(
    cli: Cli, cm: Certmint, ns: str, web: dict[str, Any]
) -> None:
    unknown = cli("approve", "no-such-request", "-n", ns)
    assert unknown.code == 1
    assert unknown.one_line_error() == f"certmint: error: CertificateRequest {ns}/no-such-request not found"

    issued = f"{name_of(web)}-{web['status']['revision']}"  # the Certificate's request, signed by its issuer
    other = cm.namespace(unique("cli-other"))
    wrong = cli("deny", issued, "-n", other)
    assert wrong.code == 1
    assert wrong.one_line_error() == f"certmint: error: CertificateRequest {other}/{issued} not found"

    deny = cli("deny", issued, "-n", ns, "-o", "json")
    assert deny.code == 1
    assert (
        deny.one_line_error() == f"certmint: error: cannot deny CertificateRequest {ns}/{issued}: it is already issued"
    )
    approve = cli("approve", issued, "-n", ns)
    assert approve.code == 1 and "it is already issued" in approve.one_line_error()


def chart_user_role_rules() -> list[dict[str, Any]]:
    """The rules of the chart's roles for people (view and edit, aggregated into Kubernetes' own), read from the
    template with its template expressions stripped (this tier has no helm)."""
    text = (REPO / "charts/certmint/templates/rbac-user-roles.yaml").read_text()
    text = re.sub(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", "", text, flags=re.S)
    text = "\n".join(line for line in text.splitlines() if not line.strip().startswith("{{"))
    roles = [doc for doc in yaml.safe_load_all(re.sub(r"\{\{.*?\}\}", "x", text)) if doc]
    assert [role["metadata"]["name"] for role in roles] == ["x-view", "x-edit"]
    return [rule for role in roles for rule in role["rules"]]


def test_a_requester_with_the_chart_edit_role_cannot_approve_its_own_request(
    cli: Cli, control_plane: ControlPlane, api: client.ApiClient, cm: Certmint, manual_issuer: str
) -> None:
    ns = cm.namespace(unique("cli-self-approve"))
    rbac = client.RbacAuthorizationV1Api(api)
    role = unique("certmint-user")
    rbac.create_namespaced_role(ns, {"metadata": {"name": role}, "rules": chart_user_role_rules()})
    rbac.create_namespaced_role_binding(
        ns,
        {
            "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}],
        },
    )
    bob = client.CustomObjectsApi(api_for(control_plane, "bob"))
    name = unique("mine")
    _, pem = csr_for(f"worker.{ns}.svc")

    def created() -> bool:  # RBAC takes effect through the API server's informer: soon, not at once
        try:
            bob.create_namespaced_custom_object(
                "certmint.dev", "v1alpha1", ns, "certificaterequests", certificate_request(name, ns, manual_issuer, pem)
            )
        except ApiException as e:
            if e.status == 403:
                return False
            raise
        return True

    wait_for(created, "bob's CertificateRequest to be created")
    waiting(cm, name, ns)

    result = cli("approve", name, "-n", ns, kubeconfig=control_plane.kubeconfig_for("bob"))
    assert result.code == 3
    line = result.one_line_error()
    assert line.startswith(f"certmint: error: cannot update the status of CertificateRequest {ns}/{name}: forbidden: ")
    assert 'cannot patch resource "certificaterequests/status"' in line
    for write in (bob.patch_namespaced_custom_object_status, bob.replace_namespaced_custom_object_status):
        with pytest.raises(ApiException) as err:
            write(
                "certmint.dev",
                "v1alpha1",
                ns,
                "certificaterequests",
                name,
                {"status": {"conditions": [{"type": "Approved", "status": "True", "reason": "Me", "message": ""}]}},
            )
        assert err.value.status == 403
    # Nor through the main resource: the status there is ignored.
    bob.patch_namespaced_custom_object(
        "certmint.dev",
        "v1alpha1",
        ns,
        "certificaterequests",
        name,
        {"status": {"conditions": [{"type": "Approved", "status": "True", "reason": "Me", "message": ""}]}},
    )
    obj = waiting(cm, name, ns)
    assert cm.condition("CertificateRequest", name, ns, "Approved") is None, obj
    assert "certificate" not in cm.get("CertificateRequest", name, ns)["status"]

    assert cli("approve", name, "-n", ns).code == 0  # an approver (here the admin) may
    cm.wait_ready("CertificateRequest", name, ns)


def test_a_certificate_under_a_manual_issuer_is_refused_not_signed_unapproved(
    cm: Certmint, manual_issuer: str, ns: str
) -> None:
    name = unique("manual-cert")
    cm.create(certificate(name, ns, issuer_name=manual_issuer, dnsNames=[f"{name}.{ns}.svc"]))
    ready = cm.wait_condition("Certificate", name, ns, "Ready", "False", reason="ManualApprovalRequired")
    assert "approval is Automatic" in ready["message"]
    assert cm.secret(f"{name}-tls", ns) is None
    assert cm.requests_of(name, ns) == []


# -- check -------------------------------------------------------------------------------------------------------


def test_check_finds_the_api_served_and_the_operator_holding_its_lease(cli: Cli) -> None:
    result = cli("check")
    assert result.code == 0, result
    assert (
        "API certmint.dev/v1alpha1: serves bundles, certificaterequests, certificates, clusterissuers, issuers"
        in result.out
    )
    assert f"Leader Lease {OPERATOR_NAMESPACE}/certmint-operator: held by " in result.out
    assert result.out.rstrip().endswith("OK")

    report = cli("check", "-o", "json").json()
    assert set(report) == {"cliVersion", "api", "operator", "problems", "readErrors"}
    assert report["api"]["missing"] == []
    assert report["operator"]["deployments"] == []  # the session's operator is a process, not the chart's Deployment
    assert report["operator"]["lease"]["held"] is True
    assert report["problems"] == []


@pytest.fixture
def chart_like_deployment(api: client.ApiClient, cm: Certmint) -> Iterator[tuple[str, str]]:
    """A Deployment with the chart's labels in a namespace of its own; its pod is never scheduled (no nodes here)."""
    ns = cm.namespace(unique("cli-operator"))
    name = "certmint"
    labels = {"app.kubernetes.io/name": "certmint", "app.kubernetes.io/instance": "certmint"}
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(
        ns,
        {
            "metadata": {
                "name": name,
                "labels": {
                    **labels,
                    "app.kubernetes.io/part-of": "certmint",
                    "app.kubernetes.io/component": "operator",
                    "app.kubernetes.io/version": "9.9.9",
                },
            },
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {**labels, "app.kubernetes.io/component": "operator"}},
                "template": {
                    "metadata": {"labels": {**labels, "app.kubernetes.io/component": "operator"}},
                    "spec": {
                        "containers": [{"name": "operator", "image": "registry.example.com/certmint-operator:9.9.9"}]
                    },
                },
            },
        },
    )
    yield ns, name
    apps.delete_namespaced_deployment(name, ns)


def test_check_judges_the_operator_deployment_by_its_ready_replicas(
    cli: Cli, api: client.ApiClient, cm: Certmint, chart_like_deployment: tuple[str, str]
) -> None:
    ns, name = chart_like_deployment
    core = client.CoreV1Api(api)

    def pod() -> client.V1Pod | None:
        pods = core.list_namespaced_pod(ns, label_selector="app.kubernetes.io/component=operator").items
        return pods[0] if pods else None

    created = wait_for(pod, f"the pod of Deployment {ns}/{name} (kube-controller-manager creates it)")
    not_ready = cli("check", "--operator-namespace", ns, "-o", "json")
    assert not_ready.code == 1, not_ready
    report = not_ready.json()
    assert report["operator"]["deployments"][0]["version"] == "9.9.9"
    assert f"Deployment {ns}/{name} has no ready replica (0/1)" in report["problems"]

    # What a kubelet reports for a started, ready container; the ReplicaSet and Deployment controllers count it.
    core.patch_namespaced_pod_status(
        created.metadata.name,
        ns,
        {
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                ],
            }
        },
    )

    def ready() -> Result | None:
        result = cli("check", "--operator-namespace", ns)
        return result if result.code == 0 else None

    result = wait_for(ready, f"check to find Deployment {ns}/{name} ready", timeout=60, interval=0.5)
    assert (
        f"Operator Deployment {ns}/{name}: 1/1 ready, version 9.9.9 "
        "(image registry.example.com/certmint-operator:9.9.9)" in result.out.splitlines()
    )


# -- the API refuses or is not there -----------------------------------------------------------------------------


def test_a_user_without_rights_gets_exit_3_and_forbidden(
    cli: Cli, control_plane: ControlPlane, ns: str, web: dict[str, Any]
) -> None:
    result = cli("status", "certificate", name_of(web), "-n", ns, kubeconfig=control_plane.kubeconfig_for("alice"))

    assert result.code == 3
    line = result.one_line_error()
    assert line.startswith(f"certmint: error: cannot read Certificate {ns}/{name_of(web)}: forbidden: ")
    assert 'User "alice" cannot get resource "certificates"' in line


def test_a_wrong_token_gets_exit_3_and_not_authenticated(cli: Cli, control_plane: ControlPlane, ns: str) -> None:
    wrong = control_plane.kubeconfig_for_token("wrong-token", "not-a-valid-token")
    result = cli("inspect", "secret", "x", "-n", ns, kubeconfig=wrong)

    assert result.code == 3
    assert result.one_line_error().startswith(f"certmint: error: cannot read Secret {ns}/x: not authenticated")


def test_an_unreachable_api_server_gets_exit_3(cli: Cli, control_plane: ControlPlane, tmp_path: Path) -> None:
    server = f"https://127.0.0.1:{free_port()}"
    kubeconfig = tmp_path / "gone.kubeconfig"
    kubeconfig.write_text(kubeconfig_text(server, control_plane.ca_pem, "admin", control_plane.tokens["admin"]))
    result = cli("check", kubeconfig=kubeconfig)

    assert result.code == 3
    line = result.one_line_error()
    assert line.startswith("certmint: error: API server unreachable: ")
    assert line.endswith(f"(server {server})")


def test_a_bad_kubeconfig_gets_exit_3_naming_the_problem(cli: Cli, control_plane: ControlPlane, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage"
    garbage.write_text("clusters: [this is: not: valid")
    assert cli("check", kubeconfig=garbage).code == 3
    assert (
        cli("check", kubeconfig=garbage)
        .one_line_error()
        .startswith(f"certmint: error: kubeconfig {garbage} cannot be read")
    )

    other_ca = tmp_path / "other-ca.kubeconfig"
    other_ca.write_text(
        kubeconfig_text(
            control_plane.server, build_ca("not the cluster's CA").cert_pem, "admin", control_plane.tokens["admin"]
        )
    )
    result = cli("check", kubeconfig=other_ca)
    assert result.code == 3
    line = result.one_line_error()
    assert line.startswith(
        "certmint: error: the API server's certificate is not trusted with the kubeconfig's certificate authority "
        f"(server {control_plane.server}): "
    )
    assert "certificate verify failed" in line

    assert (
        cli("check", "--context", "nope").one_line_error().startswith("certmint: error: context 'nope' not found in ")
    )
