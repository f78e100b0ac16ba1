"""Mutual TLS client: connects to a server by address, verifies it by name or SPIFFE ID, logs every attempt.

    python3 mtls_client.py --host 10.0.0.17 --server-name web.shop.svc --tls-dir /tls [--trust-dir /trust]
                           [--count N] [--interval S]
    python3 mtls_client.py --host 10.0.0.17 --server-id spiffe://cluster.local/ns/shop/sa/web --tls-dir /tls

There is no cluster DNS on the local node, so the client dials the Service's ClusterIP and checks
the server certificate against the Service's DNS name (SNI + hostname verification), or, with ``--server-id``,
against the one URI SAN it must carry (a pod certificate names no host: its identity is its SPIFFE ID). It trusts
``ca.crt`` of its volume (or, with ``--trust-dir``, of that directory: a certmint Bundle's
ConfigMap or a projected ClusterTrustBundle) and presents ``tls.crt``/``tls.key`` of the volume's
current version (see tlsdir.py), unless ``--no-cert``. A handshake counts as successful only when the server's
answer arrives: under TLS 1.3 a server's refusal of the client certificate reaches the client
as an alert on its first read.

Log lines (JSON), one per attempt: ``ok`` true with the server's serial and its answer, or ``ok``
false with the error; every successful one also logs the server's verified URI SANs (``server_uris``); with
``--count``, a final ``done`` line with the totals.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import time

from tlsdir import Reloading, log, serial_hex


def client_context(version: str, cafile: str, with_cert: bool, by_name: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and hostname checking
    context.check_hostname = by_name  # else attempt() checks the SPIFFE ID; the chain is verified either way
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cafile=cafile)
    if with_cert:
        context.load_cert_chain(os.path.join(version, "tls.crt"), os.path.join(version, "tls.key"))
    return context


def attempt(tls: Reloading, host: str, port: int, server_name: str | None, server_id: str | None) -> dict[str, object]:
    context = tls.current()
    record: dict[str, object] = {"client_serial": tls.serial}
    start = time.monotonic()
    try:
        with (
            socket.create_connection((host, port), timeout=5) as sock,
            context.wrap_socket(sock, server_hostname=server_name) as s,
        ):
            cert = s.getpeercert()  # verified against the trust anchors: the handshake succeeded
            record["server_serial"] = serial_hex(str(cert["serialNumber"]))
            uris = [value for kind, value in cert.get("subjectAltName", ()) if kind == "URI"]
            record["server_uris"] = uris
            if server_id is not None and uris != [server_id]:
                raise ssl.CertificateError(f"the server is {uris}, not {server_id}")
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    raise ConnectionError("the server closed the connection without an answer")
                answer += chunk
        record.update(ok=True, answer=json.loads(answer))
    except (ssl.SSLError, ssl.CertificateError, OSError, ValueError) as e:
        record.update(ok=False, error=f"{type(e).__name__}: {e}")
    record["ms"] = round((time.monotonic() - start) * 1000, 1)
    return record


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=8443)
    server = parser.add_mutually_exclusive_group(required=True)
    server.add_argument("--server-name", help="the DNS name the server's certificate must carry")
    server.add_argument("--server-id", help="the one URI SAN (SPIFFE ID) the server's certificate must carry")
    parser.add_argument("--tls-dir", default="/tls")
    parser.add_argument("--trust-dir", default=None, help="read the trust anchors from ca.crt here, not --tls-dir")
    parser.add_argument("--no-cert", action="store_true", help="present no client certificate")
    parser.add_argument("--count", type=int, default=0, help="attempts, then exit (0: forever)")
    parser.add_argument("--interval", type=float, default=0.15, help="seconds between attempts")
    args = parser.parse_args()
    with_cert = not args.no_cert
    tls = Reloading(
        args.tls_dir,
        lambda version, cafile: client_context(version, cafile, with_cert, by_name=args.server_id is None),
        own_cert=with_cert,
        trust_path=args.trust_dir,
    )
    ok = failed = n = 0
    while args.count == 0 or n < args.count:
        n += 1
        record = attempt(tls, args.host, args.port, args.server_name, args.server_id)
        ok, failed = ok + bool(record["ok"]), failed + (not record["ok"])
        log(event="attempt", n=n, **record)
        time.sleep(args.interval)
    log(event="done", ok=ok, failed=failed)


if __name__ == "__main__":
    main()
