"""The dRPC door against a real core: every Agent RPC over yamux + dRPC
(loopback TCP, the spec-written client) answers as it does over gRPC, errors
map, the negotiated API version reaches the core, streams stream, many calls
share one session, and a slow reader stalls only its own call."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable

import grpc
import pytest
from agentplane.logs.v1 import logs_pb2
from coder.agent.v2 import agent_pb2, agent_pb2_grpc
from coder.tailnet.v2 import tailnet_pb2, tailnet_pb2_grpc
from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.descriptor import ServiceDescriptor

from rest_facade.wire.bridge import AGENT_SERVICE, TAILNET_SERVICE, CoreBridge, call_metadata
from rest_facade.wire.drpc import serve_session
from rest_facade.wire.transport import StreamTransport
from server.storage.agents import WorkspaceAgent
from tests.conftest import token_md
from tests.rest_facade.wire.asyncrun import run, wait_until
from tests.rest_facade.wire.specclient import (
    WINDOW,
    SpecDRPCClient,
    SpecError,
    SpecYamuxClient,
)

LOGS_SERVICE = logs_pb2.DESCRIPTOR.services_by_name["LogsService"]


@contextlib.asynccontextmanager
async def door(
    core_address: str,
    *,
    token: str,
    api_version: str | None = "2.13",
    services: Iterable[ServiceDescriptor] = (AGENT_SERVICE, TAILNET_SERVICE),
) -> AsyncIterator[tuple[SpecDRPCClient, list]]:
    """The dRPC door on a loopback port and one spec client connected to it;
    yields the client and the list of the door's ended sessions."""
    channel = grpc.aio.insecure_channel(core_address)
    bridge = CoreBridge(channel, services=services)
    handlers = bridge.handlers(call_metadata(token=token, api_version=api_version))
    ended: list = []
    sessions: set[asyncio.Task] = set()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        sessions.add(task)
        try:
            ended.append(await serve_session(StreamTransport(reader, writer), handlers))
        finally:
            sessions.discard(task)

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = await SpecYamuxClient.connect("127.0.0.1", port)
    try:
        yield SpecDRPCClient(client), ended
    finally:
        await client.close()
        server.close()
        # The client hung up: every session ends by itself.
        await asyncio.wait_for(asyncio.gather(*sessions), 10)
        await server.wait_closed()
        await channel.close()


def grpc_answer(channel, method: str, request, token: str):
    """(response message | None, (code, details) | None) over gRPC."""
    stub = agent_pb2_grpc.AgentStub(channel)
    try:
        return getattr(stub, method)(request, metadata=token_md(token)), None
    except grpc.RpcError as err:
        return None, (err.code().value[0], err.details())


async def drpc_answer(client: SpecDRPCClient, method: str, request):
    out_type = agent_pb2.DESCRIPTOR.services_by_name["Agent"].methods_by_name[method].output_type
    from google.protobuf import message_factory

    cls = message_factory.GetMessageClass(out_type)
    try:
        raw = await client.unary(f"/coder.agent.v2.Agent/{method}", request.SerializeToString())
        return cls.FromString(raw), None
    except SpecError as err:
        return None, (err.code, err.text)


def agent_requests() -> list[tuple[str, object]]:
    now = timestamp_pb2.Timestamp(seconds=1_700_000_000)
    requests: list[tuple[str, object]] = []
    for method in AGENT_SERVICE.methods:
        from google.protobuf import message_factory

        # Every RPC with an empty request (valid for some, an error for others).
        requests.append((method.name, message_factory.GetMessageClass(method.input_type)()))
    requests += [
        (
            "UpdateStats",
            agent_pb2.UpdateStatsRequest(
                stats=agent_pb2.Stats(connection_count=2, rx_bytes=10, tx_bytes=20)
            ),
        ),
        (
            "UpdateLifecycle",
            agent_pb2.UpdateLifecycleRequest(
                lifecycle=agent_pb2.Lifecycle(state=agent_pb2.Lifecycle.READY, changed_at=now)
            ),
        ),
        (
            "UpdateStartup",
            agent_pb2.UpdateStartupRequest(startup=agent_pb2.Startup(version="v2.20.1")),
        ),
        (
            "UpdateStartup",
            agent_pb2.UpdateStartupRequest(startup=agent_pb2.Startup(version="not-semver")),
        ),
        (
            "BatchCreateLogs",
            agent_pb2.BatchCreateLogsRequest(
                log_source_id=bytes(16),
                logs=[agent_pb2.Log(created_at=now, output="hello", level=agent_pb2.Log.INFO)],
            ),
        ),
        (
            "BatchCreateLogs",
            agent_pb2.BatchCreateLogsRequest(
                log_source_id=b"short", logs=[agent_pb2.Log(output="x")]
            ),
        ),
        (
            "BatchUpdateMetadata",
            agent_pb2.BatchUpdateMetadataRequest(
                metadata=[
                    agent_pb2.Metadata(
                        key="load", result=agent_pb2.WorkspaceAgentMetadata.Result(value="1")
                    )
                ]
            ),
        ),
        (
            "BatchUpdateAppHealths",
            agent_pb2.BatchUpdateAppHealthRequest(
                updates=[
                    agent_pb2.BatchUpdateAppHealthRequest.HealthUpdate(
                        id=uuid.uuid4().bytes, health=agent_pb2.AppHealth.HEALTHY
                    )
                ]
            ),
        ),
        (
            "ScriptCompleted",
            agent_pb2.WorkspaceAgentScriptCompletedRequest(
                timing=agent_pb2.Timing(
                    script_id=uuid.uuid4().bytes,
                    start=now,
                    end=now,
                    exit_code=0,
                    stage=agent_pb2.Timing.START,
                    status=agent_pb2.Timing.OK,
                )
            ),
        ),
    ]
    return requests


