"""The agent tunnel's protocol with hand-written agents (both backends): the
hello, refused tokens, a new build ending the tunnel, a second tunnel
replacing the first, and an agent that sends more output than its credit."""

from __future__ import annotations

import asyncio
import queue
import uuid
from collections.abc import Iterator

import grpc
import pytest
from agentplane.agenttunnel.v1 import agent_tunnel_pb2 as tpb
from agentplane.agenttunnel.v1 import agent_tunnel_pb2_grpc as tpb_grpc

from server.tunnel.tunnel import OUTPUT_WINDOW, AgentTunnel, ProtocolViolation
from tests.conftest import Provisioner, token_md

pytestmark = pytest.mark.timeout(60)
SPEC = {"resources": [{"name": "r", "agents": [{"name": "main"}]}]}


class FakeAgent:
    """A tunnel opened by hand: frames to send go in ``outbox``."""

    def __init__(self, channel: grpc.Channel, token: str, *, hello: bool = True) -> None:
        self.outbox: queue.Queue[tpb.TunnelRequest | None] = queue.Queue()
        if hello:
            self.outbox.put(tpb.TunnelRequest(hello=tpb.Hello(version="v1.0.0")))
        self.call = tpb_grpc.AgentTunnelServiceStub(channel).Tunnel(
            self._frames(), metadata=token_md(token)
        )

    def _frames(self) -> Iterator[tpb.TunnelRequest]:
        while (frame := self.outbox.get()) is not None:
            yield frame

    def close(self) -> None:
        self.outbox.put(None)
        self.call.cancel()


def test_the_hello_comes_first(provision: Provisioner, channel: grpc.Channel) -> None:
    ws = provision.workspace(SPEC)
    fake = FakeAgent(channel, ws.agent("main").auth_token, hello=False)
    fake.outbox.put(tpb.TunnelRequest(done=tpb.Done()))
    with pytest.raises(grpc.RpcError) as caught:
        next(fake.call)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fake.close()


def test_a_refused_token_opens_no_tunnel(channel: grpc.Channel) -> None:
    fake = FakeAgent(channel, str(uuid.uuid4()))
    with pytest.raises(grpc.RpcError) as caught:
        next(fake.call)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert caught.value.details() == "Workspace agent not authorized."
    fake.close()


def test_a_new_build_ends_the_tunnel(provision: Provisioner, channel: grpc.Channel) -> None:
    ws = provision.workspace(SPEC)
    fake = FakeAgent(channel, ws.agent("main").auth_token)
    assert next(fake.call).id == 0
    provision.rebuild(ws)
    with pytest.raises(grpc.RpcError) as caught:
        next(fake.call)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    fake.close()


def test_a_second_tunnel_replaces_the_first(
    provision: Provisioner, channel: grpc.Channel, core
) -> None:
    ws = provision.workspace(SPEC)
    token = ws.agent("main").auth_token
    first = FakeAgent(channel, token)
    assert next(first.call).id == 0
    second = FakeAgent(channel, token)
    assert next(second.call).id == 0
    ended = list(first.call)  # the first stream ends without another frame
    assert ended == []
    agent_id = uuid.UUID(ws.agent("main").id)
    assert core.core.tunnels.get(agent_id) is not None
    first.close()
    second.close()


def test_output_beyond_the_credit_fails_only_that_request() -> None:
    """An agent that ignores its credit: the attachment fails at once (its
    queued output dropped, the agent told to stop it); the tunnel and its
    other requests go on."""

    async def scenario() -> None:
        tunnel = AgentTunnel(uuid.uuid4(), version="v1.0.0", pty_idle_timeout=300)
        pty = tunnel.start(pty_attach=tpb.PtyAttach(reconnect_id=str(uuid.uuid4())))
        other = tunnel.start(list_pty_sessions=tpb.ListPtySessionsCall())
        chunk = b"x" * (64 << 10)
        for _ in range(OUTPUT_WINDOW // len(chunk) + 1):
            tunnel.dispatch(tpb.TunnelRequest(id=pty.id, pty_output=chunk))
        with pytest.raises(ProtocolViolation):
            await asyncio.wait_for(pty.next(), 1)
        assert pty._output_bytes == 0  # nothing of it is kept
        sent = [tunnel._outgoing.get_nowait() for _ in range(tunnel._outgoing.qsize())]
        assert any(f.id == pty.id and f.HasField("cancel") for f in sent)
        tunnel.dispatch(tpb.TunnelRequest(id=other.id, pty_sessions=tpb.PtySessionList()))
        answer = await asyncio.wait_for(other.next(), 1)
        assert answer.HasField("pty_sessions")
        other.close()
        assert tunnel.open_requests == 0

    asyncio.run(scenario())
