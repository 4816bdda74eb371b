"""Terminals end to end: a real ``agentplane agent`` process against a real
core (both backends), driven through the AgentConnService/Pty RPC: a real
shell, resize, reconnect with scrollback, exit, the session list, the idle
timeout; and what a careless or hostile user can do (another user's agent,
a bad reconnect id, huge sizes, a client that never reads)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import grpc
import pytest
from agentplane.agenttunnel.v1 import agent_conn_pb2 as cpb
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from server.embedded import EmbeddedCore
from server.tunnel.tunnel import OUTPUT_WINDOW
from tests.agent._support import AgentProcess, Terminal, conn_stub, provision, user_md, wait_for
from tests.conftest import ADMIN_TOKEN

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def running(core: EmbeddedCore, tmp_path: Path):
    """A user, their workspace's agent running, and a channel to the core."""
    spec = {"resources": [{"name": "r", "agents": [{"name": "main", "directory": str(tmp_path)}]}]}
    user, build = provision(core.address, spec, ADMIN_TOKEN)
    agent_row = build.agents[0]
    with AgentProcess(
        core.address, agent_row.auth_token, tmp_path, "--pty-idle-timeout", "2s"
    ) as agent:
        channel = grpc.insecure_channel(core.address)
        stub = conn_stub(channel)

        def listed() -> bool:
            try:
                stub.ListPtySessions(
                    cpb.ListPtySessionsRequest(agent_id=agent_row.id),
                    metadata=user_md(user.api_key),
                    timeout=5,
                )
            except grpc.RpcError:
                return False
            return True

        wait_for(listed, 30, "the agent's tunnel")
        yield user, agent_row, channel, agent
        channel.close()


def _open(agent_id: str, reconnect: str | None = None, **kw: object) -> cpb.PtyOpen:
    return cpb.PtyOpen(agent_id=agent_id, reconnect=reconnect or str(uuid.uuid4()), **kw)


def test_shell_type_resize_reconnect_exit(running) -> None:
    user, agent_row, channel, _agent = running
    reconnect = str(uuid.uuid4())
    term = Terminal(channel, user.api_key, _open(agent_row.id, reconnect, height=24, width=80))
    session = term.wait_session()
    assert session.id == reconnect and (session.height, session.width) == (24, 80)
    term.send(b"echo marker-$((6*7))\n")
    term.expect(b"marker-42")
    term.send(height=33, width=111)
    term.send(b"stty size\n")
    term.expect(b"33 111")

    listed = conn_stub(channel).ListPtySessions(
        cpb.ListPtySessionsRequest(agent_id=agent_row.id),
        metadata=user_md(user.api_key),
        timeout=10,
    )
    (info,) = listed.sessions
    assert (info.id, info.height, info.width, info.attached_clients) == (reconnect, 33, 111, 1)
    assert info.HasField("created_at") and info.HasField("last_attached_at")

    # Detach, then come back with the same id: the scrollback comes first.
    term.close()
    again = Terminal(channel, user.api_key, _open(agent_row.id, reconnect))
    again.wait_session()
    again.expect(b"marker-42")
    again.send(b"exit\n")
    assert again.ended.wait(20), "exit did not end the stream"
    assert again.error is None
    wait_for(
        lambda: (
            not conn_stub(channel)
            .ListPtySessions(
                cpb.ListPtySessionsRequest(agent_id=agent_row.id),
                metadata=user_md(user.api_key),
                timeout=10,
            )
            .sessions
        ),
        10,
        "the session to go",
    )


def test_idle_session_is_closed(running) -> None:
    user, agent_row, channel, _agent = running
    term = Terminal(channel, user.api_key, _open(agent_row.id, command="sleep 600"))
    term.wait_session()
    stub = conn_stub(channel)

    def sessions() -> int:
        return len(
            stub.ListPtySessions(
                cpb.ListPtySessionsRequest(agent_id=agent_row.id),
                metadata=user_md(user.api_key),
                timeout=10,
            ).sessions
        )

    assert sessions() == 1
    term.close()
    # --pty-idle-timeout 2s: gone a little after that, not before.
    detached = time.monotonic()
    wait_for(lambda: sessions() == 0, 15, "the idle session to close")
    assert time.monotonic() - detached >= 1.5


def _validations(err: grpc.RpcError) -> dict[str, str]:
    status = rpc_status.from_call(err)
    out = {}
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out.update({v.field: v.description for v in bad.field_violations})
    return out


def test_bad_open_parameters_are_refused_before_the_agent(running) -> None:
    user, agent_row, channel, _agent = running
    bad = _open(agent_row.id, "not-a-uuid", height=70000, width=1 << 31, backend_type="vt100")
    term = Terminal(channel, user.api_key, bad)
    assert term.ended.wait(10)
    assert term.error is not None and term.error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert term.error.details() == "Invalid query parameters."
    assert set(_validations(term.error)) == {"reconnect", "height", "width", "backend_type"}
    nul = Terminal(channel, user.api_key, _open(agent_row.id, command="echo \x00"))
    assert nul.ended.wait(10) and nul.error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_huge_resize_ends_the_stream(running) -> None:
    user, agent_row, channel, _agent = running
    term = Terminal(channel, user.api_key, _open(agent_row.id))
    term.wait_session()
    term.send(height=1 << 20, width=80)
    assert term.ended.wait(10)
    assert term.error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_other_users_agent_is_the_same_404_as_a_missing_one(core, running, tmp_path) -> None:
    _user, agent_row, channel, _agent = running
    other, _ = provision(
        core.address,
        {"resources": [{"name": "r", "agents": [{"name": "x"}]}]},
        ADMIN_TOKEN,
    )
    stub = conn_stub(channel)
    answers = []
    for agent_id in (agent_row.id, str(uuid.uuid4())):
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListListeningPorts(
                cpb.ListListeningPortsRequest(agent_id=agent_id),
                metadata=user_md(other.api_key),
                timeout=10,
            )
        answers.append((caught.value.code(), caught.value.details()))
        term = Terminal(channel, other.api_key, _open(agent_id))
        assert term.ended.wait(10)
        answers.append((term.error.code(), term.error.details()))
    assert len(set(answers)) == 1
    assert answers[0][0] == grpc.StatusCode.NOT_FOUND


def test_a_client_that_never_reads_stalls_nothing_else(core, running) -> None:
    user, agent_row, channel, _agent = running
    # A terminal flooding output to a client that reads nothing.
    flood = Terminal(
        channel, user.api_key, _open(agent_row.id, command="yes flood-flood-flood"), read=False
    )
    first = next(flood.call)
    assert first.HasField("session")
    try:
        time.sleep(0)  # the flood runs while the other session works
        other = Terminal(channel, user.api_key, _open(agent_row.id))
        other.wait_session()
        for i in range(5):
            started = time.monotonic()
            other.send(f"echo still-here-{i}\n".encode())
            other.expect(f"still-here-{i}\r\n".encode(), timeout=10)
            assert time.monotonic() - started < 5
        ports = conn_stub(channel).ListListeningPorts(
            cpb.ListListeningPortsRequest(agent_id=agent_row.id),
            metadata=user_md(user.api_key),
            timeout=10,
        )
        assert ports is not None
        # What the core holds for the stuck attachment stays within its window.
        tunnel = core.core.tunnels.get(uuid.UUID(agent_row.id))
        assert tunnel is not None
        held = [r._output_bytes for r in tunnel._open.values()]
        assert held and max(held) <= OUTPUT_WINDOW
        other.close()
    finally:
        flood.close()
