"""Reading logs through the live core: pages, and the followed stream."""

from __future__ import annotations

import queue
import threading
import uuid

import grpc
import pytest
from agentplane.logs.v1 import logs_pb2, logs_pb2_grpc
from coder.agent.v2 import agent_pb2, agent_pb2_grpc

from server.storage import logs as log_store
from tests.conftest import token_md

Event = logs_pb2.WatchWorkspaceAgentLogsResponse.Event
NIL = uuid.UUID(int=0).bytes


def send(channel, token: str, *outputs: str) -> bool:
    return (
        agent_pb2_grpc.AgentStub(channel)
        .BatchCreateLogs(
            agent_pb2.BatchCreateLogsRequest(
                log_source_id=NIL, logs=[agent_pb2.Log(output=o) for o in outputs]
            ),
            metadata=token_md(token),
        )
        .log_limit_exceeded
    )


class Follower:
    """A real streaming client of WatchWorkspaceAgentLogs on its own thread."""

    def __init__(self, channel, api_key: str, agent_id: str, after: int = 0) -> None:
        stub = logs_pb2_grpc.LogsServiceStub(channel)
        self.call = stub.WatchWorkspaceAgentLogs(
            logs_pb2.WatchWorkspaceAgentLogsRequest(agent_id=agent_id, after=after),
            metadata=token_md(api_key),
        )
        self.messages: queue.Queue = queue.Queue()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            for m in self.call:
                self.messages.put(m)
        except grpc.RpcError as err:
            self.messages.put(err)
        self.messages.put(None)

    def next(self, timeout: float = 10):
        return self.messages.get(timeout=timeout)

    def outputs_until(self, want: int, timeout: float = 10) -> list[str]:
        got: list[str] = []
        while len(got) < want:
            m = self.next(timeout)
            assert m is not None and not isinstance(m, Exception), m
            got.extend(log.output for log in m.logs)
        return got


