"""Tailnet coordination across two real ``agentplane server`` processes on
one PostgreSQL: both register (with the address to reach them), an agent
on one and a client on the other exchange nodes, and when the agent's
server is SIGKILLed its peers are reported LOST to the client within 8 s
and its rows are removed; the agent reconnecting to the survivor is found
again."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from server.storage.db import create_engine
from tests.conftest import require_pg
from tests.processes import Server
from tests.server.tailnet._coordinate import (
    LOST,
    NODE,
    Coordination,
    add_tunnel,
    agent_node,
    client_node,
    md,
    update_self,
)
from tests.test_logs_e2e import ADMIN, provision

pytestmark = pytest.mark.timeout(180)


def _rows(engine: sa.Engine, replica_id: uuid.UUID) -> int:
    with engine.connect() as conn:
        return sum(
            conn.execute(
                sa.text(f"SELECT count(*) FROM {table} WHERE {col} = :r"), {"r": replica_id}
            ).scalar()
            for table, col in (
                ("replicas", "id"),
                ("tailnet_peers", "replica_id"),
                ("tailnet_tunnels", "replica_id"),
            )
        )


def _has_node(engine: sa.Engine, peer_id: str) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                sa.text("SELECT count(*) FROM tailnet_peers WHERE id = :p"),
                {"p": uuid.UUID(peer_id)},
            ).scalar()
        )


def test_a_killed_replicas_peers_are_lost_to_the_survivor(tmp_path: Path) -> None:
    require_pg()
    from tests.conftest import new_backend_url

    backend = new_backend_url("postgresql", tmp_path)
    env = {"AGENTPLANE_ADMIN_TOKEN": ADMIN}
    a = Server(tmp_path / "a", backend.url, env=env).start()
    b = Server(tmp_path / "b", backend.url, env=env).start()
    engine = create_engine(backend.url)
    channels: list[grpc.Channel] = []
    try:
        with engine.connect() as conn:
            registered = dict(conn.execute(sa.text("SELECT address, id FROM replicas")).all())
        assert set(registered) == {a.grpc, b.grpc}
        a_id = registered[a.grpc]

        api_key, agent_id, token, _ = provision(a)
        to_a, to_b = grpc.insecure_channel(a.grpc), grpc.insecure_channel(b.grpc)
        channels += [to_a, to_b]
        agent = Coordination(to_a, md(token))
        agent.send(update_self(agent_node(agent_id)))
        # The agent's node is in the database before the client tunnels (a
        # client earlier would hear it as a "node update", as on one replica).
        deadline = time.monotonic() + 10
        while not _has_node(engine, agent_id) and time.monotonic() < deadline:
            time.sleep(0.02)
        client = Coordination(to_b, md(api_key, agent_id=agent_id))
        client.send(update_self(client_node()), add_tunnel(agent_id))
        got = client.next_update()
        assert (got.kind, got.reason) == (NODE, "add tunnel")
        assert agent.next_update().kind == NODE
        assert _rows(engine, a_id) >= 2  # its registration and its agent's row

        killed_at = time.monotonic()
        a.kill()
        got = client.next_update(timeout=15)
        lost_after = time.monotonic() - killed_at
        assert (got.id, got.kind, got.reason) == (uuid.UUID(agent_id).bytes, LOST, "lost")
        assert lost_after < 8, f"LOST after {lost_after:.1f} s"
        print(f"LOST reported {lost_after:.2f} s after SIGKILL")

        deadline = time.monotonic() + 10
        while _rows(engine, a_id) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _rows(engine, a_id) == 0

        # The agent finds a new home; its client's tunnel was kept.
        again = Coordination(to_b, md(token))
        init = again.next()
        assert [u.reason for u in init.peer_updates] == ["init"]
        again.send(update_self(agent_node(agent_id, 2)))
        got = client.next_update()
        assert (got.kind, got.reason, got.node.id) == (NODE, "node update", 2)
        again.close()
        client.close()
    finally:
        for channel in channels:
            channel.close()
        if a.proc is not None and a.proc.poll() is None:
            a.stop()
        b.stop()
        engine.dispose()
        backend.cleanup()
