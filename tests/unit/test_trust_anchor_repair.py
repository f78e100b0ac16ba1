"""A root added later to a CA Secret's ca.crt reaches Certificates without a re-issue.

The CA certificate (and so its fingerprint) stays the same; only the trust anchor above it changes. The
issuer's identity must change with it, so that its Certificates are looked at again, and a Secret whose
ca.crt is the old anchor gets the new one (controller.certificates._stale_trust_anchor).
"""

from __future__ import annotations

from certmint.controller.certificates import _stale_trust_anchor
from certmint.controller.state import IssuerRecord
from certmint.kube.resources import SecretData
from certmint.pki.signing import SigningAuthority
from tests.unit.builders import NOW, build_ca


def _issuer(authority: SigningAuthority | None) -> IssuerRecord:
    return IssuerRecord(
        kind="ClusterIssuer",
        namespace="",
        name="mesh-ca",
        uid="uid-issuer",
        generation=1,
        resource_version="1",
        spec=None,
        spec_error=None,
        status={},
        ready=True,
        authority=authority,
    )


def _secret(ca_crt: bytes) -> SecretData:
    return SecretData(
        name="web-tls",
        namespace="team-a",
        resource_version="7",
        type="kubernetes.io/tls",
        data={"tls.crt": b"leaf", "tls.key": b"key", "ca.crt": ca_crt},
        labels={},
        annotations={},
        owner_uids=frozenset(),
    )


def test_a_root_added_to_ca_crt_changes_the_issuers_identity_and_is_written_to_ca_crt() -> None:
    root = build_ca("Root CA")
    intermediate = build_ca("Intermediate CA", parent=root)
    rootless = SigningAuthority.from_pem(intermediate.cert_pem, intermediate.key_pem, now=NOW)
    rooted = SigningAuthority.from_pem(intermediate.cert_pem, intermediate.key_pem, ca_crt=root.cert_pem, now=NOW)
    assert rootless.fingerprint_sha256 == rooted.fingerprint_sha256  # the same CA signs
    assert rootless.trust_anchor_pem == intermediate.cert_pem and rooted.trust_anchor_pem == root.cert_pem

    before, after = _issuer(rootless), _issuer(rooted)
    assert before.identity_token != after.identity_token  # so every Certificate of the issuer is looked at again

    assert _stale_trust_anchor(after, _secret(intermediate.cert_pem)) == root.cert_pem
    assert _stale_trust_anchor(after, _secret(root.cert_pem)) is None  # already the anchor: nothing to write


def test_no_anchor_to_write_without_a_ca() -> None:
    root = build_ca("Root CA")
    assert _stale_trust_anchor(None, _secret(root.cert_pem)) is None  # issuer gone or unknown
    assert _stale_trust_anchor(_issuer(None), _secret(b"anything")) is None  # selfSigned, or not ready
