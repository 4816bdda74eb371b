"""BatchCreateLogs: at the concern function and through the live core."""

from __future__ import annotations

import uuid

import grpc
import pytest
import sqlalchemy as sa
from coder.agent.v2 import agent_pb2, agent_pb2_grpc

from server.agentapi.logs import batch_create_logs, log_source_id
from server.errors import InvalidArgument
from server.storage import agents as agent_store
from server.storage import logs as log_store
from server.storage.logs import EXTERNAL_SOURCE_ID, WorkspaceAgentLog
from tests.conftest import token_md, write_locked

L = agent_pb2.Log.Level


def _caller(db, ws):
    with db.read() as conn:
        return agent_store.get_agent_in_workspace(conn, agent_id=uuid.UUID(ws.agent("main").id))


def _rows(db, agent_id: str) -> list:
    t = WorkspaceAgentLog.__table__
    with db.read() as conn:
        return list(
            conn.execute(sa.select(t).where(t.c.agent_id == uuid.UUID(agent_id)).order_by(t.c.id))
        )


def _state(db, agent_id: str):
    with db.read() as conn:
        return log_store.get_log_state(conn, agent_id=uuid.UUID(agent_id))


def _logs(*outputs: str, level=L.INFO) -> list[agent_pb2.Log]:
    return [agent_pb2.Log(output=o, level=level) for o in outputs]


def test_batch_is_stored_with_server_time_and_levels(db, clock, provision) -> None:
    ws = provision.workspace()
    logs = [
        agent_pb2.Log(output="a", level=L.LEVEL_UNSPECIFIED),
        agent_pb2.Log(output="b", level=L.ERROR),
    ]
    logs[0].created_at.FromSeconds(1)  # ignored: the server stamps the batch
    assert not batch_create_logs(
        db,
        clock,
        caller=_caller(db, ws),
        source_id=EXTERNAL_SOURCE_ID,
        logs=logs,
        limit_bytes=1 << 20,
    )
    rows = _rows(db, ws.agent("main").id)
    assert [(r.output, r.level) for r in rows] == [("a", "info"), ("b", "error")]
    assert {r.created_at.replace(tzinfo=None) for r in rows} == {clock.now().replace(tzinfo=None)}
    assert _state(db, ws.agent("main").id).logs_length == 2


def test_lines_are_cut_to_1024_characters_but_counted_whole(db, clock, provision) -> None:
    ws = provision.workspace()
    long_line = "é" * 1500  # 1500 characters, 3000 bytes
    batch_create_logs(
        db,
        clock,
        caller=_caller(db, ws),
        source_id=EXTERNAL_SOURCE_ID,
        logs=_logs(long_line),
        limit_bytes=1 << 20,
    )
    (row,) = _rows(db, ws.agent("main").id)
    assert row.output == "é" * 1024
    assert _state(db, ws.agent("main").id).logs_length == 3000


def test_overflow_edge_exactly_at_the_limit(db, clock, provision) -> None:
    ws = provision.workspace()
    caller = _caller(db, ws)

    def send(*outputs: str) -> bool:
        return batch_create_logs(
            db,
            clock,
            caller=caller,
            source_id=EXTERNAL_SOURCE_ID,
            logs=_logs(*outputs),
            limit_bytes=100,
        )

    assert send("x" * 60) is False
    assert send("y" * 40) is False  # exactly 100: allowed
    state = _state(db, ws.agent("main").id)
    assert (state.logs_length, state.logs_overflowed) == (100, False)
    assert send("z") is True  # one byte over: refused whole, agent marked
    state = _state(db, ws.agent("main").id)
    assert (state.logs_length, state.logs_overflowed) == (100, True)
    assert send("") is True  # nothing more is ever stored
    assert [len(r.output) for r in _rows(db, ws.agent("main").id)] == [60, 40]


def test_the_crossing_batch_leaves_nothing(db, clock, provision) -> None:
    ws = provision.workspace()
    assert batch_create_logs(
        db,
        clock,
        caller=_caller(db, ws),
        source_id=EXTERNAL_SOURCE_ID,
        logs=_logs("a" * 30, "b" * 30, "c" * 50),
        limit_bytes=100,
    )
    assert _rows(db, ws.agent("main").id) == []


def test_empty_batch_is_ok_and_writes_nothing(db, clock, provision) -> None:
    ws = provision.workspace()
    assert (
        batch_create_logs(
            db,
            clock,
            caller=_caller(db, ws),
            source_id=EXTERNAL_SOURCE_ID,
            logs=[],
            limit_bytes=100,
        )
        is False
    )
    assert _state(db, ws.agent("main").id).logs_length == 0


