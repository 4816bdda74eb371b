"""WatchReinit: a ping at once, an event for each reinit request, the
durable check with wait, keep-alives; and the admin RPC that raises it."""

from __future__ import annotations

import dataclasses
import uuid

import grpc
import pytest
from agentplane.admin.v1 import admin_pb2
from agentplane.me.v1 import me_pb2, me_pb2_grpc

from server.me.reinit import NOT_A_PREBUILD
from server.me.wakeups import reinit_key
from tests.conftest import ADMIN_METADATA, token_md
from tests.rest_facade._live import wait_until


def _watch(channel, token: str, *, wait: bool = False):
    return me_pb2_grpc.MeServiceStub(channel).WatchReinit(
        me_pb2.WatchReinitRequest(wait=wait), metadata=token_md(token), timeout=30
    )


def _reinit(provision, ws=None, *, owner: str = "", name: str = "ws"):
    return provision.stub.ReinitWorkspace(
        admin_pb2.ReinitWorkspaceRequest(owner=owner or ws.username, name=name),
        metadata=ADMIN_METADATA,
    )


def _token(build, name: str = "main") -> str:
    return next(a for a in build.agents if a.name == name).auth_token


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
    build = provision.prebuild()
    _reinit(provision, owner="prebuilds", name="pb")
    token = _token(build)
    durable = _watch(channel, token, wait=True)
    plain = _watch(channel, token)
    try:
        assert next(durable).HasField("ping")
        assert next(durable).HasField("reinit")
        assert next(plain).HasField("ping")
        # The plain stream only hears later requests: the next message it
        # gets is the one raised now, not the earlier one.
        wait_until(lambda: core.core.wakeups.subscriber_count(reinit_key(build.workspace_id)) == 2)
        _reinit(provision, owner="prebuilds", name="pb")
        assert next(plain).HasField("reinit")
    finally:
        durable.cancel()
        plain.cancel()


def test_wait_on_a_workspace_that_is_no_prebuild_is_refused(channel, provision) -> None:
    """Coder's 409 (seed 001): nothing will ever reinitialize it, so the
    agent is told before any stream starts; without wait it streams."""
    ws = provision.workspace()
    with pytest.raises(grpc.RpcError) as info:
        next(_watch(channel, ws.agent("main").auth_token, wait=True))
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert info.value.details() == NOT_A_PREBUILD
    stream = _watch(channel, ws.agent("main").auth_token)
    try:
        assert next(stream).HasField("ping")
    finally:
        stream.cancel()


def test_claiming_a_prebuild_reinitializes_its_agents(core, db, channel, provision) -> None:
    """The claim: a new build for the user whose agents keep the running
    agents' tokens; the running agent's open stream hears prebuild_claimed
    with its new owner; reopened with wait it hears it at once (the durable
    check); after a later build, no more."""
    build = provision.prebuild()
    token = _token(build)
    stream = _watch(channel, token)
    try:
        assert next(stream).HasField("ping")
        alice = provision.user()
        claimed = provision.claim("pb", alice, new_name="mine")
        assert claimed.build.build_number == 2
        assert claimed.owner_id == alice.id and claimed.build.workspace_id == build.workspace_id
        assert all(not a.HasField("auth_token") for a in claimed.build.agents)
        event = next(stream)
        assert (event.reinit.workspace_id, event.reinit.owner_id, event.reinit.reason) == (
            build.workspace_id,
            alice.id,
            "prebuild_claimed",
        )
    finally:
        stream.cancel()
    # The running agent's token is now the claim build's agent's.
    from coder.agent.v2 import agent_pb2, agent_pb2_grpc

    manifest = agent_pb2_grpc.AgentStub(channel).GetManifest(
        agent_pb2.GetManifestRequest(), metadata=token_md(token)
    )
    claim_main = next(a for a in claimed.build.agents if a.name == "main")
    assert manifest.agent_id == uuid.UUID(claim_main.id).bytes
    assert (manifest.owner_username, manifest.workspace_name) == (alice.username, "mine")
    child = next(a for a in build.agents if a.name == "child").auth_token
    agent_pb2_grpc.AgentStub(channel).GetManifest(
        agent_pb2.GetManifestRequest(), metadata=token_md(child)
    )
    durable = _watch(channel, token, wait=True)
    try:
        assert next(durable).HasField("ping")
        assert next(durable).reinit.owner_id == alice.id
    finally:
        durable.cancel()


def test_claim_refusals(channel, provision) -> None:
    provision.prebuild()
    alice = provision.user()
    provision.workspace(owner=alice, name="taken")
    cases = [
        (("nope", alice, ""), grpc.StatusCode.NOT_FOUND, "Prebuilt workspace 'nope' not found."),
        (
            ("pb", alice, "taken"),
            grpc.StatusCode.ALREADY_EXISTS,
            f"Workspace 'taken' of {alice.username!r} already exists.",
        ),
        (("pb", alice, "no good"), grpc.StatusCode.INVALID_ARGUMENT, "Validation failed."),
    ]
    for args, code, details in cases:
        with pytest.raises(grpc.RpcError) as info:
            provision.claim(*args)
        assert (info.value.code(), info.value.details()) == (code, details)
    provision.claim("pb", alice)
    with pytest.raises(grpc.RpcError) as info:
        provision.claim("pb", alice, new_name="again")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


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
        provision.prebuild()
        _reinit(provision, owner="prebuilds", name="pb")
        build = provision.stub.BuildWorkspace(
            admin_pb2.BuildWorkspaceRequest(owner="prebuilds", name="pb"),
            metadata=ADMIN_METADATA,
        ).build
        stream = _watch(channel, _token(build), wait=True)
        try:
            # The request made for build 1 is not this (build 2) agent's: the
            # stream goes straight on to its next keep-alive.
            assert next(stream).HasField("ping")
            assert next(stream).HasField("ping")
            _reinit(provision, owner="prebuilds", name="pb")
            assert next(stream).HasField("reinit")
        finally:
            stream.cancel()

    def test_only_the_claim_build_is_told(self, channel, provision) -> None:
        """coder/coder#26548: after a later build the claim is not replayed
        (every agent restart would reinitialize it again)."""
        provision.prebuild()
        alice = provision.user()
        provision.claim("pb", alice)
        rebuilt = provision.stub.BuildWorkspace(
            admin_pb2.BuildWorkspaceRequest(owner=alice.username, name="pb"),
            metadata=ADMIN_METADATA,
        ).build
        stream = _watch(channel, _token(rebuilt), wait=True)
        try:
            assert [next(stream).HasField("ping") for _ in range(2)] == [True, True]
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
