"""Shared by the mTLS server and client pods: read a mounted Secret volume consistently, log JSON lines.

The kubelet updates a Secret volume atomically: it writes the new files into a fresh hidden
directory ``..<timestamp>``, then swaps the symlink ``..data`` to it and removes the old one;
``tls.crt`` etc. are symlinks through ``..data``. Opening ``tls.crt`` and then ``tls.key`` by
their names could straddle a swap and pair a new certificate with the old key. So both files
are read through the directory ``..data`` resolves to, once; if the kubelet removes that
directory in between, the next version is read; if none can be read, the last one loaded
stays in use (and an ``unreadable`` line is logged). A context is rebuilt only when ``..data``
points somewhere new, so the workload picks up a renewed certificate at its next connection,
without a restart.

The trust anchors are ``ca.crt`` of the same volume, or of a directory of their own (``trust_path``:
a ConfigMap volume, such as a certmint Bundle's, or a projected ``clusterTrustBundle`` source; both
are written by the kubelet the same way). That directory's ``..data`` is resolved likewise, and a
change of either rebuilds the context.

Standard library only: the workload image has python3 (3.11) and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import sys
import time
from collections.abc import Callable
from typing import Any


def log(**record: Any) -> None:
    record = {"t": round(time.time(), 3), **record}
    print(json.dumps(record, sort_keys=True), flush=True)


def serial_hex(value: int | str) -> str:
    """One spelling for serial numbers: uppercase hex without leading zeros (getpeercert() pads them)."""
    return format(value if isinstance(value, int) else int(value, 16), "X")


def _tlv(der: bytes, i: int) -> tuple[int, int, int]:
    """(tag, start of the value, length of the value) of the DER element at ``i``."""
    tag, length, i = der[i], der[i + 1], i + 2
    if length & 0x80:
        n = length & 0x7F
        length, i = int.from_bytes(der[i : i + n], "big"), i + n
    return tag, i, length


def pem_serial(pem: str) -> str:
    """Serial number of the first certificate in ``pem`` (Certificate > tbsCertificate > [0] version? > serial)."""
    first = pem[: pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
    der = ssl.PEM_cert_to_DER_cert(first[first.index("-----BEGIN CERTIFICATE-----") :])
    _, tbs, _ = _tlv(der, 0)
    tag, i, length = _tlv(der, tbs)  # tbsCertificate
    tag, v, length = _tlv(der, i)
    if tag == 0xA0:  # explicit version
        tag, v, length = _tlv(der, v + length)
    assert tag == 0x02, f"no serial INTEGER in the certificate (tag {tag:#x})"
    return serial_hex(int.from_bytes(der[v : v + length], "big"))


def pem_fingerprints(pem: str) -> list[str]:
    """SHA-256 of each certificate in ``pem`` (DER), uppercase hex, in the file's order."""
    found = []
    end = "-----END CERTIFICATE-----"
    for block in pem.split(end)[:-1]:
        der = ssl.PEM_cert_to_DER_cert(block[block.index("-----BEGIN CERTIFICATE-----") :] + end)
        found.append(hashlib.sha256(der).hexdigest().upper())
    return found


class Reloading:
    """The SSL context for the current content of a Secret volume at ``path`` (and of the trust directory
    ``trust_path``, if given); rebuilt when ``..data`` of either moves.

    ``make(version, cafile)`` builds the context from the directory ``version`` (tls.crt, tls.key) and the trust
    anchors in ``cafile``.
    """

    def __init__(
        self,
        path: str,
        make: Callable[[str, str], ssl.SSLContext],
        own_cert: bool = True,
        trust_path: str | None = None,
    ) -> None:
        self.path, self.make, self.own_cert, self.trust_path = path, make, own_cert, trust_path
        # The directories ..data of path and of trust_path resolved to when the context was built.
        self.version = ("", "")
        self.context: ssl.SSLContext | None = None
        self.serial = ""  # of our own certificate (tls.crt), "" without one

    def current(self) -> ssl.SSLContext:
        for _ in range(50):
            version = os.path.realpath(os.path.join(self.path, "..data"))
            trust = os.path.realpath(os.path.join(self.trust_path, "..data")) if self.trust_path else version
            if (version, trust) == self.version and self.context is not None:
                return self.context
            cafile = os.path.join(trust, "ca.crt")
            try:
                context = self.make(version, cafile)
                serial = ""
                if self.own_cert:
                    with open(os.path.join(version, "tls.crt")) as f:
                        serial = pem_serial(f.read())
                with open(cafile) as f:
                    anchors = pem_fingerprints(f.read())
            except FileNotFoundError:
                time.sleep(0.02)  # the kubelet removed this version after the swap: read the next one
                continue
            self.version, self.context, self.serial = (version, trust), context, serial
            log(
                event="loaded",
                version=os.path.basename(version),
                serial=serial,
                trust=os.path.join(self.trust_path or self.path, "ca.crt"),
                trust_version=os.path.basename(trust),
                anchors=anchors,
            )
            return context
        if self.context is None:
            sys.exit(f"no consistent version of {self.path} to read")
        # The files are gone (a kubelet that empties the volume): keep serving what was loaded last.
        log(event="unreadable", path=self.path, trust_path=self.trust_path, kept=os.path.basename(self.version[0]))
        return self.context
