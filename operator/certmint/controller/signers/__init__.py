"""Issuer kinds, chosen here and nowhere else.

Each kind is a module with a class that satisfies :class:`Signer`. Adding one: teach
``core.spec.IssuerSpec`` to parse its spec field (and the CRD to accept it), write its module,
and add an instance to :data:`KINDS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from certmint.controller.signers.base import Refusal, Signer, SigningJob, Verdict
from certmint.controller.signers.ca import CA
from certmint.controller.signers.self_signed import SelfSigned
from certmint.core.spec import IssuerSpec

KINDS: Final[Mapping[str, Signer]] = {signer.kind: signer for signer in (SelfSigned(), CA())}


def signer_for(spec: IssuerSpec) -> Signer:
    """The kind an issuer's spec selects (IssuerSpec parses only the kinds listed here)."""
    return KINDS[spec.signer]


__all__ = ["KINDS", "Refusal", "Signer", "SigningJob", "Verdict", "signer_for"]
