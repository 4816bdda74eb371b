"""API version negotiation: Coder's apiversion rules and error texts."""

from __future__ import annotations

import pytest

from rest_facade.wire import apiversion
from rest_facade.wire.apiversion import CURRENT, APIVersion, UnsupportedAPIVersion, negotiate
from server.agentapi.startup import AGENT_API_VERSION
from server.auth import API_VERSION_METADATA


@pytest.mark.parametrize(
    ("requested", "default", "expected"),
    [
        ("2.0", "2.0", "2.0"),
        ("2.13", "2.0", "2.13"),
        ("2.013", "2.0", "2.13"),  # Atoi reads it; stored canonical
        (None, "2.0", "2.0"),
        ("", "2.0", "2.0"),
    ],
)
def test_accepts_our_major_up_to_our_minor(requested, default, expected) -> None:
    assert negotiate(requested, default=default) == expected


@pytest.mark.parametrize(
    ("requested", "default", "text"),
    [
        ("2.14", "2.0", "server is at version 2.13, behind requested minor version 2.14"),
        ("3.0", "2.0", "server is at version 2.13, behind requested major version 3.0"),
        ("1.0", "2.0", "version 1.0 is no longer supported"),
        (None, "1.0", "version 1.0 is no longer supported"),
        ("2", "2.0", "invalid version string: 2"),
        ("2.1.0", "2.0", "invalid version string: 2.1.0"),
        ("x.1", "2.0", "invalid major version: x.1"),
        ("2.x", "2.0", "invalid minor version: 2.x"),
        ("2.-1", "2.0", "invalid minor version: 2.-1"),
        ("+2.1", "2.0", "invalid major version: +2.1"),
        (" 2.1", "2.0", "invalid major version:  2.1"),
        ("2.1\x00", "2.0", "invalid minor version: 2.1\x00"),
        ("2." + "9" * 40, "2.0", "invalid minor version: 2." + "9" * 40),
    ],
)
def test_refusals_carry_coders_texts(requested, default, text) -> None:
    with pytest.raises(UnsupportedAPIVersion) as err:
        negotiate(requested, default=default)
    assert str(err.value) == text


def test_the_facade_and_the_core_agree() -> None:
    assert str(CURRENT) == AGENT_API_VERSION
    assert apiversion.API_VERSION_METADATA == API_VERSION_METADATA
    with pytest.raises(UnsupportedAPIVersion):
        negotiate("2.5", default="2.0", current=APIVersion(2, 4))
