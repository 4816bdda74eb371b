"""WorkspaceUpdates: a full snapshot of the user's workspaces and agents,
then only what changes as builds come, workspaces go, agents are replaced;
Coder's status enum; only for user-scoped callers, about themselves (or
anyone, for role owner)."""

from __future__ import annotations

import queue
import threading
import uuid

import grpc
import pytest
from coder.tailnet.v2 import tailnet_pb2 as tpb

from server.tailnet.workspaceupdates import workspace_status
from tests.conftest import DEFAULT_SPEC
from tests.server.tailnet._coordinate import md

Status = tpb.Workspace.Status


class Updates:
    def __init__(self, stub, owner_id: str, metadata) -> None:
        self.call = stub.WorkspaceUpdates(
            tpb.WorkspaceUpdatesRequest(workspace_owner_id=uuid.UUID(owner_id).bytes),
            metadata=metadata,
        )
        self._q: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for update in self.call:
                self._q.put(update)
        except grpc.RpcError as err:
            self._q.put(err)

    def next(self, timeout: float = 10) -> tpb.WorkspaceUpdate:
        item = self._q.get(timeout=timeout)
        assert not isinstance(item, grpc.RpcError), item
        return item

    def error(self, timeout: float = 10) -> grpc.RpcError:
        item = self._q.get(timeout=timeout)
        assert isinstance(item, grpc.RpcError), item
        return item


def _names(items) -> list[str]:
    return sorted(i.name for i in items)


def test_a_snapshot_then_only_what_changes(streams, provision) -> None:
    owner = provision.user()
    updates = Updates(streams.stub, owner.id, md(owner.api_key))
    assert updates.next() == tpb.WorkspaceUpdate()  # nothing yet, still sent
    first = provision.workspace(DEFAULT_SPEC, owner=owner, name="one")
    got = updates.next()
    assert [(w.id, w.name, w.status) for w in got.upserted_workspaces] == [
        (uuid.UUID(first.workspace_id).bytes, "one", Status.RUNNING)
    ]
    assert _names(got.upserted_agents) == ["child", "main"]
    assert {a.workspace_id for a in got.upserted_agents} == {uuid.UUID(first.workspace_id).bytes}
    assert not got.deleted_workspaces and not got.deleted_agents
    # A new build replaces the agents; the workspace itself is unchanged.
    old_agents = {uuid.UUID(a.id).bytes for a in first.build.agents}
    rebuilt = provision.rebuild(first, name="one")
    got = updates.next()
    assert not got.upserted_workspaces
    assert {a.id for a in got.deleted_agents} == old_agents
    assert {a.id for a in got.upserted_agents} == {uuid.UUID(a.id).bytes for a in rebuilt.agents}
    # Stopped: status changes, agents go.
    provision.rebuild(first, name="one", transition="stop")
    got = updates.next()
    assert [(w.name, w.status) for w in got.upserted_workspaces] == [("one", Status.STOPPED)]
    assert len(got.deleted_agents) == 2 and not got.upserted_agents
    # Deleted: the workspace goes.
    provision.rebuild(first, name="one", transition="delete")
    got = updates.next()
    assert [(w.name, w.id) for w in got.deleted_workspaces] == [
        ("one", uuid.UUID(first.workspace_id).bytes)
    ]
    updates.call.cancel()


def test_a_later_stream_starts_from_a_full_snapshot(streams, provision) -> None:
    owner = provision.user()
    provision.workspace(DEFAULT_SPEC, owner=owner, name="a")
    provision.workspace({"resources": []}, owner=owner, name="b")
    updates = Updates(streams.stub, owner.id, md(owner.api_key))
    got = updates.next()
    assert _names(got.upserted_workspaces) == ["a", "b"]
    assert _names(got.upserted_agents) == ["child", "main"]
    updates.call.cancel()


def test_only_ones_own_workspaces_unless_owner(streams, provision) -> None:
    alice, bob = provision.user(), provision.user()
    provision.workspace(DEFAULT_SPEC, owner=alice, name="mine")
    err = Updates(streams.stub, alice.id, md(bob.api_key)).error()
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    admin = provision.user(role="owner")
    updates = Updates(streams.stub, alice.id, md(admin.api_key))
    assert _names(updates.next().upserted_workspaces) == ["mine"]
    updates.call.cancel()


def test_only_for_user_scoped_callers(streams, ws) -> None:
    main = ws.agent("main")
    for metadata in (md(main.auth_token), md(ws.api_key, agent_id=main.id)):
        err = Updates(streams.stub, ws.user_id, metadata).error()
        assert (err.code(), err.details()) == (
            grpc.StatusCode.UNIMPLEMENTED,
            "workspace updates not supported on this connection",
        )
    bad = streams.stub.WorkspaceUpdates(
        tpb.WorkspaceUpdatesRequest(workspace_owner_id=b"\x01\x02"), metadata=md(ws.api_key)
    )
    with pytest.raises(grpc.RpcError) as err:
        next(bad)
    assert (err.value.code(), err.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "parse workspace owner ID: invalid UUID (got 2 bytes)",
    )


@pytest.mark.parametrize(
    ("job", "transition", "status"),
    [
        ("pending", "start", Status.PENDING),
        ("running", "start", Status.STARTING),
        ("running", "stop", Status.STOPPING),
        ("running", "delete", Status.DELETING),
        ("succeeded", "start", Status.RUNNING),
        ("succeeded", "stop", Status.STOPPED),
        ("succeeded", "delete", Status.DELETED),
        ("canceling", "start", Status.CANCELING),
        ("canceled", "stop", Status.CANCELED),
        ("failed", "start", Status.FAILED),
        ("unheard-of", "start", Status.FAILED),
    ],
)
def test_coders_workspace_status(job: str, transition: str, status: int) -> None:
    assert workspace_status(job, transition) == status
