"""``certmint convert`` without an API server: the conversion of every cert-manager field, and the command line.

The corpus (tests/cli/cert_manager/*.yaml, written for these tests) holds every field of cert-manager's v1
Certificate, Issuer/ClusterIssuer (selfSigned, ca) and CertificateRequest; the field list below is taken from
cert-manager's API reference. Together the tests hold the converter to "nothing is silently dropped": each field of
each document is in the certmint object (same path, same value) or a finding names it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from certmint.cli.convert import API_VERSION, Conversion, Document, Severity, convert
from certmint.cli.errors import Exit
from certmint.cli.main import main
from certmint.cli.sources import read_sources
from certmint.core.spec import CertificateRequestSpec, CertificateSpec, IssuerSpec

CORPUS = Path(__file__).parent / "cert_manager"

#: Every field of cert-manager.io/v1 (its API reference, v1.19), by kind, as leaf paths ("[]" for list items).
#: ``acme``, ``vault`` and ``venafi`` are issuer types certmint does not have: each is refused as a whole.
CERT_MANAGER_FIELDS: dict[str, set[str]] = {
    "Certificate": {
        "spec.additionalOutputFormats[].type",
        "spec.commonName",
        "spec.dnsNames[]",
        "spec.duration",
        "spec.emailAddresses[]",
        "spec.encodeUsagesInRequest",
        "spec.ipAddresses[]",
        "spec.isCA",
        "spec.issuerRef.group",
        "spec.issuerRef.kind",
        "spec.issuerRef.name",
        "spec.keystores.jks.alias",
        "spec.keystores.jks.create",
        "spec.keystores.jks.password",
        "spec.keystores.jks.passwordSecretRef.key",
        "spec.keystores.jks.passwordSecretRef.name",
        "spec.keystores.pkcs12.create",
        "spec.keystores.pkcs12.password",
        "spec.keystores.pkcs12.passwordSecretRef.key",
        "spec.keystores.pkcs12.passwordSecretRef.name",
        "spec.keystores.pkcs12.profile",
        "spec.literalSubject",
        *(
            f"spec.nameConstraints.{side}.{kind}[]"
            for side in ("permitted", "excluded")
            for kind in ("dnsDomains", "ipRanges", "emailAddresses", "uriDomains")
        ),
        "spec.nameConstraints.critical",
        "spec.otherNames[].oid",
        "spec.otherNames[].utf8Value",
        "spec.privateKey.algorithm",
        "spec.privateKey.encoding",
        "spec.privateKey.rotationPolicy",
        "spec.privateKey.size",
        "spec.renewBefore",
        "spec.renewBeforePercentage",
        "spec.revisionHistoryLimit",
        "spec.secretName",
        "spec.secretTemplate.annotations.*",
        "spec.secretTemplate.labels.*",
        "spec.signatureAlgorithm",
        *(
            f"spec.subject.{name}[]"
            for name in (
                "organizations",
                "organizationalUnits",
                "countries",
                "localities",
                "provinces",
                "streetAddresses",
                "postalCodes",
            )
        ),
        "spec.subject.serialNumber",
        "spec.uris[]",
        "spec.usages[]",
    },
    "Issuer": {
        "spec.selfSigned.crlDistributionPoints[]",
        "spec.ca.secretName",
        "spec.ca.crlDistributionPoints[]",
        "spec.ca.ocspServers[]",
        "spec.ca.issuingCertificateURLs[]",
        "spec.acme",
        "spec.vault",
        "spec.venafi",
    },
    "CertificateRequest": {
        "spec.duration",
        "spec.extra.*",
        "spec.groups[]",
        "spec.isCA",
        "spec.issuerRef.group",
        "spec.issuerRef.kind",
        "spec.issuerRef.name",
        "spec.request",
        "spec.uid",
        "spec.usages[]",
        "spec.username",
    },
}
CERT_MANAGER_FIELDS["ClusterIssuer"] = CERT_MANAGER_FIELDS["Issuer"]
#: The issuer types certmint refuses as a whole: their inner fields are not walked.
WHOLE = ("spec.acme", "spec.vault", "spec.venafi")
#: What the API server (and kubectl) fill in, never what a user asked for: not carried, by design (docs/cli.md).
SERVER_POPULATED = (
    "metadata.uid",
    "metadata.resourceVersion",
    "metadata.generation",
    "metadata.creationTimestamp",
    "metadata.managedFields",
    "metadata.annotations[kubectl.kubernetes.io/last-applied-configuration]",
)
#: Values the conversion translates on purpose (path, cert-manager's value) -> certmint's value.
TRANSLATED = {("spec.issuerRef.group", "cert-manager.io"): "certmint.dev"}


def corpus() -> list[tuple[str, Any]]:
    return read_sources([str(CORPUS)])


@pytest.fixture(scope="module")
def conversion() -> Conversion:
    return convert(corpus())


def by_name(conversion: Conversion, kind: str, name: str) -> Document:
    (doc,) = [d for d in conversion.documents if d.kind == kind and d.name == name]
    return doc


def leaves(value: Any, path: str) -> Iterator[tuple[str, str, Any]]:
    """(generic path, concrete path, value) of every leaf: list items as ``[]``/``[i]``, map keys of free-form maps
    (labels, annotations, extra) as ``*``/``[key]``."""
    if isinstance(value, dict) and value:
        free_form = path.endswith(("labels", "annotations", "extra"))
        for key, item in value.items():
            generic = f"{path}.*" if free_form else f"{path}.{key}"
            concrete = f"{path}[{key}]" if free_form else f"{path}.{key}"
            for g, c, v in leaves(item, concrete):
                yield g.replace(concrete, generic, 1), c, v
    elif isinstance(value, list) and value and path != "spec.extra.*":
        for i, item in enumerate(value):
            for g, c, v in leaves(item, f"{path}[{i}]"):
                yield g.replace(f"{path}[{i}]", f"{path}[]", 1), c, v
    else:
        yield path, path, value


def generic_paths(doc: dict[str, Any]) -> set[str]:
    spec = doc.get("spec") or {}
    paths = set()
    for key, value in spec.items():
        if f"spec.{key}" in WHOLE:
            paths.add(f"spec.{key}")
        else:
            paths.update(g for g, _, _ in leaves(value, f"spec.{key}"))
    return {p.replace("spec.extra.*[]", "spec.extra.*") for p in paths}


def lookup(obj: Any, concrete: str) -> tuple[bool, Any]:
    """The value at a concrete path (``spec.a.b[2]``, ``metadata.labels[app]``) of a converted object."""
    current = obj
    for part in concrete.replace("[", ".[").split("."):
        if part.startswith("[") and isinstance(current, list):
            index = int(part[1:-1])
            if index >= len(current):
                return False, None
            current = current[index]
        elif part.startswith("[") and isinstance(current, dict) and part[1:-1] in current:
            current = current[part[1:-1]]
        elif isinstance(current, dict) and part in current:
            current = current[part]
        else:
            return False, None
    return True, current


def reported(doc: Document, concrete: str) -> bool:
    return any(f.path in ("", concrete) or concrete.startswith((f.path + ".", f.path + "[")) for f in doc.findings)


# -- the corpus and the field list -----------------------------------------------------------------------------


def test_the_corpus_sets_every_field_of_cert_managers_api() -> None:
    seen: dict[str, set[str]] = {kind: set() for kind in CERT_MANAGER_FIELDS}
    for _, obj in corpus():
        for item in obj.get("items", [obj]) if isinstance(obj, dict) else []:
            if item.get("apiVersion") == "cert-manager.io/v1" and item.get("kind") in seen:
                seen[item["kind"]] |= generic_paths(item)

    for kind, fields in CERT_MANAGER_FIELDS.items():
        assert fields - seen[kind] == set(), f"the corpus never sets these {kind} fields"
        assert seen[kind] - fields == set(), f"the corpus sets {kind} fields that are not cert-manager's"


def test_every_field_is_in_the_certmint_object_or_in_the_report(conversion: Conversion) -> None:
    checked = 0
    for doc in conversion.documents:
        if not doc.convertible:
            continue
        if doc.result is None:  # no certmint counterpart at all (an ACME issuer): the object is reported as a whole
            assert errors(doc) or notes(doc).get("", "").startswith("made by cert-manager"), doc.label
            continue
        for key in ("metadata", "spec"):
            for _, concrete, value in leaves(doc.original.get(key), key):
                if reported(doc, concrete) or concrete.startswith(SERVER_POPULATED):
                    continue
                found, converted = lookup(doc.result, concrete)
                assert found, f"{doc.label}: {concrete} is neither converted nor reported"
                expected = value if isinstance(value, dict | list) else TRANSLATED.get((concrete, value), value)
                assert converted == expected, f"{doc.label}: {concrete} changed without a finding"
                checked += 1
    assert checked > 100  # the walk saw the corpus


def test_cert_manager_resources_are_either_written_or_have_an_error(conversion: Conversion) -> None:
    for doc in conversion.documents:
        if doc.convertible and not doc.written:
            owned = any("made by cert-manager for Certificate" in f.message for f in doc.findings)
            assert owned or any(f.severity is Severity.ERROR for f in doc.findings), doc.label


def test_written_objects_are_what_certmint_accepts(conversion: Conversion) -> None:
    parsers = {
        "Certificate": CertificateSpec.from_dict,
        "CertificateRequest": CertificateRequestSpec.from_dict,
        "Issuer": IssuerSpec.from_dict,
        "ClusterIssuer": IssuerSpec.from_dict,
    }
    for obj in conversion.objects:
        assert obj["apiVersion"] == API_VERSION
        parsers[obj["kind"]](obj["spec"])
        assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}


def test_which_corpus_objects_convert(conversion: Conversion) -> None:
    written = {(d.kind, d.name) for d in conversion.documents if d.written}
    not_converted = {(d.kind, d.name) for d in conversion.documents if d.cert_manager and not d.faithful}

    assert written == {
        ("Issuer", "selfsigned"),
        ("ClusterIssuer", "corpus-selfsigned"),
        ("Issuer", "ca"),
        ("ClusterIssuer", "corpus-ca"),
        ("Certificate", "root-ca"),
        ("Certificate", "intermediate-ca"),
        ("Certificate", "web"),
        ("Certificate", "api"),
        ("Certificate", "defaults"),
        ("Certificate", "ed25519"),
        ("Certificate", "exported"),
        ("CertificateRequest", "batch"),
        ("CertificateRequest", "sub-ca"),
    }
    assert not_converted == {
        ("Issuer", "letsencrypt"),
        ("ClusterIssuer", "corpus-vault"),
        ("Issuer", "venafi"),
        ("ClusterIssuer", "corpus-venafi"),
        ("Issuer", "vault"),
        ("ClusterIssuer", "corpus-letsencrypt"),
        ("Certificate", "literal-subject"),
        ("Certificate", "other-names"),
        ("Certificate", "signature-algorithm"),
        ("Certificate", "literal-passwords"),
        ("Certificate", "legacy-pkcs12"),
        ("Certificate", "rsa-8192"),
        ("Certificate", "external-issuer"),
        ("Certificate", "public-web"),
        ("Certificate", "no-subject"),
        ("Certificate", "old-api"),
    }
    assert not conversion.faithful


# -- field by field ------------------------------------------------------------------------------------------------


def one(spec: dict[str, Any], kind: str = "Certificate", **extra: Any) -> Document:
    doc = {"apiVersion": "cert-manager.io/v1", "kind": kind, "metadata": {"name": "x", "namespace": "ns"}, "spec": spec}
    return convert([("test#1", doc), *extra.get("with_", [])]).documents[0]


def errors(doc: Document) -> dict[str, str]:
    return {f.path: f.message for f in doc.findings if f.severity is Severity.ERROR}


def notes(doc: Document) -> dict[str, str]:
    return {f.path: f.message for f in doc.findings if f.severity is Severity.NOTE}


LEAF = {"secretName": "x-tls", "dnsNames": ["x.example.com"], "issuerRef": {"name": "ca"}}


def test_cert_managers_defaults_are_written_out() -> None:
    doc = one(dict(LEAF))

    assert doc.written
    assert doc.result is not None
    assert doc.result["spec"]["privateKey"] == {"algorithm": "RSA"}
    assert doc.result["spec"]["usages"] == ["digital signature", "key encipherment"]
    assert doc.result["spec"]["issuerRef"] == {"name": "ca", "kind": "Issuer", "group": "certmint.dev"}
    assert "cert-manager's default" in notes(doc)["spec.privateKey.algorithm"]


@pytest.mark.parametrize("algorithm", ["ECDSA", "Ed25519"])
def test_what_a_signing_key_cannot_do_is_left_out_with_a_note(algorithm: str) -> None:
    doc = one({**LEAF, "privateKey": {"algorithm": algorithm}, "usages": ["key encipherment", "server auth"]})

    assert doc.written
    assert doc.result is not None
    assert doc.result["spec"]["usages"] == ["server auth"]
    assert "key encipherment left out" in notes(doc)["spec.usages"]


def test_a_ca_issuer_that_signs_a_ca_is_allowed_to() -> None:
    issuer = {"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": "ca"}}  # namespace: by -n
    issuer["spec"] = {"ca": {"secretName": "root"}}
    ca = {**LEAF, "isCA": True, "commonName": "sub CA"}
    cert = {"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "x", "namespace": "ns"}}
    result = convert([("a#1", issuer), ("a#2", {**cert, "spec": ca})])

    converted_issuer = result.documents[0]
    assert converted_issuer.result is not None
    assert converted_issuer.result["spec"]["policy"] == {"allowCA": True}
    assert "Certificate ns/x" in notes(converted_issuer)["spec.policy.allowCA"]
    assert result.faithful


@pytest.mark.parametrize(
    ("key", "algorithm", "faithful"),
    [
        ({"algorithm": "ECDSA", "size": 384}, "ECDSAWithSHA384", True),
        ({"algorithm": "ECDSA", "size": 384}, "ECDSAWithSHA256", False),
        ({"algorithm": "RSA"}, "SHA256WithRSA", True),
        ({"algorithm": "Ed25519"}, "PureEd25519", True),
    ],
)
def test_a_signature_algorithm_is_dropped_only_when_certmint_uses_it_anyway(
    key: dict[str, Any], algorithm: str, faithful: bool
) -> None:
    issuer = {"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": "self"}}
    issuer["spec"] = {"selfSigned": {}}
    spec = {**LEAF, "commonName": "x", "issuerRef": {"name": "self", "kind": "ClusterIssuer"}, "privateKey": key}
    doc = one({**spec, "signatureAlgorithm": algorithm}, with_=[("i#1", issuer)])

    assert doc.faithful is faithful
    assert "spec.signatureAlgorithm" in (notes(doc) if faithful else errors(doc))


def test_a_signature_algorithm_under_a_ca_issuer_is_an_error() -> None:
    assert "spec.signatureAlgorithm" in errors(one({**LEAF, "signatureAlgorithm": "SHA256WithRSA"}))


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({**LEAF, "literalSubject": "CN=x"}, "spec.literalSubject"),
        ({**LEAF, "otherNames": [{"oid": "1.2.3", "utf8Value": "x"}]}, "spec.otherNames"),
        ({**LEAF, "privateKey": {"algorithm": "RSA", "size": 8192}}, "spec.privateKey.size"),
        ({**LEAF, "privateKey": {"algorithm": "Ed25519", "encoding": "PKCS1"}}, "spec.privateKey.encoding"),
        ({**LEAF, "keystores": {"pkcs12": {"create": True, "password": "s3cret"}}}, "spec.keystores.pkcs12.password"),
        ({**LEAF, "issuerRef": {"name": "pca", "kind": "AWSPCAIssuer", "group": "awspca.cert-manager.io"}}, None),
        ({**LEAF, "nameConstraints": {"permitted": {"dnsDomains": ["example.com"]}}}, "spec.nameConstraints"),
        ({**LEAF, "frobnicate": True}, "spec.frobnicate"),
        ({**LEAF, "subject": {"organizations": ["x"], "title": "y"}}, "spec.subject.title"),
    ],
)
def test_what_cannot_be_converted_faithfully_is_an_error_and_not_written(
    spec: dict[str, Any], path: str | None
) -> None:
    doc = one(spec)

    assert not doc.written
    assert errors(doc), doc.findings
    if path is not None:
        assert path in errors(doc)
    else:
        assert "spec.issuerRef.group" in errors(doc)


def test_a_literal_password_is_never_repeated(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    manifest = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "java"},
        "spec": {**LEAF, "keystores": {"jks": {"create": True, "password": "hunter2-secret"}}},
    }
    (tmp_path / "java.yaml").write_text(yaml.safe_dump(manifest))

    for report in ("text", "json"):
        code, out, err = run(capsys, "convert", str(tmp_path / "java.yaml"), "--report", report)
        assert code == Exit.PROBLEM
        assert "hunter2" not in out + err
        assert "spec.keystores.jks.password" in err


def test_server_populated_metadata_and_status_are_not_carried(conversion: Conversion) -> None:
    exported = by_name(conversion, "Certificate", "exported")

    assert exported.result is not None
    assert exported.result["metadata"] == {"name": "exported", "annotations": {"owner": "team-shop"}}
    assert "status" not in exported.result
    assert "cert-manager.io/issue-temporary-certificate" in next(iter(notes(exported)))


def test_requests_made_by_a_cert_manager_certificate_are_left_out(conversion: Conversion) -> None:
    owned = by_name(conversion, "CertificateRequest", "web-1")
    assert not owned.written and owned.faithful
    batch = by_name(conversion, "CertificateRequest", "batch")
    assert {"spec.username", "spec.uid", "spec.groups", "spec.extra"} <= set(notes(batch))
    assert batch.result is not None
    assert batch.result["spec"]["usages"] == ["digital signature"]  # an ECDSA CSR: no key encipherment


def test_documents_that_are_not_cert_manager_resources_are_left_out(conversion: Conversion) -> None:
    secret = by_name(conversion, "Secret", "keystore-password")
    assert not secret.written and secret.faithful
    assert "left out" in notes(secret)[""]
    old = by_name(conversion, "Certificate", "old-api")
    assert "cmctl convert" in errors(old)["apiVersion"]


# -- the command line ----------------------------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_corpus_converts_with_exit_1_the_objects_on_stdout_and_the_report_on_stderr(
    capsys: pytest.CaptureFixture[str], conversion: Conversion
) -> None:
    code, out, err = run(capsys, "convert", str(CORPUS))

    assert code == Exit.PROBLEM
    written = list(yaml.safe_load_all(out))
    assert written == conversion.objects
    assert "error: Certificate literal-subject: spec.literalSubject: not supported" in err
    assert err.strip().splitlines()[-1] == (
        "13 converted, 16 not converted (see the errors), 3 left out: NOT everything converted faithfully"
    )
    assert "Traceback" not in err


def test_json_output_and_report(capsys: pytest.CaptureFixture[str], conversion: Conversion) -> None:
    code, out, err = run(capsys, "convert", str(CORPUS), "-o", "json", "--report", "json")

    assert code == Exit.PROBLEM
    listing = json.loads(out)
    assert listing["apiVersion"] == "v1" and listing["kind"] == "List"
    assert listing["items"] == conversion.objects
    report = json.loads(err)
    assert set(report) == {"faithful", "converted", "notConverted", "leftOut", "findings", "readErrors"}
    assert report["readErrors"] == []
    assert report["faithful"] is False
    assert {"source", "kind", "namespace", "name"} == set(report["converted"][0])
    finding = next(f for f in report["findings"] if f["path"] == "spec.literalSubject")
    assert finding["severity"] == "error"
    assert finding["object"] == "Certificate literal-subject"
    assert finding["source"].endswith("04-unsupported.yaml#1")


def test_a_faithful_conversion_exits_0(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {**LEAF, "privateKey": {"algorithm": "ECDSA"}, "usages": ["server auth"]},
    }
    monkeypatch.setattr("sys.stdin", io.StringIO(yaml.safe_dump(manifest)))

    code, out, err = run(capsys, "convert", "-")

    assert code == Exit.OK, err
    (converted,) = yaml.safe_load_all(out)
    assert converted["apiVersion"] == API_VERSION
    assert converted["spec"]["usages"] == ["server auth"]
    assert err.strip() == "1 converted: everything converted faithfully"


@pytest.mark.parametrize(
    ("argv", "expected", "exit_code"),
    [
        (("convert",), "convert: give FILE, DIR, - (stdin) or --from-cluster", Exit.USAGE),
        (("convert", "-A", "x.yaml"), "convert: -A/--all-namespaces needs --from-cluster", Exit.USAGE),
        (("convert", "-o", "text", "x.yaml"), "argument -o/--output: invalid choice: 'text'", Exit.USAGE),
        (("convert", "/nonexistent/certs.yaml"), "cannot read /nonexistent/certs.yaml: no such file", Exit.PROBLEM),
    ],
)
def test_bad_input_is_one_line(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], expected: str, exit_code: int
) -> None:
    code, out, err = run(capsys, *argv)

    assert code == exit_code
    assert out == ""
    assert expected in err
    assert len(err.strip().splitlines()) == 1, err


def test_a_file_that_is_not_yaml_names_the_file_and_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("apiVersion: cert-manager.io/v1\nkind: [Certificate\n")

    code, out, err = run(capsys, "convert", str(tmp_path))

    assert code == Exit.PROBLEM
    assert out == ""
    assert f"{tmp_path / 'broken.yaml'}: not valid YAML" in err
    assert len(err.strip().splitlines()) == 1, err


def test_a_directory_is_read_recursively_yaml_yml_and_json(tmp_path: Path) -> None:
    manifest = {"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": "a"}, "spec": {}}
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(manifest))
    (tmp_path / "sub" / "b.yml").write_text(yaml.safe_dump({**manifest, "metadata": {"name": "b"}}))
    (tmp_path / "sub" / "c.json").write_text(json.dumps({**manifest, "metadata": {"name": "c"}}))
    (tmp_path / "README.md").write_text("# not a manifest\n")

    sources = [label for label, _ in read_sources([str(tmp_path)])]

    assert sources == [
        f"{tmp_path / 'a.yaml'}#1",
        f"{tmp_path / 'sub' / 'b.yml'}#1",
        f"{tmp_path / 'sub' / 'c.json'}#1",
    ]


def test_a_request_to_a_self_signed_issuer_is_an_error(conversion: Conversion) -> None:
    issuer = {"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": "self", "namespace": "ns"}}
    issuer["spec"] = {"selfSigned": {}}
    batch = by_name(conversion, "CertificateRequest", "batch").original
    request = {**batch, "metadata": {"name": "x", "namespace": "ns"}}
    request["spec"] = {"request": batch["spec"]["request"], "issuerRef": {"name": "self"}}

    doc = convert([("r#1", request), ("i#1", issuer)]).documents[0]

    assert not doc.written
    assert "cannot sign a bare request" in errors(doc)["spec.issuerRef"]
