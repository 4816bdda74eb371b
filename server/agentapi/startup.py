"""UpdateStartup: the agent reports its version, expanded directory and the
subsystems it runs under.

Serves ``coder.agent.v2.Agent/UpdateStartup``. The version must be a semantic
version with a ``v`` prefix by Go's ``golang.org/x/mod/semver`` rules (which
also accept the shorthands ``v1`` and ``v1.2``); subsystems are
de-duplicated and sorted.
"""

from __future__ import annotations

import re

from coder.agent.v2 import agent_pb2

from server.agentapi.gotext import enum_text, quote
from server.errors import InvalidArgument
from server.storage import agentstatus
from server.storage.agents import AgentInWorkspace
from server.storage.db import Database

# The agent API version this core serves. gRPC has no per-connection version
# negotiation, so gRPC agents are recorded at it; agents on Coder's wire
# (/me/rpc?version=) are recorded at the version their door negotiated.
AGENT_API_VERSION = "2.13"

_Subsystem = agent_pb2.Startup.Subsystem
SUBSYSTEM = {
    _Subsystem.ENVBOX: "envbox",
    _Subsystem.ENVBUILDER: "envbuilder",
    _Subsystem.EXECTRACE: "exectrace",
}

_NUM = r"(?:0|[1-9][0-9]*)"
_IDENT = r"[0-9A-Za-z-]+"
_SEMVER = re.compile(
    rf"v{_NUM}(?:\.{_NUM}(?:\.{_NUM}"
    rf"(?:-(?P<pre>{_IDENT}(?:\.{_IDENT})*))?"
    rf"(?:\+{_IDENT}(?:\.{_IDENT})*)?)?)?"
)


def is_valid_semver(version: str) -> bool:
    """``semver.IsValid``: v-prefixed, no leading zeros in numbers (also in
    numeric pre-release identifiers), pre-release/build only after a patch."""
    match = _SEMVER.fullmatch(version)
    if match is None:
        return False
    pre = match.group("pre")
    if pre:
        for ident in pre.split("."):
            if ident.isdigit() and len(ident) > 1 and ident[0] == "0":
                return False
    return True


def update_startup(
    db: Database,
    *,
    caller: AgentInWorkspace,
    request: agent_pb2.UpdateStartupRequest,
    api_version: str = AGENT_API_VERSION,
) -> agent_pb2.Startup:
    startup = request.startup
    if not is_valid_semver(startup.version):
        raise InvalidArgument(f"invalid agent semver version {quote(startup.version)}")
    subsystems: set[str] = set()
    for value in startup.subsystems:
        name = SUBSYSTEM.get(value)
        if name is None:
            raise InvalidArgument(f"invalid agent subsystem {enum_text(_Subsystem, value)}")
        subsystems.add(name)
    with db.engine.begin() as conn:
        agentstatus.update_startup(
            conn,
            agent_id=caller.agent.id,
            version=startup.version,
            expanded_directory=startup.expanded_directory,
            subsystems=sorted(subsystems),
            api_version=api_version,
        )
    # Coder echoes the request as sent.
    return startup