def test_source_id_rules() -> None:
    assert log_source_id(uuid.UUID(int=0).bytes) == EXTERNAL_SOURCE_ID
    other = uuid.uuid4()
    assert log_source_id(other.bytes) == other
    with pytest.raises(InvalidArgument):
        log_source_id(b"short")


def test_servicer_external_source_and_limit(channel, provision, settings, db) -> None:
    ws = provision.workspace()
    stub = agent_pb2_grpc.AgentStub(channel)
    md = token_md(ws.agent("main").auth_token)
    resp = stub.BatchCreateLogs(
        agent_pb2.BatchCreateLogsRequest(log_source_id=uuid.UUID(int=0).bytes, logs=_logs("hi")),
        metadata=md,
    )
    assert resp.log_limit_exceeded is False
    # The built-in External source now exists for the agent, once.
    stub.BatchCreateLogs(
        agent_pb2.BatchCreateLogsRequest(log_source_id=uuid.UUID(int=0).bytes, logs=_logs("x")),
        metadata=md,
    )
    with db.read() as conn:
        sources = log_store.list_log_sources_by_agent_ids(
            conn, agent_ids=[uuid.UUID(ws.agent("main").id)]
        )
    external = [s for s in sources if s.id == EXTERNAL_SOURCE_ID]
    assert len(external) == 1 and external[0].display_name == "External"
    huge = "x" * (settings.agent_logs_limit_bytes + 1)
    resp = stub.BatchCreateLogs(
        agent_pb2.BatchCreateLogsRequest(
            log_source_id=uuid.UUID(int=0).bytes, logs=_logs(huge[: 3 << 20])
        ),
        metadata=md,
    )
    assert resp.log_limit_exceeded is True
    # Coder: an empty batch is fine whatever else it says...
    assert (
        stub.BatchCreateLogs(
            agent_pb2.BatchCreateLogsRequest(log_source_id=b"\x01"), metadata=md
        ).log_limit_exceeded
        is True
    )
    # ...but a batch with logs needs a 16-byte source id.
    with pytest.raises(grpc.RpcError) as info:
        stub.BatchCreateLogs(
            agent_pb2.BatchCreateLogsRequest(log_source_id=b"\x01", logs=_logs("x")), metadata=md
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_concurrent_batches_keep_their_own_outcomes(channel, provision, db, settings) -> None:
    """Batches committed together (group commit) are still judged one by one:
    exactly the acknowledged ones are stored, and the limit holds."""
    import concurrent.futures

    workspaces = [provision.workspace(), provision.workspace()]
    stub = agent_pb2_grpc.AgentStub(channel)
    limit = settings.agent_logs_limit_bytes
    line = "x" * (limit // 10)  # ten batches fill an agent; the rest are refused

    def send(i: int) -> tuple[str, int, bool]:
        ws = workspaces[i % 2]
        resp = stub.BatchCreateLogs(
            agent_pb2.BatchCreateLogsRequest(
                log_source_id=uuid.UUID(int=0).bytes,
                logs=[agent_pb2.Log(output=f"{i:04d}{line[4:]}")],
            ),
            metadata=token_md(ws.agent("main").auth_token),
        )
        return ws.agent("main").id, i, resp.log_limit_exceeded

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(send, range(30)))
    for ws in workspaces:
        agent_id = ws.agent("main").id
        accepted = {i for a, i, exceeded in results if a == agent_id and not exceeded}
        stored = {int(r.output[:4]) for r in _rows(db, agent_id)}
        assert stored == accepted and len(accepted) == 10
        state = _state(db, agent_id)
        assert state.logs_length == 10 * len(line) and state.logs_overflowed


def _send(stub, ws, *outputs: str, timeout: float = 30) -> bool:
    return stub.BatchCreateLogs(
        agent_pb2.BatchCreateLogsRequest(
            log_source_id=uuid.UUID(int=0).bytes, logs=_logs(*outputs)
        ),
        metadata=token_md(ws.agent("main").auth_token),
        timeout=timeout,
    ).log_limit_exceeded


def test_writer_survives_losing_its_connection(core, channel, provision, db) -> None:
    """The log writer keeps a connection (on PostgreSQL its lane's own, on
    SQLite the loop's kept one); when the database drops it (a restart, an
    administrator's kill), the next batch is still stored and acknowledged,
    and the writer goes on with a new connection."""
    ws = provision.workspace()
    stub = agent_pb2_grpc.AgentStub(channel)
    assert _send(stub, ws, "before") is False
    writer = core.core.log_writer.lane_for(uuid.UUID(ws.agent("main").id))
    kept = writer._conn if db.is_postgres else db._pinned_all[0]
    assert kept is not None
    if db.is_postgres:
        pid = kept.connection.dbapi_connection.info.backend_pid
        with db.engine.connect() as admin:
            killed = admin.execute(
                sa.text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid}
            ).scalar()
        assert killed is True
    else:
        kept.invalidate()
    assert _send(stub, ws, "after") is False
    assert _send(stub, ws, "again") is False
    assert [r.output for r in _rows(db, ws.agent("main").id)] == ["before", "after", "again"]


