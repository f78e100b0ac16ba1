"""The three judges of the verifier tier, each a tool certmint did not write.

* ``lint``: pkilint's RFC 5280 certificate linter (the validators of its ``lint_pkix_cert``) plus its
  issuer/subject chain linter (``lint_pkix_signer_signee_cert_chain``: name chaining, key identifiers,
  the signature). Only pkilint's ``pkix.*`` / ``itu.*`` / ``base.*`` validations run here, never its
  CA/Browser Forum or ETSI profiles: a private CA is not a publicly trusted one. FATAL and ERROR count as
  errors, WARNING as warnings; NOTICE and INFO findings are returned too, for the report.

  One finding is a limit of the linter, not of the certificate, and is set aside (reported, not counted):
  ``pkix.invalid_uri_syntax`` checks RFC 3986 syntax with the ``validators`` package's web-URL check,
  which knows nine schemes (http, https, ftp...), so every ``spiffe://`` ID fails it. For a URI whose
  scheme is well-formed (RFC 3986 section 3.1) but not one of those, the tier runs the same check with
  the scheme replaced by ``https``: a malformed authority or path still fails (test_instruments.py).
  Single-label DNS names such as ``localhost`` fail pkilint's domain check too; the matrix uses
  dotted names only and sets nothing aside for DNS names.
* ``openssl_verify``: ``openssl verify -x509_strict`` trusting exactly one ``ca.crt`` file, the rest of
  ``tls.crt`` as untrusted intermediates, with the ``-purpose`` that matches the certificate's usages.
* ``handshake``: a TLS handshake with CPython's ``ssl`` on loopback, server and client each presenting a
  ``tls.crt``/``tls.key`` pair and each trusting exactly its own ``ca.crt``, with hostname or IP address
  verification by the client and a required client certificate on the server.

Pure functions over PEM bytes and files: no Kubernetes here, so tests/verifiers/test_instruments.py can
show each judge refusing a bad certificate made by hand.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

# pkilint (and validators, its URL checker) are imported where they are used: on a machine without them the
# tier's conftest reports a missing prerequisite (an error in CI) instead of a collection error.


@dataclass(frozen=True)
class Finding:
    severity: str  # FATAL, ERROR, WARNING, NOTICE, INFO
    code: str
    message: str
    where: str

    def __str__(self) -> str:
        return f"{self.severity} {self.code}" + (f" ({self.message})" if self.message else "") + f" @ {self.where}"


@dataclass(frozen=True)
class LintResult:
    findings: tuple[Finding, ...]

    def of(self, *severities: str) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity in severities)

    #: FATAL and ERROR findings: the certificate fails.
    errors = property(lambda self: self.of("FATAL", "ERROR"))
    #: WARNING findings: reported and counted.
    warnings = property(lambda self: self.of("WARNING"))
    #: NOTICE and INFO findings: listed, never counted against the certificate.
    notices = property(lambda self: self.of("NOTICE", "INFO"))
    #: Findings that are a limit of the linter (see the module docstring): listed, not counted.
    set_aside = property(lambda self: self.of("SET-ASIDE"))


@functools.cache
def _certificate_linter() -> Any:
    """What pkilint's ``lint_pkix_cert`` runs: RFC 5280 and the RFCs it profiles (key usage per key type...)."""
    from pkilint.pkix import certificate, extension, name  # type: ignore[import-untyped]  # noqa: PLC0415

    return certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )


@functools.cache
def _chain_linters() -> tuple[Any, Any, Any]:
    """What pkilint's ``lint_pkix_signer_signee_cert_chain`` runs on an (issuer, subject) pair."""
    from pkilint.bin import lint_pkix_signer_signee_cert_chain as chain_lint  # type: ignore[import-untyped]  # noqa: PLC0415

    return (
        chain_lint.create_decoder_validation_container(),
        chain_lint.create_issuer_validation_container(),
        chain_lint.create_subject_validation_container(),
    )


