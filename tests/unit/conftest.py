"""Fixtures for unit tests; the objects themselves come from tests/unit/builders.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from certmint.pki.keys import PrivateKey
from certmint.pki.signing import SigningAuthority
from tests.unit.builders import NOW, CAPair, build_ca, cached_key


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture(scope="session")
def root_ca() -> CAPair:
    """A P-384 root CA valid from a day before NOW to a year after."""
    return build_ca("Test Root CA", key=cached_key("ECDSA", 384))


@pytest.fixture(scope="session")
def authority(root_ca: CAPair) -> SigningAuthority:
    return SigningAuthority.from_pem(root_ca.cert_pem, root_ca.key_pem, now=NOW)


@pytest.fixture
def make_ca() -> Callable[..., CAPair]:
    return build_ca


@pytest.fixture
def key_of() -> Callable[[str, int], PrivateKey]:
    return cached_key