def test_every_agent_rpc_answers_as_over_grpc(db, core, channel, provision) -> None:
    token = provision.workspace().agent("main").auth_token
    requests = agent_requests()
    over_grpc = [grpc_answer(channel, method, request, token) for method, request in requests]

    async def main() -> list:
        async with door(core.address, token=token) as (client, _):
            return [await drpc_answer(client, method, request) for method, request in requests]

    over_drpc = run(main)
    assert len(over_drpc) == len(requests) > len(AGENT_SERVICE.methods)
    for (method, request), via_grpc, via_drpc in zip(requests, over_grpc, over_drpc, strict=True):
        assert via_drpc == via_grpc, (method, request)
    # Both paths answered something real: some successes, some errors.
    assert any(ok is not None for ok, _ in over_drpc)
    codes = {err[0] for _, err in over_drpc if err}
    assert grpc.StatusCode.INVALID_ARGUMENT.value[0] in codes
    assert grpc.StatusCode.UNIMPLEMENTED.value[0] in codes


def test_errors_carry_text_and_code(db, core, provision) -> None:
    async def main() -> None:
        async with door(core.address, token=str(uuid.uuid4())) as (client, _):
            with pytest.raises(SpecError) as err:
                await client.unary(
                    "/coder.agent.v2.Agent/GetManifest",
                    agent_pb2.GetManifestRequest().SerializeToString(),
                )
            assert err.value.code == grpc.StatusCode.UNAUTHENTICATED.value[0]
            assert err.value.text == "Workspace agent not authorized."
            with pytest.raises(SpecError) as err:
                await client.unary("/coder.agent.v2.Agent/Nope", b"")
            assert (err.value.code, err.value.text) == (
                0,
                'protocol error: unknown rpc: "/coder.agent.v2.Agent/Nope"',
            )
            # An RPC the core does not implement is drpcerr.Unimplemented
            # (12), which Coder's clients test for.
            with pytest.raises(SpecError) as err:
                await client.unary(
                    "/coder.agent.v2.Agent/CreateSubAgent",
                    agent_pb2.CreateSubAgentRequest().SerializeToString(),
                )
            assert err.value.code == 12

    run(main)


def test_tailnet_only_door_refuses_agent_rpcs(db, core, provision) -> None:
    token = provision.workspace().agent("main").auth_token

    async def main() -> None:
        async with door(core.address, token=token, services=(TAILNET_SERVICE,)) as (client, _):
            with pytest.raises(SpecError) as err:
                await client.unary("/coder.agent.v2.Agent/GetManifest", b"")
            assert "unknown rpc" in err.value.text

    run(main)


def test_update_startup_records_the_negotiated_version(db, core, provision) -> None:
    main_agent = provision.workspace().agent("main")

    async def main() -> None:
        async with door(core.address, token=main_agent.auth_token, api_version="2.4") as (c, _):
            await c.unary(
                "/coder.agent.v2.Agent/UpdateStartup",
                agent_pb2.UpdateStartupRequest(
                    startup=agent_pb2.Startup(version="v2.20.1")
                ).SerializeToString(),
            )

    run(main)
    with db.session() as s:
        assert s.get(WorkspaceAgent, uuid.UUID(main_agent.id)).api_version == "2.4"


def _logs(channel, token: str, n: int, size: int) -> None:
    stub = agent_pb2_grpc.AgentStub(channel)
    for i in range(n):
        stub.BatchCreateLogs(
            agent_pb2.BatchCreateLogsRequest(
                log_source_id=bytes(16),
                logs=[agent_pb2.Log(output=f"{i:04d}" + "x" * (size - 4))],
            ),
            metadata=token_md(token),
        )


def waiting(call) -> int:
    return sum(len(chunk) for chunk in call.stream.inbox._queue if chunk)


def _watch(call_client: SpecDRPCClient, agent_id: str):
    return call_client.server_stream(
        "/agentplane.logs.v1.LogsService/WatchWorkspaceAgentLogs",
        logs_pb2.WatchWorkspaceAgentLogsRequest(agent_id=agent_id).SerializeToString(),
    )