#: The schemes pkilint's URI check (validators 0.22's ``url``) accepts at all.
_LINTER_URI_SCHEMES = frozenset({"ftp", "ftps", "git", "http", "https", "rtsp", "sftp", "ssh", "telnet"})
_RFC3986_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def _linter_uri_limit(code: str, uri: str) -> bool:
    """Is this ``pkix.invalid_uri_syntax`` finding only the linter's scheme allowlist speaking?"""
    if code != "pkix.invalid_uri_syntax":
        return False
    scheme, colon, rest = uri.partition(":")
    if not colon or not _RFC3986_SCHEME.fullmatch(scheme) or scheme.lower() in _LINTER_URI_SCHEMES:
        return False
    import validators  # type: ignore[import-untyped]  # noqa: PLC0415

    return bool(validators.url(f"https:{rest}"))


def _findings(results: list[Any]) -> list[Finding]:
    findings = []
    for r in results:
        for d in r.finding_descriptions:
            severity, code = d.finding.severity.name, d.finding.code
            message = d.message or ""
            if _linter_uri_limit(code, str(r.node.pdu)):
                severity, message = "SET-ASIDE", f"{message}: scheme unknown to the linter, RFC 3986 syntax checked"
            findings.append(Finding(severity, code, message, str(r.node.path)))
    return findings


def lint(cert: x509.Certificate, issuer: x509.Certificate | None = None) -> LintResult:
    """pkilint's RFC 5280 findings for ``cert``, and for the pair (issuer, cert) when the issuer is given."""
    from pkilint import loader  # type: ignore[import-untyped]  # noqa: PLC0415

    der = cert.public_bytes(Encoding.DER)
    documents = loader.RFC5280CertificateDocumentLoader()
    doc = documents.load_der_document(der, "certificate")
    results = list(_certificate_linter().validate(doc.root))
    if issuer is not None:
        collection: dict[str, object] = {}
        issuer_doc = documents.load_der_document(issuer.public_bytes(Encoding.DER), "issuer", "issuer", collection)
        subject_doc = documents.load_der_document(der, "subject", "subject", collection)
        collection.update(issuer=issuer_doc, subject=subject_doc)
        decoders, issuer_checks, subject_checks = _chain_linters()
        results += decoders.validate(issuer_doc.root) + decoders.validate(subject_doc.root)
        results += issuer_checks.validate(issuer_doc.root) + subject_checks.validate(subject_doc.root)
    return LintResult(tuple(_findings(results)))


# -- openssl verify ------------------------------------------------------------------------------------------

#: ``openssl verify -purpose`` per extended key usage.
_PURPOSES: dict[x509.ObjectIdentifier, str] = {
    ExtendedKeyUsageOID.SERVER_AUTH: "sslserver",
    ExtendedKeyUsageOID.CLIENT_AUTH: "sslclient",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "smimesign",
}