def test_postgres_writes_do_not_stall_other_calls(core, channel, provision, db) -> None:
    """On PostgreSQL the writer waits on its own thread: while a batch waits
    for a row lock, the core still answers other calls."""
    if not db.is_postgres:
        pytest.skip("the lanes are PostgreSQL's (SQLite: tests/server/storage/test_db.py)")
    import concurrent.futures

    from agentplane.workspaceagents.v1 import workspace_agents_pb2 as wa_pb
    from agentplane.workspaceagents.v1 import workspace_agents_pb2_grpc as wa_grpc

    ws = provision.workspace()
    stub = agent_pb2_grpc.AgentStub(channel)
    # The agent's first contact is recorded at once; later ones behind the call.
    assert _send(stub, ws, "first") is False
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        with write_locked(db, ws.agent("main").id):
            pending = pool.submit(_send, stub, ws, "waits for the lock")
            # The batch now waits on the lock; an unrelated call still answers.
            reply = wa_grpc.WorkspaceAgentsServiceStub(channel).GetWorkspaceAgent(
                wa_pb.GetWorkspaceAgentRequest(id=ws.agent("main").id),
                metadata=token_md(ws.api_key),
                timeout=5,
            )
            assert reply.agent.id == ws.agent("main").id
            assert not pending.done()
        assert pending.result(timeout=30) is False
    assert [r.output for r in _rows(db, ws.agent("main").id)] == ["first", "waits for the lock"]
    # The lane does not wait on a locked agent row for long while holding
    # the rows of its group's other agents (the loop may need one of them).
    lane = core.core.log_writer.lane_for(uuid.UUID(ws.agent("main").id))
    assert lane._conn is not None
    with lane._conn.begin():  # leaves the lane's connection as it was
        assert lane._conn.exec_driver_sql("SHOW lock_timeout").scalar() == "2s"


def test_agents_spread_over_writer_lanes_keep_their_order(core, channel, provision, db) -> None:
    """Several agents sending at once (on PostgreSQL they land on different
    writer lanes and commit in parallel): every batch is stored, each agent's
    lines in the order it sent them."""
    import concurrent.futures

    writer = core.core.log_writer
    workspaces = [provision.workspace() for _ in range(6)]
    # Make sure at least two lanes are in play where there are several.
    while len({id(writer.lane_for(uuid.UUID(w.agent("main").id))) for w in workspaces}) < min(
        2, len(writer._lanes)
    ):
        workspaces.append(provision.workspace())
    stub = agent_pb2_grpc.AgentStub(channel)

    def agent_sends(ws) -> None:
        for i in range(15):
            assert _send(stub, ws, f"{i:02d}a", f"{i:02d}b") is False

    with concurrent.futures.ThreadPoolExecutor(len(workspaces)) as pool:
        list(pool.map(agent_sends, workspaces))
    for ws in workspaces:
        outputs = [r.output for r in _rows(db, ws.agent("main").id)]
        assert outputs == [f"{i:02d}{half}" for i in range(15) for half in "ab"]


def test_nul_is_stored_as_coder_stores_it_and_counted_after(db, core, channel, provision) -> None:
    """PostgreSQL text cannot hold NUL; Coder replaces it with U+274C before
    storing and counts the limit on what it stores. Both backends agree."""
    ws = provision.workspace()
    stub = agent_pb2_grpc.AgentStub(channel)
    assert _send(stub, ws, "a\x00b", "\x00") is False
    rows = _rows(db, ws.agent("main").id)
    assert [r.output for r in rows] == ["a\u274cb", "\u274c"]
    assert _state(db, ws.agent("main").id).logs_length == len("a\u274cb\u274c".encode())


