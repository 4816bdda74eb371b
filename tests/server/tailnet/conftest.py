"""Fixtures for the tailnet tests: a provisioned workspace and a factory of
real Coordinate streams (closed at the end of the test)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import jwt
import pytest
from coder.tailnet.v2 import tailnet_pb2 as tpb
from coder.tailnet.v2 import tailnet_pb2_grpc as tgrpc

from tests.conftest import DEFAULT_SPEC, Provisioned, Provisioner
from tests.server.tailnet._coordinate import Coordination, md

TWO_AGENTS = {
    "resources": [
        {
            "name": "dev",
            "type": "docker_container",
            "agents": [{"name": "main"}, {"name": "other"}],
        }
    ]
}


def token_subject(token: str) -> uuid.UUID:
    return uuid.UUID(jwt.decode(token, options={"verify_signature": False})["sub"])


class Streams:
    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self.stub = tgrpc.TailnetStub(channel)
        self.opened: list[Coordination] = []

    def open(self, metadata: tuple[tuple[str, str], ...], **kw: Any) -> Coordination:
        stream = Coordination(self.channel, metadata, **kw)
        self.opened.append(stream)
        return stream

    def agent(self, agent: Any, **kw: Any) -> Coordination:
        return self.open(md(agent.auth_token), **kw)

    def resume_token(self, api_key: str, token: str | None = None) -> str:
        metadata = md(api_key) if token is None else md(api_key, resume_token=token)
        return self.stub.RefreshResumeToken(
            tpb.RefreshResumeTokenRequest(), metadata=metadata, timeout=10
        ).token

    def client(
        self, ws: Provisioned, agent: Any | None = None, *, token: str | None = None, **kw: Any
    ) -> tuple[Coordination, uuid.UUID]:
        """A user's client (of one agent when ``agent`` is given) with a
        known peer id (from a resume token)."""
        token = token or self.resume_token(ws.api_key)
        extra = {"resume_token": token}
        if agent is not None:
            extra["agent_id"] = agent.id
        return self.open(md(ws.api_key, **extra), **kw), token_subject(token)

    def close_all(self) -> None:
        for stream in self.opened:
            stream.close()


@pytest.fixture
def streams(channel: grpc.Channel) -> Iterator[Streams]:
    s = Streams(channel)
    yield s
    s.close_all()


@pytest.fixture
def ws(provision: Provisioner) -> Provisioned:
    return provision.workspace(DEFAULT_SPEC)


@pytest.fixture
def ws2(provision: Provisioner) -> Provisioned:
    """A workspace of two agents."""
    return provision.workspace(TWO_AGENTS)
