"""Prepared lookups decode exactly like SQLAlchemy's own execution, on every
backend; and the read connection kept on an event loop sees every commit."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from server.auth import hash_agent_token
from server.storage import agents as agent_store
from server.storage import users as user_store
from server.storage.agents import WorkspaceAgent
from server.storage.prepared import Prepared
from server.storage.users import ApiKey

SPEC_WITH_CHILD = {
    "resources": [
        {
            "name": "dev",
            "type": "docker_container",
            "agents": [
                {
                    "name": "main",
                    "env": {"EDITOR": "vim", "LANG": "C.UTF-8"},
                    "children": [{"name": "child"}],
                }
            ],
        }
    ]
}


def _fill_agent(db, agent_id: uuid.UUID) -> None:
    """Non-null values in every kind of column the lookups decode."""
    agents = WorkspaceAgent.__table__
    with db.write() as conn:
        conn.execute(
            sa.update(agents)
            .where(agents.c.id == agent_id)
            .values(
                first_connected_at=dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC),
                last_connected_at=dt.datetime(2026, 1, 2, 3, 5, 0, tzinfo=dt.UTC),
                version="v2.13.0",
                subsystems=["envbox", "exectrace"],
                logs_overflowed=True,
                logs_length=1234,
            )
        )


def _same(prepared: Prepared, conn: sa.Connection, params: dict) -> None:
    fast = prepared.first(conn, params)
    slow = conn.execute(prepared.statement, params).first()
    assert slow is not None
    assert fast._fields == tuple(slow._fields)
    assert tuple(fast) == tuple(slow)
    assert [type(v) for v in fast] == [type(v) for v in slow]


def test_agent_lookups_decode_like_sqlalchemy(db, provision) -> None:
    ws = provision.workspace(SPEC_WITH_CHILD)
    main = ws.agent("main")
    child = ws.agent("child")
    _fill_agent(db, uuid.UUID(main.id))
    with db.read() as conn:
        for agent in (main, child):
            _same(agent_store._BY_ID, conn, {"agent_id": uuid.UUID(agent.id)})
        token_hash = hash_agent_token(main.auth_token)
        _same(agent_store._BY_TOKEN, conn, {"token_hash": token_hash})
        found = agent_store.get_agent_in_workspace(conn, agent_id=uuid.UUID(child.id))
    assert found is not None
    assert found.agent.parent_id == uuid.UUID(main.id)
    assert found.agent.subsystems == []
    assert found.agent.environment_variables == {}


def test_key_lookup_decodes_like_sqlalchemy(db, provision) -> None:
    user = provision.user()
    key_id = user.api_key.split("-")[0]
    keys = ApiKey.__table__
    with db.write() as conn:
        conn.execute(
            sa.update(keys)
            .where(keys.c.id == key_id)
            .values(expires_at=dt.datetime(2030, 5, 6, 7, 8, 9, tzinfo=dt.UTC))
        )
    with db.read() as conn:
        _same(user_store._KEY_OWNER, conn, {"key_id": key_id})
        owner = user_store.get_api_key_owner(conn, key_id=key_id)
    assert owner is not None
    assert owner.user.username == user.username
    assert owner.expires_at is not None


def test_missing_row_is_none_and_session_falls_back(db, provision) -> None:
    ws = provision.workspace()
    agent_id = uuid.UUID(ws.agent("main").id)
    with db.read() as conn:
        assert agent_store._BY_ID.first(conn, {"agent_id": uuid.uuid4()}) is None
        assert agent_store._BY_ID.all(conn, {"agent_id": uuid.uuid4()}) == []
        via_conn = agent_store._BY_ID.first(conn, {"agent_id": agent_id})
    with db.session() as session:
        via_session = agent_store._BY_ID.first(session, {"agent_id": agent_id})
    assert tuple(via_session) == tuple(via_conn)


def test_driver_errors_are_wrapped_like_sqlalchemy(db) -> None:
    broken = Prepared(sa.select(sa.table("no_such_table", sa.column("x"))))
    with db.read() as conn, pytest.raises(sa.exc.DBAPIError):
        broken.first(conn, {})
    # The connection stays usable after a statement error.
    with db.read() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1


def test_expanding_binds_are_refused(db) -> None:
    users = user_store.User.__table__
    stmt = sa.select(users.c.id).where(users.c.id.in_(sa.bindparam("ids", expanding=True)))
    with db.read() as conn, pytest.raises(ValueError, match="expanding"):
        Prepared(stmt).first(conn, {"ids": [uuid.uuid4()]})


def test_loop_read_connection_is_kept_and_sees_every_commit(db, provision) -> None:
    ws = provision.workspace()
    agent_id = uuid.UUID(ws.agent("main").id)
    agents = WorkspaceAgent.__table__

    async def scenario() -> None:
        with db.read() as first:
            before = agent_store.get_agent_in_workspace(first, agent_id=agent_id)
        assert before is not None and before.agent.version == ""
        # A commit on another connection (as a writer on another thread or
        # replica would make) is visible to the kept connection's next read.
        with db.engine.begin() as other:
            other.execute(sa.update(agents).where(agents.c.id == agent_id).values(version="v9.9.9"))
        with db.read() as second:
            after = agent_store.get_agent_in_workspace(second, agent_id=agent_id)
        assert second is first
        assert after is not None and after.agent.version == "v9.9.9"

    asyncio.run(scenario())
    # Off the loop, reads use the pool (a fresh connection each time).
    with db.read() as a:
        pass
    with db.read() as b:
        pass
    assert a is not b
    db.close_pinned()


def test_invalidated_loop_connection_is_replaced(db) -> None:
    async def scenario() -> None:
        with db.read() as first:
            pass
        first.invalidate()
        with db.read() as second:
            assert second.execute(sa.text("SELECT 1")).scalar() == 1
        assert second is not first

    asyncio.run(scenario())
    db.close_pinned()


def test_memo_reuses_rows_only_for_identical_records(db, provision) -> None:
    ws = provision.workspace()
    agent_id = uuid.UUID(ws.agent("main").id)
    prepared = Prepared(agent_store._BY_ID.statement, memo=2)
    params = {"agent_id": agent_id}
    with db.read() as conn:
        first = prepared.first(conn, params)
        again = prepared.first(conn, params)
        assert again == first
        if not db.is_postgres:
            # SQLite hands back plain values: the decoded row is reused.
            assert again is first
        agents = WorkspaceAgent.__table__
        with db.engine.begin() as other:
            other.execute(sa.update(agents).where(agents.c.id == agent_id).values(version="v1.2.3"))
        changed = prepared.first(conn, params)
        assert changed is not first and changed.version == "v1.2.3"
        assert first.version == ""
        for other_ws in (provision.workspace(), provision.workspace()):
            prepared.first(conn, {"agent_id": uuid.UUID(other_ws.agent("main").id)})
        assert len(prepared._plan(conn.dialect).memo) <= 2


def test_literal_values_in_the_statement_are_bound_like_sqlalchemy(db, provision) -> None:
    """Literals (here a UUID and a datetime) become anonymous binds that need
    the column type's processing, as SQLAlchemy would apply it."""
    ws = provision.workspace()
    agent_id = uuid.UUID(ws.agent("main").id)
    agents = WorkspaceAgent.__table__
    stmt = sa.select(agents.c.id, agents.c.created_at).where(
        agents.c.id == agent_id,
        agents.c.created_at > dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
        agents.c.name != "never",
    )
    with db.read() as conn:
        _same(Prepared(stmt), conn, {})


def test_plans_go_with_their_engine(db) -> None:
    """A plan is kept on the engine's dialect, not in a registry that would
    outlive disposed engines."""
    import gc
    import weakref

    engine = sa.create_engine("sqlite://")
    prepared = Prepared(sa.select(sa.literal(1).label("one")))
    with engine.connect() as conn:
        assert prepared.first(conn, {}).one == 1
    dialect = weakref.ref(engine.dialect)
    engine.dispose()
    del engine, conn
    gc.collect()
    assert dialect() is None