def test_every_character_survives_the_bulk_insert(db, core, channel, provision) -> None:
    """COPY's text format on PostgreSQL (backslash, tab, newline and CR are
    escaped; "\\N" is its NULL) and the multi-row INSERT on SQLite store each
    line exactly, cut at 1024 characters."""
    ws = provision.workspace()
    lines = [
        "back\\slash",
        "\\N",
        "\\",
        "tab\there",
        "new\nline",
        "cr\rlf\r\n",
        "",
        "ünïcødé ✓ 𝄞",
        "\x01\x1f\x7f",
        "x" * 2000,
    ]
    stub = agent_pb2_grpc.AgentStub(channel)
    assert _send(stub, ws, *lines) is False
    # A batch longer than one SQLite statement's rows, in order.
    many = [f"line {i}" for i in range(700)]
    assert _send(stub, ws, *many) is False
    stored = [r.output for r in _rows(db, ws.agent("main").id)]
    assert stored == [*lines[:-1], "x" * 1024, *many]


@pytest.mark.parametrize("revoke", ["new build", "workspace deleted", "agent deleted"])
def test_a_token_revoked_since_the_last_lookup_is_refused_by_the_write(
    db, core, channel, provision, revoke
) -> None:
    """Log batches reuse a recent token lookup; the write itself checks the
    token, so a batch sent right after its agent's build was replaced (or
    its workspace or the agent deleted) is refused with Coder's 401 and
    stores nothing."""
    ws = provision.workspace()
    stub = agent_pb2_grpc.AgentStub(channel)
    assert _send(stub, ws, "before") is False
    before = _state(db, ws.agent("main").id).logs_length
    if revoke == "new build":
        provision.rebuild(ws)
    else:
        # Only the flag, so the write's own check is what refuses it.
        table, row_id = (
            ("workspace_agents", ws.agent("main").id)
            if revoke == "agent deleted"
            else ("workspaces", ws.workspace_id)
        )
        rows = sa.table(table, sa.column("id"), sa.column("deleted"))
        with db.engine.begin() as conn:
            conn.execute(sa.update(rows).where(rows.c.id == uuid.UUID(row_id)).values(deleted=True))
    with pytest.raises(grpc.RpcError) as err:
        _send(stub, ws, "after")
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "Workspace agent not authorized." in err.value.details()
    assert [r.output for r in _rows(db, ws.agent("main").id)] == ["before"]
    assert _state(db, ws.agent("main").id).logs_length == before
    # Refused again (now by the lookup), and still nothing stored.
    with pytest.raises(grpc.RpcError) as err:
        _send(stub, ws, "again")
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert [r.output for r in _rows(db, ws.agent("main").id)] == ["before"]


def test_over_the_limit_with_a_recent_lookup_still_overflows(core, channel, provision, db) -> None:
    """With the token checked in the write, a refused claim is told apart:
    a valid token over the limit is the overflow (not a 401)."""
    ws = provision.workspace()
    stub = agent_pb2_grpc.AgentStub(channel)
    limit = core.settings.agent_logs_limit_bytes
    assert _send(stub, ws, "a") is False
    assert _send(stub, ws, "b" * limit) is True
    assert _state(db, ws.agent("main").id).logs_overflowed
    assert [r.output for r in _rows(db, ws.agent("main").id)] == ["a"]


def test_a_held_agent_row_is_skipped_not_waited_for(db, clock, provision) -> None:
    """PostgreSQL: a group's claim does not wait for an agent row another
    transaction holds: that batch is LOCKED (nothing done for it), and once
    the row is free the same claim stores it."""
    if not db.is_postgres:
        pytest.skip("SQLite has one write lock, not row locks")
    from server.agentapi.logs import LOCKED, NewBatch, write_batches
    from server.storage import logs as log_store
    from tests.conftest import write_locked

    ws = provision.workspace()
    agent_id = uuid.UUID(ws.agent("main").id)
    batch = NewBatch(agent_id, log_store.EXTERNAL_SOURCE_ID, ["held"], ["info"], 4)

    def claim() -> object:
        with db.write() as conn:
            (outcome,) = write_batches(
                db, conn, [batch], now=clock.now(), limit_bytes=1 << 20, skip_locked=True
            )
        return outcome

    with write_locked(db, str(agent_id)):
        assert claim() == LOCKED
    assert _rows(db, str(agent_id)) == []
    assert claim() is False
    assert [r.output for r in _rows(db, str(agent_id))] == ["held"]
