"""Issuer kinds are chosen in one place: every kind the spec parser and the CRD accept has a Signer."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from certmint.controller.signers import KINDS, signer_for
from certmint.core.spec import IssuerSpec
from tests.unit.builders import certificate_spec

CRDS = Path(__file__).resolve().parents[2] / "crds"
SPECS = {"selfSigned": {"selfSigned": {}}, "ca": {"ca": {"secretName": "root"}}}


def _crd_kinds(file: str) -> set[str]:
    crd = yaml.safe_load((CRDS / file).read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    return {name for name in spec if name not in {"policy", "podCertificates"}}  # (what every kind may have)


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_each_parsed_kind_has_its_signer(kind: str) -> None:
    assert signer_for(IssuerSpec.from_dict(SPECS[kind])).kind == kind


def test_the_crds_offer_exactly_the_registered_kinds() -> None:
    assert set(KINDS) == set(SPECS)
    for file in sorted(p.name for p in CRDS.glob("*issuer*.yaml")):
        assert _crd_kinds(file) == set(KINDS), file


def test_only_a_kind_signing_with_the_certificates_own_key_refuses_an_empty_subject() -> None:
    spec = certificate_spec(commonName=None, subject=None)
    refusals = {kind: signer.refusal(spec, "Issuer 'x'") for kind, signer in KINDS.items()}
    assert refusals["ca"] is None
    refusal = refusals["selfSigned"]
    assert refusal is not None and refusal.reason == "EmptySubject"
    assert KINDS["selfSigned"].own_key_only and not KINDS["ca"].own_key_only
