"""Session fixtures for the identity tests (keys are expensive; make them once)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._support import DROP, AwsWorld, AzureWorld, Canary, GoogleWorld, Pki


@pytest.fixture(scope="session")
def pki() -> Pki:
    return Pki()


@pytest.fixture(scope="session")
def azure(pki: Pki) -> AzureWorld:
    root = pki.issue("Test Azure Root", ca=True, path_length=1, org="Test")
    intermediate = pki.issue(
        "Test Azure Issuing CA", issuer=root, ca=True, path_length=0, org="Test"
    )
    leaf = pki.issue(
        "metadata.azure.com",
        issuer=intermediate,
        aia_url="http://www.microsoft.com/pkiops/certs/test-issuing-ca.crt",
    )
    return AzureWorld(pki, root, intermediate, leaf)


@pytest.fixture(scope="session")
def aws(pki: Pki) -> AwsWorld:
    issued = pki.issue("ec2.amazonaws.com")
    return AwsWorld(issued.key, issued.cert)


@pytest.fixture(scope="session")
def google(pki: Pki) -> GoogleWorld:
    return GoogleWorld(pki.rsa_key(), pki.rsa_key(), kid="test-kid-1")


@pytest.fixture(scope="session")
def drop() -> object:
    """Sentinel: pass as a claim override to remove that claim."""
    return DROP


@pytest.fixture
def canary() -> Iterator[Canary]:
    """Loopback-only HTTP server; tests assert on its ``hits``."""
    server = Canary()
    try:
        yield server
    finally:
        server.close()
