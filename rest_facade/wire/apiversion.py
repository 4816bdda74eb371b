"""Coder's agent/tailnet API version negotiation (``apiversion.Validate``),
for the ``?version=`` of ``me/rpc``, ``{id}/coordinate`` and ``/tailnet``.

Agent and tailnet share one number ``major.minor``. The server accepts its
own major with any minor up to its own, and no other major (Coder lists no
backward-compatible majors: 1.0 is "no longer supported"). The route turns a
refusal into 400 ``Unknown or unsupported API version`` with the error text
as the ``version`` validation; the negotiated version travels to the core as
``coder-api-version`` metadata (the core records it with UpdateStartup).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The metadata key the core reads (server/auth.py API_VERSION_METADATA).
API_VERSION_METADATA = "coder-api-version"
# Coder's message for a refused version (the 400's "message").
UNSUPPORTED_MESSAGE = "Unknown or unsupported API version"
# Go's strconv.Atoi takes an optional sign and up to int64; we take digits
# only (a sign or "2.-1" would pass Atoi, and "2.-1" even Validate).
_NUMBER = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True)
class APIVersion:
    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


# The version agentplane serves (server/agentapi/startup.py AGENT_API_VERSION).
CURRENT = APIVersion(2, 13)


class UnsupportedAPIVersion(ValueError):
    """Coder's error text in ``str()``: the ``version`` validation's detail."""


def parse(version: str) -> APIVersion:
    """``apiversion.Parse``: two integers separated by one period."""
    parts = version.split(".")
    if len(parts) != 2:
        raise UnsupportedAPIVersion(f"invalid version string: {version}")
    if not _NUMBER.fullmatch(parts[0]):
        raise UnsupportedAPIVersion(f"invalid major version: {version}")
    if not _NUMBER.fullmatch(parts[1]):
        raise UnsupportedAPIVersion(f"invalid minor version: {version}")
    return APIVersion(int(parts[0]), int(parts[1]))


def negotiate(requested: str | None, *, default: str, current: APIVersion = CURRENT) -> str:
    """The version to serve for ``?version=requested`` (``default`` when the
    parameter is absent or empty, as Coder treats it: "2.0" on ``me/rpc``
    and ``/tailnet``, "1.0" on ``{id}/coordinate``), in canonical form;
    raises ``UnsupportedAPIVersion`` with Coder's text."""
    version = requested or default
    wanted = parse(version)
    if wanted.major > current.major:
        raise UnsupportedAPIVersion(
            f"server is at version {current}, behind requested major version {version}"
        )
    if wanted.major == current.major:
        if wanted.minor > current.minor:
            raise UnsupportedAPIVersion(
                f"server is at version {current}, behind requested minor version {version}"
            )
        return str(wanted)
    raise UnsupportedAPIVersion(f"version {version} is no longer supported")
