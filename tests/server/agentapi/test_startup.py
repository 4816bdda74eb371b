"""UpdateStartup: Go's semver rules, subsystems de-duplicated and sorted,
Coder's error texts, and what it stores."""

from __future__ import annotations

import uuid

import grpc
import pytest
from coder.agent.v2 import agent_pb2, agent_pb2_grpc

from server.agentapi.startup import AGENT_API_VERSION, is_valid_semver
from server.storage.agents import WorkspaceAgent
from tests.conftest import token_md

Sub = agent_pb2.Startup.Subsystem


@pytest.mark.parametrize(
    "version",
    [
        "v1.2.3",
        "v0.0.0",
        "v1",
        "v1.2",
        "v2.13.0-rc.1",
        "v1.2.3-0a.1",
        "v1.2.3+build.5",
        "v10.20.30",
    ],
)
def test_valid_semver(version: str) -> None:
    assert is_valid_semver(version)


@pytest.mark.parametrize(
    "version",
    [
        "",
        "1.2.3",
        "v",
        "v01.2.3",
        "v1.02.3",
        "v1.2.3-01",
        "v1-rc",
        "v1.2-rc",
        "v1.2.3-",
        "v1.2.3+",
        "v1.2.3.4",
        "V1.2.3",
        "v1.2.3-a..b",
        " v1.2.3",
    ],
)
def test_invalid_semver(version: str) -> None:
    assert not is_valid_semver(version)


def _startup(channel, token: str, **kw):
    return agent_pb2_grpc.AgentStub(channel).UpdateStartup(
        agent_pb2.UpdateStartupRequest(startup=agent_pb2.Startup(**kw)), metadata=token_md(token)
    )


def test_stores_version_directory_sorted_subsystems(db, channel, provision) -> None:
    main = provision.workspace().agent("main")
    sent = [Sub.EXECTRACE, Sub.ENVBOX, Sub.EXECTRACE, Sub.ENVBUILDER]
    echo = _startup(
        channel,
        main.auth_token,
        version="v2.20.1",
        expanded_directory="/home/coder",
        subsystems=sent,
    )
    assert list(echo.subsystems) == sent  # echoed as sent, as Coder does
    with db.session() as s:
        row = s.get(WorkspaceAgent, uuid.UUID(main.id))
    assert row.version == "v2.20.1" and row.expanded_directory == "/home/coder"
    assert row.subsystems == ["envbox", "envbuilder", "exectrace"]
    assert row.api_version == AGENT_API_VERSION


@pytest.mark.parametrize(
    ("kw", "text"),
    [
        ({"version": "1.2.3"}, 'invalid agent semver version "1.2.3"'),
        ({"version": ""}, 'invalid agent semver version ""'),
        (
            {"version": "v1.0.0", "subsystems": [Sub.ENVBOX, Sub.SUBSYSTEM_UNSPECIFIED]},
            'invalid agent subsystem "SUBSYSTEM_UNSPECIFIED"',
        ),
    ],
)
def test_refusals_use_coder_texts(db, channel, provision, kw, text) -> None:
    main = provision.workspace().agent("main")
    with pytest.raises(grpc.RpcError) as info:
        _startup(channel, main.auth_token, **kw)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == text
    with db.session() as s:
        assert s.get(WorkspaceAgent, uuid.UUID(main.id)).version == ""


@pytest.mark.parametrize("negotiated", ["2.0", "2.4", "2.13"])
def test_stores_the_negotiated_api_version(db, channel, provision, negotiated: str) -> None:
    main = provision.workspace().agent("main")
    agent_pb2_grpc.AgentStub(channel).UpdateStartup(
        agent_pb2.UpdateStartupRequest(startup=agent_pb2.Startup(version="v2.20.1")),
        metadata=(*token_md(main.auth_token), ("coder-api-version", negotiated)),
    )
    with db.session() as s:
        row = s.get(WorkspaceAgent, uuid.UUID(main.id))
    assert row.api_version == negotiated


@pytest.mark.parametrize("negotiated", ["2.14", "3.0", "1.0", "2.04", "+2.1", "2", "2.x", ""])
def test_refuses_a_version_the_door_could_not_have_negotiated(
    db, channel, provision, negotiated: str
) -> None:
    main = provision.workspace().agent("main")
    with pytest.raises(grpc.RpcError) as err:
        agent_pb2_grpc.AgentStub(channel).UpdateStartup(
            agent_pb2.UpdateStartupRequest(startup=agent_pb2.Startup(version="v2.20.1")),
            metadata=(*token_md(main.auth_token), ("coder-api-version", negotiated)),
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "Unknown or unsupported API version"
    with db.session() as s:
        row = s.get(WorkspaceAgent, uuid.UUID(main.id))
    assert row.version == ""
