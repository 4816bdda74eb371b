"""The per-revision cache of an agent's children: reused while the revision
holds, reloaded as soon as a writer bumps it."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from server.storage import agents as agent_store
from server.storage.apps import WorkspaceApp


def _view(db, agent_id: uuid.UUID):
    with db.read() as conn:
        found = agent_store.get_agent_in_workspace(conn, agent_id=agent_id)
        return db.agent_views.children(conn, found.agent)


def test_children_reload_after_bump(db, provision) -> None:
    ws = provision.workspace()
    agent_id = uuid.UUID(ws.agent("main").id)
    first = _view(db, agent_id)
    assert [a.health for a in first.apps] == ["initializing", "disabled"]
    apps = WorkspaceApp.__table__
    with db.engine.begin() as conn:
        conn.execute(sa.update(apps).where(apps.c.slug == "code-server").values(health="healthy"))
    # Without a bump the cached view is reused: the cache is what saves the reads.
    assert _view(db, agent_id) is first
    with db.engine.begin() as conn:
        conn.execute(sa.update(apps).where(apps.c.slug == "code-server").values(health="healthy"))
        agent_store.bump_revision(conn, agent_id=agent_id)
    second = _view(db, agent_id)
    assert second is not first
    assert [a.health for a in second.apps] == ["healthy", "disabled"]


def test_cache_is_bounded(db, provision) -> None:
    from server.storage.agentviews import AgentViewCache

    cache = AgentViewCache(max_entries=1)
    a, b = provision.workspace(), provision.workspace()
    with db.read() as conn:
        for ws in (a, b):
            found = agent_store.get_agent_in_workspace(
                conn, agent_id=uuid.UUID(ws.agent("main").id)
            )
            cache.children(conn, found.agent)
    assert len(cache._entries) == 1
