"""Controller unit tier: the real reconcilers over an in-memory API on a fake clock (see harness.py).

Registers the ``controller`` marker (select the tier with ``-m controller``); the ``harness`` fixture
is a started operator with a selfSigned ClusterIssuer and a CA ClusterIssuer ready.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from certmint.settings import Settings
from tests.controller.harness import OPERATOR_NAMESPACE, Harness, ca_secret
from tests.integration.builders import cluster_issuer
from tests.unit.builders import CAPair, build_ca, cached_key

SELF_SIGNED = "self-signed"
CA_ISSUER = "internal-ca"
CA_SECRET = "internal-ca-key-pair"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "controller: the real reconcilers over an in-memory API (tests/controller)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/controller/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.controller)


@pytest.fixture(scope="session")
def root_ca() -> CAPair:
    """The CA of the ``internal-ca`` ClusterIssuer: P-256, valid from a day before NOW to a year after."""
    return build_ca("Controller Tier Root CA", key=cached_key("ECDSA", 256))


@contextlib.asynccontextmanager
async def running_harness(root_ca: CAPair, settings: Settings | None = None) -> AsyncIterator[Harness]:
    """A started Harness with the tier's issuers: the selfSigned ClusterIssuer and the internal-ca on ``root_ca``."""
    h = Harness(settings)
    h.create(cluster_issuer(SELF_SIGNED))
    h.create(ca_secret(CA_SECRET, OPERATOR_NAMESPACE, root_ca))
    h.create(cluster_issuer(CA_ISSUER, ca_secret=CA_SECRET))
    await h.start()
    try:
        yield h
    finally:
        await h.stop()


@pytest.fixture
async def harness(root_ca: CAPair) -> AsyncIterator[Harness]:
    async with running_harness(root_ca) as h:
        yield h
