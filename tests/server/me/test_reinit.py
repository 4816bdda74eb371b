"""WatchReinit: a ping at once, an event for each reinit request, the
durable check with wait, keep-alives; and the admin RPC that raises it."""

from __future__ import annotations

import dataclasses

import grpc
import pytest
from agentplane.admin.v1 import admin_pb2
from agentplane.me.v1 import me_pb2, me_pb2_grpc

from server.me.wakeups import reinit_key
from tests.conftest import ADMIN_METADATA, token_md
from tests.rest_facade._live import wait_until


def _watch(channel, token: str, *, wait: bool = False):
    return me_pb2_grpc.MeServiceStub(channel).WatchReinit(
        me_pb2.WatchReinitRequest(wait=wait), metadata=token_md(token), timeout=30
    )


def _reinit(provision, ws) -> admin_pb2.ReinitWorkspaceResponse:
    return provision.stub.ReinitWorkspace(
        admin_pb2.ReinitWorkspaceRequest(owner=ws.username, name="ws"), metadata=ADMIN_METADATA
    )


def test_ping_then_event(core, channel, provision) -> None:
    ws = provision.workspace()
    stream = _watch(channel, ws.agent("main").auth_token)
    try:
        assert next(stream).HasField("ping")
        raised = _reinit(provision, ws)
        assert (raised.workspace_id, raised.owner_id) == (ws.workspace_id, ws.user_id)
        assert raised.reason == "prebuild_claimed" and raised.build_number == 1
        event = next(stream)
        assert event.HasField("reinit")
        assert (event.reinit.workspace_id, event.reinit.owner_id, event.reinit.reason) == (
            ws.workspace_id,
            ws.user_id,
            "prebuild_claimed",
        )
    finally:
        stream.cancel()


def test_every_agent_of_the_workspace_hears_it(channel, provision) -> None:
    ws = provision.workspace()
    streams = [_watch(channel, ws.agent(n).auth_token) for n in ("main", "child")]
    try:
        for s in streams:
            assert next(s).HasField("ping")
        _reinit(provision, ws)
        assert all(next(s).HasField("reinit") for s in streams)
    finally:
        for s in streams:
            s.cancel()


def test_earlier_requests_need_wait(core, channel, provision) -> None:
    ws = provision.workspace()
    _reinit(provision, ws)
    token = ws.agent("main").auth_token
    durable = _watch(channel, token, wait=True)
    plain = _watch(channel, token)
    try:
        assert next(durable).HasField("ping")
        assert next(durable).HasField("reinit")
        assert next(plain).HasField("ping")
        # The plain stream only hears later requests: the next message it
        # gets is the one raised now, not the earlier one.
        wait_until(lambda: core.core.wakeups.subscriber_count(reinit_key(ws.workspace_id)) == 2)
        _reinit(provision, ws)
        assert next(plain).HasField("reinit")
    finally:
        durable.cancel()
        plain.cancel()


class TestKeepAlive:
    @pytest.fixture
    def settings(self, settings):
        return dataclasses.replace(settings, sse_keepalive_seconds=1)

    def test_pings_keep_coming(self, channel, provision) -> None:
        stream = _watch(channel, provision.workspace().agent("main").auth_token)
        try:
            assert [next(stream).HasField("ping") for _ in range(3)] == [True] * 3
        finally:
            stream.cancel()

    def test_a_rebuilt_workspace_forgets_older_requests(self, channel, provision) -> None:
        ws = provision.workspace()
        _reinit(provision, ws)
        build = provision.rebuild(ws)
        token = next(a for a in build.agents if a.name == "main").auth_token
        stream = _watch(channel, token, wait=True)
        try:
            # The request made for build 1 is not this (build 2) agent's: the
            # stream goes straight on to its next keep-alive.
            assert next(stream).HasField("ping")
            assert next(stream).HasField("ping")
            _reinit(provision, ws)
            assert next(stream).HasField("reinit")
        finally:
            stream.cancel()


def test_refusals(channel, provision) -> None:
    ws = provision.workspace()
    with pytest.raises(grpc.RpcError) as info:
        next(_watch(channel, ws.api_key))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as info:
        provision.stub.ReinitWorkspace(
            admin_pb2.ReinitWorkspaceRequest(owner=ws.username, name="nope"),
            metadata=ADMIN_METADATA,
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == f"Workspace 'nope' of {ws.username!r} not found."
