"""A root added later to a CA Secret's ca.crt reaches Certificates without a re-issue.

The CA certificate (and so its fingerprint) stays the same; only the trust anchor above it changes. The
issuer's identity must change with it, so that its Certificates are looked at again, and a Secret whose
ca.crt is the old anchor gets the new one (the plan keeps the certificate and repairs ca.crt).
"""

from __future__ import annotations

import datetime

from certmint.controller.certificate_plan import Keep, Snapshot, plan, secret_metadata
from certmint.controller.certificates import _issuer_view
from certmint.controller.state import IssuerRecord, Kind
from certmint.core.spec import IssuerSpec
from certmint.kube.resources import SecretData
from certmint.pki.inspect import certificate_facts
from certmint.pki.keys import encode_private_key
from certmint.pki.signing import SigningAuthority
from tests.unit.builders import NOW, build_ca, certificate_spec, issue_for

SPEC = certificate_spec()


def _issuer(authority: SigningAuthority | None) -> IssuerRecord:
    return IssuerRecord(
        kind=Kind.CLUSTER_ISSUER,
        namespace="",
        name="internal-ca",
        uid="uid-issuer",
        generation=1,
        resource_version="1",
        spec=IssuerSpec.from_dict({"ca": {"secretName": "intermediate"}}),
        spec_error=None,
        status={},
        ready=True,
        authority=authority,
        checked=True,
    )


def _snapshot(issuer: IssuerRecord | None, secret: SecretData | None) -> Snapshot:
    return Snapshot(
        namespace="team-a",
        name="web",
        uid="uid-web",
        generation=1,
        spec=SPEC,
        status={},
        secret=secret,
        issuer=_issuer_view(SPEC, issuer),
        signed=None,
        now=NOW,
        jitter_fraction=0.0,
        min_renewal_interval=datetime.timedelta(seconds=30),
    )


def _secret(authority: SigningAuthority, ca_crt: bytes) -> SecretData:
    """The Secret certmint wrote for a certificate ``authority`` signed, with ``ca.crt`` as given."""
    issued, key = issue_for(SPEC, authority, now=NOW - datetime.timedelta(hours=1))
    labels, annotations = secret_metadata(_snapshot(None, None), certificate_facts(issued.certificate), 1)
    return SecretData(
        name="web-tls",
        namespace="team-a",
        resource_version="7",
        type="kubernetes.io/tls",
        data={"tls.crt": issued.chain_pem, "tls.key": encode_private_key(key, "PKCS1"), "ca.crt": ca_crt},
        labels=labels,
        annotations=annotations,
        owner_uids=frozenset(),
    )


def _anchor_to_write(issuer: IssuerRecord, secret: SecretData) -> bytes | None:
    decision = plan(_snapshot(issuer, secret))
    assert isinstance(decision, Keep), decision  # never a new certificate for this
    return decision.ca_crt


def test_a_root_added_to_ca_crt_changes_the_issuers_identity_and_is_written_to_ca_crt() -> None:
    root = build_ca("Root CA")
    intermediate = build_ca("Intermediate CA", parent=root)
    rootless = SigningAuthority.from_pem(intermediate.cert_pem, intermediate.key_pem, now=NOW)
    rooted = SigningAuthority.from_pem(intermediate.cert_pem, intermediate.key_pem, ca_crt=root.cert_pem, now=NOW)
    assert rootless.fingerprint_sha256 == rooted.fingerprint_sha256  # the same CA signs
    assert rootless.trust_anchor_pem == intermediate.cert_pem and rooted.trust_anchor_pem == root.cert_pem

    before, after = _issuer(rootless), _issuer(rooted)
    assert before.identity_token != after.identity_token  # so every Certificate of the issuer is looked at again

    assert _anchor_to_write(after, _secret(rooted, intermediate.cert_pem)) == root.cert_pem
    assert _anchor_to_write(after, _secret(rooted, root.cert_pem)) is None  # already the anchor: nothing to write


def test_a_selfsigned_issuer_has_no_anchor_to_write() -> None:
    root = build_ca("Root CA")
    authority = SigningAuthority.from_pem(root.cert_pem, root.key_pem, now=NOW)
    selfsigned = _issuer(None)
    selfsigned.spec = IssuerSpec.from_dict({"selfSigned": {}})
    assert _issuer_view(SPEC, selfsigned).trust_anchor_pem is None
    assert _issuer_view(SPEC, None).trust_anchor_pem is None  # issuer gone or unknown
    assert _issuer_view(SPEC, _issuer(authority)).trust_anchor_pem == root.cert_pem
