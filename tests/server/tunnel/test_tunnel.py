"""The agent tunnel's protocol with hand-written agents (both backends): the
hello, refused tokens, a new build ending the tunnel, a second tunnel
replacing the first, and an agent that sends more output than its credit."""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Iterator

import grpc
import pytest
from agentplane.agenttunnel.v1 import agent_conn_pb2 as cpb
from agentplane.agenttunnel.v1 import agent_tunnel_pb2 as tpb
from agentplane.agenttunnel.v1 import agent_tunnel_pb2_grpc as tpb_grpc

from tests.agent._support import Terminal, wait_for
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


def test_output_beyond_the_credit_fails_only_that_terminal(
    provision: Provisioner, channel: grpc.Channel
) -> None:
    ws = provision.workspace(SPEC)
    fake = FakeAgent(channel, ws.agent("main").auth_token)
    assert next(fake.call).id == 0
    # A user who does not read: the core cannot pass output on, so what the
    # agent sends beyond its credit piles up in the core, and is refused.
    term = Terminal(channel, ws.api_key, cpb.PtyOpen(agent_id=ws.agent("main").id), read=False)
    attach = next(fake.call)
    assert attach.WhichOneof("frame") == "pty_attach"
    fake.outbox.put(
        tpb.TunnelRequest(id=attach.id, pty_attached=tpb.PtyAttached(session=tpb.PtySession()))
    )
    assert next(term.call).HasField("session")
    chunk = b"x" * (64 << 10)
    for _ in range(128):
        fake.outbox.put(tpb.TunnelRequest(id=attach.id, pty_output=chunk))
    with pytest.raises(grpc.RpcError) as caught:
        for _ in term.call:
            pass
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == "Internal error in the workspace agent's terminal."
    # The tunnel itself is fine: the next request still reaches the agent.
    done = threading.Event()

    def answer() -> None:
        for frame in fake.call:
            if frame.WhichOneof("frame") == "list_pty_sessions":
                fake.outbox.put(tpb.TunnelRequest(id=frame.id, pty_sessions=tpb.PtySessionList()))
                done.set()
                return

    threading.Thread(target=answer, daemon=True).start()
    from tests.agent._support import conn_stub, user_md

    conn_stub(channel).ListPtySessions(
        cpb.ListPtySessionsRequest(agent_id=ws.agent("main").id),
        metadata=user_md(ws.api_key),
        timeout=30,
    )
    wait_for(done.is_set, 30, "the answer")
    fake.close()
