"""Coder's own wire on the facade's HTTP front: ``me/rpc`` (dRPC over yamux
over a binary WebSocket, bridged to the core) and the embedded DERP relay at
``/derp`` (HTTP upgrade and WebSocket), with the spec-written clients."""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
from urllib.parse import urlsplit

import pytest
from coder.agent.v2 import agent_pb2, agent_pb2_grpc

from tests.conftest import token_md
from tests.rest_facade import wsclient
from tests.rest_facade.derp.specclient import RECV_PACKET, SpecDERPClient
from tests.rest_facade.wire.specclient import SpecDRPCClient, SpecYamuxClient

API = "/api/v2/workspaceagents"
MANIFEST = "/coder.agent.v2.Agent/GetManifest"


async def _rpc_client(base: str, token: str, version: str = "2.13"):  # type: ignore[no-untyped-def]
    ws = await wsclient.connect(base, f"{API}/me/rpc?version={version}", token=token)
    yamux = SpecYamuxClient(ws.stream, wsclient.MessageWriter(ws))
    return ws, yamux, SpecDRPCClient(yamux)


def test_me_rpc_answers_as_grpc_does(facade_url, provision, channel) -> None:
    ws = provision.workspace()
    token = ws.agent("main").auth_token
    direct = agent_pb2_grpc.AgentStub(channel).GetManifest(
        agent_pb2.GetManifestRequest(), metadata=token_md(token)
    )

    async def main() -> tuple[bytes, list[bytes], str]:
        sock, yamux, drpc = await _rpc_client(facade_url, token, "2.5")
        try:
            manifest = await drpc.unary(MANIFEST, b"")
            # Many calls at once on one session.
            many = await asyncio.gather(*(drpc.unary(MANIFEST, b"") for _ in range(20)))
            startup = agent_pb2.UpdateStartupRequest(
                startup=agent_pb2.Startup(version="v2.5.0", expanded_directory="/home/coder")
            )
            await drpc.unary("/coder.agent.v2.Agent/UpdateStartup", startup.SerializeToString())
            return manifest, many, "ok"
        finally:
            await yamux.close()
            await sock.aclose()

    manifest, many, _ = asyncio.run(main())
    got = agent_pb2.Manifest.FromString(manifest)
    assert got == direct and got.agent_name == "main"
    assert all(agent_pb2.Manifest.FromString(m) == direct for m in many)
    host, port = urlsplit(facade_url).hostname, urlsplit(facade_url).port
    conn = http.client.HTTPConnection(host, port, timeout=15)
    conn.request("GET", f"{API}/{ws.agent('main').id}", headers={"Coder-Session-Token": ws.api_key})
    body = json.loads(conn.getresponse().read())
    conn.close()
    # The agent's api_version is the one its session negotiated.
    assert body["api_version"] == "2.5"


def test_me_rpc_errors_are_dRPC_errors(facade_url, provision) -> None:
    from tests.rest_facade.wire.specclient import SpecError

    ws = provision.workspace()

    async def main() -> SpecError:
        sock, yamux, drpc = await _rpc_client(facade_url, ws.agent("main").auth_token)
        try:
            bad = agent_pb2.UpdateLifecycleRequest(lifecycle=agent_pb2.Lifecycle(state=0))
            with pytest.raises(SpecError) as info:
                await drpc.unary("/coder.agent.v2.Agent/UpdateLifecycle", bad.SerializeToString())
            return info.value
        finally:
            await yamux.close()
            await sock.aclose()

    err = asyncio.run(main())
    assert "unknown lifecycle state" in err.text.lower()


@pytest.mark.parametrize(
    ("version", "detail"),
    [
        ("3.0", "behind requested major version 3.0"),
        ("2.999", "behind requested minor version 2.999"),
        ("1.0", "version 1.0 is no longer supported"),
        ("two", "invalid version string: two"),
    ],
)
def test_me_rpc_version_negotiation(facade_url, provision, version, detail) -> None:
    ws = provision.workspace()

    async def main() -> wsclient.Refused:
        with pytest.raises(wsclient.Refused) as info:
            await _rpc_client(facade_url, ws.agent("main").auth_token, version)
        return info.value

    refused = asyncio.run(main())
    assert refused.status == 400
    assert refused.body["message"] == "Unknown or unsupported API version"
    assert refused.body["validations"][0]["field"] == "version"
    assert detail in refused.body["validations"][0]["detail"]


def test_me_rpc_checks_the_token_first(facade_url, provision) -> None:
    ws = provision.workspace()

    async def main() -> wsclient.Refused:
        with pytest.raises(wsclient.Refused) as info:
            # A bad version too: the 401 comes first, as from coderd.
            await _rpc_client(facade_url, ws.api_key, "9.9")
        return info.value

    refused = asyncio.run(main())
    assert refused.status == 401


def test_me_rpc_without_an_upgrade_is_400(facade_url, provision) -> None:
    ws = provision.workspace()
    host, port = urlsplit(facade_url).hostname, urlsplit(facade_url).port
    conn = http.client.HTTPConnection(host, port, timeout=15)
    conn.request(
        "GET", f"{API}/me/rpc", headers={"Coder-Session-Token": ws.agent("main").auth_token}
    )
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    assert resp.status == 400 and body["message"] == "Failed to accept websocket."


