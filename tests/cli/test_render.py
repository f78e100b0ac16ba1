"""The CLI's reports and their text, from objects built here: no API server, no I/O."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import yaml

from certmint.cli import render
from certmint.cli.errors import CliError, Exit
from certmint.pki.keys import encode_private_key
from certmint.pki.signing import fingerprint_sha256
from tests.cli.objects import (
    CERTMINT_ANNOTATIONS,
    Pki,
    at,
    certificate,
    condition,
    event,
    request,
    secret,
)
from tests.unit.builders import NOW, build_ca, cached_key


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


# -- inspect secret ----------------------------------------------------------------------------------------------


def test_a_certmint_secret_decodes_into_its_chain_anchor_key_match_and_issuer(pki: Pki) -> None:
    report = render.secret_report(secret(pki.secret_data(), annotations=CERTMINT_ANNOTATIONS), NOW)

    assert report["problems"] == []
    assert report["keyMatchesCertificate"] is True
    assert report["chainVerified"] is True
    leaf, intermediate = report["chain"]
    assert leaf["subject"] == "CN=web.default.svc"
    assert leaf["issuer"] == "CN=CLI Test Intermediate"
    assert leaf["dnsNames"] == ["web.default.svc", "web.default.svc.cluster.local"]
    assert leaf["uris"] == ["spiffe://cluster.local/ns/shop/sa/web"]
    assert leaf["serialNumber"] == pki.issued.serial_number
    assert leaf["notAfter"] == at(timedelta(hours=24))
    assert (leaf["keyAlgorithm"], leaf["keySize"], leaf["isCA"], leaf["validity"]) == ("ECDSA", 256, False, "Valid")
    assert leaf["fingerprintSHA256"] == fingerprint_sha256(pki.issued.certificate)
    assert (intermediate["subject"], intermediate["isCA"], intermediate["selfSigned"]) == (
        "CN=CLI Test Intermediate",
        True,
        False,
    )
    [anchor] = report["trustAnchors"]
    assert (anchor["subject"], anchor["selfSigned"], anchor["keySize"]) == ("CN=CLI Test Root", True, 384)
    assert report["certmint"] == {
        "certificate": "web",
        "issuer": {"name": "mesh-ca", "kind": "ClusterIssuer"},
        "revision": 3,
        "serialNumber": None,
        "createdByCertmint": True,
    }
    assert report["secret"] == {
        "namespace": "shop",
        "name": "web-tls",
        "type": "kubernetes.io/tls",
        "keys": ["ca.crt", "tls.crt", "tls.key"],
    }


def test_the_key_of_another_certificate_is_reported_as_not_matching(pki: Pki) -> None:
    other = encode_private_key(cached_key("ECDSA", 521), "PKCS8")
    report = render.secret_report(secret({**pki.secret_data(), "tls.key": other}), NOW)

    assert report["keyMatchesCertificate"] is False
    assert report["problems"] == ["tls.key does not match the certificate in tls.crt"]
    assert report["chainVerified"] is True


def test_a_chain_under_another_root_does_not_verify_and_says_which_certificate_is_unsigned(pki: Pki) -> None:
    stranger = build_ca("Someone Else's Root")
    report = render.secret_report(secret({**pki.secret_data(), "ca.crt": stranger.cert_pem}), NOW)

    assert report["chainVerified"] is False
    assert report["problems"] == [
        "the chain does not verify to ca.crt: no certificate of ca.crt signed tls.crt[1] (issuer CN=CLI Test Root)"
    ]


def test_a_chain_with_a_certificate_out_of_order_names_the_link_that_breaks(pki: Pki) -> None:
    leaf_only = pki.issued.certificate_pem
    wrong_middle = build_ca("Unrelated Intermediate", parent=pki.root).cert_pem
    report = render.secret_report(secret({**pki.secret_data(), "tls.crt": leaf_only + wrong_middle}), NOW)

    assert report["chainVerified"] is False
    assert "tls.crt[1] (CN=Unrelated Intermediate) did not sign tls.crt[0]" in report["problems"][0]


def test_an_expired_certificate_is_a_problem_with_its_time(pki: Pki) -> None:
    later = NOW + timedelta(days=2)
    report = render.secret_report(secret(pki.secret_data()), later)

    assert report["chain"][0]["validity"] == "Expired"
    assert f"the certificate expired at {at(timedelta(hours=24))}" in report["problems"]
    assert report["chainVerified"] is False


def test_a_secret_without_ca_crt_or_key_reports_neither_as_checked(pki: Pki) -> None:
    report = render.secret_report(secret({"tls.crt": pki.issued.chain_pem}, type_="Opaque"), NOW)

    assert report["keyMatchesCertificate"] is None
    assert report["chainVerified"] is None
    assert report["problems"] == []
    assert report["certmint"] is None
    text = render.secret_text(report, NOW)
    assert "Key matches certificate: no tls.key" in text
    assert "Chain verifies to ca.crt: no ca.crt" in text
    assert "not written by certmint" in text


def test_a_serial_annotation_that_disagrees_with_the_certificate_is_a_problem(pki: Pki) -> None:
    annotations = {**CERTMINT_ANNOTATIONS, "certmint.dev/serial-number": "abc"}
    report = render.secret_report(secret(pki.secret_data(), annotations=annotations), NOW)

    assert report["problems"] == [
        f"annotation certmint.dev/serial-number says abc, the certificate's serial is {pki.issued.serial_number}"
    ]


def test_a_secret_without_tls_crt_is_not_a_tls_secret_and_names_only_its_keys() -> None:
    with pytest.raises(CliError) as raised:
        render.secret_report(secret({"password": b"hunter2"}, name="db", type_="Opaque"), NOW)

    assert raised.value.code == Exit.PROBLEM
    assert raised.value.message == "Secret shop/db is not a TLS Secret: type Opaque, no tls.crt (its keys: password)"
    assert "hunter2" not in raised.value.message


def test_a_tls_crt_that_is_not_pem_is_refused_with_the_reason() -> None:
    with pytest.raises(CliError, match=r"Secret shop/web-tls: tls.crt holds no readable certificate"):
        render.secret_report(secret({"tls.crt": b"not a certificate", "tls.key": b"x"}), NOW)


def test_no_private_key_material_reaches_any_output(pki: Pki) -> None:
    report = render.secret_report(secret(pki.secret_data(), annotations=CERTMINT_ANNOTATIONS), NOW)
    key_body = pki.key_pem.decode().splitlines()[1]

    for output in render.OUTPUTS:
        text = render.dump(report, output, lambda r: render.secret_text(r, NOW))
        assert "PRIVATE KEY" not in text
        assert key_body not in text


def test_the_text_of_a_secret_shows_each_certificate_of_the_chain_and_the_anchor(pki: Pki) -> None:
    report = render.secret_report(secret(pki.secret_data(), annotations=CERTMINT_ANNOTATIONS), NOW)
    text = render.secret_text(report, NOW)

    assert text.splitlines()[0] == "Secret shop/web-tls  (type kubernetes.io/tls; keys ca.crt, tls.crt, tls.key)"
    assert "certmint: Certificate web, revision 3, signed through ClusterIssuer mesh-ca" in text
    assert "Key matches certificate: yes   Chain verifies to ca.crt: yes" in text
    assert "tls.crt[0] (leaf)" in text and "tls.crt[1]" in text and "ca.crt[0]" in text
    assert "DNS names:  web.default.svc, web.default.svc.cluster.local" in text
    assert f"Not after:  {at(timedelta(hours=24))} (in 24h)" in text
    assert "Problems" not in text


# -- status certificate ------------------------------------------------------------------------------------------


def test_a_certificate_report_holds_conditions_secret_newest_owned_requests_and_events(pki: Pki) -> None:
    cert = certificate(
        revision=3,
        serialNumber=pki.issued.serial_number,
        notAfter=at(timedelta(hours=24)),
        renewalTime=at(timedelta(hours=16)),
        lastRenewRequest="r1",
        conditions=[condition("Ready", "True", "Issued", "certificate is up to date", -timedelta(minutes=3))],
    )
    cert["metadata"]["annotations"]["certmint.dev/renew-request"] = "r1"
    requests = [
        request("web-1", -timedelta(hours=3), revision=1, Approved="True", Ready="True"),
        request("web-3", -timedelta(minutes=3), revision=3, Approved="True", Ready="True"),
        request("web-2", -timedelta(hours=1), revision=2, Denied="True"),
        request("web-9", -timedelta(minutes=1), owner="uid-of-a-deleted-web"),
    ]
    events = [
        event("Issued", -timedelta(hours=3), "issued revision 1"),
        event("Renewed", -timedelta(minutes=3), "renewed: revision 3"),
    ]
    issuer = {"status": {"conditions": [condition("Ready", "True", "KeyPairVerified")]}}
    report = render.certificate_report(
        cert,
        secret=secret(pki.secret_data(), annotations=CERTMINT_ANNOTATIONS),
        requests=requests,
        events=events,
        issuer=issuer,
        now=NOW,
    )

    assert [r["name"] for r in report["requests"]] == ["web-3", "web-2", "web-1"]
    assert report["requests"][0]["revision"] == 3
    assert [e["reason"] for e in report["events"]] == ["Renewed", "Issued"]
    assert report["conditions"][0]["reason"] == "Issued"
    assert report["status"]["renewalTime"] == at(timedelta(hours=16))
    assert report["renewRequest"] == {"value": "r1", "honoured": True}
    assert report["issuer"]["ready"]["status"] == "True"
    assert report["secret"]["chain"][0]["serialNumber"] == pki.issued.serial_number
    assert report["secretProblem"] is None
    json.dumps(report)  # the -o json shape is plain JSON

    text = render.certificate_text(report, NOW)
    lines = text.splitlines()
    assert lines[0] == "Certificate shop/web  Ready=True (Issued)"
    assert "  Issuer:        ClusterIssuer mesh-ca: Ready=True (KeyPairVerified)" in lines
    assert f"  Renewal:       {at(timedelta(hours=16))} (in 16h)" in lines
    assert "  Renew request: r1 (honoured)" in lines
    assert "Certificate in Secret web-tls (key matches: yes; chain verifies to ca.crt: yes):" in lines
    assert any(line.split()[:4] == ["web-2", "60m", "Denied", "-"] for line in lines)
    assert any(line.split()[:3] == ["3m", "Normal", "Renewed"] for line in lines)


def test_a_certificate_whose_secret_is_missing_or_not_tls_says_so_instead_of_failing() -> None:
    missing = render.certificate_report(certificate(), secret=None, requests=[], events=[], issuer=None, now=NOW)
    assert missing["secret"] is None
    assert missing["secretProblem"] == "Secret shop/web-tls does not exist"
    assert missing["issuer"]["found"] is False
    text = render.certificate_text(missing, NOW)
    assert "Ready: not reported yet" in text.splitlines()[0]
    assert "ClusterIssuer mesh-ca: NOT FOUND" in text
    assert "Secret: Secret shop/web-tls does not exist" in text
    assert "CertificateRequests: none" in text and "Events: none" in text

    opaque = secret({"password": b"x"}, type_="Opaque")
    not_tls = render.certificate_report(certificate(), secret=opaque, requests=[], events=[], issuer=None, now=NOW)
    assert (
        not_tls["secretProblem"]
        == "Secret shop/web-tls is not a TLS Secret: type Opaque, no tls.crt (its keys: password)"
    )


def test_a_pending_renew_request_and_unreadable_parts_are_shown() -> None:
    cert = certificate()
    cert["metadata"]["annotations"]["certmint.dev/renew-request"] = "now-please"
    report = render.certificate_report(
        cert, secret=None, requests=[], events=[], issuer=None, now=NOW, read_errors=["cannot list Events: forbidden"]
    )

    assert report["renewRequest"] == {"value": "now-please", "honoured": False}
    text = render.certificate_text(report, NOW)
    assert "Renew request: now-please (pending)" in text
    assert "Not shown (could not be read):\n  - cannot list Events: forbidden" in text


def test_a_secret_or_issuer_the_user_may_not_read_is_not_reported_missing() -> None:
    report = render.certificate_report(
        certificate(),
        secret=None,
        requests=[],
        events=[],
        issuer=None,
        now=NOW,
        secret_error="cannot read Secret shop/web-tls: forbidden",
        issuer_readable=False,
    )

    assert report["secretProblem"] == "cannot read Secret shop/web-tls: forbidden"
    assert report["issuer"]["found"] is None
    assert "ClusterIssuer mesh-ca: not readable" in render.certificate_text(report, NOW)


def test_json_and_yaml_outputs_are_the_same_report() -> None:
    report = render.certificate_report(certificate(), secret=None, requests=[], events=[], issuer=None, now=NOW)

    assert json.loads(render.dump(report, "json", lambda _: "")) == report
    assert yaml.safe_load(render.dump(report, "yaml", lambda _: "")) == report
    assert render.dump(report, "text", lambda _: "people") == "people"


# -- check -------------------------------------------------------------------------------------------------------

ALL_SERVED = {"v1alpha1": ["bundles", "certificaterequests", "certificates", "clusterissuers", "issuers"]}


def deployment(ready: int, replicas: int = 1, image: str = "registry.example.com/certmint-operator:0.1.0") -> dict:
    return {
        "metadata": {"name": "certmint", "namespace": "certmint", "labels": {"app.kubernetes.io/version": "0.1.0"}},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "operator", "image": image}]}}},
        "status": {
            "readyReplicas": ready,
            "conditions": [{"type": "Available", "status": "True" if ready else "False"}],
        },
    }


def lease(holder: str, renewed_ago: timedelta) -> dict:
    return {
        "spec": {"holderIdentity": holder, "renewTime": at(-renewed_ago), "leaseDurationSeconds": 15},
    }


def check(**kwargs: object) -> dict:
    args: dict = {
        "served": ALL_SERVED,
        "deployments": [deployment(1)],
        "lease": lease("pod-a", timedelta(seconds=2)),
        "lease_namespace": "certmint",
        "cli_version": "0.1.0",
        "now": NOW,
        **kwargs,
    }
    return render.check_report(**args)


def test_check_with_everything_in_place_finds_no_problem() -> None:
    report = check()

    assert report["problems"] == []
    assert report["operator"]["deployments"][0]["version"] == "0.1.0"
    assert report["operator"]["lease"]["held"] is True
    text = render.check_text(report, NOW)
    assert (
        "API certmint.dev/v1alpha1: serves bundles, certificaterequests, certificates, clusterissuers, issuers" in text
    )
    assert "Operator Deployment certmint/certmint: 1/1 ready, version 0.1.0" in text
    assert text.endswith("OK")


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"served": {}}, "the API group certmint.dev is not served"),
        ({"served": {"v1alpha1": ["certificates", "issuers"]}}, "does not serve bundles, certificaterequests"),
        ({"deployments": [deployment(0, replicas=2)]}, "Deployment certmint/certmint has no ready replica (0/2)"),
        ({"deployments": [], "lease": None}, "no operator Deployment found"),
        ({"deployments": [], "lease": lease("pod-a", timedelta(minutes=5))}, "no operator Deployment found"),
        ({"deployments": [deployment(1), deployment(1)]}, "2 operator Deployments found"),
    ],
)
def test_check_names_each_problem(kwargs: dict, problem: str) -> None:
    report = check(**kwargs)

    assert any(problem in p for p in report["problems"]), report["problems"]
    assert "Problems:" in render.check_text(report, NOW)


def test_an_operator_outside_a_deployment_that_holds_its_lease_counts_as_running() -> None:
    report = check(deployments=[])

    assert report["problems"] == []
    assert "Leader Lease certmint/certmint-operator: held by pod-a" in render.check_text(report, NOW)


def test_the_operator_version_falls_back_to_the_image_tag() -> None:
    d = deployment(1, image="registry.example.com:5000/certmint-operator:0.2.0@sha256:abc")
    d["metadata"]["labels"] = {}

    assert check(deployments=[d])["operator"]["deployments"][0]["version"] == "0.2.0"


def test_short_durations_read_like_kubectl() -> None:
    assert [render.short_duration(s) for s in (5, 119, 120, 7199, 7200, 172799, 172800)] == [
        "5s",
        "119s",
        "2m",
        "119m",
        "2h",
        "47h",
        "2d",
    ]
    assert render.relative(at(-timedelta(minutes=3)), NOW) == "3m ago"
    assert render.relative(None, NOW) == ""


def test_renew_text_names_each_certificate_and_warns_about_a_ca() -> None:
    report = {
        "annotation": "certmint.dev/renew-request",
        "requested": [
            {"namespace": "shop", "name": "web", "value": "v1", "isCA": False},
            {"namespace": "shop", "name": "shop-ca", "value": "v1", "isCA": True},
        ],
    }

    assert render.renew_text(report).splitlines() == [
        "renewal requested: Certificate shop/web (certmint.dev/renew-request=v1)",
        "renewal requested: Certificate shop/shop-ca (certmint.dev/renew-request=v1)"
        " - a CA: renewing it rotates the CA of its issuers (docs/ca-rotation.md)",
    ]
