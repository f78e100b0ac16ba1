"""Mutual TLS server: requires a client certificate from the trust anchor ``ca.crt``, logs the verified identity.

    python3 mtls_server.py --tls-dir /tls [--trust-dir /trust] --port 8443

Every connection is one full handshake with the certificate, key and trust anchor of the Secret
volume's current version (see tlsdir.py): a renewed certificate is served from the next
connection on, without a restart. With ``--trust-dir`` the trust anchors are that directory's
``ca.crt`` (a certmint Bundle's ConfigMap, or a ClusterTrustBundle projected into the pod) instead
of the Secret's. After the handshake the server answers one JSON line
(``accepted``, the client's verified URI SANs and serial, the server's serial) and closes.

Log lines (JSON): ``listening``; ``loaded`` (a new version of the volume or of the trust
directory, with the trust anchors' SHA-256 fingerprints); ``accepted`` with the
client's address, verified URI SANs and serial; ``refused`` with the address and the TLS error.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import threading

from tlsdir import Reloading, log, serial_hex


def server_context(version: str, cafile: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED  # no client certificate, or one not from the trust anchors: refused
    context.load_verify_locations(cafile=cafile)
    context.load_cert_chain(os.path.join(version, "tls.crt"), os.path.join(version, "tls.key"))
    return context


def handle(tls: Reloading, lock: threading.Lock, conn: socket.socket, peer: str) -> None:
    conn.settimeout(10)
    with lock:
        context, own_serial = tls.current(), tls.serial
    try:
        with context.wrap_socket(conn, server_side=True) as s:
            cert = s.getpeercert()  # verified: the handshake succeeded with CERT_REQUIRED
            uris = [value for kind, value in cert.get("subjectAltName", ()) if kind == "URI"]
            record = {
                "event": "accepted",
                "peer": peer,
                "uris": uris,
                "client_serial": serial_hex(str(cert["serialNumber"])),
                "server_serial": own_serial,
                "tls": s.version(),
            }
            s.sendall((json.dumps(record) + "\n").encode())
        log(**record)
    except (ssl.SSLError, OSError) as e:
        log(event="refused", peer=peer, server_serial=own_serial, error=f"{type(e).__name__}: {e}")
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tls-dir", default="/tls")
    parser.add_argument("--trust-dir", default=None, help="read the trust anchors from ca.crt here, not --tls-dir")
    parser.add_argument("--port", type=int, default=8443)
    args = parser.parse_args()
    tls = Reloading(args.tls_dir, server_context, trust_path=args.trust_dir)
    lock = threading.Lock()
    tls.current()
    listener = socket.create_server(("", args.port), backlog=64, reuse_port=False)
    log(event="listening", port=args.port)
    while True:
        conn, addr = listener.accept()
        threading.Thread(target=handle, args=(tls, lock, conn, addr[0]), daemon=True).start()


if __name__ == "__main__":
    main()
