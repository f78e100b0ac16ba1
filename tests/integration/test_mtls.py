"""A real TLS handshake (Python ssl) with certificates the operator issued: mutual TLS works, strangers fail."""

from __future__ import annotations

import socket
import ssl
import tempfile
import threading
from pathlib import Path

import pytest
from kubernetes import client

from tests.controlplane.operator_process import OperatorProcess
from tests.integration.builders import Certmint, certificate, cluster_issuer, unique
from tests.integration.conftest import OPERATOR_NAMESPACE

pytestmark = pytest.mark.integration


def _ca_issuer(cm: Certmint) -> str:
    root = unique("mtls-root")
    cm.create(cluster_issuer(f"{root}-ss"))
    cm.create(certificate(root, OPERATOR_NAMESPACE, issuer_name=f"{root}-ss", commonName=root, isCA=True))
    cm.wait_ready("Certificate", root, OPERATOR_NAMESPACE)
    cm.create(cluster_issuer(root, ca_secret=f"{root}-tls"))
    cm.wait_ready("ClusterIssuer", root)
    return root


def _files(cm: Certmint, name: str, ns: str, d: Path) -> tuple[str, str, str]:
    data = cm.secret_data(f"{name}-tls", ns)
    paths = []
    for k in ("tls.crt", "tls.key", "ca.crt"):
        p = d / f"{name}-{k}"
        p.write_bytes(data[k])
        paths.append(str(p))
    return paths[0], paths[1], paths[2]


def _serve_once(server_ctx: ssl.SSLContext, sock: socket.socket, result: dict[str, object]) -> None:
    conn, _ = sock.accept()
    try:
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            peer = tls.getpeercert()
            result["peer_uris"] = [v for k, v in peer.get("subjectAltName", ()) if k == "URI"]
            tls.sendall(b"hello " + str(result["peer_uris"]).encode())
    except (ssl.SSLError, OSError) as e:
        result["server_error"] = e


def _handshake(server: tuple[str, str, str], client_files: tuple[str, str, str] | None) -> dict[str, object]:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(server[0], server[1])
    server_ctx.load_verify_locations(server[2])
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    result: dict[str, object] = {}
    with socket.create_server(("127.0.0.1", 0)) as sock:
        t = threading.Thread(target=_serve_once, args=(server_ctx, sock, result))
        t.start()
        client_ctx = ssl.create_default_context(cafile=server[2])
        if client_files:
            client_ctx.load_cert_chain(client_files[0], client_files[1])
        try:
            with (
                socket.create_connection(sock.getsockname(), timeout=10) as raw,
                client_ctx.wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                result["reply"] = tls.recv(1024)
        except (ssl.SSLError, OSError) as e:
            result["client_error"] = e
        t.join(timeout=10)
    return result


def test_mutual_tls_with_issued_certificates(api: client.ApiClient, operator: OperatorProcess) -> None:
    cm = Certmint(api)
    ns = cm.namespace(unique("mtls"))
    issuer = _ca_issuer(cm)
    stranger = _ca_issuer(cm)
    spiffe = f"spiffe://cluster.local/ns/{ns}/sa/client"
    cm.create(
        certificate(
            "server",
            ns,
            issuer_name=issuer,
            dnsNames=["localhost"],
            ipAddresses=["127.0.0.1"],
            usages=["digital signature", "server auth"],
        )
    )
    cm.create(certificate("client", ns, issuer_name=issuer, uris=[spiffe], usages=["digital signature", "client auth"]))
    cm.create(certificate("intruder", ns, issuer_name=stranger, uris=[spiffe]))
    for name in ("server", "client", "intruder"):
        cm.wait_ready("Certificate", name, ns)

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        server, good, bad = (_files(cm, n, ns, d) for n in ("server", "client", "intruder"))

        ok = _handshake(server, good)
        assert "client_error" not in ok and "server_error" not in ok, ok
        assert ok["peer_uris"] == [spiffe]
        assert ok["reply"] == f"hello {[spiffe]}".encode()

        refused = _handshake(server, bad)
        assert "server_error" in refused, refused
        assert "certificate verify failed" in str(refused["server_error"]) or "unknown ca" in str(
            refused["server_error"]
        )

        anonymous = _handshake(server, None)
        assert "server_error" in anonymous, anonymous
