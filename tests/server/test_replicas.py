"""The replica registry on both backends: a server registers itself with its
reachable address and the id agents' rows carry, heartbeats, sees a replica
that stopped beating as dead once (and removes its row), registers again
when its own row was removed, and leaves on stop."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
from agentplane.workspaceagents.v1 import workspace_agents_pb2 as wpb
from agentplane.workspaceagents.v1 import workspace_agents_pb2_grpc as wgrpc
from coder.agent.v2 import agent_pb2, agent_pb2_grpc

from server.config import Settings, SettingsError
from server.replicas import ReplicaRegistry
from server.storage import replicas as replica_store
from tests.conftest import token_md


def _now(db, clock):
    return None if db.is_postgres else clock.now()


def test_a_running_core_is_registered_with_its_address(core, db, provision, channel) -> None:
    registry = core.core.registry
    rows = {r.id: r for r in registry.live()}
    assert registry.replica_id in rows
    assert rows[registry.replica_id].address == core.address
    # The id agents' rows carry is this replica's.
    ws = provision.workspace()
    agent_pb2_grpc.AgentStub(channel).GetManifest(
        agent_pb2.GetManifestRequest(), metadata=token_md(ws.agent("main").auth_token)
    )
    diagnosis = wgrpc.WorkspaceAgentsServiceStub(channel).GetWorkspaceAgentDiagnosis(
        wpb.GetWorkspaceAgentDiagnosisRequest(id=ws.agent("main").id),
        metadata=token_md(ws.api_key),
    )
    assert diagnosis.diagnosis.last_connected_replica_id == str(registry.replica_id)


def test_dead_replicas_are_reported_once_and_removed(db, clock) -> None:
    async def scenario() -> None:
        registry = ReplicaRegistry(
            db, clock, replica_id=uuid.uuid4(), address="10.0.0.1:3001", heartbeat_seconds=2
        )
        dead: list[uuid.UUID] = []
        registry.on_dead(dead.append)
        await registry.start()
        try:
            other, stale = uuid.uuid4(), uuid.uuid4()
            now = _now(db, clock)
            with db.engine.begin() as conn:
                replica_store.upsert_replica(
                    conn, replica_id=other, address="10.0.0.2:3001", hostname="h", pid=1, now=now
                )
                replica_store.upsert_replica(
                    conn,
                    replica_id=stale,
                    address="10.0.0.3:3001",
                    hostname="h",
                    pid=2,
                    now=(now or dt.datetime.now(dt.UTC)) - dt.timedelta(seconds=7),
                )
            live = await registry.refresh()
            assert {r.id for r in live} == {registry.replica_id, other}
            assert registry.address_of(other) == "10.0.0.2:3001"
            assert dead == [stale] and registry.is_dead(stale)
            with db.engine.connect() as conn:
                ids = {
                    r.id
                    for r in replica_store.list_replicas(
                        conn, expiry=registry.expiry, now=_now(db, clock)
                    )
                }
            assert stale not in ids and other in ids
            # Reported once, however often the registry is read.
            await registry.refresh()
            assert dead == [stale]
            # A live replica whose row disappears is dead too.
            with db.engine.begin() as conn:
                replica_store.delete_replicas(conn, replica_ids=[other])
            await registry.refresh()
            assert dead == [stale, other]
        finally:
            await registry.stop()
        with db.engine.connect() as conn:
            assert registry.replica_id not in {
                r.id
                for r in replica_store.list_replicas(
                    conn, expiry=registry.expiry, now=_now(db, clock)
                )
            }

    asyncio.run(scenario())


def test_a_replica_whose_row_was_removed_registers_again(db, clock) -> None:
    async def scenario() -> None:
        registry = ReplicaRegistry(
            db, clock, replica_id=uuid.uuid4(), address="10.0.0.1:3001", heartbeat_seconds=0.1
        )
        again = asyncio.Event()
        registry.on_reregistered(again.set)
        await registry.start()
        try:
            with db.engine.begin() as conn:
                replica_store.delete_replicas(conn, replica_ids=[registry.replica_id])
            async with asyncio.timeout(10):
                await again.wait()
            live = await registry.refresh()
            assert registry.replica_id in {r.id for r in live}
        finally:
            await registry.stop()

    asyncio.run(scenario())


def test_replica_address_setting() -> None:
    assert Settings(replica_address="10.1.2.3:3001").replica_address == "10.1.2.3:3001"
    for bad in ("nope", "host:", ":1", "host:99999"):
        with pytest.raises(SettingsError):
            Settings(replica_address=bad)
    with pytest.raises(SettingsError):
        Settings(replica_heartbeat_seconds=0)