def extended_key_usages(cert: x509.Certificate) -> frozenset[x509.ObjectIdentifier] | None:
    """The EKU OIDs, or None when the certificate has no EKU extension (unrestricted)."""
    try:
        return frozenset(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return None


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def purposes(cert: x509.Certificate) -> list[str | None]:
    """The ``openssl verify -purpose`` values matching the usages; [None] (no purpose check) for a CA."""
    if is_ca(cert):
        return [None]
    ekus = extended_key_usages(cert)
    if ekus is None:
        return ["sslserver", "sslclient"]
    return [purpose for oid, purpose in _PURPOSES.items() if oid in ekus] or [None]


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str


def openssl_verify(tls_crt: bytes, ca_crt: bytes, purpose: str | None) -> Outcome:
    """``openssl verify -x509_strict`` of the leaf of ``tls_crt``, the rest untrusted, ``ca_crt`` the only anchor."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is a prerequisite of the verifier tier"
    chain = x509.load_pem_x509_certificates(tls_crt)
    with tempfile.TemporaryDirectory(prefix="certmint-verify-") as tmp:
        d = Path(tmp)
        (d / "leaf.pem").write_bytes(chain[0].public_bytes(Encoding.PEM))
        (d / "ca.pem").write_bytes(ca_crt)
        args = [openssl, "verify", "-x509_strict", "-CAfile", str(d / "ca.pem")]
        if len(chain) > 1:
            (d / "untrusted.pem").write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in chain[1:]))
            args += ["-untrusted", str(d / "untrusted.pem")]
        if purpose:
            args += ["-purpose", purpose]
        proc = subprocess.run([*args, str(d / "leaf.pem")], capture_output=True, text=True, check=False, timeout=30)
    output = " ".join((proc.stdout + proc.stderr).replace(str(d), "").split())
    return Outcome(proc.returncode == 0 and output.endswith(": OK"), output)


# -- TLS handshakes ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TLSFiles:
    """A Secret's three keys written to files, as a workload mounting it would see them."""

    tls_crt: Path
    tls_key: Path
    ca_crt: Path

    @classmethod
    def write(cls, directory: Path, stem: str, data: dict[str, bytes]) -> TLSFiles:
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for key in ("tls.crt", "tls.key", "ca.crt"):
            path = directory / f"{stem}-{key}"
            path.write_bytes(data[key])
            paths.append(path)
        return cls(*paths)


def server_names(cert: x509.Certificate) -> list[str]:
    """Names a client can verify the certificate for on loopback: its DNS names, and its loopback addresses."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names = list(sans.get_values_for_type(x509.DNSName))
    names += [str(ip) for ip in sans.get_values_for_type(x509.IPAddress) if ip.is_loopback]
    return names


def handshake(server: TLSFiles, client: TLSFiles, server_name: str) -> Outcome:
    """Mutual TLS on loopback; ``server_name`` is what the client verifies (a DNS name or a loopback address).

    Each side trusts exactly its own ``ca.crt``; the server requires a client certificate. The connection
    goes to the loopback address of the server name's family (``::1`` for an IPv6 name), else 127.0.0.1.
    """
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(server.tls_crt, server.tls_key)
    server_ctx.load_verify_locations(cafile=str(server.ca_crt))
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED by default
    client_ctx.load_verify_locations(cafile=str(client.ca_crt))
    client_ctx.load_cert_chain(client.tls_crt, client.tls_key)

    try:
        family_v6 = ipaddress.ip_address(server_name).version == 6
    except ValueError:
        family_v6 = False
    address = ("::1", 0) if family_v6 else ("127.0.0.1", 0)
    result: dict[str, str] = {}

    def serve(sock: socket.socket) -> None:
        try:
            conn, _ = sock.accept()
        except OSError as e:
            result["server"] = f"accept: {e}"
            return
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                if not tls.getpeercert():
                    result["server"] = "no verified client certificate"
                    return
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as e:
            result["server"] = f"{type(e).__name__}: {e}"

    with socket.create_server(address, family=socket.AF_INET6 if family_v6 else socket.AF_INET) as sock:
        sock.settimeout(10)
        thread = threading.Thread(target=serve, args=(sock,), daemon=True)
        thread.start()
        try:
            with (
                socket.create_connection(sock.getsockname()[:2], timeout=10) as raw,
                client_ctx.wrap_socket(raw, server_hostname=server_name) as tls,
            ):
                reply = tls.recv(16)
                if reply != b"ok":
                    result["client"] = f"unexpected reply {reply!r}"
        except (ssl.SSLError, OSError) as e:
            result["client"] = f"{type(e).__name__}: {e}"
        thread.join(timeout=10)
    errors = [f"{side}: {result[side]}" for side in ("client", "server") if side in result]
    return Outcome(not errors, "; ".join(errors) or f"verified {server_name!r} both ways")