def test_list_pages_with_after_and_before(channel, provision) -> None:
    ws = provision.workspace()
    token, agent_id = ws.agent("main").auth_token, ws.agent("main").id
    send(channel, token, *[f"line {i}" for i in range(5)])
    stub = logs_pb2_grpc.LogsServiceStub(channel)
    md = token_md(ws.api_key)
    page = stub.ListWorkspaceAgentLogs(
        logs_pb2.ListWorkspaceAgentLogsRequest(agent_id=agent_id, limit=2), metadata=md
    )
    assert [log.output for log in page.logs] == ["line 0", "line 1"] and page.more
    ids = [log.id for log in page.logs]
    rest = stub.ListWorkspaceAgentLogs(
        logs_pb2.ListWorkspaceAgentLogsRequest(agent_id=agent_id, after=ids[-1]), metadata=md
    )
    assert [log.output for log in rest.logs] == ["line 2", "line 3", "line 4"]
    assert not rest.more
    window = stub.ListWorkspaceAgentLogs(
        logs_pb2.ListWorkspaceAgentLogsRequest(
            agent_id=agent_id, after=ids[0], before=rest.logs[1].id
        ),
        metadata=md,
    )
    assert [log.output for log in window.logs] == ["line 1", "line 2"]
    with pytest.raises(grpc.RpcError) as info:
        stub.ListWorkspaceAgentLogs(
            logs_pb2.ListWorkspaceAgentLogsRequest(agent_id=agent_id, after=-1), metadata=md
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    stranger = provision.user()
    with pytest.raises(grpc.RpcError) as info:
        stub.ListWorkspaceAgentLogs(
            logs_pb2.ListWorkspaceAgentLogsRequest(agent_id=agent_id),
            metadata=token_md(stranger.api_key),
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_watch_backlog_then_live_then_replaced(channel, provision) -> None:
    ws = provision.workspace()
    token, agent_id = ws.agent("main").auth_token, ws.agent("main").id
    send(channel, token, "before-1", "before-2")
    follower = Follower(channel, ws.api_key, agent_id)
    first = follower.next()
    assert first.backlog and first.backlog_complete
    assert [log.output for log in first.logs] == ["before-1", "before-2"]
    send(channel, token, "live-1")
    assert follower.outputs_until(1) == ["live-1"]
    send(channel, token, "live-2", "live-3")
    assert follower.outputs_until(2) == ["live-2", "live-3"]
    provision.rebuild(ws)
    end = follower.next()
    assert end.event == Event.EVENT_AGENT_REPLACED
    assert follower.next() is None  # the stream ended normally


def test_watch_empty_backlog_is_still_sent(channel, provision) -> None:
    ws = provision.workspace()
    follower = Follower(channel, ws.api_key, ws.agent("main").id)
    first = follower.next()
    assert first.backlog_complete and list(first.logs) == []
    follower.call.cancel()


def test_resume_has_no_gaps_and_no_duplicates(channel, provision) -> None:
    ws = provision.workspace()
    token, agent_id = ws.agent("main").auth_token, ws.agent("main").id
    send(channel, token, "a", "b")
    f1 = Follower(channel, ws.api_key, agent_id)
    seen = list(f1.next().logs)
    f1.call.cancel()
    send(channel, token, "c")  # while nobody follows
    f2 = Follower(channel, ws.api_key, agent_id, after=seen[-1].id)
    resumed = list(f2.next().logs)
    send(channel, token, "d")
    resumed_live = f2.outputs_until(1)
    f2.call.cancel()
    assert [log.output for log in seen] + [log.output for log in resumed] + resumed_live == [
        "a",
        "b",
        "c",
        "d",
    ]


def test_overflow_marker_in_stream(channel, provision, settings) -> None:
    ws = provision.workspace()
    token, agent_id = ws.agent("main").auth_token, ws.agent("main").id
    follower = Follower(channel, ws.api_key, agent_id)
    assert follower.next().backlog_complete
    assert send(channel, token, "x" * (settings.agent_logs_limit_bytes + 1)) is True
    marker = follower.next()
    assert marker.event == Event.EVENT_LOGS_OVERFLOWED
    follower.call.cancel()


def _store_silently(db, core, agent_id: str, outputs: list[str]) -> None:
    """Stores lines behind the pubsub's back: no notification is sent."""
    with db.write() as conn:
        log_store.insert_log_batches(
            conn,
            [
                log_store.LogBatch(
                    uuid.UUID(agent_id), uuid.uuid4(), outputs, ["info"] * len(outputs)
                )
            ],
            created_at=core.clock.now(),
        )


def test_lost_notification_is_recovered_by_repoll(channel, provision, db, core) -> None:
    ws = provision.workspace()
    agent_id = ws.agent("main").id
    follower = Follower(channel, ws.api_key, agent_id)
    assert follower.next().backlog_complete
    # Store a line behind the pubsub's back: no notification is ever sent.
    _store_silently(db, core, agent_id, ["silent"])
    # The follower's timer (log_follow_repoll_seconds) finds it.
    assert follower.outputs_until(1, timeout=core.settings.log_follow_repoll_seconds + 10) == [
        "silent"
    ]
    follower.call.cancel()


def test_large_backlog_and_catch_up_come_in_pages(channel, provision, db, core) -> None:
    from server.logs.read import PAGE_SIZE

    ws = provision.workspace()
    agent_id = ws.agent("main").id
    _store_silently(db, core, agent_id, [f"l{i}" for i in range(2 * PAGE_SIZE + 5)])
    follower = Follower(channel, ws.api_key, agent_id)
    sizes = []
    while True:
        m = follower.next()
        sizes.append(len(m.logs))
        assert m.backlog
        if m.backlog_complete:
            break
    assert sizes == [PAGE_SIZE, PAGE_SIZE, 5]
    # A burst larger than a page while following arrives whole, in order.
    _store_silently(db, core, agent_id, [f"m{i}" for i in range(PAGE_SIZE + 3)])
    got = follower.outputs_until(
        PAGE_SIZE + 3, timeout=core.settings.log_follow_repoll_seconds + 10
    )
    assert got == [f"m{i}" for i in range(PAGE_SIZE + 3)]
    follower.call.cancel()