def test_me_rpc_garbage_ends_only_that_session(facade_url, provision) -> None:
    ws = provision.workspace()
    token = ws.agent("main").auth_token

    async def main() -> tuple[int | None, bytes]:
        bad = await wsclient.connect(facade_url, f"{API}/me/rpc", token=token)
        good_ws, good_yamux, good = await _rpc_client(facade_url, token)
        try:
            bad.send_bytes(b"GET / HTTP/1.1\r\n\r\n" * 4)
            await asyncio.wait_for(bad.closed.wait(), 10)
            # The other session goes on.
            return bad.close_code, await good.unary(MANIFEST, b"")
        finally:
            await bad.aclose()
            await good_yamux.close()
            await good_ws.aclose()

    code, manifest = asyncio.run(main())
    assert code == 1002
    assert agent_pb2.Manifest.FromString(manifest).agent_name == "main"


# -- DERP ----------------------------------------------------------------------


async def _derp_upgrade(base: str, *, fast_start: bool = False) -> SpecDERPClient:
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    extra = "Derp-Fast-Start: 1\r\n" if fast_start else ""
    writer.write(
        f"GET /derp HTTP/1.1\r\nHost: {host}\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n"
        f"{extra}\r\n".encode()
    )
    if not fast_start:
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        assert b"derp-public-key:" in head.lower()
    client = SpecDERPClient(reader, writer)
    await client.login()
    return client


async def _derp_websocket(base: str) -> tuple[SpecDERPClient, wsclient.WSClient]:
    ws = await wsclient.connect(base, "/derp", subprotocol="derp")
    client = SpecDERPClient(ws.stream, wsclient.MessageWriter(ws))
    await client.login()
    return client, ws


def test_derp_clients_exchange_packets_over_both_carriers(facade_url) -> None:
    async def main() -> list[tuple[int, bytes]]:
        a = await _derp_upgrade(facade_url)
        b, b_ws = await _derp_websocket(facade_url)
        c = await _derp_upgrade(facade_url, fast_start=True)
        try:
            assert a.server_key == b.server_key == c.server_key
            await a.send(b.public, b"hello over websocket")
            got = [await b.recv()]
            await b.send(c.public, b"hello over fast start")
            got.append(await c.recv())
            return got
        finally:
            for client in (a, b, c):
                await client.close()
            await b_ws.aclose()

    got = asyncio.run(main())
    assert got[0][0] == RECV_PACKET and got[0][1].endswith(b"hello over websocket")
    assert got[1][0] == RECV_PACKET and got[1][1].endswith(b"hello over fast start")


def test_derp_needs_an_upgrade_and_can_be_turned_off(facade_url, settings, core) -> None:
    from tests.rest_facade._live import live_facade

    host, port = urlsplit(facade_url).hostname, urlsplit(facade_url).port

    def get(base_host: str, base_port: int, path: str) -> tuple[int, dict | None]:
        conn = http.client.HTTPConnection(base_host, base_port, timeout=15)
        conn.request("GET", path)
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        return resp.status, json.loads(raw) if raw else None

    assert get(host, port, "/derp") == (426, {"message": "DERP requires connection upgrade"})
    assert get(host, port, "/derp/latency-check")[0] == 200
    off = dataclasses.replace(settings, derp_server_enable=False)
    with live_facade(off, core.address) as url:
        parts = urlsplit(url)
        assert get(parts.hostname, parts.port, "/derp")[0] == 404
        assert get(parts.hostname, parts.port, "/derp/latency-check")[0] == 404


def _agent_status(facade_url: str, ws) -> str:  # type: ignore[no-untyped-def]
    host, port = urlsplit(facade_url).hostname, urlsplit(facade_url).port
    conn = http.client.HTTPConnection(host, port, timeout=15)
    conn.request("GET", f"{API}/{ws.agent('main').id}", headers={"Coder-Session-Token": ws.api_key})
    body = json.loads(conn.getresponse().read())
    conn.close()
    return body["status"]


def test_me_rpc_session_keeps_the_agent_connected(facade_url, provision) -> None:
    """Connected while the session is open (even with no call), disconnected
    once it closes: coderd's connection monitor."""
    from tests.rest_facade._live import wait_until

    ws = provision.workspace()
    seen: list[str] = []

    async def main() -> None:
        sock, yamux, _drpc = await _rpc_client(facade_url, ws.agent("main").auth_token)
        try:
            status = await asyncio.to_thread(
                lambda: (
                    wait_until(lambda: _agent_status(facade_url, ws) == "connected"),
                    "connected",
                )[1]
            )
            seen.append(status)
        finally:
            await yamux.close()
            await sock.aclose()

    asyncio.run(main())
    assert seen == ["connected"]
    wait_until(lambda: _agent_status(facade_url, ws) == "disconnected", what="disconnected")


class TestANewerBuild:
    @pytest.fixture
    def settings(self, settings):
        # The core re-checks the session's agent token this often.
        return dataclasses.replace(settings, sse_keepalive_seconds=1)

    def test_a_newer_build_ends_the_me_rpc_session(self, facade_url, provision) -> None:
        from agentplane.admin.v1 import admin_pb2

        from tests.conftest import ADMIN_METADATA

        ws = provision.workspace()

        async def main() -> int | None:
            sock, yamux, _drpc = await _rpc_client(facade_url, ws.agent("main").auth_token)
            try:
                await asyncio.to_thread(
                    provision.stub.BuildWorkspace,
                    admin_pb2.BuildWorkspaceRequest(owner=ws.username, name="ws"),
                    metadata=ADMIN_METADATA,
                )
                await asyncio.wait_for(sock.closed.wait(), 15)
                return sock.close_code
            finally:
                await yamux.close()
                await sock.aclose()

        assert asyncio.run(main()) == 1000
