"""The Secret's additional output formats (cert-manager's ``spec.additionalOutputFormats``).

Besides ``tls.crt``, ``tls.key`` and ``ca.crt``, a Certificate may ask for:

- ``CombinedPEM``: key ``tls-combined.pem``, the private key (as in tls.key) followed by the chain (as in tls.crt),
  one file for servers that want both together (HAProxy, some Java and Go tools);
- ``DER``: key ``key.der``, the private key in binary DER, in tls.key's encoding (PKCS#1/SEC 1 or PKCS#8).

Both are derived from tls.key and tls.crt and written with them in the same Secret update, so they never describe a
different key pair; a format removed from the spec has its key removed. A Secret whose outputs do not match what the
spec asks (missing, stale, or left over) is re-issued like any other Secret that does not match its spec.

Pure: bytes in, bytes out.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Final

#: The keystores of spec.keystores (pki.keystores) and their Secret keys; their bytes differ at every write (fresh
#: salts), so a Secret is judged by which of these keys it holds.
KEYSTORE_KEYS: Final = {"pkcs12": "keystore.p12", "jks": "keystore.jks"}

COMBINED_PEM: Final = "CombinedPEM"
DER: Final = "DER"
#: Each format and the Secret key it is written to.
OUTPUT_KEYS: Final = {COMBINED_PEM: "tls-combined.pem", DER: "key.der"}


def key_der(key_pem: bytes) -> bytes:
    """The DER inside tls.key's single PEM block (its encoding unchanged); ValueError if there is no such block."""
    lines = key_pem.decode("ascii", "replace").strip().splitlines()
    if len(lines) < 2 or not lines[0].startswith("-----BEGIN ") or not lines[-1].startswith("-----END "):
        raise ValueError("tls.key is not one PEM block")
    try:
        return base64.b64decode("".join(lines[1:-1]), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"tls.key's PEM body is not base64: {exc}") from None


def additional_outputs(formats: Sequence[str], key_pem: bytes, chain_pem: bytes) -> dict[str, bytes | None]:
    """Every output key: its content when ``formats`` asks for it, else None (remove it from the Secret)."""
    wanted = set(formats)
    content = {
        COMBINED_PEM: lambda: key_pem.rstrip(b"\n") + b"\n" + chain_pem,
        DER: lambda: key_der(key_pem),
    }
    return {key: content[fmt]() if fmt in wanted else None for fmt, key in OUTPUT_KEYS.items()}


def outputs_difference(
    formats: Sequence[str], key_pem: bytes, chain_pem: bytes, present: Mapping[str, bytes]
) -> str | None:
    """How the Secret's output keys ``present`` differ from what ``formats`` asks for tls.key and tls.crt, or None."""
    try:
        expected = additional_outputs(formats, key_pem, chain_pem)
    except ValueError as exc:
        return str(exc)
    for (fmt, key), value in zip(OUTPUT_KEYS.items(), expected.values(), strict=True):
        if value is None and key in present:
            return f"it holds {key}, which spec.additionalOutputFormats does not ask for ({fmt})"
        if value is not None and key not in present:
            return f"{key} is missing (spec.additionalOutputFormats: {fmt})"
        if value is not None and present[key] != value:
            return f"{key} is not tls.key and tls.crt in the {fmt} format"
    return None


def keystores_difference(wanted: Mapping[str, bool], present: Mapping[str, bytes]) -> str | None:
    """How the Secret's keystore keys differ from the keystores ``wanted`` ({"pkcs12": bool, "jks": bool})."""
    for kind, key in KEYSTORE_KEYS.items():
        if wanted.get(kind) and key not in present:
            return f"{key} is missing (spec.keystores.{kind})"
        if not wanted.get(kind) and key in present:
            return f"it holds {key}, which spec.keystores does not ask for"
    return None