def test_streams_and_a_slow_reader_stalls_only_its_call(db, core, channel, provision) -> None:
    """A server stream (the log watch, standing in until StreamDERPMaps and
    Coordinate exist) goes through; an unread one fills its window while the
    other calls of the session go on."""
    ws = provision.workspace()
    agent = ws.agent("main")
    # 600 lines of 1000 bytes: more than a yamux window of backlog.
    _logs(channel, agent.auth_token, 600, 1000)

    async def main() -> None:
        services = (AGENT_SERVICE, LOGS_SERVICE)
        async with door(core.address, token=ws.api_key, services=services) as (client, _):
            slow = await _watch(client, agent.id)
            fast = await _watch(client, agent.id)
            seen: list[str] = []
            while len(seen) < 600:
                msg = logs_pb2.WatchWorkspaceAgentLogsResponse.FromString(await fast.recv())
                seen += [line.output[:4] for line in msg.logs]
            assert seen == [f"{i:04d}" for i in range(600)]
            # The slow call has a full window waiting; the session still
            # serves others (a unary call with the user's key is refused by
            # the agent API: an answer all the same).
            # Exactly one window of it waits at the client, no more.
            await wait_until(lambda: waiting(slow) == WINDOW)
            with pytest.raises(SpecError) as err:
                await client.unary("/coder.agent.v2.Agent/GetManifest", b"")
            assert err.value.code == grpc.StatusCode.UNAUTHENTICATED.value[0]
            # Now the slow reader reads: everything arrives, in order.
            late: list[str] = []
            while len(late) < 600:
                msg = logs_pb2.WatchWorkspaceAgentLogsResponse.FromString(await slow.recv())
                late += [line.output[:4] for line in msg.logs]
            assert late == seen
            await slow.stream.close()
            await fast.stream.close()

    run(main)


def test_many_concurrent_calls_in_one_session(db, core, provision) -> None:
    token = provision.workspace().agent("main").auth_token
    request = agent_pb2.UpdateStatsRequest(
        stats=agent_pb2.Stats(connection_count=1)
    ).SerializeToString()

    async def main() -> None:
        async with door(core.address, token=token) as (client, ended):
            answers = await asyncio.gather(
                *(client.unary("/coder.agent.v2.Agent/UpdateStats", request) for _ in range(64))
            )
            for raw in answers:
                response = agent_pb2.UpdateStatsResponse.FromString(raw)
                assert response.report_interval == duration_pb2.Duration(seconds=30)
            assert ended == []

    run(main)


class TailnetStandIn(tailnet_pb2_grpc.TailnetServicer):
    """A gRPC Tailnet service that streams, standing in for the core's until
    the coordination issue implements Coordinate and StreamDERPMaps: it
    proves the bridge's bidi and server-stream paths on a real gRPC server."""

    async def StreamDERPMaps(self, request, context):
        token = dict(context.invocation_metadata()).get("coder-session-token")
        for region in (1, 2, 3):
            yield tailnet_pb2.DERPMap(
                regions={region: tailnet_pb2.DERPMap.Region(region_name=token or "")}
            )

    async def Coordinate(self, request_iterator, context):
        async for request in request_iterator:
            if request.HasField("disconnect"):
                return
            yield tailnet_pb2.CoordinateResponse(error=f"saw {request.update_self.node.id}")


def test_bidi_and_server_streams_through_the_bridge() -> None:
    async def main() -> None:
        server = grpc.aio.server()
        tailnet_pb2_grpc.add_TailnetServicer_to_server(TailnetStandIn(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with door(f"127.0.0.1:{port}", token="tok") as (client, _):
                maps = await client.server_stream(
                    "/coder.tailnet.v2.Tailnet/StreamDERPMaps",
                    tailnet_pb2.StreamDERPMapsRequest().SerializeToString(),
                )
                got = []
                while (raw := await maps.recv()) is not None:
                    derp_map = tailnet_pb2.DERPMap.FromString(raw)
                    got += [(k, v.region_name) for k, v in derp_map.regions.items()]
                assert got == [(1, "tok"), (2, "tok"), (3, "tok")]
                await maps.stream.close()

                from tests.rest_facade.wire.specclient import CLOSE_SEND, MESSAGE

                call = await client.start("/coder.tailnet.v2.Tailnet/Coordinate")
                for node_id in (7, 8):
                    request = tailnet_pb2.CoordinateRequest(
                        update_self=tailnet_pb2.CoordinateRequest.UpdateSelf(
                            node=tailnet_pb2.Node(id=node_id)
                        )
                    )
                    await call.packet(MESSAGE, request.SerializeToString())
                    answer = tailnet_pb2.CoordinateResponse.FromString(await call.recv())
                    assert answer.error == f"saw {node_id}"
                # The client's close-send ends the request stream; the
                # server's stream then ends and the call closes cleanly.
                await call.packet(CLOSE_SEND)
                assert await call.recv() is None
                await call.stream.close()
        finally:
            await server.stop(None)

    run(main)
